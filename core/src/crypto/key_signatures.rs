//! Checking the ed25519 signatures clients put on their end-to-end keys
//! (device keys, cross-signing keys): canonical JSON without `signatures`
//! and `unsigned`, verified with ruma's signature functions.

use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use ruma::{
    CanonicalJsonObject, SigningKeyAlgorithm,
    signatures::{to_canonical_json_string_for_signing, verify_canonical_json_bytes},
};
use serde_json::Value;

/// The unpadded base64 signature `signer` made with key `key_id`
/// (`ed25519:…`) on `object`, if there is one.
pub fn signature_of<'a>(object: &'a Value, signer: &str, key_id: &str) -> Option<&'a str> {
    object.get("signatures")?.get(signer)?.get(key_id)?.as_str()
}

/// Whether `object` carries a valid signature by `signer` with the ed25519
/// key `key_id` whose public part is `public_key` (unpadded base64).
pub fn verify(object: &Value, signer: &str, key_id: &str, public_key: &str) -> bool {
    let Some(signature) = signature_of(object, signer, key_id) else {
        return false;
    };
    verify_signature(object, signature, public_key)
}

/// Whether `signature` is a valid ed25519 signature of `object` by `public_key`.
pub fn verify_signature(object: &Value, signature: &str, public_key: &str) -> bool {
    let (Some(signature), Some(public_key)) = (decode(signature), decode(public_key)) else {
        return false;
    };
    let Ok(canonical) = serde_json::from_value::<CanonicalJsonObject>(object.clone()) else {
        return false;
    };
    let Ok(text) = to_canonical_json_string_for_signing(&canonical) else {
        return false;
    };
    verify_canonical_json_bytes(&SigningKeyAlgorithm::Ed25519, &public_key, &signature, text.as_bytes()).is_ok()
}

/// Unpadded base64, tolerating padding as Synapse does.
fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD_NO_PAD.decode(text.trim_end_matches('=')).ok()
}
