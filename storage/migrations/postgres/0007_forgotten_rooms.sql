-- Rooms a user has left and forgotten: no longer shown to them (the leave
-- section of /sync). Joining or being invited again clears the row.
CREATE TABLE forgotten_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
