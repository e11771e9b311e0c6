//! The `restricted` and `knock_restricted` join rules: joins allowed through
//! membership of another room (with the authorising user named in the join),
//! refused otherwise or when no member may authorise, invited users joining
//! as usual, and knocks.

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::create_room,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(restricted_rooms_admit_members_of_allowed_rooms, knock_restricted_rooms_take_knocks_and_members);

async fn join(server: &TestServer, token: &str, room: &str) -> (StatusCode, Value) {
    server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(token), json!({})).await
}

async fn member(server: &TestServer, token: &str, room: &str, user_id: &str) -> Value {
    let (status, content) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{user_id}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{content}");
    content
}

/// A room whose join rule is `rule`, allowing members of `allowed`.
async fn gated_room(server: &TestServer, token: &str, version: &str, rule: &str, allowed: &str) -> String {
    let join_rules = json!({"join_rule": rule, "allow": [{"type": "m.room_membership", "room_id": allowed}]});
    create_room(server, token, json!({"room_version": version, "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": join_rules}]})).await
}

async fn restricted_rooms_admit_members_of_allowed_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let dave = server.register("dave", "pw").await;
    let space = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    for version in ["10", "11"] {
        let room = gated_room(&server, &alice.access_token, version, "restricted", &space).await;

        let (status, body) = join(&server, &dave.access_token, &room).await;
        assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "v{version}: not in the allowed room: {body}");

        assert_eq!(join(&server, &bob.access_token, &space).await.0, StatusCode::OK);
        let (status, body) = join(&server, &bob.access_token, &room).await;
        assert_eq!(status, StatusCode::OK, "v{version}: a member of the allowed room joins: {body}");
        let content = member(&server, &alice.access_token, &room, &bob.user_id).await;
        assert_eq!(content["membership"], "join");
        assert_eq!(content["join_authorised_via_users_server"], json!(alice.user_id), "v{version}: the room's creator may invite");

        let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), Some(&alice.access_token), json!({"user_id": carol.user_id})).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = join(&server, &carol.access_token, &room).await;
        assert_eq!(status, StatusCode::OK, "v{version}: invited users join without the allowed room: {body}");
        let content = member(&server, &alice.access_token, &room, &carol.user_id).await;
        assert!(content.get("join_authorised_via_users_server").is_none(), "{content}");

        let (status, body) = server.post(&format!("/_matrix/client/v3/knock/{room}"), Some(&dave.access_token), json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "restricted rooms take no knocks: {body}");
    }

    // Nobody left who may invite: the join cannot be authorised.
    let abandoned = gated_room(&server, &alice.access_token, "10", "restricted", &space).await;
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{abandoned}/leave"), Some(&alice.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = join(&server, &bob.access_token, &abandoned).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_UNABLE_TO_GRANT_JOIN"), "{body}");
}

async fn knock_restricted_rooms_take_knocks_and_members(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let space = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    let room = gated_room(&server, &alice.access_token, "10", "knock_restricted", &space).await;

    let (status, body) = server.post(&format!("/_matrix/client/v3/knock/{room}"), Some(&carol.access_token), json!({"reason": "hi"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(member(&server, &alice.access_token, &room, &carol.user_id).await["membership"], "knock");
    let (status, _) = join(&server, &carol.access_token, &room).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a knock is no invite");

    assert_eq!(join(&server, &bob.access_token, &space).await.0, StatusCode::OK);
    let (status, body) = join(&server, &bob.access_token, &room).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(member(&server, &alice.access_token, &room, &bob.user_id).await["join_authorised_via_users_server"], json!(alice.user_id));
}
