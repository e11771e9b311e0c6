//! End-to-end keys: upload (device, one-time, fallback), query, claim,
//! changes, device lists and key counts in `/sync`, and cross-signing with
//! signature uploads. Keys are signed with real ed25519 keys.

use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use http::StatusCode;
use ruma::{CanonicalJsonObject, signatures::Ed25519KeyPair};
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::create_room,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(device_keys_one_time_keys_and_fallbacks, cross_signing_and_signature_uploads, a_verification_of_another_user_is_shown_to_the_verifier_alone,);

/// An ed25519 key a client would hold: its PKCS#8 document and public part.
struct Signer {
    der: Vec<u8>,
    public: String,
}

impl Signer {
    /// Signs `object` as `user` with this key named `ed25519:{name}`.
    fn sign(&self, user: &str, name: &str, object: Value) -> Value {
        let mut canonical: CanonicalJsonObject = serde_json::from_value(object).unwrap();
        let pair = Ed25519KeyPair::from_der(&self.der, name.into()).unwrap();
        ruma::signatures::sign_json(user, &pair, &mut canonical).unwrap();
        serde_json::to_value(canonical).unwrap()
    }
}

fn signer() -> Signer {
    let der = Ed25519KeyPair::generate().to_vec();
    let pair = Ed25519KeyPair::from_der(&der, "x".into()).unwrap();
    Signer { public: STANDARD_NO_PAD.encode(pair.public_key()), der }
}

fn device_keys(server: &TestServer, user: &str, device: &str, key: &Signer) -> Value {
    let keys = json!({
        "user_id": server.user_id(user),
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {format!("curve25519:{device}"): "curvekey", format!("ed25519:{device}"): key.public},
    });
    key.sign(&server.user_id(user), device, keys)
}

async fn sync(server: &TestServer, token: &str, since: Option<&str>) -> Value {
    let path = since.map_or("/_matrix/client/v3/sync".to_owned(), |since| format!("/_matrix/client/v3/sync?since={since}&timeout=0"));
    server.get(&path, Some(token)).await.1
}

async fn device_keys_one_time_keys_and_fallbacks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"invite": [server.user_id("bob")]})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&bob.access_token), json!({})).await;
    let since = sync(&server, &alice.access_token, None).await["next_batch"].as_str().unwrap().to_owned();

    let key = signer();
    let signed = device_keys(&server, "bob", &bob.device_id, &key);
    let otk = key.sign(&server.user_id("bob"), &bob.device_id, json!({"key": "otk1"}));
    let fallback = key.sign(&server.user_id("bob"), &bob.device_id, json!({"key": "fb1", "fallback": true}));

    let mut forged = signed.clone();
    forged["keys"][format!("curve25519:{}", bob.device_id)] = json!("other");
    let (status, body) = server.post("/_matrix/client/v3/keys/upload", Some(&bob.access_token), json!({"device_keys": forged})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "bad signature: {body}");
    let (status, body) = server.post("/_matrix/client/v3/keys/upload", Some(&alice.access_token), json!({"device_keys": signed})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "another user's keys: {body}");

    let upload = json!({
        "device_keys": signed,
        "one_time_keys": {"signed_curve25519:AAAA": otk},
        "fallback_keys": {"signed_curve25519:FFFF": fallback},
    });
    let (status, body) = server.post("/_matrix/client/v3/keys/upload", Some(&bob.access_token), upload).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["one_time_key_counts"]["signed_curve25519"], 1);
    let (status, body) = server
        .post("/_matrix/client/v3/keys/upload", Some(&bob.access_token), json!({"one_time_keys": {"signed_curve25519:AAAA": {"key": "different"}}}))
        .await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "a key id reused with other content");

    let body = sync(&server, &alice.access_token, Some(&since)).await;
    assert!(body["device_lists"]["changed"].as_array().unwrap().contains(&json!(server.user_id("bob"))), "{body}");
    let (status, body) =
        server.get(&format!("/_matrix/client/v3/keys/changes?from={since}&to={}", body["next_batch"].as_str().unwrap()), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["changed"].as_array().unwrap().contains(&json!(server.user_id("bob"))), "{body}");
    let bob_sync = sync(&server, &bob.access_token, None).await;
    assert_eq!(bob_sync["device_one_time_keys_count"]["signed_curve25519"], 1, "{bob_sync}");
    assert_eq!(bob_sync["device_unused_fallback_key_types"], json!(["signed_curve25519"]));

    let (status, body) = server.post("/_matrix/client/v3/keys/query", Some(&alice.access_token), json!({"device_keys": {server.user_id("bob"): []}})).await;
    assert_eq!(status, StatusCode::OK);
    let keys = &body["device_keys"][server.user_id("bob")][&bob.device_id];
    assert_eq!(keys["keys"][format!("ed25519:{}", bob.device_id)], json!(key.public), "{body}");
    assert!(keys["unsigned"].is_object());

    let claim = json!({"one_time_keys": {server.user_id("bob"): {bob.device_id.clone(): "signed_curve25519"}}});
    let (_, first) = server.post("/_matrix/client/v3/keys/claim", Some(&alice.access_token), claim.clone()).await;
    assert_eq!(first["one_time_keys"][server.user_id("bob")][&bob.device_id]["signed_curve25519:AAAA"]["key"], "otk1", "{first}");
    let (_, second) = server.post("/_matrix/client/v3/keys/claim", Some(&alice.access_token), claim.clone()).await;
    assert_eq!(second["one_time_keys"][server.user_id("bob")][&bob.device_id]["signed_curve25519:FFFF"]["key"], "fb1", "the fallback: {second}");
    let bob_sync = sync(&server, &bob.access_token, None).await;
    assert_eq!(bob_sync["device_one_time_keys_count"]["signed_curve25519"], 0);
    assert_eq!(bob_sync["device_unused_fallback_key_types"], json!([]), "the fallback key was used");

    // Deleting the device deletes its keys.
    let (status, _) = server.post("/_matrix/client/v3/logout", Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server.post("/_matrix/client/v3/keys/query", Some(&alice.access_token), json!({"device_keys": {server.user_id("bob"): []}})).await;
    assert_eq!(body["device_keys"][server.user_id("bob")], json!({}), "{body}");
}

async fn cross_signing_and_signature_uploads(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let alice_id = server.user_id("alice");
    let device_key = signer();
    let (status, _) = server
        .post("/_matrix/client/v3/keys/upload", Some(&alice.access_token), json!({"device_keys": device_keys(&server, "alice", &alice.device_id, &device_key)}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let (master, self_signing, user_signing) = (signer(), signer(), signer());
    let cross_key = |usage: &str, key: &Signer| json!({"user_id": alice_id, "usage": [usage], "keys": {format!("ed25519:{}", key.public): key.public}});
    let master_key = cross_key("master", &master);
    let ssk = master.sign(&alice_id, &master.public, cross_key("self_signing", &self_signing));
    let usk = master.sign(&alice_id, &master.public, cross_key("user_signing", &user_signing));
    let unsigned_ssk = cross_key("self_signing", &self_signing);

    let (status, body) = server
        .post("/_matrix/client/v3/keys/device_signing/upload", Some(&alice.access_token), json!({"master_key": master_key, "self_signing_key": unsigned_ssk}))
        .await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_SIGNATURE"), "{body}");
    let upload = json!({"master_key": master_key, "self_signing_key": ssk, "user_signing_key": usk});
    let (status, body) = server.post("/_matrix/client/v3/keys/device_signing/upload", Some(&alice.access_token), upload).await;
    assert_eq!(status, StatusCode::OK, "the first upload needs no UIA: {body}");
    let other_master = signer();
    let (status, body) = server
        .post("/_matrix/client/v3/keys/device_signing/upload", Some(&alice.access_token), json!({"master_key": cross_key("master", &other_master)}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "replacing keys needs UIA: {body}");
    assert!(body["flows"].is_array());

    // The self-signing key signs alice's device.
    let stored = server.post("/_matrix/client/v3/keys/query", Some(&alice.access_token), json!({"device_keys": {alice_id.clone(): []}})).await.1;
    let mut device = stored["device_keys"][&alice_id][&alice.device_id].clone();
    device.as_object_mut().unwrap().remove("unsigned");
    let signed_device = self_signing.sign(&alice_id, &self_signing.public, device);
    let (status, body) = server
        .post("/_matrix/client/v3/keys/signatures/upload", Some(&alice.access_token), json!({alice_id.clone(): {alice.device_id.clone(): signed_device}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["failures"].as_object().is_none_or(|failures| failures.is_empty()), "{body}");
    // A signature by a key alice does not own fails.
    let bogus = signer().sign(&alice_id, &self_signing.public, stored["device_keys"][&alice_id][&alice.device_id].clone());
    let (_, body) =
        server.post("/_matrix/client/v3/keys/signatures/upload", Some(&alice.access_token), json!({alice_id.clone(): {alice.device_id.clone(): bogus}})).await;
    assert_eq!(body["failures"][&alice_id][&alice.device_id]["errcode"], "M_INVALID_SIGNATURE", "{body}");

    let (_, body) = server.post("/_matrix/client/v3/keys/query", Some(&bob.access_token), json!({"device_keys": {alice_id.clone(): []}})).await;
    let signatures = &body["device_keys"][&alice_id][&alice.device_id]["signatures"][&alice_id];
    assert!(signatures[format!("ed25519:{}", self_signing.public)].is_string(), "{body}");
    assert_eq!(body["master_keys"][&alice_id]["keys"][format!("ed25519:{}", master.public)], json!(master.public));
    assert!(body["self_signing_keys"][&alice_id].is_object());
    assert!(body["user_signing_keys"].get(&alice_id).is_none(), "only alice sees her user-signing key: {body}");
    let (_, own) = server.post("/_matrix/client/v3/keys/query", Some(&alice.access_token), json!({"device_keys": {alice_id.clone(): []}})).await;
    assert!(own["user_signing_keys"][&alice_id].is_object());
}

/// Bob signs alice's master key with his user-signing key (he verified her):
/// bob and alice's own keys are what anyone sees, bob's signature only bob.
async fn a_verification_of_another_user_is_shown_to_the_verifier_alone(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let (alice_id, bob_id) = (server.user_id("alice"), server.user_id("bob"));
    let cross_key = |user: &str, usage: &str, key: &Signer| json!({"user_id": user, "usage": [usage], "keys": {format!("ed25519:{}", key.public): key.public}});
    let alice_master = signer();
    let (status, body) = server
        .post("/_matrix/client/v3/keys/device_signing/upload", Some(&alice.access_token), json!({"master_key": cross_key(&alice_id, "master", &alice_master)}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (bob_master, bob_user_signing) = (signer(), signer());
    let usk = bob_master.sign(&bob_id, &bob_master.public, cross_key(&bob_id, "user_signing", &bob_user_signing));
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            Some(&bob.access_token),
            json!({"master_key": cross_key(&bob_id, "master", &bob_master), "user_signing_key": usk}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let verified = bob_user_signing.sign(&bob_id, &bob_user_signing.public, cross_key(&alice_id, "master", &alice_master));
    let (status, body) = server
        .post("/_matrix/client/v3/keys/signatures/upload", Some(&bob.access_token), json!({alice_id.clone(): {alice_master.public.clone(): verified}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["failures"].as_object().is_none_or(|failures| failures.is_empty()), "{body}");

    let bobs_signature = format!("ed25519:{}", bob_user_signing.public);
    let query = json!({"device_keys": {alice_id.clone(): []}});
    let (_, seen_by_bob) = server.post("/_matrix/client/v3/keys/query", Some(&bob.access_token), query.clone()).await;
    assert!(seen_by_bob["master_keys"][&alice_id]["signatures"][&bob_id][&bobs_signature].is_string(), "{seen_by_bob}");
    for (who, token) in [("carol", &carol.access_token), ("alice", &alice.access_token)] {
        let (_, seen) = server.post("/_matrix/client/v3/keys/query", Some(token), query.clone()).await;
        assert_eq!(seen["master_keys"][&alice_id]["keys"][format!("ed25519:{}", alice_master.public)], json!(alice_master.public), "{who}: {seen}");
        assert!(seen["master_keys"][&alice_id]["signatures"].get(&bob_id).is_none(), "{who} sees bob's verification: {seen}");
    }
}
