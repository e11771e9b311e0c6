-- Each user's push rules: the whole ruma `Ruleset` as JSON, server-default
-- rules included with the user's enabled state and actions for them. Kept in
-- step with the other engine's 0013_push_rules.sql.
--
-- The `push_rules` stream: a change moves the user's row to a new stream id,
-- so "changed since" is one look-up.

CREATE SEQUENCE push_rules_sequence;

CREATE TABLE push_rules (
    user_id TEXT PRIMARY KEY,
    rules_json TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    instance_name TEXT NOT NULL
);
CREATE INDEX push_rules_by_stream ON push_rules (stream_id);
