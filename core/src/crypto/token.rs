//! Random tokens and identifiers. Access tokens are 256 bits of randomness
//! behind a `wft_` prefix; only their SHA-256 is stored, which is safe for
//! high-entropy secrets and cheap enough to compute on every request.

use rand::{Rng, distributions::Alphanumeric};
use sha2::{Digest, Sha256};

pub fn new_access_token() -> String {
    format!("wft_{}", random_string(43))
}

pub fn hash_access_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A device id like Synapse's: ten upper-case letters.
pub fn new_device_id() -> String {
    let mut rng = rand::thread_rng();
    (0..10).map(|_| char::from(b'A' + rng.gen_range(0..26))).collect()
}

/// An alphanumeric string of `len` characters.
pub fn random_string(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}
