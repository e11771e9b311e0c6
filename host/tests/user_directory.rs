//! `/user_directory/search` and the background updater that keeps the
//! directory: who is found (shared private rooms, public rooms), profile
//! changes, leaves, rooms turning public or private, `limited`, blank terms,
//! ranking, restarts, and an instance that is not the updater.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};
use weft::storage::Stream;

use crate::{
    on_both_backends,
    rooms::create_room,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(
    finds_users_sharing_a_room_or_in_a_public_room,
    profile_changes_leaves_and_publicity_are_followed,
    limits_blank_terms_ranking_and_bad_requests,
    deactivated_and_support_users_are_not_found,
    the_position_survives_a_restart,
    a_position_passed_by_messages_alone_is_saved,
    only_the_named_instance_updates,
    an_event_the_updater_cannot_handle_is_skipped_and_counted,
);

const SEARCH: &str = "/_matrix/client/v3/user_directory/search";

async fn search(server: &TestServer, token: &str, term: &str) -> Value {
    let (status, body) = server.post(SEARCH, Some(token), json!({"search_term": term})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn found(body: &Value) -> Vec<String> {
    body["results"].as_array().unwrap().iter().map(|user| user["user_id"].as_str().unwrap().to_owned()).collect()
}

/// Waits until the updater has handled every persisted event.
async fn caught_up(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let target = server.state.notifier.position(Stream::Events);
        if server.state.storage.user_directory_position().await.unwrap() >= target {
            return;
        }
        assert!(Instant::now() < deadline, "the user directory updater did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the search until `check` holds for its body.
async fn eventually(server: &TestServer, token: &str, term: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = search(server, token, term).await;
        if check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "search {term:?} never satisfied the check; last: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn join(server: &TestServer, token: &str, room: &str) {
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn invite_and_join(server: &TestServer, inviter: &str, room: &str, invitee: &str, invitee_token: &str) {
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), Some(inviter), json!({"user_id": server.user_id(invitee)})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    join(server, invitee_token, room).await;
}

async fn put_state(server: &TestServer, token: &str, room: &str, kind: &str, content: Value) {
    let (status, body) = server.put(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}/"), Some(token), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn set_profile(server: &TestServer, token: &str, localpart: &str, field: &str, value: &str) {
    let path = format!("/_matrix/client/v3/profile/{}/{field}", server.user_id(localpart));
    let (status, body) = server.put(&path, Some(token), json!({ field: value })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn finds_users_sharing_a_room_or_in_a_public_room(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let dave = server.register("dave", "pw").await;
    let eve = server.register("eve", "pw").await;
    let frank = server.register("frank", "pw").await;

    let private = create_room(&server, &alice.access_token, json!({"preset": "private_chat"})).await;
    invite_and_join(&server, &alice.access_token, &private, "bob", &bob.access_token).await;
    let other = create_room(&server, &carol.access_token, json!({"preset": "private_chat"})).await;
    invite_and_join(&server, &carol.access_token, &other, "dave", &dave.access_token).await;
    let public = create_room(&server, &eve.access_token, json!({"preset": "public_chat"})).await;
    join(&server, &frank.access_token, &public).await;

    let body = eventually(&server, &alice.access_token, "bob", |body| !found(body).is_empty()).await;
    assert_eq!(body, json!({"limited": false, "results": [{"user_id": server.user_id("bob"), "display_name": "bob"}]}));
    caught_up(&server).await;
    assert_eq!(found(&search(&server, &bob.access_token, "alice").await), [server.user_id("alice")], "both ways");
    assert_eq!(found(&search(&server, &alice.access_token, "frank").await), [server.user_id("frank")], "public room members");
    assert_eq!(found(&search(&server, &dave.access_token, "eve").await), [server.user_id("eve")]);
    assert!(found(&search(&server, &alice.access_token, "dave").await).is_empty(), "a private room alice is not in");
    assert!(found(&search(&server, &carol.access_token, "alice").await).is_empty());
    assert!(found(&search(&server, &carol.access_token, "carol").await).is_empty(), "sharing a room with yourself shows nothing");
    assert_eq!(found(&search(&server, &frank.access_token, "frank").await), [server.user_id("frank")], "a public room shows you too");

    // World-readable history makes an invite-only room public for the directory.
    let gina = server.register("gina", "pw").await;
    let readable = create_room(&server, &gina.access_token, json!({"preset": "private_chat"})).await;
    put_state(&server, &gina.access_token, &readable, "m.room.history_visibility", json!({"history_visibility": "world_readable"})).await;
    eventually(&server, &alice.access_token, "gina", |body| found(body) == [server.user_id("gina")]).await;

    // Invites and knocks are not memberships the directory counts.
    let henry = server.register("henry", "pw").await;
    let (status, _) =
        server.post(&format!("/_matrix/client/v3/rooms/{private}/invite"), Some(&alice.access_token), json!({"user_id": server.user_id("henry")})).await;
    assert_eq!(status, StatusCode::OK);
    caught_up(&server).await;
    assert!(found(&search(&server, &alice.access_token, "henry").await).is_empty());
    assert!(found(&search(&server, &henry.access_token, "alice").await).is_empty());
}

async fn profile_changes_leaves_and_publicity_are_followed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "private_chat"})).await;
    invite_and_join(&server, &alice.access_token, &room, "bob", &bob.access_token).await;
    eventually(&server, &alice.access_token, "bob", |body| found(body) == [server.user_id("bob")]).await;

    set_profile(&server, &bob.access_token, "bob", "displayname", "Robert Paulson").await;
    let body = eventually(&server, &alice.access_token, "paul", |body| !found(body).is_empty()).await;
    assert_eq!(body["results"][0]["display_name"], "Robert Paulson");
    for term in ["ROB", "robert paul", "Paulson Robert", "@bob", "bob:", &server.user_id("bob")] {
        assert_eq!(found(&search(&server, &alice.access_token, term).await), [server.user_id("bob")], "{term}");
    }
    assert!(found(&search(&server, &alice.access_token, "robert smith").await).is_empty(), "every word must match");
    set_profile(&server, &bob.access_token, "bob", "avatar_url", "mxc://example.org/face").await;
    let body = eventually(&server, &alice.access_token, "bob", |body| body["results"][0]["avatar_url"] == "mxc://example.org/face").await;
    assert_eq!(body["results"][0]["display_name"], "Robert Paulson");
    set_profile(&server, &bob.access_token, "bob", "displayname", "Tyler").await;
    eventually(&server, &alice.access_token, "tyler", |body| found(body) == [server.user_id("bob")]).await;
    assert!(found(&search(&server, &alice.access_token, "paulson").await).is_empty(), "the old name is forgotten");

    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    eventually(&server, &alice.access_token, "bob", |body| found(body).is_empty()).await;
    assert!(found(&search(&server, &bob.access_token, "alice").await).is_empty());

    // A room turning public shows its members to everyone, and turning private hides them again.
    let carol = server.register("carol", "pw").await;
    let lonely = create_room(&server, &carol.access_token, json!({"preset": "private_chat"})).await;
    caught_up(&server).await;
    assert!(found(&search(&server, &alice.access_token, "carol").await).is_empty());
    put_state(&server, &carol.access_token, &lonely, "m.room.join_rules", json!({"join_rule": "public"})).await;
    eventually(&server, &alice.access_token, "carol", |body| found(body) == [server.user_id("carol")]).await;
    join(&server, &alice.access_token, &lonely).await;
    put_state(&server, &carol.access_token, &lonely, "m.room.join_rules", json!({"join_rule": "invite"})).await;
    caught_up(&server).await;
    assert_eq!(found(&search(&server, &alice.access_token, "carol").await), [server.user_id("carol")], "now through the shared room");
    assert!(found(&search(&server, &bob.access_token, "carol").await).is_empty(), "no longer public");
}

async fn limits_blank_terms_ranking_and_bad_requests(backend: Backend) {
    let server = TestServer::start(backend).await;
    let owner = server.register("owner", "pw").await;
    let room = create_room(&server, &owner.access_token, json!({"preset": "public_chat"})).await;
    for n in 1..=5 {
        let user = server.register(&format!("user{n}"), "pw").await;
        set_profile(&server, &user.access_token, &format!("user{n}"), "displayname", &format!("Tester {n}")).await;
        join(&server, &user.access_token, &room).await;
    }
    for localpart in ["sam", "samantha", "bert"] {
        let user = server.register(localpart, "pw").await;
        join(&server, &user.access_token, &room).await;
    }
    let bert = server.login("bert", "pw").await;
    set_profile(&server, &bert.access_token, "bert", "displayname", "Sam Smith").await;
    eventually(&server, &owner.access_token, "tester", |body| found(body).len() == 5).await;
    eventually(&server, &owner.access_token, "smith", |body| found(body).len() == 1).await;

    let token = Some(owner.access_token.as_str());
    let (status, body) = server.post(SEARCH, token, json!({"search_term": "tester", "limit": 3})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((found(&body).len(), body["limited"].clone()), (3, json!(true)));
    let body = search(&server, &owner.access_token, "tester").await;
    assert_eq!((found(&body).len(), body["limited"].clone()), (5, json!(false)), "the default limit is 10");
    let (_, body) = server.post(SEARCH, token, json!({"search_term": "tester", "limit": 5})).await;
    assert_eq!((found(&body).len(), body["limited"].clone()), (5, json!(false)));
    let (_, body) = server.post(SEARCH, token, json!({"search_term": "tester", "limit": 0})).await;
    assert_eq!(body, json!({"limited": true, "results": []}));
    assert_eq!(found(&search(&server, &owner.access_token, "tester 3").await), [server.user_id("user3")]);
    assert_eq!(found(&search(&server, &owner.access_token, "user").await).len(), 5, "localpart prefixes");

    // An exact localpart beats a prefix of one, which beats a display-name prefix.
    let ranked = found(&search(&server, &owner.access_token, "sam").await);
    assert_eq!(ranked, [server.user_id("sam"), server.user_id("bert"), server.user_id("samantha")]);

    for blank in ["", "   ", "@:", "!!"] {
        assert_eq!(search(&server, &owner.access_token, blank).await, json!({"limited": false, "results": []}), "{blank:?}");
    }
    let (status, body) = server.post(SEARCH, token, json!({"limit": 3})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"));
    let (status, body) = server.post(SEARCH, token, json!({"search_term": "x", "limit": "many"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"));
    let (status, body) = server.post(SEARCH, token, json!({"search_term": "x", "limit": -1})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"));
    let (status, body) = server.post(SEARCH, None, json!({"search_term": "x"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"));
}

async fn deactivated_and_support_users_are_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    join(&server, &bob.access_token, &room).await;
    eventually(&server, &alice.access_token, "bob", |body| found(body) == [server.user_id("bob")]).await;
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"}, "password": "pw"});
    let (status, body) = server.post("/_matrix/client/v3/account/deactivate", Some(&bob.access_token), json!({"auth": auth})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(found(&search(&server, &alice.access_token, "bob").await).is_empty());

    // Support accounts are left out too, as in Synapse.
    let admin = "/_synapse/admin/v1/register";
    let nonce = server.get(admin, None).await.1["nonce"].as_str().unwrap().to_owned();
    let mac = weft::api::admin::compute_mac("test-shared-secret", &nonce, "helpdesk", "pw", false, Some("support"));
    let mac = hex::encode(hmac::Mac::finalize(mac).into_bytes());
    let body = json!({"nonce": nonce, "username": "helpdesk", "password": "pw", "admin": false, "user_type": "support", "mac": mac});
    let (status, reply) = server.post(admin, None, body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let helpdesk = server.login("helpdesk", "pw").await;
    join(&server, &helpdesk.access_token, &room).await;
    caught_up(&server).await;
    assert!(found(&search(&server, &alice.access_token, "helpdesk").await).is_empty());
    assert_eq!(found(&search(&server, &helpdesk.access_token, "alice").await), [server.user_id("alice")], "they can still search");
}

async fn the_position_survives_a_restart(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    join(&server, &bob.access_token, &room).await;
    eventually(&server, &alice.access_token, "bob", |body| !found(body).is_empty()).await;
    caught_up(&server).await;
    let before_dave = server.state.storage.user_directory_position().await.unwrap();
    assert!(before_dave > 0);
    let dave = server.register("dave", "pw").await;
    join(&server, &dave.access_token, &room).await;
    caught_up(&server).await;
    let saved = server.state.storage.user_directory_position().await.unwrap();

    let server = server.restart().await;
    assert_eq!(server.state.storage.user_directory_position().await.unwrap(), saved, "resumes where it stopped");
    let alice = server.login("alice", "pw").await;
    let carol = server.register("carol", "pw").await;
    join(&server, &carol.access_token, &room).await;
    eventually(&server, &alice.access_token, "carol", |body| found(body) == [server.user_id("carol")]).await;
    assert_eq!(found(&search(&server, &alice.access_token, "bob").await), [server.user_id("bob")], "earlier entries kept");

    // As if it had stopped before saving its last batches: those events are
    // handled again on the next start, and handling them twice changes nothing.
    caught_up(&server).await;
    server.state.storage.set_user_directory_position(before_dave).await.unwrap();
    let server = server.restart().await;
    caught_up(&server).await;
    let alice = server.login("alice", "pw").await;
    for name in ["bob", "carol", "dave"] {
        assert_eq!(found(&search(&server, &alice.access_token, name).await), [server.user_id(name)], "{name}");
    }
}

/// Messages change nothing in the directory, so the updater does not write
/// its position for each; it still saves a position they alone moved,
/// within `SAVE_INTERVAL` (one second), and a restart resumes from there.
async fn a_position_passed_by_messages_alone_is_saved(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    caught_up(&server).await;
    let before = server.state.storage.user_directory_position().await.unwrap();
    for n in 0..5 {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t{n}");
        let (status, body) = server.put(&path, Some(&alice.access_token), json!({"msgtype": "m.text", "body": "hello"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let target = server.state.notifier.position(Stream::Events);
    assert!(target > before);
    caught_up(&server).await;
    let saved = server.state.storage.user_directory_position().await.unwrap();
    assert!(saved >= target, "saved {saved}, messages up to {target}");

    let server = server.restart().await;
    assert_eq!(server.state.storage.user_directory_position().await.unwrap(), saved, "resumes where it stopped");
}

/// Names another instance as the updater: it must be declared in `instance_map`,
/// and declaring one means workers, which the validator accepts only with PostgreSQL.
const ANOTHER_UPDATER: &str = "update_user_directory_from_worker = \"someone_else\"\nworker_replication_secret = \"secret\"\n\
     [redis]\nenabled = true\n\
     [instance_map]\nmain = { host = \"127.0.0.1\", port = 9093 }\nsomeone_else = { host = \"127.0.0.1\", port = 9094 }\n";

async fn only_the_named_instance_updates(backend: Backend) {
    let refused = |text: &str| weft::config::load_str("test.toml", text).expect_err("refused").to_string();
    let base = "server_name = \"example.org\"\n";
    let undeclared = refused(&format!("{base}update_user_directory_from_worker = \"nobody\"\n"));
    assert!(undeclared.contains("`nobody` is not a known instance"), "{undeclared}");
    if backend == Backend::Sqlite {
        // So with SQLite the main process is always the updater.
        let sqlite = refused(&format!("{base}{ANOTHER_UPDATER}[database]\nname = \"sqlite3\"\n[database.args]\ndatabase = \"x.db\"\n"));
        assert!(sqlite.contains("workers need PostgreSQL"), "{sqlite}");
        return;
    }
    let server = TestServer::builder(backend).config(ANOTHER_UPDATER).start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    join(&server, &bob.access_token, &room).await;
    assert!(server.state.notifier.position(Stream::Events) > 0);
    // Nothing to poll for: give a would-be updater time to act.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.state.storage.user_directory_position().await.unwrap(), 0);
    assert!(found(&search(&server, &alice.access_token, "bob").await).is_empty());
}

/// A poison pill: the updater cannot handle mallory's join (her stored
/// profile is unreadable by the time it replays it), yet it logs and counts
/// it, skips it, and goes on: users who join later are found.
async fn an_event_the_updater_cannot_handle_is_skipped_and_counted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let mallory = server.register("mallory", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = create_room(&server, &alice.access_token, json!({"preset": "public_chat"})).await;
    let (status, body) = server.post(&format!("/_matrix/client/v3/join/{room}"), Some(&mallory.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    caught_up(&server).await;

    // Replay every event after a restart, with mallory's profile now corrupt.
    sqlx::any::install_default_drivers();
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(&server.db.url).await.unwrap();
    sqlx::query("UPDATE profile_fields SET value_json = 'not json' WHERE user_id = $1").bind(&mallory.user_id).execute(&mut db).await.unwrap();
    sqlx::query("UPDATE user_directory_position SET stream_id = 0").execute(&mut db).await.unwrap();
    drop(db);
    let server = server.restart().await;

    let (status, body) = server.post(&format!("/_matrix/client/v3/join/{room}"), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    caught_up(&server).await;
    assert_eq!(found(&search(&server, &alice.access_token, "bob").await), vec![bob.user_id.clone()]);

    let metrics = server.raw(http::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let skipped = metrics.lines().find(|line| line.starts_with("weft_background_items_skipped_total{job=\"user_directory\"}"));
    assert!(skipped.is_some_and(|line| !line.ends_with(" 0")), "not counted: {skipped:?}");
}
