//! Server-side key backup: `/room_keys/version` and `/room_keys/keys`.

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(
    versions_count_up_and_are_never_reused,
    creating_a_version_needs_algorithm_and_auth_data,
    updating_a_version,
    keys_at_every_level,
    better_keys_replace_worse_ones,
    keys_go_to_the_current_version_only,
    malformed_keys_store_nothing,
    deleting_keys_and_versions,
);

const ALGORITHM: &str = "m.megolm_backup.v1.curve25519-aes-sha2";
const ROOM: &str = "!room:example.org";
const OTHER_ROOM: &str = "!other:example.org";

fn version_body(public_key: &str) -> Value {
    json!({"algorithm": ALGORITHM, "auth_data": {"public_key": public_key, "signatures": {}}})
}

/// A session key; `marker` tells stored copies apart.
fn key(first_message_index: u64, forwarded_count: u64, is_verified: bool, marker: &str) -> Value {
    json!({
        "first_message_index": first_message_index,
        "forwarded_count": forwarded_count,
        "is_verified": is_verified,
        "session_data": {"ephemeral": "eph", "ciphertext": marker, "mac": "mac"},
    })
}

fn keys_path(version: &str) -> String {
    format!("/_matrix/client/v3/room_keys/keys?version={version}")
}

fn room_path(room: &str, version: &str) -> String {
    format!("/_matrix/client/v3/room_keys/keys/{room}?version={version}")
}

fn session_path(room: &str, session: &str, version: &str) -> String {
    format!("/_matrix/client/v3/room_keys/keys/{room}/{session}?version={version}")
}

async fn create_version(server: &TestServer, token: &str) -> String {
    let (status, body) = server.post("/_matrix/client/v3/room_keys/version", Some(token), version_body("key")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["version"].as_str().expect("version is a string").to_owned()
}

async fn version_info(server: &TestServer, token: &str, version: &str) -> Value {
    let (status, body) = server.get(&format!("/_matrix/client/v3/room_keys/version/{version}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn versions_count_up_and_are_never_reused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let token = Some(alice.access_token.as_str());
    let (status, body) = server.get("/_matrix/client/v3/room_keys/version", token).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));

    assert_eq!(create_version(&server, &alice.access_token).await, "1");
    let (status, body) = server.post("/_matrix/client/v3/room_keys/version", token, version_body("second")).await;
    assert_eq!((status, body["version"].as_str()), (StatusCode::OK, Some("2")));
    assert_eq!(create_version(&server, &bob.access_token).await, "1", "versions count per user");

    let (status, latest) = server.get("/_matrix/client/v3/room_keys/version", token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest, json!({"algorithm": ALGORITHM, "auth_data": {"public_key": "second", "signatures": {}}, "count": 0, "etag": "0", "version": "2"}));
    assert_eq!(version_info(&server, &alice.access_token, "1").await["auth_data"]["public_key"], "key");
    for unknown in ["3", "abc", "-1", "1.0", "99999999999999999999999"] {
        let (status, body) = server.get(&format!("/_matrix/client/v3/room_keys/version/{unknown}"), token).await;
        assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "version {unknown}");
    }

    let (status, _) = server.delete("/_matrix/client/v3/room_keys/version/2", token, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, latest) = server.get("/_matrix/client/v3/room_keys/version", token).await;
    assert_eq!(latest["version"], "1", "the latest live version is current again");
    let (status, body) = server.get("/_matrix/client/v3/room_keys/version/2", token).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    let (status, body) = server.delete("/_matrix/client/v3/room_keys/version/2", token, json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "already deleted");
    let (status, body) = server.delete("/_matrix/client/v3/room_keys/version/x", token, json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    assert_eq!(create_version(&server, &alice.access_token).await, "3", "a deleted version's number is not reused");

    // Bob's version 1 is not Alice's.
    let (status, _) = server.delete("/_matrix/client/v3/room_keys/version/1", Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version_info(&server, &alice.access_token, "1").await["version"], "1");
    let (status, _) = server.get("/_matrix/client/v3/room_keys/version", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn creating_a_version_needs_algorithm_and_auth_data(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());
    let cases = [
        (json!({"auth_data": {}}), "M_MISSING_PARAM"),
        (json!({"algorithm": ALGORITHM}), "M_MISSING_PARAM"),
        (json!({"algorithm": ALGORITHM, "auth_data": "not an object"}), "M_BAD_JSON"),
        (json!({"algorithm": 7, "auth_data": {}}), "M_BAD_JSON"),
        (json!(["not", "an", "object"]), "M_BAD_JSON"),
    ];
    for (body, expected) in cases {
        let (status, reply) = server.post("/_matrix/client/v3/room_keys/version", token, body.clone()).await;
        assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, expected), "{body}");
    }
    let (status, _) = server.get("/_matrix/client/v3/room_keys/version", token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was created");
    // Any algorithm is stored as given, with its auth_data.
    let custom = json!({"algorithm": "org.example.custom", "auth_data": {"anything": [1, 2]}});
    let (status, body) = server.post("/_matrix/client/v3/room_keys/version", token, custom).await;
    assert_eq!((status, body["version"].as_str()), (StatusCode::OK, Some("1")));
    let info = version_info(&server, &alice.access_token, "1").await;
    assert_eq!((info["algorithm"].as_str(), &info["auth_data"]), (Some("org.example.custom"), &json!({"anything": [1, 2]})));
}

async fn updating_a_version(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());
    create_version(&server, &alice.access_token).await;
    let path = "/_matrix/client/v3/room_keys/version/1";

    let (status, body) = server.put(path, token, version_body("rotated")).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({})));
    assert_eq!(version_info(&server, &alice.access_token, "1").await["auth_data"]["public_key"], "rotated");
    let mut with_version = version_body("again");
    with_version["version"] = json!("1");
    assert_eq!(server.put(path, token, with_version).await.0, StatusCode::OK, "the body may repeat the version");

    let mut other_version = version_body("wrong");
    other_version["version"] = json!("2");
    let (status, body) = server.put(path, token, other_version).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"));
    let other_algorithm = json!({"algorithm": "org.example.other", "auth_data": {"public_key": "wrong"}});
    let (status, body) = server.put(path, token, other_algorithm).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "the algorithm cannot change");
    let (status, body) = server.put(path, token, json!({"algorithm": ALGORITHM})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"));
    for unknown in ["2", "one"] {
        let (status, body) = server.put(&format!("/_matrix/client/v3/room_keys/version/{unknown}"), token, version_body("wrong")).await;
        assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    }
    assert_eq!(version_info(&server, &alice.access_token, "1").await["auth_data"]["public_key"], "again", "failures changed nothing");

    server.delete(path, token, json!({})).await;
    let (status, body) = server.put(path, token, version_body("deleted")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
}

async fn keys_at_every_level(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());
    create_version(&server, &alice.access_token).await;

    let (status, body) = server.get(&keys_path("1"), token).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"rooms": {}})));
    let (status, body) = server.get(&room_path(ROOM, "1"), token).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"sessions": {}})));
    let (status, body) = server.get(&session_path(ROOM, "s1", "1"), token).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));

    let (status, body) = server.put(&session_path(ROOM, "s1", "1"), token, key(0, 0, false, "one")).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"etag": "1", "count": 1})));
    let (status, body) = server.put(&room_path(ROOM, "1"), token, json!({"sessions": {"s2": key(1, 0, true, "two")}})).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"etag": "2", "count": 2})));
    let all = json!({"rooms": {OTHER_ROOM: {"sessions": {"s3": key(2, 1, false, "three"), "s4": key(0, 0, false, "four")}}}});
    let (status, body) = server.put(&keys_path("1"), token, all).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"etag": "3", "count": 4})));

    let (status, body) = server.get(&session_path(ROOM, "s1", "1"), token).await;
    assert_eq!((status, &body), (StatusCode::OK, &key(0, 0, false, "one")));
    let (status, body) = server.get(&room_path(ROOM, "1"), token).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"sessions": {"s1": key(0, 0, false, "one"), "s2": key(1, 0, true, "two")}})));
    let (status, body) = server.get(&keys_path("1"), token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"rooms": {
            ROOM: {"sessions": {"s1": key(0, 0, false, "one"), "s2": key(1, 0, true, "two")}},
            OTHER_ROOM: {"sessions": {"s3": key(2, 1, false, "three"), "s4": key(0, 0, false, "four")}},
        }})
    );
    let (status, body) = server.get(&session_path(OTHER_ROOM, "s1", "1"), token).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "s1 is in the other room");
    let info = version_info(&server, &alice.access_token, "1").await;
    assert_eq!((&info["count"], &info["etag"]), (&json!(4), &json!("3")));

    // Reading any live version works, the current one or not; unknown ones are 404.
    create_version(&server, &alice.access_token).await;
    assert_eq!(server.get(&keys_path("1"), token).await.1["rooms"][ROOM]["sessions"]["s1"], key(0, 0, false, "one"));
    for path in [keys_path("7"), room_path(ROOM, "7"), session_path(ROOM, "s1", "7"), keys_path("x")] {
        let (status, body) = server.get(&path, token).await;
        assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{path}");
    }
    let (status, body) = server.get("/_matrix/client/v3/room_keys/keys", token).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"), "version is required");
    let bob = server.register("bob", "pw").await;
    let (status, _) = server.get(&keys_path("1"), Some(&bob.access_token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's backup is not visible");
}

async fn better_keys_replace_worse_ones(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());
    create_version(&server, &alice.access_token).await;
    let path = session_path(ROOM, "s", "1");
    let put = |key: Value| {
        let server = &server;
        let path = path.clone();
        async move {
            let (status, body) = server.put(&path, token, key).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["etag"].as_str().expect("etag").to_owned()
        }
    };
    let stored = || async { server.get(&path, token).await.1 };

    let mut etag = put(key(5, 2, false, "first")).await;
    // (upload, whether it replaces the stored key)
    let steps = [
        (key(6, 0, false, "later index"), false),
        (key(5, 3, false, "more forwarded"), false),
        (key(5, 2, false, "equal"), false),
        (key(5, 1, false, "fewer forwards"), true),
        (key(3, 9, false, "earlier index"), true),
        (key(10, 10, true, "verified"), true),
        (key(0, 0, false, "unverified but earlier"), false),
        (key(10, 9, true, "verified, fewer forwards"), true),
        (key(9, 20, true, "verified, earlier index"), true),
    ];
    for (upload, replaces) in steps {
        let before = stored().await;
        let new_etag = put(upload.clone()).await;
        let after = stored().await;
        if replaces {
            assert_eq!(after, upload, "{upload} should replace {before}");
            assert_ne!(new_etag, etag, "the etag moves when a key changes");
        } else {
            assert_eq!(after, before, "{upload} should not replace {before}");
            assert_eq!(new_etag, etag, "the etag stays when nothing changes");
        }
        etag = new_etag;
    }
    let info = version_info(&server, &alice.access_token, "1").await;
    assert_eq!((&info["count"], info["etag"].as_str()), (&json!(1), Some(etag.as_str())));
}

async fn keys_go_to_the_current_version_only(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());
    let (status, body) = server.put(&session_path(ROOM, "s", "1"), token, key(0, 0, false, "k")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "no backup at all");

    create_version(&server, &alice.access_token).await;
    create_version(&server, &alice.access_token).await;
    let uploads = [
        (session_path(ROOM, "s", "1"), key(0, 0, false, "k")),
        (room_path(ROOM, "1"), json!({"sessions": {"s": key(0, 0, false, "k")}})),
        (keys_path("1"), json!({"rooms": {ROOM: {"sessions": {"s": key(0, 0, false, "k")}}}})),
    ];
    for (path, upload) in &uploads {
        let (status, body) = server.put(path, token, upload.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(body["errcode"], "M_WRONG_ROOM_KEYS_VERSION");
        assert_eq!(body["current_version"], "2");
    }
    for version in ["3", "x", ""] {
        let (status, body) = server.put(&session_path(ROOM, "s", version), token, key(0, 0, false, "k")).await;
        assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "version {version:?}");
    }
    let (status, body) = server.put(&format!("/_matrix/client/v3/room_keys/keys/{ROOM}/s"), token, key(0, 0, false, "k")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"));
    for version in ["1", "2"] {
        let info = version_info(&server, &alice.access_token, version).await;
        assert_eq!((&info["count"], &info["etag"]), (&json!(0), &json!("0")), "nothing stored in version {version}");
    }

    // Once version 2 is deleted, version 1 is current again and takes keys.
    server.delete("/_matrix/client/v3/room_keys/version/2", token, json!({})).await;
    let (status, body) = server.put(&session_path(ROOM, "s", "2"), token, key(0, 0, false, "k")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "a deleted version is unknown");
    let (status, body) = server.put(&session_path(ROOM, "s", "1"), token, key(0, 0, false, "k")).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"etag": "1", "count": 1})));
}

async fn malformed_keys_store_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());
    create_version(&server, &alice.access_token).await;
    let mut no_verified = key(0, 0, false, "k");
    no_verified.as_object_mut().unwrap().remove("is_verified");
    let mut no_data = key(0, 0, false, "k");
    no_data.as_object_mut().unwrap().remove("session_data");
    let mut verified_string = key(0, 0, false, "k");
    verified_string["is_verified"] = json!("yes");
    let mut negative = key(0, 0, false, "k");
    negative["first_message_index"] = json!(-1);
    let mut data_string = key(0, 0, false, "k");
    data_string["session_data"] = json!("opaque");
    let cases = [
        (no_verified, "M_MISSING_PARAM"),
        (no_data, "M_MISSING_PARAM"),
        (verified_string, "M_INVALID_PARAM"),
        (negative, "M_INVALID_PARAM"),
        (data_string, "M_INVALID_PARAM"),
    ];
    for (bad, expected) in cases {
        let (status, body) = server.put(&session_path(ROOM, "s", "1"), token, bad.clone()).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, expected), "{bad}");
        // A bad key among good ones: the whole upload is refused.
        let upload = json!({"rooms": {ROOM: {"sessions": {"good": key(0, 0, false, "k"), "bad": bad}}}});
        let (status, body) = server.put(&keys_path("1"), token, upload).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, expected));
    }
    let (status, body) = server.put(&keys_path("1"), token, json!({"rooms": {"not a room id": {"sessions": {}}}})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"));
    let (status, body) = server.put(&room_path(ROOM, "1"), token, json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"));
    let info = version_info(&server, &alice.access_token, "1").await;
    assert_eq!((&info["count"], &info["etag"]), (&json!(0), &json!("0")));
}

async fn deleting_keys_and_versions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());
    create_version(&server, &alice.access_token).await;
    let all = json!({"rooms": {
        ROOM: {"sessions": {"a": key(0, 0, false, "a"), "b": key(0, 0, false, "b")}},
        OTHER_ROOM: {"sessions": {"c": key(0, 0, false, "c"), "d": key(0, 0, false, "d")}},
    }});
    let (_, body) = server.put(&keys_path("1"), token, all.clone()).await;
    assert_eq!(body, json!({"etag": "1", "count": 4}));

    let (status, body) = server.delete(&session_path(ROOM, "a", "1"), token, json!({})).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"etag": "2", "count": 3})));
    let (status, body) = server.delete(&session_path(ROOM, "a", "1"), token, json!({})).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"etag": "2", "count": 3})), "deleting nothing keeps the etag");
    let (status, body) = server.delete(&room_path(OTHER_ROOM, "1"), token, json!({})).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"etag": "3", "count": 1})));
    let (_, body) = server.get(&keys_path("1"), token).await;
    assert_eq!(body, json!({"rooms": {ROOM: {"sessions": {"b": key(0, 0, false, "b")}}}}));
    let (status, body) = server.delete(&keys_path("1"), token, json!({})).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"etag": "4", "count": 0})));
    assert_eq!(server.get(&keys_path("1"), token).await.1, json!({"rooms": {}}));

    for path in [keys_path("2"), room_path(ROOM, "2"), session_path(ROOM, "a", "2"), keys_path("x")] {
        let (status, body) = server.delete(&path, token, json!({})).await;
        assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{path}");
    }

    // Deleting a version deletes its keys; the next version starts empty.
    server.put(&keys_path("1"), token, all).await;
    let (status, _) = server.delete("/_matrix/client/v3/room_keys/version/1", token, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.get(&keys_path("1"), token).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    let (status, body) = server.delete(&keys_path("1"), token, json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    let version = create_version(&server, &alice.access_token).await;
    assert_eq!(server.get(&keys_path(&version), token).await.1, json!({"rooms": {}}));
    assert_eq!(version_info(&server, &alice.access_token, &version).await["count"], 0);
}
