//! Password hashing with argon2id (the `argon2` crate's defaults, the OWASP
//! recommendation). Hashing is slow on purpose, so it runs on the blocking
//! pool, at most one hash per core at a time: each takes 19 MiB and a core
//! for tens of milliseconds, so more at once add memory and contention, not
//! throughput. On glibc, allocations that large are always given back to the
//! system when freed (`return_large_allocations`): otherwise the allocator
//! keeps them in per-thread arenas, and a process that answered a burst of
//! logins kept about 200 MiB it no longer used.

use std::sync::LazyLock;

use tokio::sync::Semaphore;

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};

/// Passwords longer than this are refused, as Synapse does: hashing them is
/// a denial-of-service vector and no human types one.
pub const MAX_PASSWORD_LENGTH: usize = 512;

static HASHING: LazyLock<Semaphore> = LazyLock::new(|| {
    return_large_allocations();
    Semaphore::new(std::thread::available_parallelism().map_or(2, |cores| cores.get()))
});

/// glibc serves a freed block's size from its arenas from then on (its mmap
/// threshold rises with every large free, up to 32 MiB); a fixed threshold
/// keeps blocks of 4 MiB and more in their own mappings, unmapped on free.
fn return_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting; glibc takes its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

/// Runs `work` on the blocking pool once a hashing slot is free.
async fn hashing<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let _slot = HASHING.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}

pub async fn hash(password: &str) -> String {
    let password = password.to_owned();
    hashing(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 hashing with default parameters cannot fail").to_string()
    })
    .await
    .expect("password hashing task panicked")
}

/// Whether `password` matches `stored`; a malformed stored hash never matches.
pub async fn verify(password: &str, stored: &str) -> bool {
    let password = password.to_owned();
    let stored = stored.to_owned();
    hashing(move || PasswordHash::new(&stored).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()))
        .await
        .unwrap_or(false)
}
