//! The reference appservice notifier `plugins/appservice-http` through the
//! testkit, its requests recorded and answered by the testkit: the wire
//! format of a transaction and of the queries, the answers it reports
//! (the server decides what they mean), a failed delivery sent again the
//! same, and the allow-list. Build it first:
//! `cargo build --release --target wasm32-wasip2 --manifest-path plugins/appservice-http/Cargo.toml`
//! (tests/run.sh does).

use serde_json::{Value, json};
use weft_plugin_testkit::{
    HttpCall, TestPlugin, Testkit,
    appservice::{AppserviceCall, AppserviceNotifier, Outcome, Registration, ThirdpartyKind},
};

const URL: &str = "http://bridge.example:29317";

fn registration() -> Registration {
    Registration { id: "irc".into(), url: URL.into(), hs_token: "hs-secret".into() }
}

/// The plugin as the server loads it: only the registrations' URLs reachable.
fn kit(name: &str) -> Testkit {
    Testkit::new(crate::built("appservice-http", "appservice_http.wasm")).name(name).allow_host(URL)
}

async fn load(kit: Testkit) -> TestPlugin<AppserviceNotifier> {
    kit.load_appservice_notifier().await.expect("appservice-http loads")
}

fn header<'a>(call: &'a HttpCall, name: &str) -> Option<&'a str> {
    call.request.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
}

fn push(txn_id: &str, body: &Value) -> AppserviceCall {
    AppserviceCall::PushTransaction { registration: registration(), txn_id: txn_id.into(), body: body.to_string() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_is_put_with_the_hs_token_and_the_body_as_built() {
    let plugin = load(kit("as-push").respond(&format!("{URL}/_matrix/app/v1/transactions/"), 200, "{}")).await;
    let body = json!({
        "events": [{"type": "m.room.message", "event_id": "$e", "room_id": "!r:example.org", "sender": "@irc_bob:example.org", "content": {"body": "hi"}}],
        "ephemeral": [],
        "de.sorunome.msc2409.to_device": [{"to_user_id": "@irc_bob:example.org", "to_device_id": "D", "type": "m.test", "sender": "@a:example.org", "content": {}}],
        "org.matrix.msc3202.device_lists": {"changed": ["@a:example.org"], "left": []},
    });
    let outcome = plugin.appservice(push("42", &body)).await.unwrap();
    assert_eq!(outcome, Outcome::Reply { status: 200, body: "{}".into() });
    let calls = plugin.http_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!((call.request.method.as_str(), call.request.url.as_str()), ("PUT", format!("{URL}/_matrix/app/v1/transactions/42").as_str()));
    assert_eq!(header(call, "authorization"), Some("Bearer hs-secret"));
    assert_eq!(header(call, "content-type"), Some("application/json"));
    assert!(!call.request.url.contains("access_token"), "never the token in the query string");
    assert_eq!(serde_json::from_slice::<Value>(&call.request.body).unwrap(), body, "the body as the server built it, untouched");
    assert_eq!(call.outcome, Ok(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_alias_queries_are_gets_with_encoded_ids_and_report_the_answer() {
    let plugin = load(kit("as-queries").respond(&format!("{URL}/_matrix/app/v1/users/%40irc_bob"), 200, "{}").respond(
        &format!("{URL}/_matrix/app/v1/rooms/"),
        404,
        "{\"errcode\": \"M_NOT_FOUND\"}",
    ))
    .await;
    let known = plugin.appservice(AppserviceCall::QueryUser { registration: registration(), user_id: "@irc_bob:example.org".into() }).await.unwrap();
    assert_eq!(known, Outcome::Reply { status: 200, body: "{}".into() });
    let unknown = plugin.appservice(AppserviceCall::QueryAlias { registration: registration(), alias: "#irc_#chan/x:example.org".into() }).await.unwrap();
    assert_eq!(unknown, Outcome::Reply { status: 404, body: "{\"errcode\": \"M_NOT_FOUND\"}".into() });
    let calls = plugin.http_calls();
    let urls: Vec<(&str, &str)> = calls.iter().map(|call| (call.request.method.as_str(), call.request.url.as_str())).collect();
    assert_eq!(
        urls,
        [
            ("GET", format!("{URL}/_matrix/app/v1/users/%40irc_bob%3Aexample.org").as_str()),
            ("GET", format!("{URL}/_matrix/app/v1/rooms/%23irc_%23chan%2Fx%3Aexample.org").as_str()),
        ]
    );
    assert!(calls.iter().all(|call| header(call, "authorization") == Some("Bearer hs-secret") && call.request.body.is_empty()));
    let lookup = AppserviceCall::QueryThirdparty {
        registration: registration(),
        kind: ThirdpartyKind::User,
        protocol: "irc".into(),
        fields: vec![("nick".into(), "bob smith".into())],
    };
    plugin.appservice(lookup).await.unwrap();
    assert_eq!(plugin.http_calls()[2].request.url, format!("{URL}/_matrix/app/v1/thirdparty/user/irc?nick=bob%20smith"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_reported_and_the_retry_is_the_same_request() {
    // The appservice answers 500: the plugin reports it; the server keeps
    // the transaction and later asks for the same one again.
    let failing = load(kit("as-retry").respond(&format!("{URL}/_matrix/app/v1/transactions/"), 500, "{\"errcode\": \"M_UNKNOWN\"}")).await;
    let body = json!({"events": [], "ephemeral": [], "de.sorunome.msc2409.to_device": []});
    for _ in 0..2 {
        let outcome = failing.appservice(push("7", &body)).await.unwrap();
        assert_eq!(outcome, Outcome::Reply { status: 500, body: "{\"errcode\": \"M_UNKNOWN\"}".into() });
        assert!(!outcome.is_success());
    }
    let calls = failing.http_calls();
    assert_eq!(calls.len(), 2, "one request per try, no retry inside the plugin: {calls:?}");
    assert_eq!(calls[0].request, calls[1].request, "the retry is the same request");

    // An appservice that cannot be reached is no reply, not a failure of the plugin.
    let elsewhere = Registration { url: "http://other.example:1".into(), ..registration() };
    let outcome = failing.appservice(AppserviceCall::PushTransaction { registration: elsewhere, txn_id: "8".into(), body: body.to_string() }).await.unwrap();
    assert!(matches!(&outcome, Outcome::Unreachable { reason } if reason.contains("may not be reached")), "{outcome:?}");
    assert!(failing.http_calls()[2].outcome.is_err(), "refused by the allow-list: {:?}", failing.http_calls()[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ping_posts_the_transaction_id() {
    let plugin = load(kit("as-ping").respond(&format!("{URL}/_matrix/app/v1/ping"), 200, "{}")).await;
    let outcome = plugin.appservice(AppserviceCall::Ping { registration: registration(), txn_id: Some("p1".into()) }).await.unwrap();
    assert!(outcome.is_success());
    let call = &plugin.http_calls()[0];
    assert_eq!((call.request.method.as_str(), call.request.url.as_str()), ("POST", format!("{URL}/_matrix/app/v1/ping").as_str()));
    assert_eq!(serde_json::from_slice::<Value>(&call.request.body).unwrap(), json!({"transaction_id": "p1"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_claims_and_queries_are_posted_to_the_unstable_endpoints() {
    let claim_url = format!("{URL}/_matrix/app/unstable/org.matrix.msc3983/keys/claim");
    let query_url = format!("{URL}/_matrix/app/unstable/org.matrix.msc3984/keys/query");
    let answer = r#"{"@irc_bob:example.org":{"D":{"signed_curve25519:K":{"key":"k"}}}}"#;
    let plugin = load(kit("as-keys").respond(&claim_url, 200, answer).respond(&query_url, 200, r#"{"device_keys":{}}"#)).await;
    let claim = json!({"@irc_bob:example.org": {"D": ["signed_curve25519"]}});
    let outcome = plugin.appservice(AppserviceCall::ClaimKeys { registration: registration(), body: claim.to_string() }).await.unwrap();
    assert_eq!(outcome, Outcome::Reply { status: 200, body: answer.into() });
    let query = json!({"@irc_bob:example.org": []});
    let outcome = plugin.appservice(AppserviceCall::QueryKeys { registration: registration(), body: query.to_string() }).await.unwrap();
    assert!(outcome.is_success(), "{outcome:?}");
    let calls = plugin.http_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for (call, (url, body)) in calls.iter().zip([(&claim_url, &claim), (&query_url, &query)]) {
        assert_eq!((call.request.method.as_str(), call.request.url.as_str()), ("POST", url.as_str()));
        assert_eq!(header(call, "authorization"), Some("Bearer hs-secret"));
        assert_eq!(serde_json::from_slice::<Value>(&call.request.body).unwrap(), *body);
    }
}
