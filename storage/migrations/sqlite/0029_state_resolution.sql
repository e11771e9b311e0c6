-- State resolution at forks in rooms shared with other servers. Kept in
-- step with the other engine's 0029_state_resolution.sql.
--
-- A room's state stays linear in stream order (0002_rooms.sql): the state
-- at a position is the latest state event of each key at or before it, with
-- the resets below applied. Two tables make forks correct on top of that.

-- The state before an event that the linear model does not give (an event
-- of another server that forks from the room's forward extremities): only
-- the keys where it differs from the room's state just before the event's
-- stream position. `state_event_id` NULL: the key is absent.
CREATE TABLE event_state_overrides (
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    state_event_id TEXT,
    PRIMARY KEY (event_id, type, state_key)
);

-- Changes that state resolution made to a room's current state, other than
-- the persisted event itself: at that event's stream position the key's
-- state became `event_id` (an older event). Read with the events stream:
-- by the state at a position, by /sync's state changes, and by the current
-- state (which they update when written).
CREATE TABLE state_resets (
    stream_ordering BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (stream_ordering, type, state_key)
);
CREATE INDEX state_resets_by_room ON state_resets (room_id, stream_ordering);
