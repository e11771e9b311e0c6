//! Ignoring users (`m.ignored_user_list`): what they send is hidden from
//! `/sync`, `/messages`, `/context` and `/event`, does not notify, and their
//! invites are not shown; their state events still are, as the spec says.

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::{create_room, send_text},
    support::{Backend, TestServer},
};

on_both_backends!(what_ignored_users_send_is_hidden);

fn bodies(events: &Value) -> Vec<String> {
    events.as_array().into_iter().flatten().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect()
}

async fn what_ignored_users_send_is_hidden(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (a, b) = (alice.access_token.as_str(), bob.access_token.as_str());
    let room = create_room(&server, a, json!({"preset": "public_chat"})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(b), json!({})).await;
    let path = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", alice.user_id);
    let (status, body) = server.put(&path, Some(a), json!({"ignored_users": {bob.user_id.clone(): {}}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    send_text(&server, a, &room, "from alice").await;
    let hidden = send_text(&server, b, &room, "from bob").await;

    let (_, sync) = server.get("/_matrix/client/v3/sync", Some(a)).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert_eq!(bodies(timeline), vec!["from alice"], "{timeline}");
    assert!(timeline.as_array().unwrap().iter().any(|e| e["type"] == "m.room.member" && e["sender"] == json!(bob.user_id)), "state stays: {timeline}");
    let unread = &sync["rooms"]["join"][&room]["unread_notifications"];
    assert!(unread["notification_count"].as_u64().unwrap_or(0) == 0, "bob's message does not notify alice: {unread}");
    let (_, bob_sync) = server.get("/_matrix/client/v3/sync", Some(b)).await;
    assert_eq!(bob_sync["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 1, "alice's does notify bob");
    let (_, page) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20"), Some(a)).await;
    assert_eq!(bodies(&page["chunk"]), vec!["from alice"]);
    let (status, _) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{hidden}"), Some(a)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, page) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20"), Some(b)).await;
    assert_eq!(bodies(&page["chunk"]), vec!["from bob", "from alice"], "bob ignores no one");

    // Bob's invites do not reach alice either.
    let since = sync["next_batch"].as_str().unwrap().to_owned();
    let private = create_room(&server, b, json!({"invite": [alice.user_id]})).await;
    let (_, delta) = server.get(&format!("/_matrix/client/v3/sync?since={since}"), Some(a)).await;
    assert!(delta["rooms"]["invite"].get(&private).is_none(), "{delta}");
}
