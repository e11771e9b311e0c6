//! Device lists, signing keys and presence across servers, Weft with
//! Synapse 1.163 and Weft with Weft, each direction: a user of one server
//! joins a room of the other, which names them in its `/sync`
//! `device_lists.changed`; a device added on one side appears in the other
//! side's `device_lists.changed` and `/keys/query`, and leaves it when
//! logged out; a new master key appears there too; presence set on one
//! side is seen in the other side's `/sync`; a device added while Synapse
//! is down reaches it once it is back. And end-to-end encryption across
//! servers through matrix-nio (tests/clients/nio_federation.py): a client
//! on Weft and one on Synapse exchange Megolm-encrypted messages.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{DeviceKey, peers::Peer, rooms::sync_until};
use crate::{
    on_both_backends,
    support::{
        Backend, Session, TestServer, encode,
        synapse::{Synapse, test_ca},
    },
};

on_both_backends!(device_lists_signing_keys_and_presence_between_weft_and_synapse, device_lists_signing_keys_and_presence_between_wefts);

/// A side that logs a user in on another device.
trait Side: Peer {
    fn password(&self, localpart: &str) -> String;
    async fn post_without_token(&self, path: &str, body: Value) -> (StatusCode, Value);
}

impl Side for TestServer {
    fn password(&self, localpart: &str) -> String {
        format!("password-of-{localpart}")
    }
    async fn post_without_token(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.post(path, None, body).await
    }
}

impl Side for Synapse {
    fn password(&self, _: &str) -> String {
        "synapse-password".to_owned()
    }
    async fn post_without_token(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.post(path, None, body).await
    }
}

async fn second_device(side: &impl Side, localpart: &str) -> Session {
    let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart}, "password": side.password(localpart)});
    let (status, body) = side.post_without_token("/_matrix/client/v3/login", body).await;
    assert_eq!(status, StatusCode::OK, "{} logs {localpart} in: {body}", side.name());
    let field = |name: &str| body[name].as_str().unwrap().to_owned();
    Session { user_id: field("user_id"), access_token: field("access_token"), device_id: field("device_id") }
}

/// The sync token now, to look for changes after it.
async fn sync_token(peer: &impl Peer, session: &Session) -> String {
    let (status, body) = peer.call(Method::GET, "/_matrix/client/v3/sync?timeout=0", &session.access_token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["next_batch"].as_str().unwrap().to_owned()
}

/// Syncs from `since` until a response satisfies `found`; fails after 60 s.
async fn sync_since_until(peer: &impl Peer, session: &Session, since: &str, what: &str, found: impl Fn(&Value) -> bool) {
    let started = Instant::now();
    let mut since = since.to_owned();
    loop {
        let path = format!("/_matrix/client/v3/sync?timeout=1000&since={}", encode(&since));
        let (status, body) = peer.call(Method::GET, &path, &session.access_token, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if found(&body) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{} never saw {what}\n{}", peer.name(), peer.logs());
        since = body["next_batch"].as_str().unwrap().to_owned();
    }
}

fn names_changed(body: &Value, user_id: &str) -> bool {
    body["device_lists"]["changed"].as_array().is_some_and(|changed| changed.iter().any(|user| user == user_id))
}

/// Asks `/keys/query` about `user_id` until `found` holds; fails after 60 s.
async fn query_until(peer: &impl Peer, session: &Session, user_id: &str, what: &str, found: impl Fn(&Value) -> bool) {
    let started = Instant::now();
    loop {
        let (status, body) = peer.call(Method::POST, "/_matrix/client/v3/keys/query", &session.access_token, Some(json!({"device_keys": {user_id: []}}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if found(&body) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{} never listed {what}: {body}\n{}", peer.name(), peer.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Uploads a master key (signing a self-signing key) for `session`'s user.
async fn upload_cross_signing(side: &impl Side, session: &Session, localpart: &str) -> String {
    let (master, self_signing) = (DeviceKey::new(), DeviceKey::new());
    let user_id = &session.user_id;
    let key = |usage: &str, key: &DeviceKey| json!({"user_id": user_id, "usage": [usage], "keys": {format!("ed25519:{}", key.public): key.public}});
    let upload = json!({
        "master_key": key("master", &master),
        "self_signing_key": master.sign(user_id, &master.public, key("self_signing", &self_signing)),
    });
    let path = "/_matrix/client/v3/keys/device_signing/upload";
    let (mut status, mut body) = side.call(Method::POST, path, &session.access_token, Some(upload.clone())).await;
    if status == StatusCode::UNAUTHORIZED {
        let mut upload = upload;
        upload["auth"] = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": side.password(localpart),
            "session": body["session"],
        });
        (status, body) = side.call(Method::POST, path, &session.access_token, Some(upload)).await;
    }
    assert_eq!(status, StatusCode::OK, "{} uploads cross-signing keys: {body}", side.name());
    master.public
}

/// `one` and `other`: a user of `other` joins a room of `one`; devices,
/// master keys and presence each way.
async fn exchange(one: &impl Side, other: &impl Side, tag: &str) -> (Session, Session) {
    let (ann_name, ben_name) = (format!("ann{tag}"), format!("ben{tag}"));
    let ann = one.user(&ann_name).await;
    let ben = other.user(&ben_name).await;
    let (status, room) = one.call(Method::POST, "/_matrix/client/v3/createRoom", &ann.access_token, Some(json!({"preset": "public_chat"}))).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let before_join = sync_token(one, &ann).await;
    let path = format!("/_matrix/client/v3/join/{}?server_name={}&via={}", encode(&room_id), encode(one.name()), encode(one.name()));
    let (status, body) = other.call(Method::POST, &path, &ben.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{} joins {room_id}: {body}\n{}", other.name(), other.logs());
    sync_until(one, &ann, &room_id, "ben's join", |events| {
        events.iter().any(|event| event["type"] == "m.room.member" && event["state_key"] == ben.user_id && event["content"]["membership"] == "join")
    })
    .await;
    // The remote user who joined is named, so that clients fetch their devices.
    sync_since_until(one, &ann, &before_join, "ben in device_lists.changed after the join", |body| names_changed(body, &ben.user_id)).await;

    // A device added on each side, with keys: the other side's /sync and /keys/query.
    device_seen(other, &ben, &ben_name, one, &ann).await;
    device_seen(one, &ann, &ann_name, other, &ben).await;

    // Cross-signing keys each way.
    let master = upload_cross_signing(other, &ben, &ben_name).await;
    query_until(one, &ann, &ben.user_id, "ben's master key", |body| body["master_keys"][&ben.user_id]["keys"][format!("ed25519:{master}")] == json!(master))
        .await;
    let master = upload_cross_signing(one, &ann, &ann_name).await;
    query_until(other, &ben, &ann.user_id, "ann's master key", |body| body["master_keys"][&ann.user_id]["keys"][format!("ed25519:{master}")] == json!(master))
        .await;

    // Presence each way.
    presence_seen(one, &ann, other, &ben).await;
    presence_seen(other, &ben, one, &ann).await;
    (ann, ben)
}

/// `owner`'s user logs in a new device with keys: `watcher`'s user sees
/// them named in `device_lists.changed` and the device in `/keys/query`.
async fn device_seen(owner: &impl Side, owner_session: &Session, owner_name: &str, watcher: &impl Side, watcher_session: &Session) {
    let since = sync_token(watcher, watcher_session).await;
    let device = second_device(owner, owner_name).await;
    let key = DeviceKey::new();
    let (status, body) =
        owner.call(Method::POST, "/_matrix/client/v3/keys/upload", &device.access_token, Some(key.upload_body(&device.user_id, &device.device_id))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_since_until(watcher, watcher_session, &since, "the new device in device_lists.changed", |body| names_changed(body, &owner_session.user_id)).await;
    let device_id = &device.device_id;
    query_until(watcher, watcher_session, &owner_session.user_id, "the new device", |body| {
        body["device_keys"][&device.user_id][device_id]["keys"][format!("ed25519:{device_id}")] == json!(key.public)
    })
    .await;
    // Logging out deletes the device: gone from the other side's answer too.
    let since = sync_token(watcher, watcher_session).await;
    let (status, body) = owner.call(Method::POST, "/_matrix/client/v3/logout", &device.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_since_until(watcher, watcher_session, &since, "the deleted device in device_lists.changed", |body| names_changed(body, &owner_session.user_id)).await;
    query_until(watcher, watcher_session, &owner_session.user_id, "the device list without the deleted device", |body| {
        body["device_keys"][&device.user_id].is_object() && body["device_keys"][&device.user_id].get(device_id).is_none()
    })
    .await;
}

/// `setter`'s user sets a status: `watcher`'s user sees it in `/sync`.
async fn presence_seen(setter: &impl Side, setter_session: &Session, watcher: &impl Side, watcher_session: &Session) {
    let since = sync_token(watcher, watcher_session).await;
    let status_msg = format!("busy on {}", setter.name());
    let path = format!("/_matrix/client/v3/presence/{}/status", encode(&setter_session.user_id));
    let (status, body) = setter.call(Method::PUT, &path, &setter_session.access_token, Some(json!({"presence": "online", "status_msg": status_msg}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user = &setter_session.user_id;
    sync_since_until(watcher, watcher_session, &since, "the other side's presence", |body| {
        body["presence"]["events"].as_array().is_some_and(|events| {
            events.iter().any(|event| event["sender"] == *user && event["content"]["status_msg"] == status_msg && event["content"]["presence"] == "online")
        })
    })
    .await;
}

async fn device_lists_signing_keys_and_presence_between_weft_and_synapse(backend: Backend) {
    let mut synapse = Synapse::start().await;
    let weft = TestServer::builder(backend).federation().start().await;
    let (ann, ben) = exchange(&weft, &synapse, "w").await;
    exchange(&synapse, &weft, "s").await;
    // Weft answered from the list it keeps of ben's devices (fetched from
    // Synapse's /user/devices, kept current by its updates), not by asking.
    let ben_id = ruma::UserId::parse(&ben.user_id).unwrap();
    let (_, cross_signing) = weft.state.storage.remote_device_list(&ben_id).await.unwrap().expect("Weft keeps ben's device list");
    assert!(cross_signing.iter().any(|(key_type, _)| key_type == "master"), "{cross_signing:?}");

    // Synapse is down while a Weft user adds a device: the update waits in the queue.
    synapse.stop();
    let device = second_device(&weft, "annw").await;
    let key = DeviceKey::new();
    let (status, body) = weft.post("/_matrix/client/v3/keys/upload", Some(&device.access_token), key.upload_body(&device.user_id, &device.device_id)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    synapse.resume().await;
    let device_id = &device.device_id;
    query_until(&synapse, &ben, &ann.user_id, "the device added during the outage", |body| {
        body["device_keys"][&ann.user_id][device_id]["keys"][format!("ed25519:{device_id}")] == json!(key.public)
    })
    .await;
}

async fn device_lists_signing_keys_and_presence_between_wefts(backend: Backend) {
    let one = TestServer::builder(backend).federation().start().await;
    let other = TestServer::builder(backend).federation().start().await;
    let (ann, ben) = exchange(&one, &other, "a").await;
    for (server, user) in [(&one, &ben), (&other, &ann)] {
        let user_id = ruma::UserId::parse(&user.user_id).unwrap();
        let (_, cross_signing) = server.state.storage.remote_device_list(&user_id).await.unwrap().expect("the other side's device list kept");
        assert!(cross_signing.iter().any(|(key_type, _)| key_type == "master"), "{cross_signing:?}");
    }
}

/// The virtual environment with matrix-nio and vodozemac (tests/run.sh makes
/// it and sets `WEFT_CLIENT_VENV`); panics when there is none.
fn client_venv() -> PathBuf {
    let venv = std::env::var_os("WEFT_CLIENT_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|dir| PathBuf::from(dir).join("client-venv")))
        .unwrap_or_else(|| PathBuf::from("target/client-venv"));
    assert!(
        venv.join("bin/python").exists(),
        "no matrix-nio virtual environment at {} (bash tests/run.sh makes it from tests/clients/requirements.txt; or set WEFT_CLIENT_VENV)",
        venv.display()
    );
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nio_clients_on_weft_and_synapse_exchange_encrypted_messages() {
    let venv = client_venv();
    let synapse = Synapse::start().await;
    let weft = TestServer::builder(Backend::Sqlite).federation().start().await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (weft_base, synapse_base) = (weft.base.clone(), synapse.base.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(venv.join("bin/python"))
            .arg("tests/clients/nio_federation.py")
            .arg(weft_base)
            .arg(synapse_base)
            .env("SSL_CERT_FILE", &test_ca().ca)
            .current_dir(root)
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "tests/clients/nio_federation.py failed:\n{stdout}\n{}\n--- Synapse:\n{}",
        String::from_utf8_lossy(&output.stderr),
        synapse.logs()
    );
    assert!(stdout.contains(", 0 failed"), "{stdout}");
    println!("{stdout}");
}
