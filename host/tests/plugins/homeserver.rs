//! The capability-gated `homeserver` view through a real server: a plugin
//! granted it reads real accounts, profiles and rooms (the test guest
//! `misbehave` in its `homeserver` mode rejects an invite with every answer
//! as a field); without a part of the grant it gets `not-granted` for that
//! part; and `spam-rules`' `min_age_secs` refuses a fresh account.

use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde_json::{Value, json};

use super::guest;
use crate::{
    on_both_backends,
    rooms::create_room,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(a_granted_plugin_reads_real_users_and_rooms, without_the_grant_the_view_answers_not_granted, min_age_refuses_a_fresh_account);

fn probe(grant: &str) -> String {
    format!(
        "[[plugins]]\nname = \"probe\"\npath = {:?}\n[plugins.config]\nmode = \"homeserver\"\n[plugins.capabilities]\nhomeserver = {grant}\n",
        guest("misbehave").display().to_string()
    )
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Alice (registered between `before` and `after`) creates a room and
/// invites Bob; the probe refuses the invite with what it saw.
async fn invite_seen(server: &TestServer) -> (Value, u64, u64, String, String) {
    let before = now_ms();
    let alice = server.register("alice", "pw").await;
    let after = now_ms();
    let bob = server.register("bob", "pw").await;
    let room = create_room(server, &alice.access_token, json!({"preset": "private_chat"})).await;
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), Some(&alice.access_token), json!({"user_id": bob.user_id})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    (body, before, after, alice.user_id, room)
}

async fn a_granted_plugin_reads_real_users_and_rooms(backend: Backend) {
    let server = TestServer::builder(backend).config(&probe("[\"users\", \"rooms\"]")).start().await;
    let (seen, before, after, alice, room) = invite_seen(&server).await;
    let inviter = &seen["inviter"]["ok"];
    let created = inviter["created_ms"].as_u64().expect("alice's account");
    assert!((before..=after).contains(&created), "{created} not in {before}..={after}");
    assert_eq!((&inviter["admin"], &inviter["deactivated"], &inviter["is_guest"]), (&json!(false), &json!(false), &json!(false)));
    assert_eq!(seen["invitee_profile"]["ok"], json!({"displayname": "bob", "avatar_url": null}));
    assert_eq!(seen["inviter_membership"]["ok"], json!("join"));
    assert_eq!(seen["invitee_membership"], json!({"ok": null}), "bob has no membership yet");
    let create = &seen["create"]["ok"];
    assert_eq!((&create["type"], &create["sender"], &create["room_id"]), (&json!("m.room.create"), &json!(alice), &json!(room)), "{create}");
    assert!(create["event_id"].is_string() && create["content"].is_object(), "{create}");
    assert_eq!(seen["members"]["ok"], json!([alice]));
    assert!(seen["bad_id"]["error"].as_str().is_some_and(|e| e.starts_with("invalid argument")), "{seen}");
}

async fn without_the_grant_the_view_answers_not_granted(backend: Backend) {
    let server = TestServer::builder(backend).config(&probe("[\"users\"]")).start().await;
    let (seen, ..) = invite_seen(&server).await;
    assert!(seen["inviter"]["ok"]["created_ms"].is_u64(), "users are granted: {seen}");
    for key in ["inviter_membership", "invitee_membership", "create", "members"] {
        let error = seen[key]["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("not granted") && error.contains("capabilities.homeserver = [\"rooms\"]"), "{key}: {seen}");
    }
}

async fn min_age_refuses_a_fresh_account(backend: Backend) {
    let plugin = format!(
        "[[plugins]]\nname = \"rules\"\npath = {:?}\n[plugins.config]\nmin_age_secs = 3600\n[plugins.capabilities]\nhomeserver = [\"users\"]\n",
        guest("spam_rules").display().to_string()
    );
    let server = TestServer::builder(backend).config(&plugin).start().await;
    let alice = server.register("alice", "pw").await;
    let (status, body) = server.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    assert_eq!(body["error"], "Your account is too new to create rooms");
    let retry = body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!((3_500_000..=3_600_000).contains(&retry), "{retry}");
}
