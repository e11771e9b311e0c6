//! `[[plugins]]` validation (`weft check-config`): a path that is not a
//! component exporting the role's world, unknown instances, impossible
//! limits; and the summary of which plugin runs where.

use weft::config;

use super::guest;

fn plugin(extra: &str) -> String {
    format!("server_name = \"example.org\"\n[[plugins]]\nname = \"p\"\npath = {:?}\n{extra}\n", guest("spam_rules").display().to_string())
}

fn errors(text: &str) -> String {
    config::load_str("weft.toml", text).expect_err("refused").to_string()
}

#[test]
fn a_valid_plugin_is_described_with_where_it_runs() {
    let config = config::load_str("weft.toml", &plugin("on_error = \"fail-open\"\n[plugins.limits]\ntimeout_ms = 100")).expect("valid");
    let summary = config::describe(&config);
    assert!(summary.contains("plugin `p` (spam-checker)"), "{summary}");
    assert!(summary.contains("runs here"), "{summary}");
    assert!(summary.contains("fail-open"), "{summary}");
}

#[test]
fn paths_that_are_not_components_of_the_world_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();
    for (path, expected) in [
        (dir.path().join("missing.wasm"), "cannot read"),
        (text, "not a WebAssembly component"),
        (core, "not a WebAssembly component"),
        (empty, "does not fit the `spam-checker` world"),
    ] {
        let toml = format!("server_name = \"example.org\"\n[[plugins]]\nname = \"p\"\npath = {:?}\n", path.display().to_string());
        let message = errors(&toml);
        assert!(message.contains("plugins[0].path") && message.contains(expected), "{path:?}: {message}");
    }
}

#[test]
fn unknown_instances_bad_names_and_impossible_limits_are_refused_together() {
    let text = format!(
        "{}[[plugins]]\nname = \"p\"\npath = {:?}\n",
        plugin(
            "instances = [\"nowhere\"]\n[plugins.limits]\ntimeout_ms = 0\nmemory_mb = 100000\nfuel = 0\nmax_log_bytes = 0\n[plugins.capabilities]\nallowed_outbound_hosts = [\"ftp://x\"]"
        ),
        guest("spam_rules").display().to_string()
    );
    let message = errors(&text);
    for expected in [
        "plugins[0].instances",
        "`nowhere` is not a known instance",
        "plugins[0].limits.timeout_ms",
        "plugins[0].limits.memory_mb",
        "plugins[0].limits.fuel",
        "plugins[0].limits.max_log_bytes",
        "plugins[0].capabilities.allowed_outbound_hosts",
        "another plugin is already named `p`",
    ] {
        assert!(message.contains(expected), "missing {expected}: {message}");
    }
}

#[test]
fn a_pool_the_instance_cannot_reserve_is_refused() {
    let mut text = String::from("server_name = \"example.org\"\n");
    for index in 0..8 {
        text.push_str(&format!(
            "[[plugins]]\nname = \"p{index}\"\npath = {:?}\n[plugins.limits]\nmax_concurrent_calls = 1024\n",
            guest("spam_rules").display().to_string()
        ));
    }
    let message = errors(&text);
    assert!(message.contains("address space"), "{message}");
}

#[test]
fn wit_versions_are_compatible_by_semver() {
    use weft::plugins::version::compatible;
    assert!(compatible("0.1.0", "0.1.0"));
    assert!(compatible("0.1.3", "0.1.0"));
    assert!(!compatible("0.2.0", "0.1.0"));
    assert!(!compatible("1.0.0", "0.1.0"));
    assert!(compatible("1.4.0", "1.0.0"));
    assert!(!compatible("x", "0.1.0"));
}

#[test]
fn a_plugin_pinned_to_a_worker_is_checked_whole_there_and_by_name_and_limits_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    // The component and data directory exist only on worker1's machine.
    let missing = dir.path().join("elsewhere/spam_rules.wasm").display().to_string();
    let data_dir = dir.path().join("elsewhere/data").display().to_string();
    let shared = format!(
        "server_name = \"example.org\"\nworker_replication_secret = \"s\"\n\
         database = {{ name = \"psycopg2\", args = {{ dbname = \"weft\" }} }}\nredis = {{ enabled = true }}\n\
         instance_map = {{ main = {{ host = \"127.0.0.1\", port = 9093 }}, worker1 = {{ host = \"127.0.0.1\", port = 9094 }} }}\n\
         [[plugins]]\nname = \"pinned\"\npath = {missing:?}\ninstances = [\"worker1\"]\n[plugins.capabilities]\ndata_dir = {data_dir:?}\n"
    );
    let main = config::load_str("weft.toml", &shared).expect("main does not load the plugin: its file is not needed there");
    let summary = config::describe(&main);
    assert!(summary.contains("plugin `pinned` (spam-checker)") && summary.contains("runs on worker1 (checks here are forwarded there"), "{summary}");

    let worker = format!("worker_name = \"worker1\"\nworker_listeners = [{{ port = 9094, resources = [{{ names = [\"replication\"] }}] }}]\n{shared}");
    let message = errors(&worker);
    for expected in ["plugins[0].path", "cannot read", "plugins[0].capabilities.data_dir"] {
        assert!(message.contains(expected), "missing {expected}: {message}");
    }

    let limits = shared.replace("instances = [\"worker1\"]", "instances = [\"worker1\"]\n[plugins.limits]\ntimeout_ms = 0");
    assert!(errors(&limits).contains("plugins[0].limits.timeout_ms"), "limits are checked on every instance: forwarding uses the deadline");
}
