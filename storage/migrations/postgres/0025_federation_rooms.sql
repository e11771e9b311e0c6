-- Rooms across servers: what was received from other servers and what is
-- still to be sent to them. Kept in step with the other engine's
-- 0025_federation_rooms.sql.

-- Transactions received (`PUT /send/{txnId}`), per origin, with the answer
-- given: a retried transaction gets the same answer and changes nothing.
CREATE TABLE federation_received_txns (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response_json TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);

-- Events of other servers that are not in any timeline: auth events and
-- state fetched to check an event ('outlier'), and events that passed the
-- checks against their own state but not against the current state
-- ('soft_failed').
CREATE TABLE event_outliers (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    json TEXT NOT NULL,
    received_ts BIGINT NOT NULL
);

-- How far the federation sender has read the events stream: every local
-- event up to here is in `federation_outbox` for each server in its room.
-- Starts at the newest event: rooms had no remote members before.
CREATE TABLE federation_sender_position (stream_id BIGINT NOT NULL);
INSERT INTO federation_sender_position (stream_id) SELECT COALESCE(MAX(stream_ordering), 0) FROM events;

-- Events not yet acknowledged by a destination, in stream order. A row is
-- deleted when a transaction holding it (or, in catch-up, a later event of
-- its room) was accepted.
CREATE TABLE federation_outbox (
    destination TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (destination, stream_ordering)
);

-- Each destination's retry state (as Synapse's `destinations`).
CREATE TABLE federation_destinations (
    destination TEXT PRIMARY KEY,
    last_successful_stream_ordering BIGINT,
    failure_ts BIGINT,
    retry_last_ts BIGINT NOT NULL DEFAULT 0,
    retry_interval BIGINT NOT NULL DEFAULT 0
);
