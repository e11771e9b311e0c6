-- Full-text search over message bodies, room names and topics (PostgreSQL
-- text search). The SQLite side uses FTS5; see ../sqlite/0006_search.sql.
CREATE TABLE event_search (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    vector TSVECTOR NOT NULL
);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);
