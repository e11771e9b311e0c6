-- The pusher instances read the database as their queue: which users got
-- notifications in a range of the events stream. Kept in step with the
-- other engine's 0020_push_queue.sql.

CREATE INDEX event_push_actions_by_position ON event_push_actions (stream_ordering);
