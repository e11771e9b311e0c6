-- Reports of events and rooms that users sent to this server's
-- administrators. Kept in step with the other engine's 0016_reports.sql.

CREATE TABLE reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ts BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    -- NULL when the report is about the whole room.
    event_id TEXT,
    user_id TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX reports_by_room ON reports (room_id);
