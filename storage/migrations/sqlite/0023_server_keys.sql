-- Other servers' signing keys (`weft_federation::keys`), as Synapse keeps
-- them in `server_keys_json` and `server_signature_keys`. Kept in step with
-- the other engine's 0023_server_keys.sql.

-- The latest verified answer of each server (or of a notary about it), with
-- every signature it carried: served again by this server as a notary.
CREATE TABLE server_keys_json (
    server_name TEXT PRIMARY KEY,
    key_json TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL
);

-- Every key ever verified for a server: current ones until `valid_until_ts`,
-- old ones (`old_verify_keys`, or keys a later answer no longer lists) with
-- the time they expired, for signatures made before then.
CREATE TABLE server_signing_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    verify_key TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    expired_ts BIGINT,
    PRIMARY KEY (server_name, key_id)
);
