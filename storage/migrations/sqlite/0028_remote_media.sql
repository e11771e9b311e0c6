-- Media of other servers kept in the media store after a first download, so
-- that the next request is served from here. The file lives under
-- `media_store_path`/remote_content/<origin>/ by `filesystem_id` (a local
-- random name: remote media ids are not trusted as paths). Kept in step with
-- the other engine's 0028_remote_media.sql.

CREATE TABLE remote_media_cache (
    media_origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    filesystem_id TEXT NOT NULL,
    media_type TEXT,
    media_length BIGINT NOT NULL,
    upload_name TEXT,
    sha256 TEXT NOT NULL,
    -- Downloaded while `enable_authenticated_media` was on: the deprecated
    -- unauthenticated endpoints do not serve it.
    authenticated INTEGER NOT NULL,
    created_ts BIGINT NOT NULL,
    last_access_ts BIGINT NOT NULL,
    PRIMARY KEY (media_origin, media_id)
);
