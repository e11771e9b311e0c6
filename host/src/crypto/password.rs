//! Password hashing with argon2id (the `argon2` crate's defaults, the OWASP
//! recommendation). Hashing is slow on purpose, so it runs on the blocking pool.

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};

/// Passwords longer than this are refused, as Synapse does: hashing them is
/// a denial-of-service vector and no human types one.
pub const MAX_PASSWORD_LENGTH: usize = 512;

pub async fn hash(password: &str) -> String {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2 hashing with default parameters cannot fail")
            .to_string()
    })
    .await
    .expect("password hashing task panicked")
}

/// Whether `password` matches `stored`; a malformed stored hash never matches.
pub async fn verify(password: &str, stored: &str) -> bool {
    let password = password.to_owned();
    let stored = stored.to_owned();
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .unwrap_or(false)
}
