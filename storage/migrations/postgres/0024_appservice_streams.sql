-- How far the appservice notifier has followed the to-device, device-list
-- and presence streams (to-device messages for namespaced devices, MSC3202
-- device-list changes, presence in `ephemeral`). Like the other positions of
-- the row, each starts at the newest row: an appservice is sent what
-- happens after this version. Device-list changes are queued as kind
-- 'device_lists' (`{"changed": [...], "left": [...]}`), merged into one
-- summary per transaction. Kept in step with the other engine's
-- 0024_appservice_streams.sql.
ALTER TABLE appservice_stream_position ADD COLUMN to_device_stream_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE appservice_stream_position ADD COLUMN device_lists_stream_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE appservice_stream_position ADD COLUMN presence_stream_id BIGINT NOT NULL DEFAULT 0;
UPDATE appservice_stream_position SET
    to_device_stream_id = (SELECT COALESCE(MAX(stream_id), 0) FROM device_inbox),
    device_lists_stream_id = (SELECT COALESCE(MAX(stream_id), 0) FROM device_lists_stream),
    presence_stream_id = (SELECT COALESCE(MAX(stream_id), 0) FROM presence);
