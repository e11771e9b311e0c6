//! The server's ed25519 signing key, stored in Synapse's format (one line:
//! `ed25519 <version> <unpadded base64 seed>`) so keys move between Synapse
//! and Weft unchanged. The main process generates it on first start.

use std::{io, path::Path};

use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use rand::RngCore;
use ruma::signatures::Ed25519KeyPair;

/// The PKCS#8 v1 prefix of an ed25519 private key; the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("cannot read or write the signing key at {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("the signing key at {path} is not in Synapse's format `ed25519 <version> <base64 seed>`: {reason}")]
    Malformed { path: String, reason: String },
}

/// The key pair with its version (the part after `ed25519:` in the key id).
pub struct SigningKey {
    pub pair: Ed25519KeyPair,
    pub public_key_base64: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("key_id", &self.key_id()).finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.pair.version())
    }

    /// Reads the key at `path`, generating and writing a new one first when
    /// `generate` is set and the file does not exist.
    pub fn load_or_generate(path: &Path, generate: bool) -> Result<(Self, bool), SigningKeyError> {
        let display = path.display().to_string();
        let io_error = |source| SigningKeyError::Io { path: display.clone(), source };
        let created = if generate && !path.exists() {
            let mut seed = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            let version = format!("a_{}", crate::crypto::token::random_string(4));
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io_error)?;
            }
            std::fs::write(path, format!("ed25519 {version} {}\n", STANDARD_NO_PAD.encode(seed))).map_err(io_error)?;
            true
        } else {
            false
        };
        let text = std::fs::read_to_string(path).map_err(io_error)?;
        Ok((Self::parse(&text).map_err(|reason| SigningKeyError::Malformed { path: display, reason })?, created))
    }

    fn parse(text: &str) -> Result<Self, String> {
        let line = text.lines().find(|line| !line.trim().is_empty()).ok_or("the file is empty")?;
        let mut parts = line.split_whitespace();
        let (Some("ed25519"), Some(version), Some(seed), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("expected three fields, the first `ed25519`".into());
        };
        let seed = STANDARD_NO_PAD.decode(seed.trim_end_matches('=')).map_err(|e| format!("bad base64: {e}"))?;
        if seed.len() != 32 {
            return Err(format!("the seed is {} bytes, not 32", seed.len()));
        }
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let pair = Ed25519KeyPair::from_der(&der, version.to_owned()).map_err(|e| e.to_string())?;
        let public_key_base64 = STANDARD_NO_PAD.encode(pair.public_key());
        Ok(Self { pair, public_key_base64 })
    }
}
