-- The local media repository: one row per media id this server handed out.
-- The file itself lives under `media_store_path`. Kept in step with the other
-- engine's 0019_media.sql.

CREATE TABLE local_media (
    media_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- An id from `/create` that has no content yet can take its upload until
    -- this time (milliseconds); NULL once uploaded, and for direct uploads.
    unused_expires_at BIGINT,
    -- NULL until the content is uploaded.
    media_length BIGINT,
    media_type TEXT,
    upload_name TEXT,
    sha256 TEXT,
    -- Uploaded while `enable_authenticated_media` was on: the deprecated
    -- unauthenticated endpoints do not serve it (the spec's "freeze").
    authenticated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX local_media_by_user ON local_media (user_id);
