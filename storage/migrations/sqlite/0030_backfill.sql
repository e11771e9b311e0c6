-- History fetched from other servers (`backfill`). Kept in step with the
-- other engine's 0030_backfill.sql.
--
-- Backfilled events go on the `events` table with negative stream
-- orderings, each batch below everything already there (as Synapse's
-- backfill stream): they sort before the room's other events and no sync
-- position ever reaches them. This sequence counts down from -1.
INSERT INTO stream_sequences (stream_name, last_id) VALUES ('events_backfill', 0);

-- A room's backward extremities: events not yet fetched (or fetched but
-- whose predecessors are not), from which the next backfill asks. A room
-- with none is fully backfilled (its create event reached).
CREATE TABLE event_backward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);
