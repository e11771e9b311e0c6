//! The configuration loader: merging, each kind of error with its message,
//! and the validation rules for impossible combinations.

use std::path::PathBuf;

use weft::config::{self, ConfigError, DatabaseEngine, Resource};

const MINIMAL: &str = r#"
server_name = "example.org"
[[listeners]]
port = 8008
type = "http"
[[listeners.resources]]
names = ["client"]
"#;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn errors_of(text: &str) -> Vec<ConfigError> {
    config::load_str("test.toml", text).expect_err("configuration should be refused").0
}

fn has_error(errors: &[ConfigError], key: &str, needle: &str) -> bool {
    errors.iter().any(|e| e.key == key && e.message.contains(needle))
}

#[test]
fn later_files_override_earlier_ones_and_tables_merge_deeply() {
    let dir = tempfile::tempdir().unwrap();
    let shared = write(
        &dir,
        "shared.toml",
        &format!("{MINIMAL}\n[database]\nname = \"psycopg2\"\n[database.args]\nhost = \"db.internal\"\ndbname = \"synapse\"\nuser = \"weft\"\n"),
    );
    let local = write(
        &dir,
        "local.toml",
        "server_name = \"other.org\"\n[database.args]\ndbname = \"weft\"\n[[listeners]]\nport = 9000\ntype = \"http\"\n[[listeners.resources]]\nnames = [\"federation\"]\n",
    );
    let config = config::load_files(&[shared, local]).expect("valid");
    assert_eq!(config.server_name(), "other.org");
    assert_eq!(config.database.name, DatabaseEngine::Postgres);
    // Deep merge: `host` and `user` from the first file, `dbname` from the second.
    assert_eq!(config.database.args.host.as_deref(), Some("db.internal"));
    assert_eq!(config.database.args.user.as_deref(), Some("weft"));
    assert_eq!(config.database.args.dbname.as_deref(), Some("weft"));
    // Arrays are replaced whole, not appended.
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(config.listeners[0].port, Some(9000));
    assert!(config.listeners[0].serves(Resource::Federation));
}

#[test]
fn unknown_keys_are_reported_with_file_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "a.toml", &format!("bogus_option = 1\n{MINIMAL}\n[redis]\nenabled = false\nhots = \"x\"\n"));
    let errors = config::load_files(std::slice::from_ref(&file)).unwrap_err().0;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.file.as_deref() == Some(file.as_path())));
    assert!(has_error(&errors, "bogus_option", "unknown key"));
    assert!(has_error(&errors, "redis.hots", "unknown key"));
    let shown = errors.iter().find(|e| e.key == "redis.hots").unwrap().to_string();
    assert_eq!(shown, format!("{}: `redis.hots`: unknown key", file.display()));
}

#[test]
fn nested_unknown_key_in_an_array_names_its_index() {
    let errors = errors_of(&MINIMAL.replace("type = \"http\"", "type = \"http\"\nbind_adresses = [\"::\"]"));
    assert!(has_error(&errors, "listeners[0].bind_adresses", "unknown key"), "{errors:?}");
}

#[test]
fn wrong_types_name_the_key_and_the_expected_type() {
    let errors = errors_of(&MINIMAL.replace("port = 8008", "port = \"eighty\""));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].key, "listeners[0].port");
    assert!(errors[0].message.contains("invalid type"), "{}", errors[0].message);

    let errors = errors_of(&format!("enable_registration = \"yes\"\n{MINIMAL}"));
    assert!(has_error(&errors, "enable_registration", "expected a boolean"), "{errors:?}");

    let errors = errors_of(&format!("{MINIMAL}\n[database]\nname = \"mysql\"\n"));
    assert!(has_error(&errors, "database.name", "unknown variant"), "{errors:?}");
}

#[test]
fn every_error_is_reported_at_once_each_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let first = write(&dir, "first.toml", &format!("mystery = true\n{MINIMAL}"));
    let second = write(&dir, "second.toml", "enable_metrics = 3\n[rc_message]\nper_second = \"fast\"\n");
    let errors = config::load_files(&[first.clone(), second.clone()]).unwrap_err().0;
    assert_eq!(errors.len(), 3, "{errors:?}");
    let file_of = |key: &str| errors.iter().find(|e| e.key == key).and_then(|e| e.file.clone());
    assert_eq!(file_of("mystery"), Some(first));
    assert_eq!(file_of("enable_metrics"), Some(second.clone()));
    assert_eq!(file_of("rc_message.per_second"), Some(second));
}

#[test]
fn a_missing_server_name_is_required() {
    let errors = errors_of("[[listeners]]\nport = 8008\n[[listeners.resources]]\nnames = [\"client\"]\n");
    assert!(has_error(&errors, "server_name", "required"), "{errors:?}");
}

#[test]
fn syntax_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "broken.toml", "server_name = \"x\n");
    let errors = config::load_files(std::slice::from_ref(&file)).unwrap_err().0;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file.as_deref(), Some(file.as_path()));
    assert!(errors[0].message.contains("not valid TOML"), "{}", errors[0].message);
}

#[test]
fn a_missing_file_is_an_error() {
    let errors = config::load_files(&[PathBuf::from("/nonexistent/weft.toml")]).unwrap_err().0;
    assert!(errors[0].message.contains("cannot read"), "{errors:?}");
}

#[test]
fn open_registration_needs_the_explicit_without_verification_flag() {
    let errors = errors_of(&format!("enable_registration = true\n{MINIMAL}"));
    assert!(has_error(&errors, "enable_registration", "enable_registration_without_verification"), "{errors:?}");
    let config = config::load_str("t.toml", &format!("enable_registration = true\nenable_registration_without_verification = true\n{MINIMAL}"));
    assert!(config.is_ok());
}

#[test]
fn registration_is_closed_by_default_in_a_configuration_file() {
    let config = config::load_str("t.toml", MINIMAL).unwrap();
    assert!(!config.enable_registration);
}

#[test]
fn replication_never_shares_a_listener_with_client_or_federation() {
    let errors = errors_of(&MINIMAL.replace("names = [\"client\"]", "names = [\"client\", \"replication\"]"));
    assert!(has_error(&errors, "listeners[0].resources", "listener of its own"), "{errors:?}");
}

#[test]
fn metrics_resource_needs_enable_metrics() {
    let errors = errors_of(&MINIMAL.replace("names = [\"client\"]", "names = [\"client\", \"metrics\"]"));
    assert!(has_error(&errors, "listeners[0].resources", "enable_metrics"), "{errors:?}");
}

#[test]
fn sqlite_is_refused_with_workers_and_every_worker_problem_is_listed() {
    let text = format!(
        "{MINIMAL}\n[instance_map]\nmain = {{ host = \"localhost\", port = 9093 }}\n\
         [stream_writers]\nevents = [\"persister1\", \"persister1\"]\ntyping = [\"main\", \"persister1\"]\n"
    );
    let errors = errors_of(&text);
    assert!(has_error(&errors, "database.name", "workers need PostgreSQL"), "{errors:?}");
    assert!(has_error(&errors, "stream_writers.typing", "exactly one writer"), "{errors:?}");
    assert!(has_error(&errors, "stream_writers.events", "listed twice"), "{errors:?}");
    assert!(has_error(&errors, "stream_writers.events", "`persister1` is not a known instance"), "{errors:?}");
    assert!(has_error(&errors, "worker_replication_secret", "required"), "{errors:?}");
    assert!(has_error(&errors, "redis.enabled", "Redis"), "{errors:?}");
}

#[test]
fn instance_valued_options_must_name_known_instances() {
    let text = format!("pusher_instances = [\"pusher1\"]\nrun_background_tasks_on = \"bg\"\n{MINIMAL}");
    let errors = errors_of(&text);
    assert!(has_error(&errors, "pusher_instances", "`pusher1` is not a known instance"), "{errors:?}");
    assert!(has_error(&errors, "run_background_tasks_on", "`bg` is not a known instance"), "{errors:?}");
}

#[test]
fn conflicting_secret_options_are_refused() {
    let text = format!("registration_shared_secret = \"a\"\nregistration_shared_secret_path = \"secret.txt\"\n{MINIMAL}");
    assert!(has_error(&errors_of(&text), "registration_shared_secret_path", "keep one"));
}

#[test]
fn postgres_needs_a_database_name_and_sqlite_refuses_postgres_args() {
    let errors = errors_of(&format!("{MINIMAL}\n[database]\nname = \"psycopg2\"\nargs = {{ host = \"localhost\" }}\n"));
    assert!(has_error(&errors, "database.args.dbname", "required"), "{errors:?}");
    let errors = errors_of(&format!("{MINIMAL}\n[database]\nname = \"sqlite3\"\nargs = {{ host = \"localhost\" }}\n"));
    assert!(has_error(&errors, "database.args.host", "only used with PostgreSQL"), "{errors:?}");
}

#[test]
fn rate_limits_must_be_positive() {
    let errors = errors_of(&format!("{MINIMAL}\n[rc_login.address]\nper_second = 0\nburst_count = 0\n"));
    assert!(has_error(&errors, "rc_login.address.per_second", "positive"), "{errors:?}");
    assert!(has_error(&errors, "rc_login.address.burst_count", "at least 1"), "{errors:?}");
}

#[test]
fn room_invite_and_join_limits_have_synapses_names_and_defaults() {
    let config = weft::config::load_str("t.toml", MINIMAL).expect("valid");
    let pair = |limit: weft::config::RateLimit| (limit.per_second, limit.burst_count);
    assert_eq!(pair(config.rc_room_creation), (0.016, 10.0));
    assert_eq!(pair(config.rc_invites.per_room), (0.3, 10.0));
    assert_eq!(pair(config.rc_invites.per_user), (0.003, 5.0));
    assert_eq!(pair(config.rc_invites.per_issuer), (0.3, 10.0));
    assert_eq!(pair(config.rc_joins.local), (0.1, 10.0));
    assert_eq!(pair(config.rc_joins.remote), (0.01, 10.0));
    let config = weft::config::load_str(
        "t.toml",
        &format!(
            "{MINIMAL}
[rc_invites.per_user]
per_second = 1
burst_count = 2
"
        ),
    )
    .expect("valid");
    assert_eq!(pair(config.rc_invites.per_user), (1.0, 2.0));
    assert_eq!(pair(config.rc_invites.per_room), (0.3, 10.0), "the other limits keep their defaults");
    let errors = errors_of(&format!(
        "{MINIMAL}
[rc_joins.remote]
per_second = 0
[rc_invites.per_issuer]
burst_count = 0
"
    ));
    assert!(has_error(&errors, "rc_joins.remote.per_second", "positive"), "{errors:?}");
    assert!(has_error(&errors, "rc_invites.per_issuer.burst_count", "at least 1"), "{errors:?}");
}

#[test]
fn stream_writers_take_a_name_or_a_list() {
    let text = format!(
        "worker_replication_secret = \"s\"\n{MINIMAL}\n[redis]\nenabled = true\n[database]\nname = \"psycopg2\"\nargs = {{ dbname = \"w\" }}\n\
         [instance_map]\nmain = {{ host = \"localhost\", port = 9093 }}\np1 = {{ host = \"localhost\", port = 9094 }}\n\
         [stream_writers]\nevents = [\"p1\", \"main\"]\ntyping = \"p1\"\n"
    );
    let config = config::load_str("t.toml", &text).expect("valid");
    assert_eq!(config.stream_writers.writers_of("events"), vec!["p1", "main"]);
    assert_eq!(config.stream_writers.writers_of("typing"), vec!["p1"]);
    assert_eq!(config.stream_writers.writers_of("receipts"), vec!["main"]);
}

#[test]
fn relative_paths_resolve_against_the_file_that_set_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    let file = write(
        &dir,
        "conf/homeserver.toml",
        &format!("signing_key_path = \"keys/signing.key\"\n{MINIMAL}\n[database]\nargs = {{ database = \"data/weft.db\" }}\n"),
    );
    let config = config::load_files(&[file]).unwrap();
    assert_eq!(config.signing_key_path.unwrap(), dir.path().join("conf/keys/signing.key"));
    assert_eq!(PathBuf::from(config.database.args.database.unwrap()), dir.path().join("conf/data/weft.db"));
}

#[test]
fn describe_says_what_the_instance_will_do() {
    let config = config::load_str("t.toml", &format!("registration_shared_secret = \"x\"\n{MINIMAL}")).unwrap();
    let summary = config::describe(&config);
    assert!(summary.contains("instance `main` (the main process) of server `example.org`"), "{summary}");
    assert!(summary.contains("port 8008 serving client"), "{summary}");
    assert!(summary.contains("writes streams: events, typing"), "{summary}");
    assert!(summary.contains("registration: closed; admins register users with the shared secret"), "{summary}");
}

#[test]
fn durations_take_synapse_units_or_milliseconds() {
    for (written, seconds) in [("\"2h\"", 7200), ("\"90s\"", 90), ("\"1d\"", 86_400), ("5000", 5)] {
        let config = config::load_str("t.toml", &format!("turn_user_lifetime = {written}\n{MINIMAL}")).unwrap();
        assert_eq!(config.turn_user_lifetime().as_secs(), seconds, "{written}");
    }
    assert_eq!(config::load_str("t.toml", MINIMAL).unwrap().turn_user_lifetime().as_secs(), 3600, "one hour by default");
    let errors = errors_of(&format!("turn_user_lifetime = \"2 fortnights\"\n{MINIMAL}"));
    assert!(has_error(&errors, "turn_user_lifetime", "is not a duration"), "{errors:?}");
}

#[test]
fn media_options_take_synapse_sizes_and_the_store_sits_beside_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    let file = write(&dir, "conf/homeserver.toml", &format!("max_upload_size = \"10M\"\nmax_image_pixels = 1000000\n{MINIMAL}"));
    let config = config::load_files(&[file]).unwrap();
    assert_eq!(config.max_upload_size(), 10 << 20);
    assert_eq!(config.max_image_pixels(), 1_000_000);
    assert_eq!(config.media_store_path(), dir.path().join("conf/media_store"), "Synapse's default name, beside the file");
    assert!(config.runs_media_repo(), "main runs the media repository by default");
    assert!(config::describe(&config).contains("media repository: yes, files in"), "{}", config::describe(&config));

    let file = write(&dir, "conf/other.toml", &format!("media_store_path = \"files\"\nenable_media_repo = false\n{MINIMAL}"));
    let config = config::load_files(&[file]).unwrap();
    assert_eq!(config.media_store_path(), dir.path().join("conf/files"));
    assert!(!config.runs_media_repo());

    // Media clean-up: every media instance, unless one is named.
    let workers = |extra: &str, worker: &str| {
        let text = format!(
            "worker_replication_secret = \"s\"\n{extra}\n{worker}\nserver_name = \"example.org\"\n[redis]\nenabled = true\n[database]\nname = \"psycopg2\"\nargs = {{ dbname = \"w\" }}\n\
             [instance_map]\nmain = {{ host = \"localhost\", port = 9093 }}\nmedia1 = {{ host = \"localhost\", port = 9094 }}\n"
        );
        config::load_str("t.toml", &text).unwrap_or_else(|e| panic!("{e}"))
    };
    let media1 = "worker_name = \"media1\"\nenable_media_repo = true";
    assert!(workers("", media1).runs_media_background_jobs());
    assert!(workers("", "").runs_media_background_jobs(), "main, unnamed");
    assert!(!workers("media_instance_running_background_jobs = \"media1\"", "").runs_media_background_jobs());
    assert!(workers("media_instance_running_background_jobs = \"media1\"", media1).runs_media_background_jobs());
    assert!(!workers("", "worker_name = \"media1\"").runs_media_background_jobs(), "a worker without the media repository");

    let errors = errors_of(&format!("max_upload_size = \"10Q\"\nurl_preview_enabled = true\n{MINIMAL}"));
    assert!(has_error(&errors, "max_upload_size", "is not a size"), "{errors:?}");
    let errors =
        errors_of(&format!("url_preview_enabled = true\nmax_upload_size = 0\n{MINIMAL}\n[[thumbnail_sizes]]\nwidth = 0\nheight = 10\nmethod = \"crop\"\n"));
    assert!(has_error(&errors, "url_preview_enabled", "not supported"), "{errors:?}");
    assert!(has_error(&errors, "max_upload_size", "more than 0"), "{errors:?}");
    assert!(has_error(&errors, "thumbnail_sizes[0]", "at least 1"), "{errors:?}");
}

#[test]
fn ip_ranges_are_cidr_lists_checked_at_load_time() {
    let config = config::load_str("test.toml", MINIMAL).expect("valid");
    assert_eq!((config.ip_range_blacklist, config.ip_range_whitelist), (None, Vec::new()), "unset: Synapse's default blacklist, no exceptions");
    let text = format!("ip_range_blacklist = [\"10.0.0.0/8\", \"fd00::/8\", \"192.0.2.7\"]\nip_range_whitelist = [\"10.1.0.0/16\"]\n{MINIMAL}");
    let config = config::load_str("test.toml", &text).expect("valid");
    assert_eq!(config.ip_range_blacklist.as_deref(), Some(&["10.0.0.0/8".to_owned(), "fd00::/8".into(), "192.0.2.7".into()][..]));
    assert_eq!(config.ip_range_whitelist, ["10.1.0.0/16"]);
    let policy = weft::plugins::address_policy(&config).unwrap();
    assert!(!policy.allows("10.2.0.1".parse().unwrap()) && policy.allows("10.1.0.1".parse().unwrap()) && policy.allows("127.0.0.1".parse().unwrap()));

    let errors = errors_of(&format!("ip_range_blacklist = [\"10.0.0.0/33\"]\nip_range_whitelist = [\"127.0.0.0/8\", \"localhost\"]\n{MINIMAL}"));
    assert!(has_error(&errors, "ip_range_blacklist", "`10.0.0.0/33` is not a CIDR range"), "{errors:?}");
    assert!(has_error(&errors, "ip_range_whitelist", "`localhost` is not a CIDR range"), "{errors:?}");
    assert!(has_error(&errors_of(&format!("ip_range_whitelist = \"127.0.0.0/8\"\n{MINIMAL}")), "ip_range_whitelist", "invalid type"));
}

#[test]
fn federation_files_must_be_readable_pem_and_tls_needs_a_certificate_and_key() {
    let text = r#"
server_name = "example.org"
tls_certificate_path = "/nonexistent/weft/cert.pem"
federation_custom_ca_list = ["/nonexistent/weft/ca.pem"]
federation_domain_whitelist = ["not a server name"]
trusted_key_servers = [{ server_name = "notary.example", verify_keys = { "ed25519:a" = "short" } }]
[[listeners]]
port = 8448
type = "http"
tls = true
[[listeners.resources]]
names = ["federation"]
"#;
    let errors = errors_of(text);
    assert!(has_error(&errors, "tls_certificate_path", "/nonexistent/weft/cert.pem"), "{errors:?}");
    assert!(has_error(&errors, "federation_custom_ca_list[0]", "/nonexistent/weft/ca.pem"), "{errors:?}");
    assert!(has_error(&errors, "listeners[0].tls", "tls_private_key_path"), "{errors:?}");
    assert!(has_error(&errors, "federation_domain_whitelist[0]", "not a server name"), "{errors:?}");
    assert!(has_error(&errors, "trusted_key_servers[0].verify_keys", "ed25519:a"), "{errors:?}");

    // A file that exists but holds no certificate is refused too.
    let dir = tempfile::tempdir().unwrap();
    let not_pem = write(&dir, "cert.pem", "hello");
    let key = write(&dir, "key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    let text = format!(
        "server_name = \"example.org\"\ntls_certificate_path = {:?}\ntls_private_key_path = {:?}\n[[listeners]]\nport = 8448\ntype = \"http\"\ntls = true\n[[listeners.resources]]\nnames = [\"federation\"]\n",
        not_pem.display().to_string(),
        key.display().to_string()
    );
    let errors = errors_of(&text);
    assert!(has_error(&errors, "tls_certificate_path", "no PEM certificate"), "{errors:?}");
    assert!(!errors.iter().any(|e| e.key == "listeners[0].tls"), "{errors:?}");
}
