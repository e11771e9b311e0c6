-- Rooms and their events. Kept in step with the other engine's 0002_rooms.sql.
--
-- Rooms are local until federation arrives, so a room's state is linear in
-- stream order: the state at a position is the latest state event of each
-- (type, state_key) at or before it. State groups replace this when
-- federation brings forks.

CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- Published in the public room directory.
    published BOOLEAN NOT NULL DEFAULT FALSE
);

-- The events stream: one row per event, ordered by stream_ordering (the
-- stream id), written by the room's persister.
CREATE SEQUENCE events_sequence;
CREATE TABLE events (
    stream_ordering BIGINT PRIMARY KEY,
    instance_name TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    -- NULL for events that are not state events.
    state_key TEXT,
    depth BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    -- The signed PDU.
    json TEXT NOT NULL
);
CREATE INDEX events_by_room ON events (room_id, stream_ordering);
CREATE INDEX events_state_by_room ON events (room_id, type, state_key, stream_ordering);

CREATE TABLE current_state (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    -- For m.room.member events: the membership, so rooms-of-user is one look-up.
    membership TEXT,
    PRIMARY KEY (room_id, type, state_key)
);
CREATE INDEX current_state_members ON current_state (state_key, type, membership);

-- Every membership change, for "rooms of a user" and for visibility.
CREATE TABLE room_memberships (
    stream_ordering BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    membership TEXT NOT NULL
);
CREATE INDEX room_memberships_by_user ON room_memberships (user_id, stream_ordering);

CREATE TABLE forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- Client transaction ids, for idempotent sends per device.
CREATE TABLE event_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Filters uploaded with /user/{userId}/filter, referred to by id in /sync.
CREATE TABLE user_filters (
    user_id TEXT NOT NULL,
    filter_id TEXT NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
