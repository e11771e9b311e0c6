-- A notification is found by its user and position (the event's
-- `stream_ordering`, unique per event), never by its event id: the key on
-- (user_id, event_id) was a fourth index written for every member an event
-- notifies, for no query. The key moves to (user_id, stream_ordering),
-- which also replaces the index of that name. SQLite cannot change a
-- table's key in place: the table is copied.
-- Kept in step with the other engine's 0034_push_actions_key.sql.

CREATE TABLE event_push_actions_keyed (
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    thread_id TEXT NOT NULL,
    actions TEXT NOT NULL,
    highlight INTEGER NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, stream_ordering)
);
INSERT INTO event_push_actions_keyed (user_id, event_id, room_id, stream_ordering, thread_id, actions, highlight, ts)
    SELECT user_id, event_id, room_id, stream_ordering, thread_id, actions, highlight, ts FROM event_push_actions;
DROP TABLE event_push_actions;
ALTER TABLE event_push_actions_keyed RENAME TO event_push_actions;
CREATE INDEX event_push_actions_by_room ON event_push_actions (user_id, room_id, stream_ordering);
CREATE INDEX event_push_actions_by_position ON event_push_actions (stream_ordering);
