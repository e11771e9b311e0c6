-- What a request under user-interactive auth asked for, kept with its
-- session (Synapse's `clientdict`), so that a later request of the same
-- session may carry only `auth`. Passwords are kept only as their hash.
ALTER TABLE ui_auth_sessions ADD COLUMN client_params TEXT;
