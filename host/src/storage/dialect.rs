//! The few places where SQLite and PostgreSQL need different SQL or set-up.

use sqlx::{AnyConnection, Executor};

use super::{Result, Stream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    pub(super) fn from_url(url: &str) -> Self {
        if url.starts_with("sqlite:") { Self::Sqlite } else { Self::Postgres }
    }

    pub(super) fn default_min_connections(self) -> u32 {
        match self {
            Self::Postgres => 5,
            Self::Sqlite => 1,
        }
    }

    pub(super) fn default_max_connections(self) -> u32 {
        match self {
            Self::Postgres => 10,
            Self::Sqlite => 4,
        }
    }

    pub(super) async fn prepare_connection(self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        if self == Self::Sqlite {
            // WAL lets readers run beside the one writer; NORMAL sync is safe with WAL.
            conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;")
                .await?;
        }
        Ok(())
    }

    /// Allocates the next id of `stream` inside the caller's transaction.
    ///
    /// PostgreSQL: the stream's sequence, shared by every writer. SQLite: a
    /// counter row; updating it first also takes SQLite's write lock at the
    /// start of the transaction, so concurrent writers queue instead of failing.
    pub(super) async fn next_stream_id(self, conn: &mut AnyConnection, stream: Stream) -> Result<i64> {
        let id = match self {
            Self::Postgres => {
                let sql = format!("SELECT nextval('{}_sequence')", stream.as_str());
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(conn).await?
            }
            Self::Sqlite => {
                sqlx::query_scalar("UPDATE stream_sequences SET last_id = last_id + 1 WHERE stream_name = $1 RETURNING last_id")
                    .bind(stream.as_str())
                    .fetch_one(conn)
                    .await?
            }
        };
        Ok(id)
    }
}
