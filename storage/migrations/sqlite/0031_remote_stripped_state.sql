-- The stripped state another server gave with an invite (`invite_room_state`)
-- or a knock (`knock_room_state`) into a room this server is not in: shown
-- with the invite or the knock in the user's /sync, and naming servers to
-- reject or withdraw through. `events_json` is a JSON array of stripped
-- events (`type`, `state_key`, `sender`, `content`). Kept in step with the
-- other engine's 0031_remote_stripped_state.sql.

CREATE TABLE remote_stripped_state (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    events_json TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
