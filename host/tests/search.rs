//! `POST /search` over message bodies (PostgreSQL text search, SQLite FTS5).

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::{create_room, send_text},
    support::{Backend, TestServer},
};

on_both_backends!(search_finds_visible_messages_in_joined_rooms, search_gives_context_groups_state_and_counts);

fn bodies(reply: &Value) -> Vec<String> {
    // ruma leaves out an empty result list.
    reply["search_categories"]["room_events"]["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["result"]["content"]["body"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn search_finds_visible_messages_in_joined_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let shared = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    let private = create_room(&server, &alice.access_token, json!({})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{shared}/join"), Some(&bob.access_token), json!({})).await;
    send_text(&server, &alice.access_token, &shared, "the weather is lovely today").await;
    send_text(&server, &alice.access_token, &shared, "lunch at noon?").await;
    send_text(&server, &alice.access_token, &private, "secret weather report").await;
    let doomed = send_text(&server, &alice.access_token, &shared, "weather balloon sighted").await;

    let query = |term: &str, order: &str| json!({"search_categories": {"room_events": {"search_term": term, "order_by": order}}});
    let (status, reply) = server.post("/_matrix/client/v3/search", Some(&alice.access_token), query("weather", "recent")).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(bodies(&reply), vec!["weather balloon sighted", "secret weather report", "the weather is lovely today"]);

    let (_, reply) = server.post("/_matrix/client/v3/search", Some(&bob.access_token), query("weather", "rank")).await;
    let found = bodies(&reply);
    assert_eq!(found.len(), 2, "bob is not in the private room: {found:?}");
    assert!(!found.iter().any(|b| b.contains("secret")));

    let (_, reply) = server
        .post(
            "/_matrix/client/v3/search",
            Some(&alice.access_token),
            json!({"search_categories": {"room_events": {"search_term": "weather", "filter": {"rooms": [private]}}}}),
        )
        .await;
    assert_eq!(bodies(&reply), vec!["secret weather report"], "filter.rooms restricts");

    server.put(&format!("/_matrix/client/v3/rooms/{shared}/redact/{doomed}/r1"), Some(&alice.access_token), json!({})).await;
    let (_, reply) = server.post("/_matrix/client/v3/search", Some(&alice.access_token), query("balloon", "recent")).await;
    assert!(bodies(&reply).is_empty(), "redacted text is not found: {reply}");

    for odd in ["\"unbalanced", "AND OR NOT", "*", "  "] {
        let (status, _) = server.post("/_matrix/client/v3/search", Some(&alice.access_token), query(odd, "rank")).await;
        assert_eq!(status, StatusCode::OK, "{odd:?} is not a server error");
    }
    let (_, page) = server
        .post(
            "/_matrix/client/v3/search",
            Some(&alice.access_token),
            json!({"search_categories": {"room_events": {"search_term": "weather", "order_by": "recent", "filter": {"limit": 1}}}}),
        )
        .await;
    assert_eq!(bodies(&page), vec!["secret weather report"], "newest first, the redacted one gone");
    let next = page["search_categories"]["room_events"]["next_batch"].as_str().unwrap();
    let (_, page) = server
        .post(
            &format!("/_matrix/client/v3/search?next_batch={next}"),
            Some(&alice.access_token),
            json!({"search_categories": {"room_events": {"search_term": "weather", "order_by": "recent", "filter": {"limit": 1}}}}),
        )
        .await;
    assert_eq!(bodies(&page), vec!["the weather is lovely today"]);
}

/// `count`, `context` (with profiles), `groups`, `include_state`, `keys`
/// and the room event filter, paginated across several queries' worth.
async fn search_gives_context_groups_state_and_counts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (a, b) = (alice.access_token.as_str(), bob.access_token.as_str());
    let room = create_room(&server, a, json!({"preset": "public_chat", "name": "Kites and more"})).await;
    let other = create_room(&server, a, json!({})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(b), json!({})).await;
    server.put(&format!("/_matrix/client/v3/profile/{}/displayname", bob.user_id), Some(b), json!({"displayname": "Bobby"})).await;
    send_text(&server, a, &room, "before").await;
    let middle = send_text(&server, b, &room, "flying kites").await;
    send_text(&server, a, &room, "after").await;
    send_text(&server, a, &other, "kites elsewhere").await;

    let search = |criteria: Value| {
        let server = &server;
        async move {
            let (status, reply) = server.post("/_matrix/client/v3/search", Some(a), json!({"search_categories": {"room_events": criteria}})).await;
            assert_eq!(status, StatusCode::OK, "{reply}");
            reply["search_categories"]["room_events"].clone()
        }
    };
    let criteria = json!({
        "search_term": "kites", "order_by": "recent", "include_state": true,
        "event_context": {"before_limit": 1, "after_limit": 1, "include_profile": true},
        "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]},
        "keys": ["content.body"],
    });
    let found = search(criteria.clone()).await;
    assert_eq!(found["count"], 3, "an estimate: every match in alice's rooms, the room name included: {found}");
    let results = found["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "the room name matches too, but keys asks for bodies only: {found}");
    let in_room = results.iter().find(|r| r["result"]["event_id"] == json!(middle)).unwrap();
    let context = &in_room["context"];
    assert_eq!(context["events_before"][0]["content"]["body"], "before", "{context}");
    assert_eq!(context["events_after"][0]["content"]["body"], "after", "{context}");
    assert!(context["start"].is_string() && context["end"].is_string(), "{context}");
    assert_eq!(context["profile_info"][&bob.user_id]["displayname"], "Bobby", "{context}");
    assert_eq!(found["groups"]["room_id"][&room]["results"], json!([middle]), "{found}");
    assert_eq!(found["groups"]["sender"][&bob.user_id]["results"], json!([middle]), "{found}");
    let state = found["state"][&room].as_array().expect("the room's state");
    assert!(state.iter().any(|event| event["type"] == "m.room.name"), "{found}");

    let found = search(json!({"search_term": "kites", "keys": ["content.name"]})).await;
    assert_eq!(found["results"][0]["result"]["type"], "m.room.name", "{found}");
    let found = search(json!({"search_term": "kites", "filter": {"senders": [bob.user_id]}})).await;
    assert_eq!(found["results"].as_array().map(Vec::len), Some(1), "{found}");
    let found = search(json!({"search_term": "kites", "filter": {"not_rooms": [room]}})).await;
    assert_eq!(found["results"][0]["result"]["content"]["body"], "kites elsewhere", "{found}");

    for _ in 0..3 {
        send_text(&server, a, &other, "more kites").await;
    }
    let first = search(json!({"search_term": "kites", "order_by": "recent", "filter": {"limit": 2, "types": ["m.room.message"]}})).await;
    assert_eq!(first["results"].as_array().unwrap().len(), 2);
    assert_eq!(first["count"], 6, "every match, the room name included: {first}");
    let next = first["next_batch"].as_str().expect("a next page");
    let (status, rest) = server
        .post(
            &format!("/_matrix/client/v3/search?next_batch={next}"),
            Some(a),
            json!({"search_categories": {"room_events": {"search_term": "kites", "order_by": "recent", "filter": {"limit": 10, "types": ["m.room.message"]}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    assert_eq!(rest["search_categories"]["room_events"]["results"].as_array().unwrap().len(), 3, "{rest}");

    let (status, reply) = server
        .post(
            "/_matrix/client/v3/search",
            Some(a),
            json!({"search_categories": {"room_events": {"search_term": "kites", "groupings": {"group_by": [{"key": "nope"}]}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let nothing = search(json!({"search_term": "nothingmatchesthis"})).await;
    assert_eq!(nothing["results"], json!([]), "the list is there, empty: {nothing}");
}
