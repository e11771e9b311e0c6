-- Single sign-on (the sso-provider plugins, `weft_api::sso`). Everything a
-- login needs between two requests lives here, not in a process, so any
-- instance may take the next step. Kept in step with the other engine's
-- 0021_sso.sql.

-- One login attempt, from the redirect to the provider's callback: what the
-- host generated (state, nonce, PKCE verifier) and what the plugin asked to
-- keep (`context`). Taken (deleted) by the callback that names its state.
CREATE TABLE sso_login_attempts (
    state TEXT PRIMARY KEY,
    idp_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    callback_url TEXT NOT NULL,
    context TEXT NOT NULL,
    -- Where the client wants the browser back (`redirectUrl`); empty for
    -- user-interactive auth.
    client_redirect_url TEXT NOT NULL,
    -- The user-interactive auth session this attempt re-authenticates for.
    ui_auth_session_id TEXT,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX sso_login_attempts_by_expiry ON sso_login_attempts (expires_ts);

-- An identity provider's user (its id and the subject) mapped to a Matrix
-- user: how a returning user is found (Synapse's `user_external_ids`).
CREATE TABLE user_external_ids (
    auth_provider TEXT NOT NULL,
    external_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (auth_provider, external_id)
);
CREATE INDEX user_external_ids_by_user ON user_external_ids (user_id);

-- A new user choosing a username (Synapse's username mapping session).
CREATE TABLE sso_username_sessions (
    session_id TEXT PRIMARY KEY,
    idp_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    suggested_localpart TEXT,
    display_name TEXT,
    emails TEXT NOT NULL,
    client_redirect_url TEXT NOT NULL,
    -- What the user submitted on the picker page, for `sso_register`.
    chosen_localpart TEXT,
    use_display_name BIGINT NOT NULL DEFAULT 0,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX sso_username_sessions_by_expiry ON sso_username_sessions (expires_ts);

-- `m.login.token` tokens: single use, short-lived; the SHA-256 of the token
-- (hex), as access tokens are kept.
CREATE TABLE login_tokens (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    auth_provider TEXT,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX login_tokens_by_expiry ON login_tokens (expires_ts);

-- A user-interactive auth session whose SSO re-authentication answered
-- another user than the one it is for: every later request with it is refused.
ALTER TABLE ui_auth_sessions ADD COLUMN refused TEXT;
