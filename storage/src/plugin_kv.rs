//! Plugins' key-value stores, kept here so they survive restarts and every
//! instance running a plugin sees the same values. Each write locks the
//! plugin's usage row first, so the total limit holds with several instances
//! writing at once. The plugin runtime reaches them through its
//! `kv::PluginKv` trait, which `weft_services::plugins::StorageKv`
//! implements over these functions (this crate knows nothing of plugins).

use super::{Result, Storage};

impl Storage {
    pub async fn plugin_kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT kv_value FROM plugin_kv WHERE plugin_name = $1 AND kv_key = $2")
            .bind(plugin)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Sets `key` of `plugin`'s store; `false`, with nothing written, when
    /// its keys and values would then take more than `max_total` bytes.
    pub async fn plugin_kv_set(&self, plugin: &str, key: &str, value: &[u8], max_total: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO plugin_kv_usage (plugin_name, bytes) VALUES ($1, 0) ON CONFLICT (plugin_name) DO NOTHING")
            .bind(plugin)
            .execute(&mut *tx)
            .await?;
        // Locks the row (PostgreSQL) or the database (SQLite) until commit.
        sqlx::query("UPDATE plugin_kv_usage SET bytes = bytes WHERE plugin_name = $1").bind(plugin).execute(&mut *tx).await?;
        let used: i64 = sqlx::query_scalar("SELECT bytes FROM plugin_kv_usage WHERE plugin_name = $1").bind(plugin).fetch_one(&mut *tx).await?;
        let old: Option<i64> =
            sqlx::query_scalar("SELECT size FROM plugin_kv WHERE plugin_name = $1 AND kv_key = $2").bind(plugin).bind(key).fetch_optional(&mut *tx).await?;
        let size = (key.len() + value.len()) as i64;
        let total = used - old.unwrap_or(0) + size;
        if total > max_total {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO plugin_kv (plugin_name, kv_key, kv_value, size) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (plugin_name, kv_key) DO UPDATE SET kv_value = excluded.kv_value, size = excluded.size",
        )
        .bind(plugin)
        .bind(key)
        .bind(value)
        .bind(size)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE plugin_kv_usage SET bytes = $2 WHERE plugin_name = $1").bind(plugin).bind(total).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn plugin_kv_delete(&self, plugin: &str, key: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE plugin_kv_usage SET bytes = bytes WHERE plugin_name = $1").bind(plugin).execute(&mut *tx).await?;
        let old: Option<i64> =
            sqlx::query_scalar("SELECT size FROM plugin_kv WHERE plugin_name = $1 AND kv_key = $2").bind(plugin).bind(key).fetch_optional(&mut *tx).await?;
        let Some(old) = old else { return Ok(()) };
        sqlx::query("DELETE FROM plugin_kv WHERE plugin_name = $1 AND kv_key = $2").bind(plugin).bind(key).execute(&mut *tx).await?;
        sqlx::query("UPDATE plugin_kv_usage SET bytes = bytes - $2 WHERE plugin_name = $1").bind(plugin).bind(old).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
