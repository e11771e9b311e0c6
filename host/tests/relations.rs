//! `/relations` and `/threads`.

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    rooms::{create_room, send_text},
    support::{Backend, TestServer},
};

on_both_backends!(
    relations_by_type_with_pagination,
    threads_list_roots_by_activity,
    thread_roots_carry_their_summary,
    edits_and_references_are_bundled,
    relations_recurse_to_a_depth,
    redacted_children_no_longer_relate,
    bad_relations_are_refused,
    a_threads_latest_reply_carries_its_edit,
);

async fn send(server: &TestServer, token: &str, room: &str, kind: &str, content: Value) -> String {
    let txn = format!("rel{}", content.to_string().len() + rand_suffix());
    let (status, body) = server.put(&format!("/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}"), Some(token), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

fn rand_suffix() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed) * 1000
}

fn ids(page: &Value) -> Vec<String> {
    page["chunk"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
}

async fn relations_by_type_with_pagination(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let eve = server.register("eve", "pw").await;
    let t = alice.access_token.as_str();
    let room = create_room(&server, t, json!({})).await;
    let parent = send_text(&server, t, &room, "parent").await;
    let react = |key: &str| json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": parent, "key": key}});
    let r1 = send(&server, t, &room, "m.reaction", react("👍")).await;
    let edit = send(
        &server,
        t,
        &room,
        "m.room.message",
        json!({"body": "* fixed", "m.new_content": {"body": "fixed"}, "m.relates_to": {"rel_type": "m.replace", "event_id": parent}}),
    )
    .await;
    let r2 = send(&server, t, &room, "m.reaction", react("🎉")).await;
    send_text(&server, t, &room, "unrelated").await;

    let base = format!("/_matrix/client/v1/rooms/{room}/relations/{parent}");
    let (status, all) = server.get(&base, Some(t)).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(ids(&all), vec![r2.clone(), edit.clone(), r1.clone()], "newest first, related only");
    let (_, annotations) = server.get(&format!("{base}/m.annotation"), Some(t)).await;
    assert_eq!(ids(&annotations), vec![r2.clone(), r1.clone()]);
    let (_, typed) = server.get(&format!("{base}/m.annotation/m.reaction?dir=f"), Some(t)).await;
    assert_eq!(ids(&typed), vec![r1.clone(), r2.clone()], "dir=f is oldest first");

    let (_, first) = server.get(&format!("{base}?limit=2"), Some(t)).await;
    assert_eq!(ids(&first), vec![r2, edit]);
    let next = first["next_batch"].as_str().expect("more to come");
    let (_, second) = server.get(&format!("{base}?limit=2&from={next}"), Some(t)).await;
    assert_eq!(ids(&second), vec![r1]);
    assert!(second.get("next_batch").is_none_or(Value::is_null));
    let (status, none) = server.get(&format!("{base}?limit=0"), Some(t)).await;
    assert_eq!((status, ids(&none)), (StatusCode::OK, Vec::<String>::new()), "{none}");

    let (status, _) = server.get(&base, Some(&eve.access_token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "non-members see nothing");
    let (status, _) = server.get(&format!("/_matrix/client/v1/rooms/{room}/relations/$nope"), Some(t)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn threads_list_roots_by_activity(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&bob.access_token), json!({})).await;
    let (a, b) = (alice.access_token.as_str(), bob.access_token.as_str());
    let root_a = send_text(&server, a, &room, "alice's thread").await;
    let root_b = send_text(&server, b, &room, "bob's thread").await;
    let reply = |root: &str| json!({"body": "reply", "m.relates_to": {"rel_type": "m.thread", "event_id": root}});
    send(&server, b, &room, "m.room.message", reply(&root_b)).await;
    send(&server, b, &room, "m.room.message", reply(&root_a)).await;

    let path = format!("/_matrix/client/v1/rooms/{room}/threads");
    let (status, all) = server.get(&path, Some(a)).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(ids(&all), vec![root_a.clone(), root_b.clone()], "most recent activity first");
    let (_, mine) = server.get(&format!("{path}?include=participated"), Some(a)).await;
    assert_eq!(ids(&mine), vec![root_a.clone()], "alice only took part in her own");
    let (_, page) = server.get(&format!("{path}?limit=1"), Some(a)).await;
    assert_eq!(ids(&page), vec![root_a]);
    let next = page["next_batch"].as_str().unwrap();
    let (_, page) = server.get(&format!("{path}?limit=1&from={next}"), Some(a)).await;
    assert_eq!(ids(&page), vec![root_b]);
    let (status, page) = server.get(&format!("{path}?limit=0"), Some(a)).await;
    assert_eq!((status, ids(&page)), (StatusCode::OK, Vec::<String>::new()), "{page}");
    let (status, page) = server.get(&format!("{path}?include=everything"), Some(a)).await;
    assert_eq!((status, page["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")), "{page}");
}

/// The bundled `m.thread` aggregation, wherever a thread root reaches a client.
async fn thread_roots_carry_their_summary(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    for token in [&bob.access_token, &carol.access_token] {
        server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(token), json!({})).await;
    }
    let (a, b) = (alice.access_token.as_str(), bob.access_token.as_str());
    let root = send_text(&server, a, &room, "a thread").await;
    let plain = send_text(&server, a, &room, "no thread").await;
    let reply = |body: &str| json!({"body": body, "m.relates_to": {"rel_type": "m.thread", "event_id": root}});
    send(&server, b, &room, "m.room.message", reply("first")).await;
    let latest = send(&server, b, &room, "m.room.message", reply("second")).await;

    let check = |event: &Value, viewer: &str, participated: bool| {
        let thread = &event["unsigned"]["m.relations"]["m.thread"];
        assert_eq!(thread["count"], 2, "{viewer}: {event}");
        assert_eq!(thread["latest_event"]["event_id"], json!(latest), "{viewer}: {event}");
        assert_eq!(thread["latest_event"]["content"]["body"], "second", "{viewer}: {event}");
        assert_eq!(thread["current_user_participated"], participated, "{viewer}: {event}");
    };
    for (viewer, token, participated) in [("alice", a, true), ("bob", b, true), ("carol", carol.access_token.as_str(), false)] {
        let (_, event) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{root}"), Some(token)).await;
        check(&event, viewer, participated);
    }
    let (_, page) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=10"), Some(a)).await;
    let chunk = page["chunk"].as_array().unwrap();
    check(chunk.iter().find(|event| event["event_id"] == json!(root)).expect("the root in /messages"), "messages", true);
    let unthreaded = chunk.iter().find(|event| event["event_id"] == json!(plain)).unwrap();
    assert!(unthreaded["unsigned"].get("m.relations").is_none(), "{unthreaded}");
    let (_, sync) = server.get("/_matrix/client/v3/sync", Some(a)).await;
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    check(timeline.iter().find(|event| event["event_id"] == json!(root)).expect("the root in /sync"), "sync", true);
    let (_, threads) = server.get(&format!("/_matrix/client/v1/rooms/{room}/threads"), Some(a)).await;
    check(&threads["chunk"][0], "threads", true);
    let (_, context) = server.get(&format!("/_matrix/client/v3/rooms/{room}/context/{root}"), Some(a)).await;
    check(&context["event"], "context", true);
}

fn edit(parent: &str, body: &str) -> Value {
    json!({"body": format!("* {body}"), "m.new_content": {"msgtype": "m.text", "body": body}, "m.relates_to": {"rel_type": "m.replace", "event_id": parent}})
}

/// `m.replace` bundles the latest valid edit (the original's sender, same
/// type, with `m.new_content`); `m.reference` lists the referencing events.
async fn edits_and_references_are_bundled(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&bob.access_token), json!({})).await;
    let (a, b) = (alice.access_token.as_str(), bob.access_token.as_str());
    let original = send_text(&server, a, &room, "tpyo").await;
    send(&server, a, &room, "m.room.message", edit(&original, "typo?")).await;
    let latest = send(&server, a, &room, "m.room.message", edit(&original, "typo")).await;
    // Not valid: another sender, and an edit without m.new_content.
    send(&server, b, &room, "m.room.message", edit(&original, "bob's")).await;
    send(&server, a, &room, "m.room.message", json!({"body": "x", "m.relates_to": {"rel_type": "m.replace", "event_id": original}})).await;
    let reference =
        send(&server, b, &room, "m.room.message", json!({"body": "see above", "m.relates_to": {"rel_type": "m.reference", "event_id": original}})).await;

    let check = |event: &Value, place: &str| {
        let relations = &event["unsigned"]["m.relations"];
        assert_eq!(relations["m.replace"]["event_id"], json!(latest), "{place}: {event}");
        assert_eq!(relations["m.replace"]["content"]["m.new_content"]["body"], "typo", "{place}: {event}");
        assert_eq!(relations["m.replace"]["sender"], json!(alice.user_id), "{place}: {event}");
        assert_eq!(relations["m.reference"], json!({"chunk": [{"event_id": reference}]}), "{place}: {event}");
        assert_eq!(event["content"]["body"], "tpyo", "{place}: the original's content is left as it was");
    };
    let (_, event) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{original}"), Some(b)).await;
    check(&event, "event");
    let (_, page) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20"), Some(b)).await;
    check(page["chunk"].as_array().unwrap().iter().find(|e| e["event_id"] == json!(original)).unwrap(), "messages");
    let (_, sync) = server.get("/_matrix/client/v3/sync", Some(a)).await;
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    check(timeline.iter().find(|e| e["event_id"] == json!(original)).unwrap(), "sync");

    // Once the original is redacted, its edits are no longer bundled.
    let (status, body) = server.put(&format!("/_matrix/client/v3/rooms/{room}/redact/{original}/r1"), Some(a), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, event) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{original}"), Some(b)).await;
    assert!(event["unsigned"]["m.relations"].get("m.replace").is_none(), "{event}");
}

/// `recurse` also returns what relates to the children, and says how deep it went.
async fn relations_recurse_to_a_depth(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let t = alice.access_token.as_str();
    let room = create_room(&server, t, json!({})).await;
    let root = send_text(&server, t, &room, "root").await;
    let reply = send(&server, t, &room, "m.room.message", json!({"body": "in thread", "m.relates_to": {"rel_type": "m.thread", "event_id": root}})).await;
    let reaction = send(&server, t, &room, "m.reaction", json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": reply, "key": "👍"}})).await;

    let base = format!("/_matrix/client/v1/rooms/{room}/relations/{root}");
    let (status, direct) = server.get(&base, Some(t)).await;
    assert_eq!(status, StatusCode::OK, "{direct}");
    assert_eq!(ids(&direct), vec![reply.clone()]);
    assert!(direct.get("recursion_depth").is_none(), "absent without recurse: {direct}");
    let (_, deep) = server.get(&format!("{base}?recurse=true"), Some(t)).await;
    assert_eq!(ids(&deep), vec![reaction.clone(), reply.clone()]);
    assert_eq!(deep["recursion_depth"], 3, "{deep}");
    let (_, annotations) = server.get(&format!("{base}/m.annotation?recurse=true"), Some(t)).await;
    assert_eq!(ids(&annotations), vec![reaction], "the filter applies to every level");
}

/// A redacted reply, edit or reaction drops out of `/relations` and the counts.
async fn redacted_children_no_longer_relate(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let t = alice.access_token.as_str();
    let room = create_room(&server, t, json!({})).await;
    let root = send_text(&server, t, &room, "root").await;
    let reply = |body: &str| json!({"body": body, "m.relates_to": {"rel_type": "m.thread", "event_id": root}});
    let kept = send(&server, t, &room, "m.room.message", reply("kept")).await;
    let gone = send(&server, t, &room, "m.room.message", reply("gone")).await;
    let (status, body) = server.put(&format!("/_matrix/client/v3/rooms/{room}/redact/{gone}/r1"), Some(t), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (_, page) = server.get(&format!("/_matrix/client/v1/rooms/{room}/relations/{root}"), Some(t)).await;
    assert_eq!(ids(&page), vec![kept.clone()]);
    let (_, event) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{root}"), Some(t)).await;
    let thread = &event["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(thread["count"], 1, "{event}");
    assert_eq!(thread["latest_event"]["event_id"], json!(kept), "{event}");
}

/// Synapse's checks: a known parent in the room, one identical reaction per
/// sender, a key, no thread from a relation; a retried transaction still
/// gets its first answer.
async fn bad_relations_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let t = alice.access_token.as_str();
    let room = create_room(&server, t, json!({})).await;
    let other = create_room(&server, t, json!({})).await;
    let parent = send_text(&server, t, &room, "parent").await;
    let elsewhere = send_text(&server, t, &other, "elsewhere").await;
    let react = |parent: &str, key: &str| json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": parent, "key": key}});
    let put = |txn: &str, kind: &str, content: Value| {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}");
        let server = &server;
        async move { server.put(&path, Some(t), content).await }
    };
    let (status, first) = put("r1", "m.reaction", react(&parent, "👍")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = put("r1", "m.reaction", react(&parent, "👍")).await;
    assert_eq!((status, &again["event_id"]), (StatusCode::OK, &first["event_id"]), "the same transaction: {again}");
    let (status, body) = put("r2", "m.reaction", react(&parent, "👍")).await;
    assert_eq!((status, crate::support::errcode(&body)), (StatusCode::BAD_REQUEST, "M_DUPLICATE_ANNOTATION"), "{body}");
    let (status, _) = put("r3", "m.reaction", react(&parent, "🎉")).await;
    assert_eq!(status, StatusCode::OK, "another key is another reaction");

    let thread = |parent: &str| json!({"body": "t", "m.relates_to": {"rel_type": "m.thread", "event_id": parent}});
    let reply = put("t1", "m.room.message", thread(&parent)).await.1["event_id"].as_str().unwrap().to_owned();
    for (txn, kind, content) in [
        ("b1", "m.reaction", react("$unknown:nowhere", "x")),
        ("b2", "m.reaction", react(&elsewhere, "x")),
        ("b3", "m.reaction", json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": parent}})),
        ("b4", "m.reaction", react(&parent, &"k".repeat(501))),
        ("b5", "m.room.message", thread(&reply)),
    ] {
        let (status, body) = put(txn, kind, content.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{content}: {body}");
    }
}

/// The thread summary's latest reply comes with its latest edit.
async fn a_threads_latest_reply_carries_its_edit(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let t = alice.access_token.as_str();
    let room = create_room(&server, t, json!({})).await;
    let root = send_text(&server, t, &room, "root").await;
    let reply = send(&server, t, &room, "m.room.message", json!({"body": "tpyo", "m.relates_to": {"rel_type": "m.thread", "event_id": root}})).await;
    let fix = send(&server, t, &room, "m.room.message", edit(&reply, "typo")).await;
    let (_, event) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{root}"), Some(t)).await;
    let latest = &event["unsigned"]["m.relations"]["m.thread"]["latest_event"];
    assert_eq!(latest["event_id"], json!(reply), "{event}");
    assert_eq!(latest["unsigned"]["m.relations"]["m.replace"]["event_id"], json!(fix), "{event}");
}
