//! Profiles and their propagation into rooms.

use http::StatusCode;
use serde_json::json;

use crate::{
    on_both_backends,
    rooms::create_room,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(profile_fields_round_trip, display_names_propagate_into_joined_rooms);

async fn profile_fields_round_trip(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let profile = format!("/_matrix/client/v3/profile/{}", alice.user_id);
    let (status, body) = server.get(&profile, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"displayname": "alice"})), "the local part by default");

    let token = Some(alice.access_token.as_str());
    let (status, _) = server.put(&format!("{profile}/displayname"), token, json!({"displayname": "Alice A."})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.put(&format!("{profile}/avatar_url"), token, json!({"avatar_url": "mxc://example.org/abc"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.put(&format!("{profile}/org.example.pronouns"), token, json!({"org.example.pronouns": "she/her"})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server.get(&profile, None).await;
    assert_eq!(body, json!({"displayname": "Alice A.", "avatar_url": "mxc://example.org/abc", "org.example.pronouns": "she/her"}));
    let (_, body) = server.get(&format!("{profile}/displayname"), None).await;
    assert_eq!(body, json!({"displayname": "Alice A."}));

    let (status, body) = server.put(&format!("{profile}/displayname"), Some(&bob.access_token), json!({"displayname": "Mallory"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"));
    let (status, body) = server.put(&format!("{profile}/displayname"), token, json!({"displayname": "x".repeat(300)})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"));
    let (status, _) = server.put(&format!("{profile}/avatar_url"), token, json!({"avatar_url": "https://not.mxc/x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let long = format!("mxc://example.org/{}", "a".repeat(1000));
    let (status, body) = server.put(&format!("{profile}/avatar_url"), token, json!({"avatar_url": long})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"), "Synapse's 1000-character limit: {body}");
    let (status, body) = server.put(&format!("{profile}/displayname"), token, json!({"avatar_url": "mxc://example.org/abc"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"), "{body}");
    let (status, body) = server.put(&format!("{profile}/displayname"), token, json!({"displayname": 7})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(server.get(&format!("{profile}/displayname"), None).await.1, json!({"displayname": "Alice A."}), "nothing changed");

    // An empty display name or avatar URL removes it, as Synapse does and Element expects.
    for field in ["avatar_url", "displayname"] {
        let (status, body) = server.put(&format!("{profile}/{field}"), token, json!({field: ""})).await;
        assert_eq!(status, StatusCode::OK, "{field}: {body}");
        let (status, body) = server.get(&format!("{profile}/{field}"), None).await;
        assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{field}: {body}");
    }
    let (_, body) = server.get(&profile, None).await;
    assert_eq!(body, json!({"org.example.pronouns": "she/her"}));
    // Other keys are ignored, as Synapse ignores them.
    let (status, body) = server.put(&format!("{profile}/displayname"), token, json!({"displayname": "Alice A.", "avatar_url": "mxc://x/y"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.get(&format!("{profile}/avatar_url"), None).await.0, StatusCode::NOT_FOUND, "only the named field is set");

    let (status, _) = server.delete(&format!("{profile}/org.example.pronouns"), token, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.get(&format!("{profile}/org.example.pronouns"), None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    let (status, body) = server.get(&format!("/_matrix/client/v3/profile/@nobody:{}", server.server_name), None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
}

async fn display_names_propagate_into_joined_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    let left = create_room(&server, &alice.access_token, json!({})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{left}/leave"), Some(&alice.access_token), json!({})).await;
    let member_path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", alice.user_id);
    let (_, member) = server.get(&member_path, Some(&alice.access_token)).await;
    assert_eq!(member["displayname"], "alice");

    let (status, _) =
        server.put(&format!("/_matrix/client/v3/profile/{}/displayname", alice.user_id), Some(&alice.access_token), json!({"displayname": "Alice"})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, member) = server.get(&member_path, Some(&alice.access_token)).await;
    assert_eq!(member, json!({"membership": "join", "displayname": "Alice"}));
    let (_, members) = server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), Some(&alice.access_token)).await;
    assert_eq!(members["joined"][&alice.user_id]["display_name"], "Alice");
    let (_, member) = server.get(&format!("/_matrix/client/v3/rooms/{left}/state/m.room.member/{}", alice.user_id), Some(&alice.access_token)).await;
    assert_eq!(member["membership"], "leave", "rooms left are not touched");

    // A room joined later gets the new name in the join event.
    let bob = server.register("bob", "pw").await;
    let public = create_room(&server, &bob.access_token, json!({"preset": "public_chat"})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{public}/join"), Some(&alice.access_token), json!({})).await;
    let (_, member) = server.get(&format!("/_matrix/client/v3/rooms/{public}/state/m.room.member/{}", alice.user_id), Some(&alice.access_token)).await;
    assert_eq!(member["displayname"], "Alice");
}
