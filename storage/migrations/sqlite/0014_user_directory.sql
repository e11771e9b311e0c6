-- The user directory, maintained Synapse-style by one updater that follows
-- the events stream (see host/src/user_directory). Kept in step with the other
-- engine's 0014_user_directory.sql.

-- The profile shown for each user the directory knows.
CREATE TABLE user_directory (
    user_id TEXT PRIMARY KEY,
    display_name TEXT,
    avatar_url TEXT
);

-- The lower-cased words of each user's id and display name, matched by prefix.
-- Compared byte by byte (BINARY), so a prefix is an index range.
CREATE TABLE user_directory_words (
    word TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (word, user_id)
);
CREATE INDEX user_directory_words_by_user ON user_directory_words (user_id, word);

-- Users joined to a public room (join rule `public` or history `world_readable`):
-- visible to every searcher.
CREATE TABLE users_in_public_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX users_in_public_rooms_by_room ON users_in_public_rooms (room_id);

-- Pairs sharing a private room: `other_user_id` is visible to the local `user_id`.
CREATE TABLE users_who_share_private_rooms (
    user_id TEXT NOT NULL,
    other_user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, other_user_id, room_id)
);
CREATE INDEX users_who_share_private_rooms_by_room ON users_who_share_private_rooms (room_id);
CREATE INDEX users_who_share_private_rooms_by_other ON users_who_share_private_rooms (other_user_id);

-- Whether the updater last saw each room as public, to notice a change.
CREATE TABLE user_directory_rooms (
    room_id TEXT PRIMARY KEY,
    is_public INTEGER NOT NULL
);

-- How far along the events stream the updater has got (one row).
CREATE TABLE user_directory_position (
    stream_id BIGINT NOT NULL
);
INSERT INTO user_directory_position (stream_id) VALUES (0);
