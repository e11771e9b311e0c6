-- End-to-end encryption keys: device keys, one-time and fallback keys,
-- cross-signing keys and the signatures users make of each other's keys.
-- Kept in step with the other engine's 0009_e2e_keys.sql. Changes that
-- other users must hear of are rows of the device_lists stream.

CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    -- The signed device keys object as uploaded, without others' signatures.
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);

-- One fallback key per device and algorithm; `used` once claimed.
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- key_type: master, self_signing or user_signing.
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- A signature by `signer_user_id`'s key `signer_key_id` of the target
-- user's device or cross-signing key (`target_key_id`: a device id or the
-- key's public part).
CREATE TABLE e2e_signatures (
    signer_user_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    target_user_id TEXT NOT NULL,
    target_key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (signer_user_id, signer_key_id, target_user_id, target_key_id)
);
CREATE INDEX e2e_signatures_by_target ON e2e_signatures (target_user_id, target_key_id);
