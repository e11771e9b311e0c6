//! `weft plugin test`: a component against JSON fixtures, from the command line.

use std::process::Command;

use serde_json::json;

use super::guest;

#[test]
fn plugin_test_runs_fixtures_and_fails_on_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, json!({"body_patterns": ["(?i)buy now"], "invites": "nobody"}).to_string()).unwrap();
    let event = |body: &str| json!({"room_id": "!r:example.org", "sender": "@a:example.org", "type": "m.room.message", "json": {"content": {"body": body}}});
    let good = json!([
        {"call": {"callback": "check-event-for-spam", "event": event("hello")}, "expect": {"verdict": "allow"}},
        {"call": {"callback": "user-may-invite", "inviter": "@a:example.org", "invitee": "@b:example.org", "room": "!r:example.org"},
         "expect": {"verdict": "reject", "errcode": "M_FORBIDDEN"}},
        {"call": {"callback": "check-registration-for-spam", "username": "bob", "request_info": [], "email": null, "auth_provider_id": null},
         "expect": "allow"},
    ]);
    let fixtures = dir.path().join("fixtures.json");
    std::fs::write(&fixtures, good.to_string()).unwrap();
    let run = |fixtures: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["plugin", "test", "-p"])
            .arg(guest("spam_rules"))
            .arg("-c")
            .arg(&config)
            .arg(fixtures)
            .output()
            .expect("weft runs")
    };
    let output = run(&fixtures);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("config: ok") && stdout.contains("3 passed, 0 failed"), "{stdout}");

    let bad = json!([{"call": {"callback": "user-may-invite", "inviter": "@a:example.org", "invitee": "@b:example.org", "room": "!r:example.org"},
                       "expect": {"verdict": "allow"}}]);
    std::fs::write(&fixtures, bad.to_string()).unwrap();
    let output = run(&fixtures);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 passed, 1 failed"));

    // Passing fixtures on a configuration the plugin refuses still fail the run.
    std::fs::write(&fixtures, good.to_string()).unwrap();
    std::fs::write(&config, json!({"body_patterns": ["(?i)buy now"], "invites": "nobody", "blocked_user": ["@x:example.org"]}).to_string()).unwrap();
    let output = run(&fixtures);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("config: unknown option `blocked_user`") && stdout.contains("3 passed, 0 failed"), "{stdout}");
}

#[test]
fn plugin_test_shows_why_a_call_trapped() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, json!({"mode": "panic"}).to_string()).unwrap();
    let event = json!({"room_id": "!r:example.org", "sender": "@a:example.org", "type": "m.room.message", "json": {"content": {"body": "x"}}});
    let fixtures = dir.path().join("fixtures.json");
    std::fs::write(&fixtures, json!([{"call": {"callback": "check-event-for-spam", "event": event}, "expect": "failure"}]).to_string()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["plugin", "test", "-p"])
        .arg(guest("misbehave"))
        .arg("-c")
        .arg(&config)
        .arg(&fixtures)
        .output()
        .expect("weft runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("misbehave panics on purpose") && !stdout.contains("wasm backtrace"), "{stdout}");
}

/// `weft check-config` on a file with one `[[plugins]]` entry.
fn check_config(plugin: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weft.toml");
    std::fs::write(&file, format!("server_name = \"example.org\"\n[[plugins]]\nname = \"rules\"\n{plugin}")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_weft")).args(["check-config", "-c"]).arg(&file).output().expect("weft runs")
}

#[test]
fn check_config_refuses_what_the_plugin_refuses_with_its_message() {
    let path = format!("path = {:?}\n", guest("spam_rules").display().to_string());
    let bad = check_config(&format!("{path}[plugins.config]\nmin_age_secs = \"an hour\"\ninvites = \"sometimes\"\n"));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "{stderr}");
    for expected in [
        "`plugins[0].config`: plugin `rules`: `min_age_secs` must be a whole number of seconds, not \"an hour\"",
        "plugin `rules`: `invites` must be one of anyone, same-server, nobody, not \"sometimes\"",
        "plugin `rules`: `min_age_secs` reads accounts' creation time: the operator must grant `capabilities.homeserver = [\"users\"]`",
    ] {
        assert!(stderr.contains(expected), "missing {expected}: {stderr}");
    }

    let good =
        check_config(&format!("{path}[plugins.config]\nmin_age_secs = 3600\ninvites = \"same-server\"\n[plugins.capabilities]\nhomeserver = [\"users\"]\n"));
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{stdout}{}", String::from_utf8_lossy(&good.stderr));
    assert!(stdout.contains("configuration OK") && stdout.contains("plugin `rules` (spam-checker)"), "{stdout}");
}

#[test]
fn check_config_passes_a_component_without_the_export_and_refuses_an_unknown_capability() {
    // Built for 0.1.0, before `validate-config`: not asked, so a setting its
    // `new` would refuse passes the check (and fails at the first call).
    let released = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/fixtures/spam-rules-0.1.0.wasm");
    let output = check_config(&format!("path = {:?}\n[plugins.config]\ninvites = \"sometimes\"\n", released.display().to_string()));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let output = check_config(&format!("path = {:?}\n[plugins.capabilities]\nhomeserver = [\"everything\"]\n", released.display().to_string()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("homeserver") && stderr.contains("everything"), "{stderr}");
}
