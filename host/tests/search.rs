//! `POST /search` over message bodies (PostgreSQL text search, SQLite FTS5).

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::{create_room, send_text},
    support::{Backend, TestServer},
};

on_both_backends!(search_finds_visible_messages_in_joined_rooms);

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

    let (_, reply) = server.post(
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
    let (_, page) = server.post(
        "/_matrix/client/v3/search",
        Some(&alice.access_token),
        json!({"search_categories": {"room_events": {"search_term": "weather", "order_by": "recent", "filter": {"limit": 1}}}}),
    )
    .await;
    assert_eq!(bodies(&page), vec!["secret weather report"], "newest first, the redacted one gone");
    let next = page["search_categories"]["room_events"]["next_batch"].as_str().unwrap();
    let (_, page) = server.post(&format!("/_matrix/client/v3/search?next_batch={next}"), Some(&alice.access_token), json!({"search_categories": {"room_events": {"search_term": "weather", "order_by": "recent", "filter": {"limit": 1}}}})).await;
    assert_eq!(bodies(&page), vec!["the weather is lovely today"]);
}
