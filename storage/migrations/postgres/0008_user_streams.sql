-- The per-user streams kept in the database: receipts, account data,
-- presence and to-device messages. Kept in step with the other engine's
-- 0008_user_streams.sql. (Typing is in memory on its writer, as in Synapse.)

CREATE SEQUENCE receipts_sequence;
CREATE SEQUENCE account_data_sequence;
CREATE SEQUENCE presence_sequence;
CREATE SEQUENCE to_device_sequence;

-- The latest receipt of each (room, type, user, thread): '' is unthreaded.
-- Re-sending moves the row to a new stream id.
CREATE TABLE receipts (
    stream_id BIGINT NOT NULL,
    instance_name TEXT NOT NULL,
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- The receipted event's position, for unread counts.
    event_stream_ordering BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_by_stream ON receipts (stream_id);
CREATE INDEX receipts_by_user ON receipts (user_id, room_id);

-- Global account data has room_id ''.
CREATE TABLE account_data (
    stream_id BIGINT NOT NULL,
    instance_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_by_stream ON account_data (user_id, stream_id);

CREATE TABLE presence (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL,
    instance_name TEXT NOT NULL,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    last_sync_ts BIGINT NOT NULL,
    currently_active BOOLEAN NOT NULL
);
CREATE INDEX presence_by_stream ON presence (stream_id);

-- Messages waiting for a device, deleted once it syncs past them.
CREATE TABLE device_inbox (
    stream_id BIGINT PRIMARY KEY,
    instance_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    message_json TEXT NOT NULL
);
CREATE INDEX device_inbox_by_device ON device_inbox (user_id, device_id, stream_id);

-- Transaction ids of /sendToDevice, for idempotency.
CREATE TABLE to_device_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
