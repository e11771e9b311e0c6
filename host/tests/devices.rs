//! `/devices` and `/delete_devices`.

use http::StatusCode;
use serde_json::json;

use crate::{
    on_both_backends,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(list_get_and_rename_devices, unknown_devices_are_not_found, deleting_a_device_needs_uia, delete_many_devices);

fn auth(user: &str, password: &str) -> serde_json::Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})
}

async fn list_get_and_rename_devices(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let phone = server.login("alice", "pw").await;
    let (status, body) = server.get("/_matrix/client/v3/devices", Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK);
    let devices = body["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices.iter().all(|d| d["last_seen_ts"].is_u64() && d["last_seen_ip"] == "127.0.0.1"), "{body}");

    let path = format!("/_matrix/client/v3/devices/{}", phone.device_id);
    let (status, _) = server.put(&path, Some(&alice.access_token), json!({"display_name": "Phone"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.get(&path, Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["device_id"], json!(phone.device_id));
    assert_eq!(body["display_name"], "Phone");
    let (status, _) = server.put(&path, Some(&alice.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "no display name leaves it as it is");
    assert_eq!(server.get(&path, Some(&alice.access_token)).await.1["display_name"], "Phone");
    let (status, body) = server.put(&path, Some(&alice.access_token), json!({"display_name": 3})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"));
}

async fn unknown_devices_are_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    // Another user's device is as unknown as a missing one.
    for device in ["NOSUCHDEVICE", bob.device_id.as_str()] {
        let path = format!("/_matrix/client/v3/devices/{device}");
        let (status, body) = server.get(&path, Some(&alice.access_token)).await;
        assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
        let (status, body) = server.put(&path, Some(&alice.access_token), json!({"display_name": "x"})).await;
        assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    }
}

async fn deleting_a_device_needs_uia(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let phone = server.login("alice", "pw").await;
    let path = format!("/_matrix/client/v3/devices/{}", phone.device_id);
    let (status, body) = server.delete(&path, Some(&alice.access_token), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["flows"], json!([{"stages": ["m.login.password"]}]));
    assert_eq!(server.get(&path, Some(&alice.access_token)).await.0, StatusCode::OK, "still there without UIA");
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", Some(&phone.access_token)).await.0, StatusCode::OK);

    let session = body["session"].as_str().unwrap();
    let mut auth = auth("alice", "pw");
    auth["session"] = json!(session);
    let (status, body) = server.delete(&path, Some(&alice.access_token), json!({"auth": auth})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = server.get(&path, Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = server.get("/_matrix/client/v3/account/whoami", Some(&phone.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN"), "its token died with it");

    // The pre-r0.4 form of the password stage, with `user` for `identifier`, is still accepted.
    let laptop = server.login("alice", "pw").await;
    let path = format!("/_matrix/client/v3/devices/{}", laptop.device_id);
    let legacy = json!({"type": "m.login.password", "user": alice.user_id, "password": "pw"});
    let (status, body) = server.delete(&path, Some(&alice.access_token), json!({"auth": legacy})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.get(&path, Some(&alice.access_token)).await.0, StatusCode::NOT_FOUND);
}

async fn delete_many_devices(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let a = server.login("alice", "pw").await;
    let b = server.login("alice", "pw").await;
    let body = json!({"devices": [a.device_id, b.device_id, "UNKNOWN"], "auth": auth("alice", "pw")});
    let (status, reply) = server.post("/_matrix/client/v3/delete_devices", Some(&alice.access_token), body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, list) = server.get("/_matrix/client/v3/devices", Some(&alice.access_token)).await;
    let ids: Vec<_> = list["devices"].as_array().unwrap().iter().map(|d| d["device_id"].clone()).collect();
    assert_eq!(ids, vec![json!(alice.device_id)]);
    let (status, reply) = server.post("/_matrix/client/v3/delete_devices", Some(&alice.access_token), json!({"auth": auth("alice", "pw")})).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"), "{reply}");
}
