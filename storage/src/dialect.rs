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
            // Commits do not checkpoint: `checkpoints` does, beside them.
            conn.execute(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
            )
            .await?;
        }
        Ok(())
    }

    /// Adds an event's text to the full-text index.
    pub(super) async fn index_for_search(self, conn: &mut AnyConnection, event_id: &str, room_id: &str, ordering: i64, text: &str) -> Result<()> {
        let sql = match self {
            Self::Postgres => "INSERT INTO event_search (event_id, room_id, stream_ordering, vector) VALUES ($1, $2, $3, to_tsvector('english', $4))",
            Self::Sqlite => "INSERT INTO event_search (event_id, room_id, stream_ordering, body) VALUES ($1, $2, $3, $4)",
        };
        sqlx::query(sql).bind(event_id).bind(room_id).bind(ordering).bind(super::index_text(text)).execute(conn).await?;
        Ok(())
    }

    /// Matching events in rooms `user_id` has joined, best first (or newest
    /// first when `recent`), skipping `offset`. PostgreSQL parses the term as
    /// a web search; for FTS5 each word is quoted, so no input is a syntax error.
    pub(super) fn search_sql(self, recent: bool) -> String {
        self.search_query(Some(recent))
    }

    /// How many events `search_sql` would find, with the same first three parameters.
    pub(super) fn search_count_sql(self) -> String {
        self.search_query(None)
    }

    /// The search query: the page ordered by rank or recency, or (`None`) the count.
    fn search_query(self, recent: Option<bool>) -> String {
        // The engines differ in the match and rank expressions only.
        let (table, rank, matches) = match self {
            Self::Postgres => (
                "event_search",
                "ts_rank(event_search.vector, websearch_to_tsquery('english', $1))::FLOAT8",
                "event_search.vector @@ websearch_to_tsquery('english', $1)",
            ),
            Self::Sqlite => ("event_search", "-bm25(event_search)", "event_search MATCH $1"),
        };
        let ordering = match self {
            Self::Postgres => "event_search.stream_ordering",
            Self::Sqlite => "CAST(event_search.stream_ordering AS INTEGER)",
        };
        let from = format!(
            "FROM {table} \
             JOIN current_state c ON c.room_id = {table}.room_id AND c.type = 'm.room.member' AND c.state_key = $2 AND c.membership = 'join' \
             WHERE {matches} AND ($3 IS NULL OR {table}.room_id = $3)"
        );
        match recent {
            None => format!("SELECT COUNT(*) {from}"),
            Some(recent) => {
                let order = if recent { format!("{ordering} DESC") } else { format!("rank DESC, {ordering} DESC") };
                format!("SELECT {table}.event_id AS event_id, {rank} AS rank {from} ORDER BY {order} LIMIT $4 OFFSET $5")
            }
        }
    }

    /// The search term as this engine's query language wants it.
    pub(super) fn search_term(self, term: &str) -> String {
        match self {
            Self::Postgres => term.to_owned(),
            Self::Sqlite => term.split_whitespace().map(|word| format!("\"{}\"", word.replace('"', "\"\""))).collect::<Vec<_>>().join(" "),
        }
    }

    /// The statement that starts a transaction which will write. SQLite
    /// starts plain transactions as readers, and a reader that later writes
    /// fails at once with `SQLITE_BUSY_SNAPSHOT` (no busy timeout helps) when
    /// another connection committed meanwhile; `BEGIN IMMEDIATE` takes the
    /// write lock first, so concurrent writers queue behind each other.
    pub(super) fn begin_write_sql(self) -> &'static str {
        match self {
            Self::Postgres => "BEGIN",
            Self::Sqlite => "BEGIN IMMEDIATE",
        }
    }

    /// The last id handed out on `stream` (0 before any).
    pub(super) async fn current_stream_id(self, conn: &mut AnyConnection, stream: Stream) -> Result<i64> {
        let id = match self {
            Self::Postgres => {
                let sql = format!("SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM {}_sequence", stream.as_str());
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(conn).await?
            }
            Self::Sqlite => {
                sqlx::query_scalar("SELECT last_id FROM stream_sequences WHERE stream_name = $1").bind(stream.as_str()).fetch_optional(conn).await?.unwrap_or(0)
            }
        };
        Ok(id)
    }

    /// Allocates the next id of `stream` inside the caller's transaction.
    ///
    /// PostgreSQL: the stream's sequence, shared by every writer. SQLite: a
    /// counter row, updated inside the writing transaction.
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
