//! Start-up validation of worker configurations, through `weft check-config`.

use std::process::Command;

use crate::support::WEFT;

fn check(extra: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    // Inline tables only, so that `extra` may add keys or open a table.
    let base = "server_name = \"example.org\"\nworker_replication_secret = \"s\"\n\
        database = { name = \"psycopg2\", args = { dbname = \"weft\" } }\nredis = { enabled = true }\n\
        instance_map = { main = { host = \"127.0.0.1\", port = 9093 }, persister1 = { host = \"127.0.0.1\", port = 9094 } }\n";
    std::fs::write(&path, format!("{base}{extra}")).unwrap();
    let output = Command::new(WEFT).args(["check-config", "-c"]).arg(&path).output().unwrap();
    assert!(!output.status.success(), "accepted:\n{extra}");
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
fn each_worker_misconfiguration_is_refused_with_its_reason() {
    let cases = [
        ("[stream_writers]\ntyping = [\"main\", \"persister1\"]\n", "exactly one writer"),
        ("[stream_writers]\nevents = [\"persister1\", \"persister9\"]\n", "`persister9` is not a known instance"),
        ("run_background_tasks_on = \"background9\"\n", "`background9` is not a known instance"),
        ("update_user_directory_from_worker = \"nobody\"\n", "`nobody` is not a known instance"),
        ("pusher_instances = [\"pusher9\"]\n", "`pusher9` is not a known instance"),
        ("notify_appservices_from_worker = \"as9\"\n", "`as9` is not a known instance"),
        ("federation_sender_instances = [\"fed9\"]\n", "`fed9` is not a known instance"),
        ("media_instance_running_background_jobs = \"media9\"\n", "`media9` is not a known instance"),
        ("outbound_federation_restricted_to = [\"proxy9\"]\n", "`proxy9` is not a known instance"),
        ("outbound_federation_restricted_to = [\"main\"]\n", "lists `main`, which has no `replication` listener"),
        ("send_federation = false\n", "list the instances that send federation transactions in `federation_sender_instances`"),
        (
            "pusher_instances = [\"main\"]\n[[plugins]]\nname = \"gw\"\nrole = \"pusher\"\npath = \"gw.wasm\"\ninstances = [\"persister1\"]\n",
            "`persister1` is not one of `pusher_instances` (main)",
        ),
        (
            "pusher_instances = []\n[[plugins]]\nname = \"gw\"\nrole = \"pusher\"\npath = \"gw.wasm\"\ninstances = [\"persister1\"]\n",
            "`persister1` is not one of `pusher_instances` (none)",
        ),
    ];
    for (extra, expected) in cases {
        let output = check(extra);
        assert!(output.contains(expected), "for\n{extra}expected `{expected}` in:\n{output}");
    }
}

#[test]
fn workers_need_postgres_a_secret_redis_and_main_in_the_instance_map() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "server_name = \"example.org\"\nworker_name = \"worker1\"\nworker_listeners = [{ port = 8081, resources = [{ names = [\"client\"] }] }]\n",
    )
    .unwrap();
    let output = Command::new(WEFT).args(["check-config", "-c"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    for expected in ["SQLite cannot be shared", "worker_replication_secret", "redis.enabled", "must contain `main`"] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
}

/// `--destination`: the sender of a destination is the one sha256 of its
/// name picks among `federation_sender_instances` (as Synapse), main without them.
#[test]
fn check_config_names_the_federation_sender_of_a_destination() {
    let dir = tempfile::tempdir().unwrap();
    let senders = ["fed1", "fed2"];
    let config = |list: &str| {
        let path = dir.path().join(format!("config{}.toml", list.len()));
        let text = format!(
            "server_name = \"example.org\"\nworker_replication_secret = \"s\"\n{list}\
             database = {{ name = \"psycopg2\", args = {{ dbname = \"weft\" }} }}\nredis = {{ enabled = true }}\n\
             instance_map = {{ main = {{ host = \"127.0.0.1\", port = 9093 }}, fed1 = {{ host = \"127.0.0.1\", port = 9094 }}, \
             fed2 = {{ host = \"127.0.0.1\", port = 9095 }} }}\n"
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let sharded = config("federation_sender_instances = [\"fed1\", \"fed2\"]\n");
    let unsharded = config("");
    let mut seen = std::collections::BTreeSet::new();
    for destination in ["matrix.org", "example.com", "localhost:8448", "chat.example.net", "a.b"] {
        let sender_of = |path: &std::path::Path| {
            let output = Command::new(WEFT).args(["check-config", "--destination", destination, "-c"]).arg(path).output().unwrap();
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
            let prefix = format!("federation transactions to {destination} are sent by ");
            text.lines().find_map(|line| line.strip_prefix(&prefix).map(str::to_owned)).unwrap_or_else(|| panic!("no sender named in:\n{text}"))
        };
        let expected = senders[weft::replication::shard(destination, senders.len())];
        assert_eq!(sender_of(&sharded), expected, "{destination}");
        assert_eq!(sender_of(&unsharded), "main", "{destination}");
        seen.insert(expected);
    }
    assert_eq!(seen.len(), 2, "five names spread over both senders");
}

#[test]
fn check_config_says_whether_an_instance_connects_out_itself() {
    let dir = tempfile::tempdir().unwrap();
    let line = |extra: &str| {
        let path = dir.path().join(format!("config{}.toml", extra.len()));
        let text = format!(
            "server_name = \"example.org\"\nworker_replication_secret = \"s\"\n{extra}\
             database = {{ name = \"psycopg2\", args = {{ dbname = \"weft\" }} }}\nredis = {{ enabled = true }}\n\
             instance_map = {{ main = {{ host = \"127.0.0.1\", port = 9093 }}, fed1 = {{ host = \"127.0.0.1\", port = 9094 }} }}\n"
        );
        std::fs::write(&path, text).unwrap();
        let output = Command::new(WEFT).args(["check-config", "-c"]).arg(&path).output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
        text.lines().find_map(|line| line.strip_prefix("connects to other servers: ").map(str::to_owned)).unwrap_or_else(|| panic!("not said:\n{text}"))
    };
    assert_eq!(line(""), "directly");
    assert_eq!(line("outbound_federation_restricted_to = [\"fed1\"]\n"), "through fed1 (outbound_federation_restricted_to); never directly");
}
