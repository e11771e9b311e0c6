//! `GET /pushers` and `POST /pushers/set` with the reference pusher plugin
//! `http-pusher` loaded (it decides at set time whether a pusher is valid),
//! and the storage functions the pusher instance will use.

use http::StatusCode;
use serde_json::{Value, json};
use weft::storage::PusherKey;

use crate::{
    on_both_backends,
    plugins::guest,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(
    set_get_update_and_delete,
    append_keeps_other_users_pushers,
    invalid_pushers_are_refused_and_change_nothing,
    pushers_go_with_their_device,
    progress_is_recorded_per_pusher,
    the_pusher_plugin_checks_each_pusher_at_set_time,
    loopback_gateways_are_refused_unless_whitelisted,
    without_a_pusher_plugin_every_pusher_is_refused,
);

const SET: &str = "/_matrix/client/v3/pushers/set";
const LIST: &str = "/_matrix/client/v3/pushers";

/// `top_level` options, then the reference pusher `http-pusher`, as the
/// zero-setup configuration loads it.
fn with_http_pusher(top_level: &str) -> String {
    format!(
        "{top_level}\n[[plugins]]\nname = \"http-pusher\"\nrole = \"pusher\"\npath = {:?}\n[plugins.capabilities]\nallowed_outbound_hosts = [\"*:*\"]\n",
        guest("http_pusher").display().to_string()
    )
}

/// A server with `http-pusher` that may push to gateways on this machine.
async fn start(backend: Backend) -> TestServer {
    TestServer::builder(backend).config(&with_http_pusher("ip_range_whitelist = [\"127.0.0.0/8\", \"::1/128\"]")).start().await
}

fn http_pusher(app_id: &str, pushkey: &str) -> Value {
    json!({
        "kind": "http",
        "app_id": app_id,
        "pushkey": pushkey,
        "app_display_name": "Weft Mobile",
        "device_display_name": "Alice's phone",
        "profile_tag": "tag",
        "lang": "en",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify", "format": "event_id_only", "custom": {"x": 1}},
    })
}

/// The pusher as `GET /pushers` shows it: everything set except `append`.
fn listed(mut pusher: Value) -> Value {
    pusher.as_object_mut().unwrap().remove("append");
    pusher
}

async fn pushers(server: &TestServer, token: &str) -> Vec<Value> {
    let (status, body) = server.get(LIST, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["pushers"].as_array().expect("pushers is a list").clone()
}

async fn set(server: &TestServer, token: &str, body: Value) {
    let (status, reply) = server.post(SET, Some(token), body).await;
    assert_eq!((status, &reply), (StatusCode::OK, &json!({})));
}

async fn set_get_update_and_delete(backend: Backend) {
    let server = start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = alice.access_token.as_str();
    assert_eq!(pushers(&server, token).await, Vec::<Value>::new());

    let first = http_pusher("org.example.app", "key-1");
    set(&server, token, first.clone()).await;
    assert_eq!(pushers(&server, token).await, vec![first.clone()]);

    // Same app id and pushkey: an update, not a second pusher.
    let mut updated = http_pusher("org.example.app", "key-1");
    updated["lang"] = json!("fr");
    updated["device_display_name"] = json!("Renamed");
    updated["data"] = json!({"url": "http://localhost:8080/_matrix/push/v1/notify"});
    updated.as_object_mut().unwrap().remove("profile_tag");
    set(&server, token, updated.clone()).await;
    assert_eq!(pushers(&server, token).await, vec![updated.clone()]);

    let mut second = http_pusher("org.example.app", "key-2");
    second["append"] = json!(true);
    set(&server, token, second.clone()).await;
    let mut other_app = http_pusher("org.example.other", "key-1");
    other_app["append"] = json!(false);
    set(&server, token, other_app.clone()).await;
    assert_eq!(pushers(&server, token).await, vec![updated.clone(), listed(second), listed(other_app.clone())]);

    set(&server, token, json!({"kind": null, "app_id": "org.example.app", "pushkey": "key-2"})).await;
    set(&server, token, json!({"kind": null, "app_id": "org.example.app", "pushkey": "key-1"})).await;
    assert_eq!(pushers(&server, token).await, vec![listed(other_app.clone())]);
    // Deleting a pusher that does not exist succeeds.
    set(&server, token, json!({"kind": null, "app_id": "org.example.app", "pushkey": "key-1"})).await;
    assert_eq!(pushers(&server, token).await.len(), 1);

    let (status, _) = server.get(LIST, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = server.post(SET, None, http_pusher("a", "b")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn append_keeps_other_users_pushers(backend: Backend) {
    let server = start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let pusher = http_pusher("org.example.app", "shared");
    set(&server, &alice.access_token, pusher.clone()).await;
    set(&server, &carol.access_token, http_pusher("org.example.app", "carol's own")).await;

    let mut appended = pusher.clone();
    appended["append"] = json!(true);
    set(&server, &bob.access_token, appended).await;
    assert_eq!(pushers(&server, &alice.access_token).await, vec![pusher.clone()], "append keeps Alice's");
    assert_eq!(pushers(&server, &bob.access_token).await, vec![pusher.clone()]);

    // Without append (the default), the pushkey moves to Bob alone.
    set(&server, &bob.access_token, pusher.clone()).await;
    assert_eq!(pushers(&server, &alice.access_token).await, Vec::<Value>::new());
    assert_eq!(pushers(&server, &bob.access_token).await, vec![pusher.clone()]);
    assert_eq!(pushers(&server, &carol.access_token).await.len(), 1, "another pushkey of the same app stays");

    // Taking it back with an explicit `append: false`.
    let mut not_appended = pusher.clone();
    not_appended["append"] = json!(false);
    set(&server, &alice.access_token, not_appended).await;
    assert_eq!(pushers(&server, &alice.access_token).await, vec![pusher.clone()]);
    assert_eq!(pushers(&server, &bob.access_token).await, Vec::<Value>::new());

    // Deleting is per user: Bob deleting the pushkey leaves Alice's pusher.
    set(&server, &bob.access_token, json!({"kind": null, "app_id": "org.example.app", "pushkey": "shared"})).await;
    assert_eq!(pushers(&server, &alice.access_token).await.len(), 1);
}

async fn invalid_pushers_are_refused_and_change_nothing(backend: Backend) {
    let server = start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let existing = http_pusher("org.example.app", "key");
    set(&server, &alice.access_token, existing.clone()).await;

    let without = |field: &str| {
        let mut body = http_pusher("org.example.app", "key");
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let with = |field: &str, value: Value| {
        let mut body = http_pusher("org.example.app", "key");
        body[field] = value;
        body
    };
    let with_url = |url: &str| with("data", json!({"url": url}));
    let cases = [
        (without("kind"), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (json!({"app_id": "org.example.app", "pushkey": "key"}), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (without("app_id"), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (without("pushkey"), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (without("app_display_name"), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (without("device_display_name"), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (without("lang"), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (without("data"), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (with("data", json!({"format": "event_id_only"})), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (json!({"kind": null, "app_id": "org.example.app"}), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (with_url("https://push.example.org/_matrix/push/v1/other"), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (with_url("https://push.example.org/"), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (with_url("/_matrix/push/v1/notify"), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (with_url("ftp://push.example.org/_matrix/push/v1/notify"), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (with_url("not a url"), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (with("kind", json!("org.example.carrier-pigeon")), StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        (with("app_id", json!("a".repeat(65))), StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        (with("pushkey", json!("k".repeat(513))), StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        (with("lang", json!(5)), StatusCode::BAD_REQUEST, "M_BAD_JSON"),
        (with("append", json!("yes")), StatusCode::BAD_REQUEST, "M_BAD_JSON"),
        (with("data", json!("not an object")), StatusCode::BAD_REQUEST, "M_BAD_JSON"),
        (json!(["not an object"]), StatusCode::BAD_REQUEST, "M_BAD_JSON"),
    ];
    for (body, status, expected) in cases {
        // Bob's request would take the pushkey from Alice if it succeeded.
        let (got, reply) = server.post(SET, Some(&bob.access_token), body.clone()).await;
        assert_eq!((got, errcode(&reply)), (status, expected), "{body}: {reply}");
        let (got, reply) = server.post(SET, Some(&alice.access_token), body.clone()).await;
        assert_eq!((got, errcode(&reply)), (status, expected), "{body}: {reply}");
    }
    assert_eq!(pushers(&server, &alice.access_token).await, vec![existing.clone()], "nothing changed or was deleted");
    assert_eq!(pushers(&server, &bob.access_token).await, Vec::<Value>::new());

    // No plugin of this server delivers email pushers.
    let (status, reply) = server.post(SET, Some(&alice.access_token), email_pusher()).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{reply}");
    assert_eq!(pushers(&server, &alice.access_token).await, vec![existing]);
}

fn email_pusher() -> Value {
    json!({
        "kind": "email", "app_id": "m.email", "pushkey": "alice@example.org", "app_display_name": "Email",
        "device_display_name": "alice@example.org", "lang": "en", "data": {},
    })
}

fn with_url(url: &str) -> Value {
    let mut pusher = http_pusher("org.example.app", url);
    pusher["data"] = json!({"url": url});
    pusher
}

async fn the_pusher_plugin_checks_each_pusher_at_set_time(backend: Backend) {
    // Synapse's default address policy: no whitelist.
    let server = TestServer::builder(backend).config(&with_http_pusher("")).start().await;
    let alice = server.register("alice", "pw").await;
    let token = alice.access_token.as_str();

    // A gateway URL with another path: Synapse's errcode, and the path it needs.
    let (status, reply) = server.post(SET, Some(token), with_url("https://push.example.org/_matrix/push/v1/notify/extra")).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"), "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("/_matrix/push/v1/notify"), "{reply}");

    // A gateway on this machine, by address or by name: refused now rather than failing every push.
    for url in ["http://127.0.0.1:8080/_matrix/push/v1/notify", "http://localhost:8080/_matrix/push/v1/notify", "http://[::1]/_matrix/push/v1/notify"] {
        let (status, reply) = server.post(SET, Some(token), with_url(url)).await;
        assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{url}: {reply}");
        let message = reply["error"].as_str().unwrap();
        assert!(message.contains("may not send pushes to") && message.contains("ip_range_blacklist"), "{url}: {reply}");
    }
    // A private address too.
    let (status, reply) = server.post(SET, Some(token), with_url("http://10.0.0.7/_matrix/push/v1/notify")).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{reply}");

    // A kind no plugin serves.
    let (status, reply) = server.post(SET, Some(token), email_pusher()).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("`email`"), "{reply}");
    assert_eq!(pushers(&server, token).await, Vec::<Value>::new(), "nothing refused was stored");

    // A public gateway: stored and listed as set.
    let valid = http_pusher("org.example.app", "key");
    set(&server, token, valid.clone()).await;
    assert_eq!(pushers(&server, token).await, vec![valid.clone()]);
    // An update to a refused URL leaves the stored pusher as it was.
    let mut moved = valid.clone();
    moved["data"] = json!({"url": "http://127.0.0.1:8080/_matrix/push/v1/notify"});
    let (status, reply) = server.post(SET, Some(token), moved).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{reply}");
    assert_eq!(pushers(&server, token).await, vec![valid]);
    // Deleting asks no plugin.
    set(&server, token, json!({"kind": null, "app_id": "org.example.app", "pushkey": "key"})).await;
    assert_eq!(pushers(&server, token).await, Vec::<Value>::new());
}

async fn loopback_gateways_are_refused_unless_whitelisted(backend: Backend) {
    let server = TestServer::builder(backend).config(&with_http_pusher("ip_range_whitelist = [\"127.0.0.0/8\"]")).start().await;
    let alice = server.register("alice", "pw").await;
    let token = alice.access_token.as_str();
    let loopback = with_url("http://127.0.0.1:8080/_matrix/push/v1/notify");
    set(&server, token, loopback.clone()).await;
    assert_eq!(pushers(&server, token).await, vec![loopback]);
    // Only the listed ranges: other private addresses stay refused.
    let (status, reply) = server.post(SET, Some(token), with_url("http://192.168.1.2/_matrix/push/v1/notify")).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{reply}");
    assert_eq!(pushers(&server, token).await.len(), 1);
}

async fn without_a_pusher_plugin_every_pusher_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let (status, reply) = server.post(SET, Some(&alice.access_token), http_pusher("org.example.app", "key")).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("No pusher plugin"), "{reply}");
    assert_eq!(pushers(&server, &alice.access_token).await, Vec::<Value>::new());
}

fn uia(user: &str) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": "pw"})
}

async fn pushers_go_with_their_device(backend: Backend) {
    let server = start(backend).await;
    let alice = server.register("alice", "pw").await;
    let phone = server.login("alice", "pw").await;
    let laptop = server.login("alice", "pw").await;
    set(&server, &phone.access_token, http_pusher("org.example.app", "phone")).await;
    set(&server, &laptop.access_token, http_pusher("org.example.app", "laptop")).await;
    set(&server, &alice.access_token, http_pusher("org.example.app", "main")).await;
    // The main device updates the phone's pusher: it stays the phone's.
    let mut renamed = http_pusher("org.example.app", "phone");
    renamed["device_display_name"] = json!("Renamed from elsewhere");
    set(&server, &alice.access_token, renamed).await;

    let path = format!("/_matrix/client/v3/devices/{}", phone.device_id);
    let (status, _) = server.delete(&path, Some(&alice.access_token), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(pushers(&server, &alice.access_token).await.len(), 3, "no UIA, nothing deleted");
    let (status, body) = server.delete(&path, Some(&alice.access_token), json!({"auth": uia("alice")})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let keys = |list: Vec<Value>| list.iter().map(|p| p["pushkey"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(keys(pushers(&server, &alice.access_token).await), vec!["laptop", "main"]);

    let (status, _) = server.post("/_matrix/client/v3/logout", Some(&laptop.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(pushers(&server, &alice.access_token).await), vec!["main"]);

    let (status, _) = server.post("/_matrix/client/v3/logout/all", Some(&alice.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let again = server.login("alice", "pw").await;
    assert_eq!(pushers(&server, &again.access_token).await, Vec::<Value>::new());
}

async fn progress_is_recorded_per_pusher(backend: Backend) {
    let server = start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let storage = &server.state.storage;
    let (status, _) = server.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let position = storage.persisted_events_position();
    assert!(position > 0);
    set(&server, &alice.access_token, http_pusher("org.example.app", "a")).await;
    set(&server, &bob.access_token, http_pusher("org.example.app", "b")).await;

    let all = storage.all_pushers().await.unwrap();
    assert_eq!(
        all.iter().map(|p| (p.user_id.to_string(), p.pushkey.as_str())).collect::<Vec<_>>(),
        vec![(alice.user_id.clone(), "a"), (bob.user_id.clone(), "b")]
    );
    let stored = &all[0];
    assert_eq!(stored.device_id.as_str(), alice.device_id);
    assert_eq!((stored.kind.as_str(), stored.lang.as_str(), stored.profile_tag.as_deref()), ("http", "en", Some("tag")));
    assert_eq!(stored.data["url"], "https://push.example.org/_matrix/push/v1/notify");
    assert_eq!(stored.last_stream_ordering, position, "a new pusher starts at the current events position");
    assert_eq!((stored.last_success_ts, stored.failing_since_ts), (None, None));

    let alice_id = server.uid("alice");
    let key = PusherKey { user_id: &alice_id, app_id: "org.example.app", pushkey: "a" };
    assert!(storage.record_pusher_failure(key, 1_000).await.unwrap());
    assert!(storage.record_pusher_failure(key, 2_000).await.unwrap());
    let pusher = storage.user_pushers(&alice_id).await.unwrap().remove(0);
    assert_eq!(pusher.failing_since_ts, Some(1_000), "the first failure of a run is kept");
    assert!(storage.record_pusher_progress(key, position + 1).await.unwrap());
    assert!(storage.record_pusher_success(key, position + 2, 3_000).await.unwrap());
    let pusher = storage.user_pushers(&alice_id).await.unwrap().remove(0);
    assert_eq!((pusher.last_stream_ordering, pusher.last_success_ts, pusher.failing_since_ts), (position + 2, Some(3_000), None));
    let bob_pusher = storage.user_pushers(&server.uid("bob")).await.unwrap().remove(0);
    assert_eq!((bob_pusher.last_stream_ordering, bob_pusher.last_success_ts), (position, None), "other pushers untouched");

    let gone = PusherKey { user_id: &alice_id, app_id: "org.example.app", pushkey: "missing" };
    assert!(!storage.record_pusher_success(gone, 1, 1).await.unwrap());
    assert!(!storage.record_pusher_progress(gone, 1).await.unwrap());
    assert!(!storage.record_pusher_failure(gone, 1).await.unwrap());
    assert!(storage.delete_pusher(key).await.unwrap());
    assert!(!storage.delete_pusher(key).await.unwrap());
}
