//! `GET /_matrix/key/v2/server`: the published key verifies its own signature.

use http::StatusCode;
use ruma::{
    CanonicalJsonValue,
    serde::Base64,
    signatures::{PublicKeyMap, PublicKeySet},
};

use crate::{
    on_both_backends,
    support::{Backend, TestServer},
};

on_both_backends!(server_keys_are_self_signed);

async fn server_keys_are_self_signed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.get("/_matrix/key/v2/server", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["server_name"], server.server_name);
    let verify_keys = body["verify_keys"].as_object().unwrap();
    assert_eq!(verify_keys.len(), 1);
    let (key_id, key) = verify_keys.iter().next().unwrap();
    assert!(key_id.starts_with("ed25519:a_"), "{key_id}");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(body["valid_until_ts"].as_u64().unwrap() > now_ms);

    let public = Base64::parse(key["key"].as_str().unwrap()).unwrap();
    let mut set = PublicKeySet::new();
    set.insert(key_id.clone(), public);
    let mut keys = PublicKeyMap::new();
    keys.insert(server.server_name.clone(), set);
    let CanonicalJsonValue::Object(object) = CanonicalJsonValue::try_from(body.clone()).unwrap() else { panic!("object") };
    ruma::signatures::verify_json(&keys, &object).expect("the signature verifies");

    let mut tampered = object.clone();
    tampered.insert("server_name".into(), CanonicalJsonValue::String("evil.example".into()));
    assert!(ruma::signatures::verify_json(&keys, &tampered).is_err());
}
