//! The whole SSO login in a real browser: Chromium (Debian's `chromium`
//! package, or `$WEFT_CHROMIUM`), headless, driven by puppeteer-core
//! (`tests/idp/sso_browser.mjs`, installed with the test provider's npm
//! packages by tests/run.sh): the client's redirect, the provider's login
//! form, Weft's username picker, the client's page with a login token; the
//! token exchanged and `whoami` answering the new user; then a returning
//! user landing straight on the client.

use std::{path::PathBuf, process::Command};

use http::StatusCode;
use reqwest::Url;
use serde_json::Value;

use crate::{
    sso::{Provider, exchange, login_token, start_with_whitelist},
    support::{Backend, free_port, idp, idp_install_dir},
};

fn chromium() -> PathBuf {
    let path = std::env::var_os("WEFT_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: install Debian's Chromium (`apt-get install -y chromium`, as tests/run.sh does) or set WEFT_CHROMIUM",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_with_sso_in_chromium_and_comes_back() {
    let chromium = chromium();
    let modules = idp_install_dir().join("node_modules");
    assert!(modules.join("puppeteer-core").is_dir(), "puppeteer-core is not installed in {}: run tests/run.sh (npm ci in tests/idp)", modules.display());
    let _ = idp();
    let client_port = free_port();
    let client_prefix = format!("http://127.0.0.1:{client_port}/");
    let server = start_with_whitelist(Backend::Sqlite, &[Provider::new("basic", "weft-basic").confirming()], "", &[&client_prefix]).await;

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/idp/sso_browser.mjs");
    let base = server.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(["--chromium", &chromium.display().to_string(), "--base", &base, "--idp", "oidc-basic"])
            .args(["--client-port", &client_port.to_string(), "--user", "alice", "--password", "wonderland", "--username", "wonder"])
            .env("WEFT_IDP_NODE_MODULES", &modules)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the browser login failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|_| panic!("{stdout}"));
    assert_eq!(result["suggested"], "alice.liddell", "the picker suggests the template's name");
    assert!(result["picker"].as_str().unwrap().contains("is available"), "the live check: {result}");

    for (key, expected_device_count) in [("first", 1), ("returning", 2)] {
        let landed = Url::parse(result[key].as_str().unwrap()).unwrap();
        assert!(landed.as_str().starts_with(&client_prefix), "{key}: on the client: {landed}");
        let (status, body) = exchange(&server, &login_token(&landed)).await;
        assert_eq!(status, StatusCode::OK, "{key}: {body}");
        let token = body["access_token"].as_str().unwrap();
        let (_, whoami) = server.get("/_matrix/client/v3/account/whoami", Some(token)).await;
        assert_eq!(whoami["user_id"], server.user_id("wonder"), "{key}");
        let (_, devices) = server.get("/_matrix/client/v3/devices", Some(token)).await;
        assert_eq!(devices["devices"].as_array().map(Vec::len), Some(expected_device_count), "{key}: {devices}");
    }
}
