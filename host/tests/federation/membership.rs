//! Membership edges across servers, with Synapse 1.163 as the peer and Weft
//! with Weft: an invite rejected by a user whose server is not in the room
//! (Weft's outbound `make_leave`/`send_leave`, and Synapse's through Weft),
//! also when the inviting server is down (the leave made locally, as
//! Synapse); knocking both ways (`make_knock`/`send_knock`; the knock in the
//! knocker's `/sync` with the room's stripped state, and in the resident
//! side's timeline), then let in by an invite, or withdrawn; and the spam
//! checker's federation hooks (`should-drop-federated-event` drops a PDU of a
//! transaction, answered as accepted; `federated-user-may-invite` refuses an
//! invite with 403).

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{
    pdu_checks::{Caller, event_id_of, signed, unsigned_event},
    peers::Peer,
    rooms::{member_is, sync_until, sync_until_in},
};
use crate::{
    on_both_backends,
    plugins::guest,
    support::{Backend, Session, TestServer, encode, errcode, synapse::Synapse},
};

on_both_backends!(
    invites_to_rooms_of_other_servers_are_rejected,
    knocks_across_servers_are_let_in_or_withdrawn,
    weft_knocks_on_weft_rooms,
    the_spam_checker_drops_federated_events_and_refuses_federated_invites
);

/// Syncs (with left rooms) until the room is in `rooms.<section>`; returns
/// that entry. Fails after 60 s.
async fn sync_section(peer: &impl Peer, session: &Session, section: &str, room_id: &str) -> Value {
    let started = Instant::now();
    let mut since: Option<String> = None;
    let filter = encode(r#"{"room":{"include_leave":true}}"#);
    loop {
        let path = match &since {
            Some(since) => format!("/_matrix/client/v3/sync?timeout=1000&filter={filter}&since={}", encode(since)),
            None => format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"),
        };
        let (status, body) = peer.call(Method::GET, &path, &session.access_token, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if let Some(room) = body["rooms"][section].get(room_id) {
            return room.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{} never listed {room_id} in rooms.{section}\n{}", peer.name(), peer.logs());
        since = body["next_batch"].as_str().map(str::to_owned);
    }
}

fn has_state(events: &Value, kind: &str, check: impl Fn(&Value) -> bool) -> bool {
    events.as_array().is_some_and(|events| events.iter().any(|event| event["type"] == kind && check(event)))
}

async fn create_room(peer: &impl Peer, owner: &Session, body: Value) -> String {
    let (status, room) = peer.call(Method::POST, "/_matrix/client/v3/createRoom", &owner.access_token, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{} creates a room: {room}", peer.name());
    room["room_id"].as_str().unwrap().to_owned()
}

async fn member_state(peer: &impl Peer, session: &Session, room_id: &str, user_id: &str) -> Value {
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", encode(room_id), encode(user_id));
    let (status, content) = peer.call(Method::GET, &path, &session.access_token, None).await;
    assert_eq!(status, StatusCode::OK, "{content}");
    content
}

/// A user of `inviter_side` invites one of `invitee_side` (whose server is
/// not in the room), who sees the invite with the room's name and rejects
/// it: the invitee's `/sync` lists the room under `leave`, the inviter's
/// timeline and state show the leave.
async fn reject_across(inviter_side: &impl Peer, invitee_side: &impl Peer, tag: &str) {
    let inviter = inviter_side.user(&format!("rinviter{tag}")).await;
    let invitee = invitee_side.user(&format!("rinvitee{tag}")).await;
    let name = format!("To reject {tag}");
    let room_id = create_room(inviter_side, &inviter, json!({"preset": "private_chat", "name": name})).await;
    let (status, body) = inviter_side
        .call(Method::POST, &format!("/_matrix/client/v3/rooms/{}/invite", encode(&room_id)), &inviter.access_token, Some(json!({"user_id": invitee.user_id})))
        .await;
    assert_eq!(status, StatusCode::OK, "{} invites {}: {body}\n{}{}", inviter_side.name(), invitee.user_id, inviter_side.logs(), invitee_side.logs());
    let invited = sync_section(invitee_side, &invitee, "invite", &room_id).await;
    assert!(has_state(&invited["invite_state"]["events"], "m.room.name", |event| event["content"]["name"] == name), "the invite's stripped state: {invited}");

    let (status, body) =
        invitee_side.call(Method::POST, &format!("/_matrix/client/v3/rooms/{}/leave", encode(&room_id)), &invitee.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{} rejects the invite: {body}\n{}{}", invitee_side.name(), invitee_side.logs(), inviter_side.logs());
    sync_section(invitee_side, &invitee, "leave", &room_id).await;
    sync_until(inviter_side, &inviter, &room_id, "the rejection", |events| member_is(events, &invitee.user_id, "leave")).await;
    assert_eq!(member_state(inviter_side, &inviter, &room_id, &invitee.user_id).await["membership"], "leave");
}

async fn invites_to_rooms_of_other_servers_are_rejected(backend: Backend) {
    let mut synapse = Synapse::start().await;
    let weft = TestServer::builder(backend).federation().start().await;
    let other = TestServer::builder(backend).federation().start().await;
    // Weft rejects through Synapse's make_leave/send_leave, Synapse through Weft's, Weft through Weft's.
    reject_across(&synapse, &weft, "sw").await;
    reject_across(&weft, &synapse, "ws").await;
    reject_across(&other, &weft, "ww").await;

    // Deactivating an account rejects its remote invites through the inviting server.
    let inviter = synapse.register("deactinviter").await;
    let leaving = weft.register("deactivated", "password-of-deactivated").await;
    let room_id = create_room(&synapse, &inviter, json!({"preset": "private_chat"})).await;
    let (status, body) =
        synapse.post(&format!("/_matrix/client/v3/rooms/{}/invite", encode(&room_id)), Some(&inviter.access_token), json!({"user_id": leaving.user_id})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until_in(&weft, &leaving, "invite", &room_id).await;
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "deactivated"}, "password": "password-of-deactivated"});
    let (status, body) = weft.post("/_matrix/client/v3/account/deactivate", Some(&leaving.access_token), json!({"auth": auth})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until(&synapse, &inviter, &room_id, "the deactivated user's rejection", |events| member_is(events, &leaving.user_id, "leave")).await;

    // The inviting server is down: the invite is rejected here alone, as Synapse does.
    let inviter = synapse.register("downinviter").await;
    let invitee = weft.register("downinvitee", "password-of-downinvitee").await;
    let room_id = create_room(&synapse, &inviter, json!({"preset": "private_chat"})).await;
    let (status, body) =
        synapse.post(&format!("/_matrix/client/v3/rooms/{}/invite", encode(&room_id)), Some(&inviter.access_token), json!({"user_id": invitee.user_id})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until_in(&weft, &invitee, "invite", &room_id).await;
    synapse.stop();
    let (status, body) = weft.post(&format!("/_matrix/client/v3/rooms/{}/leave", encode(&room_id)), Some(&invitee.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "the rejection is made locally: {body}");
    sync_section(&weft, &invitee, "leave", &room_id).await;
    let (status, body) = weft.get("/_matrix/client/v3/sync?timeout=0", Some(&invitee.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["rooms"]["invite"].get(&room_id).is_none(), "the invite is gone: {body}");
}

/// A user of `knocker_side` knocks on a room of `owner_side` (join rule
/// `knock`, room version `version`): the knock is in the knocker's
/// `rooms.knock` with the room's name, and in the owner's timeline; the
/// owner invites them and they join. Before, another user knocks and
/// withdraws the knock: in the knocker's `leave` section and the owner's
/// timeline, unless the knocker's server is Synapse, which withdraws a knock
/// only locally (its `remote_rescind_knock` makes an out-of-band leave that
/// its `/sync` does not list).
async fn knock_across(owner_side: &impl Peer, knocker_side: &impl Peer, tag: &str, version: &str, withdrawal_federated: bool) {
    let owner = owner_side.user(&format!("kowner{tag}")).await;
    let knocker = knocker_side.user(&format!("knocker{tag}")).await;
    let name = format!("Knock here {tag}");
    let room_id = create_room(
        owner_side,
        &owner,
        json!({
            "preset": "private_chat", "name": name, "room_version": version,
            "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
        }),
    )
    .await;
    let knock_path = format!("/_matrix/client/v3/knock/{}?via={}", encode(&room_id), encode(owner_side.name()));
    // A knock withdrawn while the knocker's server is not in the room: a leave through the owner's server.
    let second = knocker_side.user(&format!("withdrawer{tag}")).await;
    let (status, body) = knocker_side.call(Method::POST, &knock_path, &second.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until(owner_side, &owner, &room_id, "the second knock", |events| member_is(events, &second.user_id, "knock")).await;
    let (status, body) =
        knocker_side.call(Method::POST, &format!("/_matrix/client/v3/rooms/{}/leave", encode(&room_id)), &second.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{} withdraws the knock: {body}\n{}{}", knocker_side.name(), knocker_side.logs(), owner_side.logs());
    if withdrawal_federated {
        sync_section(knocker_side, &second, "leave", &room_id).await;
        sync_until(owner_side, &owner, &room_id, "the withdrawal", |events| member_is(events, &second.user_id, "leave")).await;
    }

    let (status, body) = knocker_side.call(Method::POST, &knock_path, &knocker.access_token, Some(json!({"reason": "let me in"}))).await;
    assert_eq!(status, StatusCode::OK, "{} knocks on {room_id} (v{version}): {body}\n{}{}", knocker_side.name(), knocker_side.logs(), owner_side.logs());
    assert_eq!(body["room_id"], room_id);
    let knocked = sync_section(knocker_side, &knocker, "knock", &room_id).await;
    let state = &knocked["knock_state"]["events"];
    assert!(has_state(state, "m.room.name", |event| event["content"]["name"] == name), "the knock's stripped state: {knocked}");
    assert!(has_state(state, "m.room.member", |event| event["state_key"] == knocker.user_id && event["content"]["membership"] == "knock"), "{knocked}");
    sync_until(owner_side, &owner, &room_id, "the knock", |events| {
        events
            .iter()
            .any(|event| event["state_key"] == knocker.user_id && event["content"]["membership"] == "knock" && event["content"]["reason"] == "let me in")
    })
    .await;

    // Let in: an invite, then a join.
    let (status, body) = owner_side
        .call(Method::POST, &format!("/_matrix/client/v3/rooms/{}/invite", encode(&room_id)), &owner.access_token, Some(json!({"user_id": knocker.user_id})))
        .await;
    assert_eq!(status, StatusCode::OK, "{} invites the knocker: {body}\n{}{}", owner_side.name(), owner_side.logs(), knocker_side.logs());
    sync_section(knocker_side, &knocker, "invite", &room_id).await;
    let (status, body) =
        knocker_side.call(Method::POST, &format!("/_matrix/client/v3/join/{}", encode(&room_id)), &knocker.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{} accepts: {body}\n{}{}", knocker_side.name(), knocker_side.logs(), owner_side.logs());
    sync_until(owner_side, &owner, &room_id, "the knocker's join", |events| member_is(events, &knocker.user_id, "join")).await;
}

async fn knocks_across_servers_are_let_in_or_withdrawn(backend: Backend) {
    let synapse = Synapse::start().await;
    let weft = TestServer::builder(backend).federation().start().await;
    knock_across(&weft, &synapse, "ws12", "12", false).await;
    knock_across(&weft, &synapse, "ws10", "10", false).await;
    knock_across(&synapse, &weft, "sw10", "10", true).await;
    knock_across(&synapse, &weft, "sw12", "12", true).await;
}

async fn weft_knocks_on_weft_rooms(backend: Backend) {
    let one = TestServer::builder(backend).federation().start().await;
    let two = TestServer::builder(backend).federation().start().await;
    knock_across(&one, &two, "ww", "11", true).await;
}

async fn the_spam_checker_drops_federated_events_and_refuses_federated_invites(backend: Backend) {
    let synapse = Synapse::start().await;
    let other = TestServer::builder(Backend::Sqlite).federation().start().await;
    let rules = format!(
        "[[plugins]]\nname = \"rules\"\npath = {:?}\n[plugins.config]\nblocked_servers = [{:?}, {:?}]\n",
        guest("spam_rules").display().to_string(),
        other.server_name,
        synapse.server_name
    );
    let target = TestServer::builder(backend).federation().config(&rules).start().await;
    let alice = target.register("alice", "password-of-alice").await;
    let bob = target.register("bob", "password-of-bob").await;
    let room_id = create_room(&target, &alice, json!({"preset": "public_chat"})).await;
    let caller = Caller {
        origin: other.server_name.clone(),
        destination: target.server_name.clone(),
        base: target.federation_base(),
        key: &other.state.signing_key.pair,
    };
    let mallory = format!("@mallory:{}", caller.origin);

    // A join is not a transaction's PDU: Synapse does not ask the hook for it either.
    let (status, body) = caller.call(Method::GET, &format!("/_matrix/federation/v1/make_join/{}/{}?ver=12", encode(&room_id), encode(&mallory)), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let depth = body["event"]["depth"].as_i64().unwrap();
    let (join_id, join) = signed(&caller.origin, caller.key, serde_json::from_value(body["event"].clone()).unwrap());
    let (status, answer) = caller.call(Method::PUT, &format!("/_matrix/federation/v2/send_join/{}/{}", encode(&room_id), encode(&join_id)), Some(&join)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let power_levels = answer["state"].as_array().unwrap().iter().find(|event| event["type"] == "m.room.power_levels").map(event_id_of).unwrap();

    // should-drop-federated-event: answered as accepted, never stored.
    let auth = [power_levels.as_str(), join_id.as_str()];
    let message = unsigned_event(&room_id, &mallory, "m.room.message", None, json!({"msgtype": "m.text", "body": "spam"}), &join_id, &auth, depth + 1);
    let (spam_id, spam) = signed(&caller.origin, caller.key, message);
    let (status, body) = caller.send("s1", vec![spam]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pdus"][&spam_id], json!({}), "dropped without an error: {body}");
    let (status, _) = target.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", encode(&room_id), encode(&spam_id)), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the dropped event is not stored");

    // federated-user-may-invite: 403 M_FORBIDDEN, nothing stored.
    let their_room = format!("!spamroom:{}", caller.origin);
    let invite = unsigned_event(&their_room, &mallory, "m.room.member", Some(&bob.user_id), json!({"membership": "invite"}), &join_id, &[], 1);
    let (invite_id, invite) = signed(&caller.origin, caller.key, invite);
    let path = format!("/_matrix/federation/v2/invite/{}/{}", encode(&their_room), encode(&invite_id));
    let (status, body) = caller.call(Method::PUT, &path, Some(&json!({"room_version": "12", "event": invite, "invite_room_state": []}))).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    let (status, body) = target.get("/_matrix/client/v3/sync?timeout=0", Some(&bob.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["rooms"]["invite"].get(&their_room).is_none(), "{body}");

    // The same from Synapse: its user's invite is refused.
    let inviter = synapse.register("blockedinviter").await;
    let synapse_room = create_room(&synapse, &inviter, json!({"preset": "private_chat"})).await;
    let (status, body) =
        synapse.post(&format!("/_matrix/client/v3/rooms/{}/invite", encode(&synapse_room)), Some(&inviter.access_token), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "Synapse relays Weft's refusal: {body}\n{}", synapse.logs());
    let (status, body) = target.get("/_matrix/client/v3/sync?timeout=0", Some(&bob.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["rooms"]["invite"].get(&synapse_room).is_none(), "{body}");

    // Knocking needs room version 7 or later, and the knock join rule.
    let old_room = create_room(&target, &alice, json!({"preset": "public_chat", "room_version": "6"})).await;
    let make_knock = |room: &str| format!("/_matrix/federation/v1/make_knock/{}/{}?ver=6&ver=12", encode(room), encode(&mallory));
    let (status, body) = caller.call(Method::GET, &make_knock(&old_room), None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INCOMPATIBLE_ROOM_VERSION"), "{body}");
    let private = create_room(&target, &alice, json!({"preset": "private_chat"})).await;
    let (status, body) = caller.call(Method::GET, &make_knock(&private), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no knock without the knock join rule: {body}");
}

/// `createRoom` with a Synapse user in `invite` and `is_direct` (how
/// clients open a direct chat): the invite goes through Synapse's
/// federation `invite`, and the Synapse user sees it and joins.
#[tokio::test(flavor = "multi_thread")]
async fn create_room_invites_users_of_other_servers() {
    let synapse = Synapse::start().await;
    let weft = TestServer::builder(Backend::Sqlite).federation().start().await;
    let alice = weft.register("alice", "password-of-alice").await;
    let bob = synapse.register("bob").await;
    let body = json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [bob.user_id]});
    let (status, room) = weft.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), body).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    sync_until_in(&synapse, &bob, "invite", &room_id).await;
    let (status, joined) = synapse.post(&format!("/_matrix/client/v3/join/{}", encode(&room_id)), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "bob accepts: {joined}\n{}", synapse.logs());
    sync_until(&weft, &alice, &room_id, "bob's join", |events| member_is(events, &bob.user_id, "join")).await;
}
