//! Test fixtures: databases on both engines, a real server on port 0, and an
//! HTTP client that fails any test that sees a 500.

mod database;
mod processes;
mod server;

pub use database::{Backend, TestDb, unique};
pub use processes::{KillOnDrop, WEFT, free_port};
pub use server::{Session, TestServer, errcode, login_body};

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
