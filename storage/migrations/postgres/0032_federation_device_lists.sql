-- Where the federation sender is on the streams it turns into EDUs for
-- other servers (device lists, presence): the EDUs of a batch are queued in
-- federation_edu_outbox in the transaction that moves the position. Starts
-- at the streams' ends: changes made before federation existed are not sent.
-- Kept in step with the other engine's 0032_federation_device_lists.sql.
CREATE TABLE federation_stream_positions (
    stream_name TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL
);
INSERT INTO federation_stream_positions (stream_name, stream_id) SELECT 'device_lists', COALESCE(MAX(stream_id), 0) FROM device_lists_stream;
INSERT INTO federation_stream_positions (stream_name, stream_id) SELECT 'presence', COALESCE(MAX(stream_id), 0) FROM presence;

-- Other servers' users' device lists, kept current by m.device_list_update:
-- a row says the user's devices here are complete as of the remote
-- server's stream_id (the prev_id the next update must name).
CREATE TABLE remote_device_lists (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL
);
CREATE TABLE remote_devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    keys_json TEXT,
    PRIMARY KEY (user_id, device_id)
);
-- Their master and self-signing keys (m.signing_key_update, /user/devices).
CREATE TABLE remote_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);
