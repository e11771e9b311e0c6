-- A notification is found by its user and position (the event's
-- `stream_ordering`, unique per event), never by its event id: the key on
-- (user_id, event_id) was a fourth index written for every member an event
-- notifies, for no query. The key moves to (user_id, stream_ordering),
-- which also replaces the index of that name.
-- Kept in step with the other engine's 0034_push_actions_key.sql.

ALTER TABLE event_push_actions DROP CONSTRAINT event_push_actions_pkey;
DROP INDEX event_push_actions_by_stream;
ALTER TABLE event_push_actions ADD PRIMARY KEY (user_id, stream_ordering);
