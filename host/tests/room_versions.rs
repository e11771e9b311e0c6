//! Room versions 1 to 12: in a room of each version, create, send, change
//! state, redact, invite, join (by id, with `via` and `server_name`),
//! leave, kick and ban, and check every stored PDU as another server would
//! (ruma's format check, signatures and content hash, the event id and
//! room id formats, `prev_events` and `auth_events` references with their
//! hashes in v1 and v2), and that `/sync` and `/messages` show the events.
//! Then what version 12 changes: room ids from the create event's hash,
//! creators with unlimited power, `additional_creators`, upgrades to 12.

use std::collections::BTreeMap;

use http::StatusCode;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, RoomVersionId,
    room_version_rules::RoomVersionRules,
    serde::Base64,
    signatures::{PublicKeyMap, Verified},
};
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::{create_room, send_text},
    support::{Backend, TestServer, encode, errcode},
};

on_both_backends!(
    version_1_works,
    version_2_works,
    version_3_works,
    version_4_works,
    version_5_works,
    version_6_works,
    version_7_works,
    version_8_works,
    version_9_works,
    version_10_works,
    version_11_works,
    version_12_works,
    capabilities_list_every_version_with_12_by_default,
    v12_room_ids_are_the_create_events_hash,
    v12_creators_have_unlimited_power,
    v12_trusted_private_chats_make_the_invitees_creators,
    upgrades_to_and_from_v12,
    joins_by_id_take_via_and_server_name,
);

macro_rules! version_tests {
    ($($name:ident => $version:literal),* $(,)?) => {
        $(async fn $name(backend: Backend) {
            a_room_of_version_works(backend, $version).await
        })*
    };
}

version_tests!(
    version_1_works => "1", version_2_works => "2", version_3_works => "3", version_4_works => "4",
    version_5_works => "5", version_6_works => "6", version_7_works => "7", version_8_works => "8",
    version_9_works => "9", version_10_works => "10", version_11_works => "11", version_12_works => "12",
);

fn rules(version: &str) -> RoomVersionRules {
    RoomVersionId::try_from(version).unwrap().rules().unwrap()
}

async fn state(server: &TestServer, token: &str, room: &str, kind: &str, state_key: &str) -> (StatusCode, Value) {
    server.get(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}/{}", encode(state_key)), Some(token)).await
}

/// The stored PDU of an event, without what is outside the signed event.
async fn stored_pdu(server: &TestServer, event_id: &str) -> CanonicalJsonObject {
    let event_id = ruma::OwnedEventId::try_from(event_id).unwrap();
    let stored = server.state.storage.event(&event_id).await.unwrap().unwrap_or_else(|| panic!("{event_id} is stored"));
    let mut pdu: CanonicalJsonObject = serde_json::from_str(&stored.json).unwrap();
    pdu.remove("unsigned");
    pdu
}

fn reference_hash(pdu: &CanonicalJsonObject, version: &str) -> String {
    ruma::signatures::reference_hash(pdu, &rules(version)).unwrap()
}

fn public_keys(server: &TestServer) -> PublicKeyMap {
    let key = &server.state.signing_key;
    let mut keys = BTreeMap::new();
    keys.insert(key.key_id(), Base64::parse(key.public_key_base64.clone()).unwrap());
    BTreeMap::from([(server.server_name.clone(), keys)])
}

/// Every event of the room, oldest first, as `/messages` gives them.
async fn all_events(server: &TestServer, token: &str, room: &str) -> Vec<Value> {
    let (status, page) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=100"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["chunk"].as_array().unwrap().clone()
}

/// Checks the id of `event_id` and its stored PDU as a server receiving it
/// would: the format for the room version, the signature and content hash,
/// and the references to earlier events.
async fn check_pdu(server: &TestServer, version: &str, room: &str, event_id: &str, create_id: &str, redacted: bool) {
    let rules = rules(version);
    let pdu = stored_pdu(server, event_id).await;
    ruma::state_res::check_pdu_format(&pdu, &rules.event_format).unwrap_or_else(|e| panic!("v{version} {event_id}: {e}: {pdu:?}"));
    let verified = ruma::signatures::verify_event(&public_keys(server), &pdu, &rules).unwrap_or_else(|e| panic!("v{version} {event_id}: {e}"));
    // A redacted event keeps its signatures; its content hash no longer matches.
    let expected = if redacted { Verified::Signatures } else { Verified::All };
    assert_eq!(verified, expected, "v{version} {event_id}: signed and hashed");
    let hash = reference_hash(&pdu, version);
    match version {
        "1" | "2" => {
            assert!(event_id.ends_with(&format!(":{}", server.server_name)), "v{version}: $random:server, got {event_id}");
            assert_eq!(pdu.get("event_id").and_then(CanonicalJsonValue::as_str), Some(event_id), "v1/v2 PDUs carry their id");
        }
        _ => {
            assert_eq!(event_id, format!("${hash}"), "v{version}: the id is the reference hash");
            assert!(!pdu.contains_key("event_id"));
            if version == "3" {
                assert!(!event_id.contains('-') && !event_id.contains('_'), "v3: standard base64: {event_id}");
            } else {
                assert!(!event_id.contains('+') && !event_id.contains('/'), "v{version}: url-safe base64: {event_id}");
            }
        }
    }
    let is_create = pdu.get("type").and_then(CanonicalJsonValue::as_str) == Some("m.room.create");
    if is_create && version == "12" {
        assert!(!pdu.contains_key("room_id"), "a v12 create event has no room_id: {pdu:?}");
    } else {
        assert_eq!(pdu.get("room_id").and_then(CanonicalJsonValue::as_str), Some(room));
    }
    for field in ["prev_events", "auth_events"] {
        for reference in pdu[field].as_array().unwrap() {
            let referenced = match (version, reference) {
                ("1" | "2", CanonicalJsonValue::Array(pair)) => {
                    let id = pair[0].as_str().unwrap();
                    let referenced_pdu = stored_pdu(server, id).await;
                    let sha256 = pair[1].as_object().and_then(|hashes| hashes.get("sha256")).and_then(CanonicalJsonValue::as_str);
                    assert_eq!(sha256, Some(reference_hash(&referenced_pdu, version).as_str()), "v{version} {field}: [id, hashes] with the reference hash");
                    id.to_owned()
                }
                ("1" | "2", other) => panic!("v{version} {field} lists [id, hashes] pairs, got {other:?}"),
                (_, CanonicalJsonValue::String(id)) => id.clone(),
                (_, other) => panic!("v{version} {field} lists ids, got {other:?}"),
            };
            if field == "auth_events" && version == "12" {
                assert_ne!(referenced, create_id, "v12: the create event is not an auth event");
            }
        }
    }
}

async fn a_room_of_version_works(backend: Backend, version: &str) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let (a, b) = (alice.access_token.as_str(), bob.access_token.as_str());
    let room = create_room(&server, a, json!({"room_version": version, "name": format!("Version {version}")})).await;

    // The room id: `!random:server` before 12, then the create event's hash.
    let (_, create) = state(&server, a, &room, "m.room.create", "").await;
    assert_eq!(create["room_version"], version, "{create}");
    let events = all_events(&server, a, &room).await;
    let create_id = events[0]["event_id"].as_str().unwrap().to_owned();
    assert_eq!(events[0]["type"], "m.room.create");
    if version == "12" {
        assert!(!room.contains(':'), "no server part: {room}");
        assert_eq!(room, format!("!{}", reference_hash(&stored_pdu(&server, &create_id).await, version)));
        assert_eq!(room, create_id.replacen('$', "!", 1));
    } else {
        assert!(room.ends_with(&format!(":{}", server.server_name)), "{room}");
    }
    match version {
        "11" | "12" => assert!(create.get("creator").is_none(), "v{version}: no creator field: {create}"),
        _ => assert_eq!(create["creator"], json!(alice.user_id), "v{version}: {create}"),
    }
    let (_, levels) = state(&server, a, &room, "m.room.power_levels", "").await;
    if version == "12" {
        assert!(levels["users"].get(&alice.user_id).is_none(), "creators are not listed: {levels}");
    } else {
        assert_eq!(levels["users"][&alice.user_id], 100, "{levels}");
    }

    // Send, change state, and membership changes of every kind.
    let hello = send_text(&server, a, &room, "hello").await;
    let (status, reply) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"), Some(a), json!({"topic": "versions"})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(state(&server, a, &room, "m.room.topic", "").await.1["topic"], "versions");
    for invitee in [&bob.user_id, &carol.user_id] {
        let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), Some(a), json!({"user_id": invitee})).await;
        assert_eq!(status, StatusCode::OK, "v{version} invite: {reply}");
    }
    let (status, reply) = server.post(&format!("/_matrix/client/v3/join/{}?via={}", encode(&room), server.server_name), Some(b), json!({})).await;
    assert_eq!(status, StatusCode::OK, "v{version} join: {reply}");
    assert_eq!(reply["room_id"], json!(room));
    let from_bob = send_text(&server, b, &room, "from bob").await;
    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{room}/kick"), Some(a), json!({"user_id": carol.user_id})).await;
    assert_eq!(status, StatusCode::OK, "v{version} kick: {reply}");
    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{room}/ban"), Some(a), json!({"user_id": carol.user_id, "reason": "test"})).await;
    assert_eq!(status, StatusCode::OK, "v{version} ban: {reply}");
    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&carol.access_token), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "v{version}: the ban holds: {reply}");
    assert_eq!(state(&server, a, &room, "m.room.member", &carol.user_id).await.1["membership"], "ban");

    // A redaction: `redacts` in the content from 11, at the top level before; clients see it at the top level.
    let (status, reply) = server.put(&format!("/_matrix/client/v3/rooms/{room}/redact/{}/r1", encode(&from_bob)), Some(a), json!({"reason": "mod"})).await;
    assert_eq!(status, StatusCode::OK, "v{version} redact: {reply}");
    let redaction = reply["event_id"].as_str().unwrap().to_owned();
    let redaction_pdu = stored_pdu(&server, &redaction).await;
    let in_content = redaction_pdu["content"].as_object().unwrap().get("redacts").and_then(CanonicalJsonValue::as_str);
    let at_top = redaction_pdu.get("redacts").and_then(CanonicalJsonValue::as_str);
    match version {
        "11" | "12" => assert_eq!((in_content, at_top), (Some(from_bob.as_str()), None), "v{version}"),
        _ => assert_eq!((in_content, at_top), (None, Some(from_bob.as_str())), "v{version}"),
    }
    let (_, redacted) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", encode(&from_bob)), Some(a)).await;
    assert_eq!(redacted["content"], json!({}), "v{version}: content pruned: {redacted}");
    assert_eq!(redacted["unsigned"]["redacted_because"]["redacts"], json!(from_bob), "{redacted}");
    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), Some(b), json!({})).await;
    assert_eq!(status, StatusCode::OK, "v{version} leave: {reply}");

    // Every stored event is well formed for the version, signed, and references its parents properly.
    let events = all_events(&server, a, &room).await;
    let ids: Vec<&str> = events.iter().map(|event| event["event_id"].as_str().unwrap()).collect();
    for id in [hello.as_str(), redaction.as_str()] {
        assert!(ids.contains(&id), "v{version}: /messages shows {id}");
    }
    for id in &ids {
        check_pdu(&server, version, &room, id, &create_id, *id == from_bob).await;
    }
    let redaction_event = events.iter().find(|event| event["event_id"] == json!(redaction)).unwrap();
    assert_eq!(redaction_event["redacts"], json!(from_bob), "clients see `redacts` at the top level: {redaction_event}");

    // /sync shows the room and its latest events.
    let (status, sync) = server.get("/_matrix/client/v3/sync", Some(a)).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    let joined = &sync["rooms"]["join"][&room];
    let timeline: Vec<&str> = joined["timeline"]["events"].as_array().unwrap().iter().filter_map(|event| event["event_id"].as_str()).collect();
    assert!(timeline.contains(&redaction.as_str()), "v{version}: sync's timeline has the redaction: {joined}");
    let bob_left = joined["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|event| event["state_key"] == json!(bob.user_id) && event["content"]["membership"] == "leave");
    assert!(bob_left, "v{version}: sync shows bob leaving: {joined}");
    let (_, bob_sync) = server.get("/_matrix/client/v3/sync?filter=%7B%22room%22%3A%7B%22include_leave%22%3Atrue%7D%7D", Some(b)).await;
    assert!(bob_sync["rooms"]["leave"].get(&room).is_some(), "v{version}: bob's sync lists the room as left: {bob_sync}");
}

async fn capabilities_list_every_version_with_12_by_default(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let (status, reply) = server.get("/_matrix/client/v3/capabilities", Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let versions = &reply["capabilities"]["m.room_versions"];
    assert_eq!(versions["default"], "12");
    let expected: serde_json::Map<String, Value> = (1..=12).map(|n| (n.to_string(), json!("stable"))).collect();
    assert_eq!(versions["available"], Value::Object(expected));
    let room = create_room(&server, &alice.access_token, json!({})).await;
    assert_eq!(state(&server, &alice.access_token, &room, "m.room.create", "").await.1["room_version"], "12");
    assert!(!room.contains(':'), "{room}");
}

async fn v12_room_ids_are_the_create_events_hash(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let a = alice.access_token.as_str();
    // Identical requests in a row still make distinct rooms.
    let mut rooms = Vec::new();
    for _ in 0..3 {
        rooms.push(create_room(&server, a, json!({"preset": "public_chat"})).await);
    }
    rooms.sort();
    rooms.dedup();
    assert_eq!(rooms.len(), 3, "{rooms:?}");
    for room in &rooms {
        let create_id = room.replacen('!', "$", 1);
        let pdu = stored_pdu(&server, &create_id).await;
        assert_eq!(pdu["type"], CanonicalJsonValue::String("m.room.create".into()));
        assert!(!pdu.contains_key("room_id"), "{pdu:?}");
        assert_eq!(format!("!{}", reference_hash(&pdu, "12")), *room);
        let (status, event) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", encode(&create_id)), Some(a)).await;
        assert_eq!(status, StatusCode::OK, "{event}");
        assert_eq!(event["room_id"], json!(room), "clients get the room id: {event}");
    }
    // A room alias and a space child name a v12 room as any other.
    let room = &rooms[0];
    let alias = format!("#v12alias:{}", server.server_name);
    let (status, reply) = server.put(&format!("/_matrix/client/v3/directory/room/{}", encode(&alias)), Some(a), json!({"room_id": room})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, resolved) = server.get(&format!("/_matrix/client/v3/directory/room/{}", encode(&alias)), Some(a)).await;
    assert_eq!(resolved["room_id"], json!(room));
    let space = create_room(&server, a, json!({"creation_content": {"type": "m.space"}})).await;
    let child = json!({"via": [server.server_name]});
    let (status, reply) = server.put(&format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{}", encode(room)), Some(a), child).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, hierarchy) = server.get(&format!("/_matrix/client/v1/rooms/{space}/hierarchy"), Some(a)).await;
    assert_eq!(status, StatusCode::OK, "{hierarchy}");
    let listed: Vec<&Value> = hierarchy["rooms"].as_array().unwrap().iter().map(|entry| &entry["room_id"]).collect();
    assert!(listed.contains(&&json!(room)), "{hierarchy}");
}

async fn v12_creators_have_unlimited_power(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (a, b) = (alice.access_token.as_str(), bob.access_token.as_str());
    let room = create_room(&server, a, json!({"preset": "public_chat"})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(b), json!({})).await;
    let (_, mut levels) = state(&server, a, &room, "m.room.power_levels", "").await;
    assert_eq!(levels["events"]["m.room.tombstone"], 150, "as Synapse, only creators upgrade by default: {levels}");

    // Listing a creator is refused as Synapse refuses it; others may be raised to any level.
    levels["users"] = json!({alice.user_id.clone(): 100});
    let (status, reply) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), Some(a), levels.clone()).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_UNKNOWN"), "{reply}");
    levels["users"] = json!({bob.user_id.clone(): 100});
    let (status, reply) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), Some(a), levels.clone()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");

    // Bob at 100 cannot touch the creator, who can still demote him.
    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{room}/kick"), Some(b), json!({"user_id": alice.user_id})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{room}/upgrade"), Some(b), json!({"new_version": "12"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a tombstone needs 150: {reply}");
    levels["users"] = json!({bob.user_id.clone(): 0});
    let (status, reply) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), Some(a), levels.clone()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{room}/kick"), Some(a), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");

    // `additional_creators` in creation_content are creators too.
    let room = create_room(&server, a, json!({"preset": "public_chat", "creation_content": {"additional_creators": [bob.user_id]}})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(b), json!({})).await;
    let (status, reply) =
        server.put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.history_visibility/"), Some(b), json!({"history_visibility": "joined"})).await;
    assert_eq!(status, StatusCode::OK, "an additional creator may send what needs 100: {reply}");
    let (_, levels) = state(&server, a, &room, "m.room.power_levels", "").await;
    let mut listed = levels.clone();
    listed["users"] = json!({bob.user_id.clone(): 50});
    let (status, reply) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), Some(a), listed).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_UNKNOWN"), "{reply}");
}

async fn v12_trusted_private_chats_make_the_invitees_creators(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let a = alice.access_token.as_str();
    let room = create_room(&server, a, json!({"preset": "trusted_private_chat", "invite": [bob.user_id], "is_direct": true})).await;
    let (_, create) = state(&server, a, &room, "m.room.create", "").await;
    assert_eq!(create["additional_creators"], json!([bob.user_id]), "{create}");
    let (_, levels) = state(&server, a, &room, "m.room.power_levels", "").await;
    assert_eq!(levels["users"], json!({}), "neither creator is listed: {levels}");
    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, reply) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), Some(&bob.access_token), json!({"name": "ours"})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    // Before 12 the invitees get 100 instead.
    let room = create_room(&server, a, json!({"preset": "trusted_private_chat", "invite": [bob.user_id], "room_version": "11"})).await;
    let (_, levels) = state(&server, a, &room, "m.room.power_levels", "").await;
    assert_eq!(levels["users"][&bob.user_id], 100, "{levels}");
    assert!(state(&server, a, &room, "m.room.create", "").await.1.get("additional_creators").is_none());
}

async fn upgrades_to_and_from_v12(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (a, b) = (alice.access_token.as_str(), bob.access_token.as_str());
    let old = create_room(&server, a, json!({"preset": "public_chat", "room_version": "11", "name": "Eleven"})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{old}/join"), Some(b), json!({})).await;
    let (_, mut levels) = state(&server, a, &old, "m.room.power_levels", "").await;
    levels["users"][&bob.user_id] = json!(50);
    server.put(&format!("/_matrix/client/v3/rooms/{old}/state/m.room.power_levels/"), Some(a), levels).await;

    // 11 to 12: the new id is the create event's hash; the upgrader is the creator, unlisted.
    let body = json!({"new_version": "12", "additional_creators": [bob.user_id]});
    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{old}/upgrade"), Some(a), body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let v12 = reply["replacement_room"].as_str().unwrap().to_owned();
    assert!(!v12.contains(':'), "{v12}");
    let create_pdu = stored_pdu(&server, &v12.replacen('!', "$", 1)).await;
    assert_eq!(format!("!{}", reference_hash(&create_pdu, "12")), v12);
    let (_, create) = state(&server, a, &v12, "m.room.create", "").await;
    assert_eq!(create["room_version"], "12", "{create}");
    assert_eq!(create["predecessor"], json!({"room_id": old}), "no event_id in a v12 predecessor, as Synapse: {create}");
    assert_eq!(create["additional_creators"], json!([bob.user_id]), "{create}");
    let (_, levels) = state(&server, a, &v12, "m.room.power_levels", "").await;
    assert!(levels["users"].get(&alice.user_id).is_none() && levels["users"].get(&bob.user_id).is_none(), "creators unlisted: {levels}");
    assert_eq!(state(&server, a, &v12, "m.room.name", "").await.1["name"], "Eleven");
    let (_, tombstone) = state(&server, a, &old, "m.room.tombstone", "").await;
    assert_eq!(tombstone["replacement_room"], json!(v12));
    send_text(&server, a, &v12, "in twelve").await;

    // 12 to 12, by the creator.
    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{v12}/upgrade"), Some(a), json!({"new_version": "12"})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let again = reply["replacement_room"].as_str().unwrap().to_owned();
    assert!(!again.contains(':') && again != v12, "{again}");
    assert_eq!(state(&server, a, &again, "m.room.create", "").await.1["predecessor"], json!({"room_id": v12}));
    assert_eq!(state(&server, a, &v12, "m.room.tombstone", "").await.1["replacement_room"], json!(again));

    // 12 down to 10: the creator keeps the power to copy the state, and the room works.
    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{again}/upgrade"), Some(a), json!({"new_version": "10"})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let v10 = reply["replacement_room"].as_str().unwrap().to_owned();
    assert!(v10.ends_with(&format!(":{}", server.server_name)), "{v10}");
    let (_, create) = state(&server, a, &v10, "m.room.create", "").await;
    assert_eq!(create["creator"], json!(alice.user_id), "{create}");
    assert!(create["predecessor"]["event_id"].is_string(), "{create}");
    assert_eq!(state(&server, a, &v10, "m.room.name", "").await.1["name"], "Eleven");
}

async fn joins_by_id_take_via_and_server_name(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    for (user, query) in [("bob", format!("?via={}", server.server_name)), ("carol", format!("?server_name={}", server.server_name)), ("dave", String::new())] {
        let session = server.register(user, "pw").await;
        let (status, reply) = server.post(&format!("/_matrix/client/v3/join/{}{query}", encode(&room)), Some(&session.access_token), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{user} {query}: {reply}");
        assert_eq!(reply["room_id"], json!(room));
    }
    let erin = server.register("erin", "pw").await;
    let (status, reply) = server.post(&format!("/_matrix/client/v3/rooms/{}/join", encode(&room)), Some(&erin.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, members) = server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), Some(&alice.access_token)).await;
    assert_eq!(members["joined"].as_object().unwrap().len(), 5, "{members}");
    // A room this server does not hold (no server part to ask) is not found.
    let unknown = "!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (status, reply) = server.post(&format!("/_matrix/client/v3/join/{}", encode(unknown)), Some(&erin.access_token), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
}
