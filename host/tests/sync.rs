//! `/sync`: initial and incremental, long-polling, `limited` with a working
//! `prev_batch`, invites and leaves, filters, and tokens across restarts.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::{create_room, send_text},
    support::{Backend, TestServer, errcode},
};

on_both_backends!(
    initial_then_incremental,
    long_poll_returns_when_an_event_arrives,
    gaps_are_limited_with_a_working_prev_batch,
    invites_and_leaves_have_their_sections,
    stored_and_inline_filters,
    tokens_survive_a_restart,
    transaction_ids_reach_only_the_sending_device,
    room_summaries_count_members_and_name_heroes,
    set_presence_is_checked,
);

async fn sync(server: &TestServer, token: &str, query: &str) -> Value {
    let (status, body) = server.get(&format!("/_matrix/client/v3/sync{query}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn bodies(room: &Value) -> Vec<String> {
    room["timeline"]["events"].as_array().map_or(Vec::new(), |events| events.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect())
}

async fn initial_then_incremental(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"name": "Room"})).await;
    send_text(&server, &alice.access_token, &room, "one").await;
    let initial = sync(&server, &alice.access_token, "").await;
    let joined = &initial["rooms"]["join"][&room];
    assert_eq!(bodies(joined), vec!["one"]);
    assert_ne!(joined["timeline"]["limited"], true, "ruma leaves out `limited: false`");
    let since = initial["next_batch"].as_str().unwrap();

    let (status, body) = server.get("/_matrix/client/v3/sync?since=nonsense", Some(&alice.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"));

    let nothing = sync(&server, &alice.access_token, &format!("?since={since}")).await;
    assert!(nothing["rooms"]["join"].get(&room).is_none(), "{nothing}");

    send_text(&server, &alice.access_token, &room, "two").await;
    let delta = sync(&server, &alice.access_token, &format!("?since={since}")).await;
    assert_eq!(bodies(&delta["rooms"]["join"][&room]), vec!["two"], "only what is new");
    let next = delta["next_batch"].as_str().unwrap();
    let again = sync(&server, &alice.access_token, &format!("?since={next}")).await;
    assert!(again["rooms"]["join"].get(&room).is_none(), "nothing twice");
}

async fn long_poll_returns_when_an_event_arrives(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    let since = sync(&server, &alice.access_token, "").await["next_batch"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let empty = sync(&server, &alice.access_token, &format!("?since={since}&timeout=300")).await;
    assert!(started.elapsed() >= Duration::from_millis(290), "waits out the timeout when nothing happens");
    assert!(empty["rooms"]["join"].get(&room).is_none());

    let poll = {
        let path = format!("/_matrix/client/v3/sync?since={since}&timeout=10000");
        let request = server.raw(http::Method::GET, &path).bearer_auth(&alice.access_token);
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            (Instant::now(), response.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "still waiting");
    let sent_at = Instant::now();
    send_text(&server, &alice.access_token, &room, "wake up").await;
    let (answered_at, body) = poll.await.unwrap();
    assert_eq!(bodies(&body["rooms"]["join"][&room]), vec!["wake up"]);
    let latency = answered_at.duration_since(sent_at);
    assert!(latency < Duration::from_millis(100), "answered {latency:?} after the send");
}

async fn gaps_are_limited_with_a_working_prev_batch(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    let since = sync(&server, &alice.access_token, "").await["next_batch"].as_str().unwrap().to_owned();
    for n in 0..15 {
        send_text(&server, &alice.access_token, &room, &format!("m{n}")).await;
    }
    let (status, _) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"), Some(&alice.access_token), json!({"topic": "changed"})).await;
    assert_eq!(status, StatusCode::OK);
    for n in 15..30 {
        send_text(&server, &alice.access_token, &room, &format!("m{n}")).await;
    }
    let filter = "%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A5%7D%7D%7D";
    let delta = sync(&server, &alice.access_token, &format!("?since={since}&filter={filter}")).await;
    let joined = &delta["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], true);
    assert_eq!(bodies(joined), vec!["m25", "m26", "m27", "m28", "m29"]);
    let state_types: Vec<&str> = joined["state"]["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(state_types, vec!["m.room.topic"], "the state change inside the gap");

    let prev_batch = joined["timeline"]["prev_batch"].as_str().unwrap();
    let (_, page) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=3&from={prev_batch}"), Some(&alice.access_token)).await;
    let older: Vec<&str> = page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(older, vec!["m24", "m23", "m22"], "prev_batch continues right before the timeline");
}

async fn invites_and_leaves_have_their_sections(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let since = sync(&server, &bob.access_token, "").await["next_batch"].as_str().unwrap().to_owned();
    let room = create_room(&server, &alice.access_token, json!({"name": "Invite only", "invite": [bob.user_id]})).await;
    let delta = sync(&server, &bob.access_token, &format!("?since={since}&timeout=5000")).await;
    let invite = &delta["rooms"]["invite"][&room]["invite_state"]["events"];
    let types: Vec<&str> = invite.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"m.room.name") && types.contains(&"m.room.member") && types.contains(&"m.room.create"), "{types:?}");
    assert!(invite.as_array().unwrap().iter().all(|e| e.get("event_id").is_none()), "stripped state");
    // Who invited, and the invitee's own profile in the invite, so clients can name both.
    let member_of = |user: &str| invite.as_array().unwrap().iter().find(|e| e["type"] == "m.room.member" && e["state_key"] == json!(user)).cloned();
    assert_eq!(member_of(&alice.user_id).expect("the inviter's member event")["content"]["membership"], "join", "{invite}");
    let own = member_of(&bob.user_id).expect("the invite");
    assert_eq!((own["content"]["membership"].as_str(), own["content"]["displayname"].as_str()), (Some("invite"), Some("bob")), "{own}");

    let since = delta["next_batch"].as_str().unwrap().to_owned();
    server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&bob.access_token), json!({})).await;
    let delta = sync(&server, &bob.access_token, &format!("?since={since}")).await;
    let joined = &delta["rooms"]["join"][&room];
    // A newly joined room comes whole: state before the timeline plus the timeline.
    let all: Vec<&str> = ["state", "timeline"]
        .iter()
        .flat_map(|section| joined[*section]["events"].as_array().into_iter().flatten())
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for kind in ["m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.name"] {
        assert!(all.contains(&kind), "{kind} missing: {joined}");
    }

    let since = delta["next_batch"].as_str().unwrap().to_owned();
    server.post(&format!("/_matrix/client/v3/rooms/{room}/kick"), Some(&alice.access_token), json!({"user_id": bob.user_id})).await;
    send_text(&server, &alice.access_token, &room, "after the kick").await;
    let delta = sync(&server, &bob.access_token, &format!("?since={since}")).await;
    let left = &delta["rooms"]["leave"][&room];
    let last = left["timeline"]["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["content"]["membership"], "leave", "{left}");
    assert!(!bodies(left).contains(&"after the kick".to_owned()), "nothing after leaving");
    assert!(delta["rooms"]["join"].get(&room).is_none());
    let state = left["state"]["events"].as_array().map_or(&[][..], Vec::as_slice);
    assert!(state.iter().all(|e| e["type"] != "m.room.create"), "only what changed, not the whole room again: {left}");
}

async fn stored_and_inline_filters(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let path = format!("/_matrix/client/v3/user/{}/filter", alice.user_id);
    let (status, created) = server.post(&path, Some(&alice.access_token), json!({"room": {"timeline": {"limit": 1}}})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["filter_id"].as_str().unwrap();
    let (status, stored) = server.get(&format!("{path}/{id}"), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["room"]["timeline"]["limit"], 1);
    let (status, _) = server.get(&format!("{path}/{id}"), Some(&bob.access_token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server.get(&format!("{path}/999"), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let room = create_room(&server, &alice.access_token, json!({})).await;
    send_text(&server, &alice.access_token, &room, "last").await;
    let by_id = sync(&server, &alice.access_token, &format!("?filter={id}")).await;
    assert_eq!(by_id["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap().len(), 1);
    assert_eq!(by_id["rooms"]["join"][&room]["timeline"]["limited"], true);
}

async fn tokens_survive_a_restart(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({})).await;
    send_text(&server, &alice.access_token, &room, "before").await;
    let since = sync(&server, &alice.access_token, "").await["next_batch"].as_str().unwrap().to_owned();
    let server = server.restart().await;
    send_text(&server, &alice.access_token, &room, "after").await;
    let delta = sync(&server, &alice.access_token, &format!("?since={since}")).await;
    assert_eq!(bodies(&delta["rooms"]["join"][&room]), vec!["after"]);
}

on_both_backends!(lazy_loading_sends_only_the_members_the_timeline_needs);

async fn lazy_loading_sends_only_the_members_the_timeline_needs(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    let mut others = Vec::new();
    for name in ["bob", "carol", "dave", "erin"] {
        let user = server.register(name, "pw").await;
        server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&user.access_token), json!({})).await;
        others.push(user);
    }
    let since = sync(&server, &alice.access_token, "").await["next_batch"].as_str().unwrap().to_owned();
    for n in 0..12 {
        send_text(&server, &alice.access_token, &room, &format!("a{n}")).await;
    }
    send_text(&server, &others[0].access_token, &room, "from bob").await;
    let lazy = "%7B%22room%22%3A%7B%22state%22%3A%7B%22lazy_load_members%22%3Atrue%7D%2C%22timeline%22%3A%7B%22limit%22%3A3%7D%7D%7D";
    for query in [format!("?filter={lazy}"), format!("?since={since}&filter={lazy}")] {
        let body = sync(&server, &alice.access_token, &query).await;
        let joined = &body["rooms"]["join"][&room];
        let members: Vec<&str> = joined["state"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "m.room.member")
            .map(|e| e["state_key"].as_str().unwrap())
            .collect();
        assert!(members.contains(&others[0].user_id.as_str()), "{query}: the sender's membership: {members:?}");
        for absent in &others[1..] {
            assert!(!members.contains(&absent.user_id.as_str()), "{query}: {} is not needed: {members:?}", absent.user_id);
        }
    }
    let full = sync(&server, &alice.access_token, "?filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A3%7D%7D%7D").await;
    let members = full["rooms"]["join"][&room]["state"]["events"].as_array().unwrap().iter().filter(|e| e["type"] == "m.room.member").count();
    assert_eq!(members, 5, "without lazy loading, every member");
}

async fn transaction_ids_reach_only_the_sending_device(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let other_device = server.login("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/my%20txn");
    let (_, sent) = server.put(&path, Some(&alice.access_token), json!({"msgtype": "m.text", "body": "echo"})).await;
    let event_id = sent["event_id"].as_str().unwrap().to_owned();
    let topic = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
    assert_eq!(server.put(&topic, Some(&alice.access_token), json!({"topic": "t"})).await.0, StatusCode::OK);

    let find = |events: &Value, id: &str| events.as_array().unwrap().iter().find(|e| e["event_id"] == id).cloned().expect("the event");
    let txn_of = |event: &Value| event["unsigned"]["transaction_id"].clone();
    let messages = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=10");
    let one = format!("/_matrix/client/v3/rooms/{room}/event/{event_id}");
    let context = format!("/_matrix/client/v3/rooms/{room}/context/{event_id}");

    let synced = sync(&server, &alice.access_token, "").await;
    let timeline = &synced["rooms"]["join"][&room]["timeline"]["events"];
    assert_eq!(txn_of(&find(timeline, &event_id)), json!("my txn"), "{timeline}");
    let state_event = timeline.as_array().unwrap().iter().find(|e| e["type"] == "m.room.topic").expect("the topic");
    assert_eq!(txn_of(state_event), Value::Null, "state PUTs have no transaction id");
    let (_, chunk) = server.get(&messages, Some(&alice.access_token)).await;
    assert_eq!(txn_of(&find(&chunk["chunk"], &event_id)), json!("my txn"));
    let (_, event) = server.get(&one, Some(&alice.access_token)).await;
    assert_eq!(txn_of(&event), json!("my txn"));
    let (_, around) = server.get(&context, Some(&alice.access_token)).await;
    assert_eq!(txn_of(&around["event"]), json!("my txn"));

    for (who, token) in [("another device", &other_device.access_token), ("another user", &bob.access_token)] {
        let synced = sync(&server, token, "").await;
        let timeline = &synced["rooms"]["join"][&room]["timeline"]["events"];
        let event = find(timeline, &event_id);
        assert_eq!(txn_of(&event), Value::Null, "{who}: {event}");
        assert!(event["unsigned"]["age"].is_number(), "{who}: unsigned keeps its age");
        let (_, chunk) = server.get(&messages, Some(token)).await;
        assert_eq!(txn_of(&find(&chunk["chunk"], &event_id)), Value::Null, "{who}");
        let (_, event) = server.get(&one, Some(token)).await;
        assert_eq!(txn_of(&event), Value::Null, "{who}");
        let (_, around) = server.get(&context, Some(token)).await;
        assert_eq!(txn_of(&around["event"]), Value::Null, "{who}");
    }
}

/// `summary`: member counts, and heroes while the room has no name.
async fn room_summaries_count_members_and_name_heroes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat", "invite": [carol.user_id]})).await;
    let (status, _) = server.post(&format!("/_matrix/client/v3/join/{room}"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);

    let initial = sync(&server, &alice.access_token, "").await;
    let summary = &initial["rooms"]["join"][&room]["summary"];
    assert_eq!(summary["m.joined_member_count"], 2, "{summary}");
    assert_eq!(summary["m.invited_member_count"], 1, "{summary}");
    assert_eq!(summary["m.heroes"], json!([carol.user_id, bob.user_id]), "others, in the order they came, never alice: {summary}");
    let since = initial["next_batch"].as_str().unwrap().to_owned();

    send_text(&server, &alice.access_token, &room, "no membership changed").await;
    let quiet = sync(&server, &alice.access_token, &format!("?since={since}")).await;
    assert!(quiet["rooms"]["join"][&room].get("summary").is_none(), "{quiet}");
    let since = quiet["next_batch"].as_str().unwrap().to_owned();

    let (status, _) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), Some(&alice.access_token), json!({"name": "Loom"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let changed = sync(&server, &alice.access_token, &format!("?since={since}")).await;
    let summary = &changed["rooms"]["join"][&room]["summary"];
    assert_eq!(summary["m.joined_member_count"], 1, "{summary}");
    assert!(summary.get("m.heroes").is_none(), "a named room needs no heroes: {summary}");
}

async fn set_presence_is_checked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let (status, body) = server.get("/_matrix/client/v3/sync?set_presence=bogus", Some(&alice.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{body}");
    let (_, presence) = server.get(&format!("/_matrix/client/v3/presence/{}/status", alice.user_id), Some(&alice.access_token)).await;
    assert_ne!(presence["presence"], "bogus", "{presence}");
    sync(&server, &alice.access_token, "?set_presence=unavailable").await;
}
