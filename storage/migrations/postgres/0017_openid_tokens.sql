-- OpenID tokens: a user proves who they are to a third party (a widget, an
-- integration manager), which checks the token with this server over the
-- federation API. Kept in step with the other engine's 0017_openid_tokens.sql.

CREATE TABLE openid_tokens (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    valid_until_ms BIGINT NOT NULL
);
CREATE INDEX openid_tokens_by_expiry ON openid_tokens (valid_until_ms);
