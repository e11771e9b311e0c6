-- Pushers: where a user's notifications are to be sent, and how far each
-- pusher has got. Kept in step with the other engine's 0012_pushers.sql.

CREATE TABLE pushers (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    -- The device whose access token created the pusher; the pusher is
    -- deleted with the device.
    device_id TEXT NOT NULL,
    -- 'http' or 'email'.
    kind TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    -- The client's `data` object as JSON (for http, `url` and `format`).
    data TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- The events stream position the pusher has dealt with up to.
    last_stream_ordering BIGINT NOT NULL,
    last_success_ts BIGINT,
    -- When the current run of failed deliveries began; NULL when not failing.
    failing_since_ts BIGINT,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_by_app_id_pushkey ON pushers (app_id, pushkey);
CREATE INDEX pushers_by_device ON pushers (user_id, device_id);
