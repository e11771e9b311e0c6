//! The key-value store behind the `kv-*` host functions: one namespace per
//! plugin name, values up to `MAX_KV_VALUE_BYTES`, keys and values together
//! up to `MAX_KV_TOTAL_BYTES` per plugin.
//!
//! The server keeps it in its database (weft's `storage::plugin_kv`), so it survives
//! restarts and every instance running a plugin shares it; the testkit keeps
//! it in memory (`MemoryKv`).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use super::host_services::BoxFuture;

/// Largest key-value value, and total bytes one plugin may store.
pub const MAX_KV_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_KV_TOTAL_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum KvError {
    /// Over a limit or not storable: `kv-set` hands the reason to the plugin.
    #[error("{0}")]
    Refused(String),
    /// The store cannot be reached: the call fails (and `on_error` applies).
    #[error("the key-value store is unavailable: {0}")]
    Unavailable(String),
}

pub trait PluginKv: Send + Sync + 'static {
    fn get<'a>(&'a self, plugin: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KvError>>;
    /// Refuses what `check_entry` refuses and a store that would grow past
    /// `MAX_KV_TOTAL_BYTES`.
    fn set<'a>(&'a self, plugin: &'a str, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, Result<(), KvError>>;
    fn delete<'a>(&'a self, plugin: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), KvError>>;
}

/// The rules every store applies to one entry: the value's size, and no NUL
/// in the key (PostgreSQL text cannot hold one).
pub fn check_entry(key: &str, value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_KV_VALUE_BYTES {
        return Err(KvError::Refused(format!("values are limited to {MAX_KV_VALUE_BYTES} bytes")));
    }
    if key.contains('\0') {
        return Err(KvError::Refused("keys may not contain NUL".into()));
    }
    Ok(())
}

pub fn store_full() -> KvError {
    KvError::Refused(format!("the store is full ({MAX_KV_TOTAL_BYTES} bytes)"))
}

/// Key-value stores in memory, for the testkit (lost with the process).
#[derive(Debug, Default)]
pub struct MemoryKv {
    /// A std mutex: short critical sections, nothing awaited while held.
    stores: Mutex<HashMap<String, HashMap<String, Vec<u8>>>>,
}

impl MemoryKv {
    pub fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>> {
        self.stores.lock().unwrap_or_else(|e| e.into_inner()).get(plugin)?.get(key).cloned()
    }

    pub fn set(&self, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        check_entry(key, &value)?;
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        let store = stores.entry(plugin.to_owned()).or_default();
        let used: usize = store.iter().filter(|(k, _)| *k != key).map(|(k, v)| k.len() + v.len()).sum();
        if used + key.len() + value.len() > MAX_KV_TOTAL_BYTES {
            return Err(store_full());
        }
        store.insert(key.to_owned(), value);
        Ok(())
    }

    pub fn delete(&self, plugin: &str, key: &str) {
        if let Some(store) = self.stores.lock().unwrap_or_else(|e| e.into_inner()).get_mut(plugin) {
            store.remove(key);
        }
    }

    /// Every entry of one plugin's namespace, by key.
    pub fn entries(&self, plugin: &str) -> BTreeMap<String, Vec<u8>> {
        let stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        stores.get(plugin).map(|store| store.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
    }
}

impl PluginKv for MemoryKv {
    fn get<'a>(&'a self, plugin: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KvError>> {
        Box::pin(std::future::ready(Ok(MemoryKv::get(self, plugin, key))))
    }

    fn set<'a>(&'a self, plugin: &'a str, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(std::future::ready(MemoryKv::set(self, plugin, key, value)))
    }

    fn delete<'a>(&'a self, plugin: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), KvError>> {
        MemoryKv::delete(self, plugin, key);
        Box::pin(std::future::ready(Ok(())))
    }
}
