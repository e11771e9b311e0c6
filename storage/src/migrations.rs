//! The embedded migrations of both engines, run with sqlx's migrator.

use std::borrow::Cow;

use sqlx::{
    AnyPool, SqlStr,
    migrate::{Migration, MigrationType, Migrator},
};

use super::{Dialect, Result};

/// `(version, description, PostgreSQL, SQLite)`; append, never edit.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (1, "accounts", include_str!("../migrations/postgres/0001_accounts.sql"), include_str!("../migrations/sqlite/0001_accounts.sql")),
    (2, "rooms", include_str!("../migrations/postgres/0002_rooms.sql"), include_str!("../migrations/sqlite/0002_rooms.sql")),
    (3, "profiles", include_str!("../migrations/postgres/0003_profiles.sql"), include_str!("../migrations/sqlite/0003_profiles.sql")),
    (4, "aliases", include_str!("../migrations/postgres/0004_aliases.sql"), include_str!("../migrations/sqlite/0004_aliases.sql")),
    (5, "relations", include_str!("../migrations/postgres/0005_relations.sql"), include_str!("../migrations/sqlite/0005_relations.sql")),
    (6, "search", include_str!("../migrations/postgres/0006_search.sql"), include_str!("../migrations/sqlite/0006_search.sql")),
    (7, "forgotten_rooms", include_str!("../migrations/postgres/0007_forgotten_rooms.sql"), include_str!("../migrations/sqlite/0007_forgotten_rooms.sql")),
    (8, "user_streams", include_str!("../migrations/postgres/0008_user_streams.sql"), include_str!("../migrations/sqlite/0008_user_streams.sql")),
    (9, "e2e_keys", include_str!("../migrations/postgres/0009_e2e_keys.sql"), include_str!("../migrations/sqlite/0009_e2e_keys.sql")),
    (10, "push_actions", include_str!("../migrations/postgres/0010_push_actions.sql"), include_str!("../migrations/sqlite/0010_push_actions.sql")),
    (11, "key_backup", include_str!("../migrations/postgres/0011_key_backup.sql"), include_str!("../migrations/sqlite/0011_key_backup.sql")),
    (12, "pushers", include_str!("../migrations/postgres/0012_pushers.sql"), include_str!("../migrations/sqlite/0012_pushers.sql")),
    (13, "push_rules", include_str!("../migrations/postgres/0013_push_rules.sql"), include_str!("../migrations/sqlite/0013_push_rules.sql")),
    (14, "user_directory", include_str!("../migrations/postgres/0014_user_directory.sql"), include_str!("../migrations/sqlite/0014_user_directory.sql")),
    (15, "plugin_kv", include_str!("../migrations/postgres/0015_plugin_kv.sql"), include_str!("../migrations/sqlite/0015_plugin_kv.sql")),
    (16, "reports", include_str!("../migrations/postgres/0016_reports.sql"), include_str!("../migrations/sqlite/0016_reports.sql")),
    (17, "openid_tokens", include_str!("../migrations/postgres/0017_openid_tokens.sql"), include_str!("../migrations/sqlite/0017_openid_tokens.sql")),
    (
        18,
        "uia_client_params",
        include_str!("../migrations/postgres/0018_uia_client_params.sql"),
        include_str!("../migrations/sqlite/0018_uia_client_params.sql"),
    ),
    (19, "media", include_str!("../migrations/postgres/0019_media.sql"), include_str!("../migrations/sqlite/0019_media.sql")),
    (20, "push_queue", include_str!("../migrations/postgres/0020_push_queue.sql"), include_str!("../migrations/sqlite/0020_push_queue.sql")),
    (21, "sso", include_str!("../migrations/postgres/0021_sso.sql"), include_str!("../migrations/sqlite/0021_sso.sql")),
    (22, "appservices", include_str!("../migrations/postgres/0022_appservices.sql"), include_str!("../migrations/sqlite/0022_appservices.sql")),
    (23, "server_keys", include_str!("../migrations/postgres/0023_server_keys.sql"), include_str!("../migrations/sqlite/0023_server_keys.sql")),
    (
        24,
        "appservice_streams",
        include_str!("../migrations/postgres/0024_appservice_streams.sql"),
        include_str!("../migrations/sqlite/0024_appservice_streams.sql"),
    ),
    (25, "federation_rooms", include_str!("../migrations/postgres/0025_federation_rooms.sql"), include_str!("../migrations/sqlite/0025_federation_rooms.sql")),
    (26, "federation_edus", include_str!("../migrations/postgres/0026_federation_edus.sql"), include_str!("../migrations/sqlite/0026_federation_edus.sql")),
    (28, "remote_media", include_str!("../migrations/postgres/0028_remote_media.sql"), include_str!("../migrations/sqlite/0028_remote_media.sql")),
    (29, "state_resolution", include_str!("../migrations/postgres/0029_state_resolution.sql"), include_str!("../migrations/sqlite/0029_state_resolution.sql")),
    (30, "backfill", include_str!("../migrations/postgres/0030_backfill.sql"), include_str!("../migrations/sqlite/0030_backfill.sql")),
    (
        31,
        "remote_stripped_state",
        include_str!("../migrations/postgres/0031_remote_stripped_state.sql"),
        include_str!("../migrations/sqlite/0031_remote_stripped_state.sql"),
    ),
    (
        32,
        "federation_device_lists",
        include_str!("../migrations/postgres/0032_federation_device_lists.sql"),
        include_str!("../migrations/sqlite/0032_federation_device_lists.sql"),
    ),
    (
        33,
        "federation_senders",
        include_str!("../migrations/postgres/0033_federation_senders.sql"),
        include_str!("../migrations/sqlite/0033_federation_senders.sql"),
    ),
    (34, "push_actions_key", include_str!("../migrations/postgres/0034_push_actions_key.sql"), include_str!("../migrations/sqlite/0034_push_actions_key.sql")),
];

pub(super) async fn run(pool: &AnyPool, dialect: Dialect) -> Result<()> {
    let migrations = MIGRATIONS
        .iter()
        .map(|&(version, description, postgres, sqlite)| {
            let sql = match dialect {
                Dialect::Postgres => postgres,
                Dialect::Sqlite => sqlite,
            };
            Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, SqlStr::from_static(sql), false)
        })
        .collect();
    Migrator::with_migrations(migrations).run(pool).await?;
    Ok(())
}

/// The newest schema version this binary knows.
pub(super) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |&(version, ..)| version)
}

/// The newest version applied successfully; 0 on a database never migrated.
pub(super) async fn applied_version(pool: &AnyPool) -> Result<i64> {
    match sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success").fetch_one(pool).await {
        Ok(version) => Ok(version),
        // No table yet: main has not started migrating.
        Err(sqlx::Error::Database(_)) => Ok(0),
        Err(error) => Err(error.into()),
    }
}
