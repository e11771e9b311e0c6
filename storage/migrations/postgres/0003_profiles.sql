-- Profile fields (displayname, avatar_url, and any custom field), one row
-- each, the value as JSON. Kept in step with the other engine's file.
CREATE TABLE profile_fields (
    user_id TEXT NOT NULL,
    field TEXT NOT NULL,
    value_json TEXT NOT NULL,
    PRIMARY KEY (user_id, field)
);
