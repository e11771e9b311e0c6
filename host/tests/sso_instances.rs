//! An SSO login across instances, through `weft router`: the redirect taken
//! by one instance, the provider's callback by another (the first one is
//! gone by then), the login token exchanged on the second. Two `weft run`
//! processes on one PostgreSQL database stand in for two instances serving
//! the `sso` group, as in the router's own failover test.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    plugins::guest,
    sso::{CLIENT, login_token, redirect_path},
    support::{Backend, Browser, KillOnDrop, TestDb, WEFT, free_port, idp},
};

fn spawn(args: &[&str]) -> KillOnDrop {
    KillOnDrop(Command::new(WEFT).args(args).env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().expect("weft starts"))
}

async fn wait_healthy(base: &str) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{base}/health")).send().await
            && response.status() == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing healthy at {base}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirect_on_one_instance_and_the_callback_on_another_through_the_router() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = db.dir().to_owned();
    let (port_a, port_b, port_router) = (free_port(), free_port(), free_port());
    let base = format!("http://127.0.0.1:{port_router}");
    let issuer = &idp().issuer;
    let plugin = format!(
        "[[plugins]]\nname = \"sso-basic\"\nrole = \"sso-provider\"\npath = {:?}\n\
         [plugins.config]\nidp_id = \"basic\"\nidp_name = \"Test IdP\"\nissuer = \"{issuer}\"\nskip_verification = true\n\
         client_id = \"weft-basic\"\nclient_secret = \"weft-basic-secret\"\nscopes = [\"openid\", \"profile\", \"email\"]\n\
         [plugins.config.user_mapping_provider.config]\nlocalpart_template = \"{{{{ user.preferred_username | lower }}}}\"\n\
         [plugins.capabilities]\nallowed_outbound_hosts = [\"{issuer}\"]\n",
        guest("oidc").display().to_string()
    );
    let instance_config = |port: u16| {
        format!(
            "server_name = \"shared-sso.test\"\npublic_baseurl = \"{base}/\"\nsigning_key_path = {:?}\nip_range_whitelist = [\"127.0.0.0/8\"]\n\
             [presence]\nenabled = false\n[sso]\nclient_whitelist = [\"{CLIENT}\"]\n{}\n\
             [[listeners]]\nport = {port}\nbind_addresses = [\"127.0.0.1\"]\n[[listeners.resources]]\nnames = [\"client\", \"health\"]\n{plugin}",
            dir.join("signing.key").display().to_string(),
            db.config_toml
        )
    };
    std::fs::write(dir.join("a.toml"), instance_config(port_a)).unwrap();
    std::fs::write(dir.join("b.toml"), instance_config(port_b)).unwrap();
    let groups = "serves = [\"sso\", \"login\", \"client_reads\", \"account\"]";
    std::fs::write(
        dir.join("shared.toml"),
        format!(
            "server_name = \"shared-sso.test\"\nworker_replication_secret = \"secret\"\n[redis]\nenabled = true\n{}\n\
             [router]\nport = {port_router}\ndown_for_ms = 1\n\
             [instance_map.main]\nhost = \"127.0.0.1\"\nport = 9093\nclient_port = {port_a}\n{groups}\n\
             [instance_map.b]\nhost = \"127.0.0.1\"\nport = 9094\nclient_port = {port_b}\n{groups}\n",
            db.config_toml
        ),
    )
    .unwrap();
    let path = |name: &str| dir.join(name).display().to_string();

    // Only `a` is up: the router's redirect is a's.
    let a = spawn(&["run", "-c", &path("a.toml")]);
    wait_healthy(&format!("http://127.0.0.1:{port_a}")).await;
    let _router = spawn(&["router", "-c", &path("shared.toml")]);
    wait_healthy(&base).await;
    let browser = Browser::new();
    let page = browser.get(&format!("{base}{}", redirect_path("basic", CLIENT))).await;
    assert_eq!(page.status, StatusCode::FOUND, "{}", page.body);
    let authorization = page.location.expect("to the provider");
    let callback = browser.sign_in(&authorization, "alice", "wonderland").await;
    assert!(callback.as_str().starts_with(&format!("{base}/_synapse/client/oidc/callback")), "{callback}");

    // `b` takes over; `a` is gone: the callback is b's.
    let b = spawn(&["run", "-c", &path("b.toml")]);
    wait_healthy(&format!("http://127.0.0.1:{port_b}")).await;
    drop(a);
    let done = browser.get(callback.as_str()).await;
    assert_eq!(done.status, StatusCode::FOUND, "b completes the login a started: {}", done.body);
    let target = done.location.expect("to the client");
    assert!(target.as_str().starts_with(CLIENT), "{target}");

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let body: Value = http
        .post(format!("{base}/_matrix/client/v3/login"))
        .json(&json!({"type": "m.login.token", "token": login_token(&target)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = body["access_token"].as_str().unwrap_or_else(|| panic!("logged in: {body}"));
    let whoami: Value = http.get(format!("{base}/_matrix/client/v3/account/whoami")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    assert_eq!(whoami["user_id"], "@alice.liddell:shared-sso.test");
    drop(b);
}

#[test]
fn check_config_refuses_an_sso_plugin_pinned_where_sso_is_not_served() {
    let config = |pinned: &str| {
        format!(
            "server_name = \"r.test\"\nworker_replication_secret = \"s\"\n[redis]\nenabled = true\n\
             [database]\nname = \"psycopg2\"\nargs = {{ dbname = \"weft\" }}\n\
             [instance_map.main]\nhost = \"127.0.0.1\"\nport = 9093\nclient_port = 8080\n\
             [instance_map.login1]\nhost = \"127.0.0.1\"\nport = 9094\nclient_port = 8081\nserves = [\"sso\"]\n\
             [instance_map.login2]\nhost = \"127.0.0.1\"\nport = 9095\nclient_port = 8082\nserves = [\"sso\", \"login\"]\n\
             [instance_map.sync1]\nhost = \"127.0.0.1\"\nport = 9096\nclient_port = 8083\nserves = [\"sync\"]\n\
             [[plugins]]\nname = \"sso-test\"\nrole = \"sso-provider\"\npath = {:?}\ninstances = [{pinned}]\n\
             [plugins.config]\nidp_id = \"test\"\nidp_name = \"Test\"\nissuer = \"https://id.example.org\"\nclient_id = \"weft\"\nclient_secret = \"s\"\n",
            guest("oidc").display().to_string()
        )
    };
    let errors = |text: &str| match weft::config::load_str("shared.toml", text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    let refused = errors(&config("\"login1\", \"sync1\""));
    assert!(
        refused.iter().any(|e| e.contains(
            "`plugins[0].instances`: the SSO provider is pinned to `sync1`, which does not serve the `sso` endpoint group (served by login1, login2)"
        )),
        "{refused:#?}"
    );
    assert!(!refused.iter().any(|e| e.contains("pinned to `login1`")), "{refused:#?}");
    let fine = errors(&config("\"login1\", \"login2\""));
    assert!(!fine.iter().any(|e| e.contains("does not serve the `sso` endpoint group")), "several instances may serve SSO: {fine:#?}");
}
