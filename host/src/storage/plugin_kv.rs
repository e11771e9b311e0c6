//! Plugins' key-value stores (the plugin runtime's `kv::PluginKv`), kept here so they survive
//! restarts and every instance running a plugin sees the same values. Each
//! write locks the plugin's usage row first, so the total limit holds with
//! several instances writing at once.

use weft_plugin_runtime::{
    host_services::BoxFuture,
    kv::{self, KvError, PluginKv},
};

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

fn unavailable(error: super::StorageError) -> KvError {
    KvError::Unavailable(error.to_string())
}

impl PluginKv for Storage {
    fn get<'a>(&'a self, plugin: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KvError>> {
        Box::pin(async move {
            if key.contains('\0') {
                return Ok(None);
            }
            self.plugin_kv_get(plugin, key).await.map_err(unavailable)
        })
    }

    fn set<'a>(&'a self, plugin: &'a str, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            kv::check_entry(key, &value)?;
            match self.plugin_kv_set(plugin, key, &value, kv::MAX_KV_TOTAL_BYTES as i64).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(kv::store_full()),
                Err(error) => Err(unavailable(error)),
            }
        })
    }

    fn delete<'a>(&'a self, plugin: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            if key.contains('\0') {
                return Ok(());
            }
            self.plugin_kv_delete(plugin, key).await.map_err(unavailable)
        })
    }
}
