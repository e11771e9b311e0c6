-- Full-text search over message bodies, room names and topics (FTS5). The
-- PostgreSQL side uses text search; see ../postgres/0006_search.sql.
CREATE VIRTUAL TABLE event_search USING fts5(
    body,
    event_id UNINDEXED,
    room_id UNINDEXED,
    stream_ordering UNINDEXED
);
