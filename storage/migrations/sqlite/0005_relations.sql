-- Which event relates to which (`m.relates_to` with a `rel_type`), for
-- /relations and /threads. Kept in step with the other engine's file.
CREATE TABLE event_relations (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    relates_to TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    sender TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL
);
CREATE INDEX event_relations_by_parent ON event_relations (relates_to, stream_ordering);
CREATE INDEX event_relations_threads ON event_relations (room_id, rel_type, stream_ordering);
