//! Secrets and keys: password hashing, access tokens and their hashes, and the
//! server's ed25519 signing key.
//!
//! Owns: every use of a hash, a MAC or a random secret outside the plugin
//! sandbox. Must not: touch the database or HTTP.

pub mod key_signatures;
pub mod password;
pub mod server_key;
pub mod token;
