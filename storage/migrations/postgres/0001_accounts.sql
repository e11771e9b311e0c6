-- Accounts, devices, access tokens, user-interactive auth, and the stream
-- bookkeeping every writer shares. Kept in step with ../sqlite/0001_accounts.sql.

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT,
    created_ts BIGINT NOT NULL,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated BOOLEAN NOT NULL DEFAULT FALSE,
    shadow_banned BOOLEAN NOT NULL DEFAULT FALSE,
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

-- Only a SHA-256 of each token is stored; the token itself is never written.
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX access_tokens_by_device ON access_tokens (user_id, device_id);

-- User-interactive authentication sessions, shared by every process.
CREATE TABLE ui_auth_sessions (
    session_id TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL,
    action TEXT NOT NULL,
    user_id TEXT,
    completed TEXT NOT NULL DEFAULT '[]'
);

-- The position each writer has persisted, per stream, written in the same
-- transaction as the rows it covers.
CREATE TABLE stream_positions (
    stream_name TEXT NOT NULL,
    instance_name TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (stream_name, instance_name)
);

-- One sequence per stream, shared by all writers of that stream.
CREATE SEQUENCE device_lists_sequence;

CREATE TABLE device_lists_stream (
    stream_id BIGINT NOT NULL,
    instance_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL
);
CREATE INDEX device_lists_stream_by_id ON device_lists_stream (stream_id);
CREATE INDEX device_lists_stream_by_user ON device_lists_stream (user_id, stream_id);
