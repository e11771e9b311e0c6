//! The storage layer's error type.

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A row with the same unique key exists (a taken user id, a reused session).
    #[error("already exists")]
    Conflict,
    /// A value read from the database does not parse (a corrupt or foreign row).
    #[error("corrupt value in column `{column}`: {reason}")]
    Corrupt { column: &'static str, reason: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database was migrated by a newer Weft than this one.
    #[error("the database schema is at version {database}, newer than this binary's {binary}: upgrade this process")]
    SchemaTooNew { database: i64, binary: i64 },
}

impl StorageError {
    /// Maps a unique-key violation to `Conflict`, anything else to `Database`.
    pub(super) fn from_insert(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Database(error),
        }
    }

    pub(super) fn corrupt(column: &'static str, reason: impl ToString) -> Self {
        Self::Corrupt { column, reason: reason.to_string() }
    }
}
