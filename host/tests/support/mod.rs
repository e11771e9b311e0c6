//! Test fixtures: databases on both engines, a real server on port 0, and an
//! HTTP client that fails any test that sees a 500.

mod database;
mod idp;
mod processes;
mod server;
pub mod synapse;

pub use database::{Backend, TestDb, unique};
pub use idp::{Browser, Page, idp, idp_install_dir};
pub use processes::{KillOnDrop, WEFT, free_port};
pub use server::{Session, TestServer, errcode, login_body};

/// Percent-encodes a path segment (user, room and event ids).
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs an async test body once per storage backend, as two tests.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            }
        )*
    };
}
