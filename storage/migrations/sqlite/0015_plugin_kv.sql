-- The key-value stores of plugins (the `kv-*` host functions), one
-- namespace per plugin name, shared by every instance running the plugin
-- (see host/src/storage/plugin_kv.rs). Kept in step with the other engine's
-- 0015_plugin_kv.sql.

-- `size` is the bytes of key and value, counted against the plugin's total.
CREATE TABLE plugin_kv (
    plugin_name TEXT NOT NULL,
    kv_key TEXT NOT NULL,
    kv_value BLOB NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (plugin_name, kv_key)
);

-- The sum of `size` per plugin; its row is locked by each write, so the
-- total holds when several instances write at once.
CREATE TABLE plugin_kv_usage (
    plugin_name TEXT PRIMARY KEY,
    bytes BIGINT NOT NULL
);
