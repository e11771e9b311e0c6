//! Weft and Synapse, and Weft and Weft, each asking the other: signing keys
//! (each side fetches the other's; Weft through a Weft notary), profiles,
//! room aliases, and device and one-time keys of remote users.

use http::{Method, StatusCode};
use ruma::MilliSecondsSinceUnixEpoch;
use serde_json::{Value, json};

use super::DeviceKey;
use crate::{
    on_both_backends,
    support::{Backend, Session, TestServer, encode, errcode, synapse::Synapse},
};

on_both_backends!(weft_and_weft_ask_each_other_and_keys_come_through_a_notary);

/// One side of a pair, whatever its implementation: a client API and its users.
pub(super) trait Peer {
    fn name(&self) -> &str;
    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value);
    async fn user(&self, localpart: &str) -> Session;
    /// What to show when an assertion fails.
    fn logs(&self) -> String {
        String::new()
    }
}

impl Peer for TestServer {
    fn name(&self) -> &str {
        &self.server_name
    }
    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.request(method, path, Some(token), body).await
    }
    async fn user(&self, localpart: &str) -> Session {
        self.register(localpart, &format!("password-of-{localpart}")).await
    }
}

impl Peer for Synapse {
    fn name(&self) -> &str {
        &self.server_name
    }
    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.request(method, path, Some(token), body).await
    }
    async fn user(&self, localpart: &str) -> Session {
        self.register(localpart).await
    }
    fn logs(&self) -> String {
        Synapse::logs(self)
    }
}

/// `asker`'s users see `owner`'s: profiles, aliases, device and one-time keys.
async fn ask_across(asker: &impl Peer, owner: &impl Peer, tag: &str) {
    let them = owner.user(&format!("owner{tag}")).await;
    let me = asker.user(&format!("asker{tag}")).await;
    let name = format!("Owner {tag} on {}", owner.name());
    let (status, body) = owner
        .call(Method::PUT, &format!("/_matrix/client/v3/profile/{}/displayname", encode(&them.user_id)), &them.access_token, Some(json!({"displayname": name})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Profiles.
    let profile = format!("/_matrix/client/v3/profile/{}", encode(&them.user_id));
    let (status, body) = asker.call(Method::GET, &profile, &me.access_token, None).await;
    assert_eq!(status, StatusCode::OK, "{} asks {} for a profile: {body}\n{}{}", asker.name(), owner.name(), asker.logs(), owner.logs());
    assert_eq!(body["displayname"], name);
    let (status, body) = asker.call(Method::GET, &format!("{profile}/displayname"), &me.access_token, None).await;
    assert_eq!((status, &body["displayname"]), (StatusCode::OK, &json!(name)), "{body}");
    let nobody = format!("/_matrix/client/v3/profile/{}", encode(&format!("@nobody{tag}:{}", owner.name())));
    let (status, body) = asker.call(Method::GET, &nobody, &me.access_token, None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{body}");

    // Room aliases.
    let alias_name = format!("room{tag}");
    let (status, room) = owner
        .call(Method::POST, "/_matrix/client/v3/createRoom", &them.access_token, Some(json!({"room_alias_name": alias_name, "preset": "public_chat"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let alias = format!("#{alias_name}:{}", owner.name());
    let (status, body) = asker.call(Method::GET, &format!("/_matrix/client/v3/directory/room/{}", encode(&alias)), &me.access_token, None).await;
    assert_eq!(status, StatusCode::OK, "{} resolves {alias}: {body}", asker.name());
    assert_eq!(body["room_id"], room["room_id"]);
    assert!(body["servers"].as_array().unwrap().contains(&json!(owner.name())), "{body}");
    let missing = format!("#missing{tag}:{}", owner.name());
    let (status, body) = asker.call(Method::GET, &format!("/_matrix/client/v3/directory/room/{}", encode(&missing)), &me.access_token, None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{body}");

    // Device keys and one-time keys.
    let key = DeviceKey::new();
    let (status, body) =
        owner.call(Method::POST, "/_matrix/client/v3/keys/upload", &them.access_token, Some(key.upload_body(&them.user_id, &them.device_id))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        asker.call(Method::POST, "/_matrix/client/v3/keys/query", &me.access_token, Some(json!({"device_keys": {them.user_id.clone(): []}}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["failures"].as_object().is_none_or(|failures| failures.is_empty()), "{body}");
    let device = &body["device_keys"][&them.user_id][&them.device_id];
    assert_eq!(device["keys"][format!("ed25519:{}", them.device_id)], json!(key.public), "{body}");
    let (status, body) = asker
        .call(
            Method::POST,
            "/_matrix/client/v3/keys/claim",
            &me.access_token,
            Some(json!({"one_time_keys": {them.user_id.clone(): {them.device_id.clone(): "signed_curve25519"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claimed = &body["one_time_keys"][&them.user_id][&them.device_id];
    assert!(claimed.get("signed_curve25519:AAAAAQ").is_some(), "{} claims a key of {}: {body}", asker.name(), owner.name());
}

/// The notary answer `server` gives about `about`, through its key query.
async fn notary_answer(client: &reqwest::Client, base: &str, about: &str) -> Value {
    let response = client.get(format!("{base}/_matrix/key/v2/query/{}", encode(about))).send().await.expect("notary answers");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["server_keys"].as_array().and_then(|keys| keys.first()).cloned().unwrap_or_else(|| panic!("no keys of {about}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_and_synapse_ask_each_other() {
    let synapse = Synapse::start().await;
    let weft = TestServer::builder(Backend::Sqlite).federation().start().await;
    ask_across(&weft, &synapse, "w").await;
    ask_across(&synapse, &weft, "s").await;

    // Each fetched the other's signing key: Weft keeps Synapse's answer,
    // and Synapse, asked as a notary, serves Weft's key countersigned.
    let (stored, _) = weft.state.storage.server_keys_json(&synapse.server_name).await.unwrap().expect("Weft stored Synapse's keys");
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["server_name"], synapse.server_name);
    let client = crate::support::synapse::https_client();
    let about_weft = notary_answer(&client, &synapse.base, &weft.server_name).await;
    let weft_key = weft.state.signing_key.key_id();
    assert_eq!(about_weft["verify_keys"][&weft_key]["key"], json!(weft.state.signing_key.public_key_base64));
    assert!(about_weft["signatures"][&weft.server_name].get(&weft_key).is_some(), "{about_weft}");
    assert!(about_weft["signatures"].get(&synapse.server_name).is_some(), "Synapse countersigns: {about_weft}");
    // And Weft, as a notary, serves Synapse's keys countersigned.
    let about_synapse = notary_answer(&client, &weft.federation_base(), &synapse.server_name).await;
    assert!(about_synapse["signatures"].get(&synapse.server_name).is_some() && about_synapse["signatures"].get(&weft.server_name).is_some(), "{about_synapse}");
}

async fn weft_and_weft_ask_each_other_and_keys_come_through_a_notary(backend: Backend) {
    let one = TestServer::builder(backend).federation().start().await;
    let two = TestServer::builder(backend).federation().start().await;
    ask_across(&one, &two, "1").await;
    ask_across(&two, &one, "2").await;

    // A third server trusting `one` as its notary learns `two`'s key from it:
    // the answer it keeps carries `one`'s signature beside `two`'s.
    let three = TestServer::builder(backend).federation().config(&format!("trusted_key_servers = [{{ server_name = \"{}\" }}]", one.server_name)).start().await;
    let key_id = two.state.signing_key.key_id();
    let now: i64 = MilliSecondsSinceUnixEpoch::now().get().into();
    let key = three.state.federation.keys.key(&two.state.server_name, &key_id, now).await.expect("fetched").expect("two's key");
    assert_eq!(key.encode(), two.state.signing_key.public_key_base64);
    let (stored, valid_until) = three.state.storage.server_keys_json(&two.server_name).await.unwrap().expect("stored");
    assert!(valid_until > now);
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert!(stored["signatures"].get(&one.server_name).is_some(), "the notary's signature: {stored}");
    assert!(stored["signatures"].get(&two.server_name).is_some(), "the origin's signature: {stored}");
    // A key id the server does not have is not found, and asking again costs no fetch.
    assert!(three.state.federation.keys.key(&two.state.server_name, "ed25519:nope", now).await.unwrap().is_none());
    // The keys survive a restart (read back from the database).
    let three = three.restart().await;
    let again = three.state.federation.keys.key(&two.state.server_name, &key_id, now).await.unwrap().expect("from the database");
    assert_eq!(again.encode(), two.state.signing_key.public_key_base64);
}
