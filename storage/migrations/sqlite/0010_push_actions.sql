-- What the push rules said of each event for each local user it notifies:
-- the source of unread counts, `/notifications` and a pusher's work.
-- Kept in step with the other engine's 0010_push_actions.sql.

CREATE TABLE event_push_actions (
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    -- The thread root the event belongs to; 'main' for the main timeline.
    thread_id TEXT NOT NULL,
    -- The rule's actions as JSON.
    actions TEXT NOT NULL,
    highlight INTEGER NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX event_push_actions_by_room ON event_push_actions (user_id, room_id, stream_ordering);
CREATE INDEX event_push_actions_by_stream ON event_push_actions (user_id, stream_ordering);
