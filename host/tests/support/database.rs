//! A database per test: a SQLite file in a temporary directory, or a fresh
//! PostgreSQL database dropped when the test ends (even when it fails).

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, Executor, PgConnection};
use tempfile::TempDir;
use weft::storage::Storage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_base_url() -> String {
    std::env::var("WEFT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique name for this process and call, usable as a database or server name part.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

pub struct TestDb {
    /// `database` table contents for a configuration file.
    pub config_toml: String,
    pub url: String,
    dir: TempDir,
    postgres_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        match backend {
            Backend::Sqlite => {
                let path = dir.path().join("test.db");
                let config_toml = format!("[database]\nname = \"sqlite3\"\nargs = {{ database = {:?} }}\n", path.display().to_string());
                Self { config_toml, url: format!("sqlite://{}?mode=rwc", path.display()), dir, postgres_name: None }
            }
            Backend::Postgres => {
                let name = unique("weft_test_");
                let base = postgres_base_url();
                let mut admin = PgConnection::connect(&format!("{base}/postgres"))
                    .await
                    .expect("PostgreSQL must be reachable at WEFT_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432); run tests/run.sh");
                admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).await.expect("create test database");
                let url = format!("{base}/{name}");
                let parsed: http::Uri = base.parse().expect("WEFT_TEST_POSTGRES_URL is a URL");
                let authority = parsed.authority().expect("URL with a host").as_str();
                let (credentials, host_port) = authority.rsplit_once('@').unwrap_or(("", authority));
                let user = credentials.split(':').next().filter(|u| !u.is_empty()).unwrap_or("postgres");
                let (host, port) = host_port.rsplit_once(':').unwrap_or((host_port, "5432"));
                let config_toml = format!(
                    "[database]\nname = \"psycopg2\"\nargs = {{ user = \"{user}\", host = \"{host}\", port = {port}, dbname = \"{name}\", cp_max = 5 }}\n"
                );
                Self { config_toml, url, dir, postgres_name: Some(name) }
            }
        }
    }

    /// Stands in for a database moved elsewhere; owns nothing.
    pub fn placeholder() -> Self {
        Self { config_toml: String::new(), url: String::new(), dir: tempfile::tempdir().expect("temporary directory"), postgres_name: None }
    }

    /// A migrated storage on this database, writing as `instance`.
    pub async fn storage(&self, instance: &str) -> Storage {
        let storage = Storage::connect_url(&self.url, Some(1), Some(5), instance).await.expect("connect");
        storage.migrate().await.expect("migrate");
        storage
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else { return };
        let url = format!("{}/postgres", postgres_base_url());
        // Drop runs outside any async context we can rely on: a thread with
        // its own runtime drops the database, forcing out open connections.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&url).await {
                    let _ = admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).await;
                }
            });
        })
        .join();
    }
}
