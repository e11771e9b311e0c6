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
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");

    let bad = json!([{"call": {"callback": "user-may-invite", "inviter": "@a:example.org", "invitee": "@b:example.org", "room": "!r:example.org"},
                       "expect": {"verdict": "allow"}}]);
    std::fs::write(&fixtures, bad.to_string()).unwrap();
    let output = run(&fixtures);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 passed, 1 failed"));
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
