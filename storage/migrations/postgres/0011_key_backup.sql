-- Server-side backups of room keys: a user's backup versions and the
-- encrypted session keys stored in each. Kept in step with the other
-- engine's 0011_key_backup.sql.

-- Versions count up per user from 1 and are never reused: a deleted version
-- keeps its row, with `deleted_ts` set, so the next one gets a higher number.
CREATE TABLE e2e_room_keys_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    -- The algorithm's auth_data object as JSON.
    auth_data TEXT NOT NULL,
    -- Bumped whenever the keys stored in this version change.
    etag BIGINT NOT NULL,
    deleted_ts BIGINT,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE e2e_room_keys (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified BOOLEAN NOT NULL,
    -- The algorithm-dependent encrypted session data object as JSON.
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
