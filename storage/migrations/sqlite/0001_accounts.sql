-- Accounts, devices, access tokens, user-interactive auth, and the stream
-- bookkeeping every writer shares. Kept in step with ../postgres/0001_accounts.sql;
-- the one difference is how stream ids are allocated (no sequences in SQLite).

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT,
    created_ts BIGINT NOT NULL,
    -- Flags are INTEGER 0/1: sqlx's Any driver cannot carry SQLite's BOOLEAN.
    admin INTEGER NOT NULL DEFAULT 0,
    deactivated INTEGER NOT NULL DEFAULT 0,
    shadow_banned INTEGER NOT NULL DEFAULT 0,
    user_type TEXT
);
CREATE UNIQUE INDEX users_user_id_lower ON users (lower(user_id));

CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    created_ts BIGINT NOT NULL,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX access_tokens_by_device ON access_tokens (user_id, device_id);

CREATE TABLE ui_auth_sessions (
    session_id TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL,
    action TEXT NOT NULL,
    user_id TEXT,
    completed TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE stream_positions (
    stream_name TEXT NOT NULL,
    instance_name TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (stream_name, instance_name)
);

-- SQLite stands in for PostgreSQL sequences with one counter row per stream;
-- only one process ever writes a SQLite database.
CREATE TABLE stream_sequences (
    stream_name TEXT PRIMARY KEY,
    last_id BIGINT NOT NULL
);
INSERT INTO stream_sequences (stream_name, last_id) VALUES ('device_lists', 0);

CREATE TABLE device_lists_stream (
    stream_id BIGINT NOT NULL,
    instance_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL
);
CREATE INDEX device_lists_stream_by_id ON device_lists_stream (stream_id);
CREATE INDEX device_lists_stream_by_user ON device_lists_stream (user_id, stream_id);
