//! Every storage function, on SQLite and on PostgreSQL.

use ruma::{DeviceId, EventId, OwnedEventId, OwnedUserId, UserId, device_id, event_id, room_id};
use serde_json::json;
use sqlx::{Connection, Executor};
use weft::storage::{NewEvent, NewRoom, NewSession, NewUser, PushAction, Storage, StorageError, Stream};

use crate::{
    on_both_backends,
    support::{Backend, TestDb},
};

on_both_backends!(
    migrations_are_idempotent,
    users_are_created_and_found_ignoring_case,
    a_taken_user_id_conflicts_and_writes_nothing,
    registration_writes_user_device_and_token_together,
    sessions_reuse_existing_devices,
    device_display_names_and_last_seen,
    deleting_devices_deletes_their_tokens,
    password_change_can_keep_only_the_current_device,
    deactivation_removes_password_devices_and_tokens,
    device_changes_are_a_stream_with_positions,
    uia_sessions_round_trip_and_expire,
    notifications_survive_the_push_actions_key_migration,
    a_message_is_written_whole_or_not_at_all,
);

fn alice() -> OwnedUserId {
    UserId::parse("@alice:example.org").unwrap()
}

fn new_user(user_id: &UserId) -> NewUser<'_> {
    NewUser { user_id, password_hash: Some("hash"), admin: false, shadow_banned: false, user_type: None }
}

fn session<'a>(device_id: &'a DeviceId, token_hash: &'a str) -> NewSession<'a> {
    NewSession { device_id, display_name: Some("phone"), token_hash, ip: Some("127.0.0.1") }
}

async fn fixture(backend: Backend) -> (TestDb, Storage) {
    let db = TestDb::new(backend).await;
    let storage = db.storage("main").await;
    (db, storage)
}

async fn migrations_are_idempotent(backend: Backend) {
    let (_db, storage) = fixture(backend).await;
    storage.migrate().await.expect("second run is a no-op");
}

async fn users_are_created_and_found_ignoring_case(backend: Backend) {
    let (_db, storage) = fixture(backend).await;
    let user_id = alice();
    storage.create_user(NewUser { admin: true, user_type: Some("bot"), ..new_user(&user_id) }, None).await.unwrap();
    let user = storage.user(&user_id).await.unwrap().expect("found");
    assert_eq!(user.password_hash.as_deref(), Some("hash"));
    assert!(user.admin && !user.deactivated && !user.shadow_banned);
    assert_eq!(user.user_type.as_deref(), Some("bot"));
    assert!(user.created_ts > 0);
    let upper = UserId::parse("@ALICE:example.org").unwrap();
    assert!(storage.user(&upper).await.unwrap().is_none(), "exact look-up is case-sensitive");
    assert_eq!(storage.user_ignoring_case("@Alice:example.org").await.unwrap().unwrap().user_id, user_id);
    assert!(storage.user_id_taken(&upper).await.unwrap());
    assert!(!storage.user_id_taken(&UserId::parse("@bob:example.org").unwrap()).await.unwrap());
}

async fn a_taken_user_id_conflicts_and_writes_nothing(backend: Backend) {
    let (_db, storage) = fixture(backend).await;
    storage.create_user(new_user(&alice()), None).await.unwrap();
    let upper = UserId::parse("@Alice:example.org").unwrap();
    let result = storage.create_user(new_user(&upper), Some(session(device_id!("DEV"), "h1"))).await;
    assert!(matches!(result, Err(StorageError::Conflict)), "{result:?}");
    assert!(storage.token_owner("h1").await.unwrap().is_none(), "no token left behind");
    assert!(storage.devices(&upper).await.unwrap().is_empty(), "no device left behind");
}

async fn registration_writes_user_device_and_token_together(backend: Backend) {
    let (_db, storage) = fixture(backend).await;
    let user_id = alice();
    storage.create_user(new_user(&user_id), Some(session(device_id!("DEV1"), "h1"))).await.unwrap();
    let owner = storage.token_owner("h1").await.unwrap().expect("token");
    assert_eq!(owner.user_id, user_id);
    assert_eq!(owner.device_id, "DEV1");
    let devices = storage.devices(&user_id).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].display_name.as_deref(), Some("phone"));
    assert_eq!(devices[0].last_seen_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(storage.access_token_count(&user_id).await.unwrap(), 1);
}

async fn sessions_reuse_existing_devices(backend: Backend) {
    let (_db, storage) = fixture(backend).await;
    let user_id = alice();
    storage.create_user(new_user(&user_id), None).await.unwrap();
    assert!(storage.open_session(&user_id, session(device_id!("DEV1"), "h1")).await.unwrap(), "new device");
    let again = NewSession { display_name: Some("ignored"), ..session(device_id!("DEV1"), "h2") };
    assert!(!storage.open_session(&user_id, again).await.unwrap(), "existing device");
    let devices = storage.devices(&user_id).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].display_name.as_deref(), Some("phone"), "an existing device keeps its name");
    assert_eq!(storage.access_token_count(&user_id).await.unwrap(), 2);
    let duplicate = storage.open_session(&user_id, session(device_id!("DEV2"), "h1")).await;
    assert!(matches!(duplicate, Err(StorageError::Conflict)), "token hashes are unique");
    assert!(storage.device(&user_id, device_id!("DEV2")).await.unwrap().is_none(), "failed session writes nothing");
}

async fn device_display_names_and_last_seen(backend: Backend) {
    let (_db, storage) = fixture(backend).await;
    let user_id = alice();
    storage.create_user(new_user(&user_id), Some(session(device_id!("DEV1"), "h1"))).await.unwrap();
    assert!(storage.set_device_display_name(&user_id, device_id!("DEV1"), Some("laptop")).await.unwrap());
    assert!(!storage.set_device_display_name(&user_id, device_id!("NOPE"), Some("x")).await.unwrap());
    storage.touch_device(&user_id, device_id!("DEV1"), "10.0.0.9").await.unwrap();
    let device = storage.device(&user_id, device_id!("DEV1")).await.unwrap().unwrap();
    assert_eq!(device.display_name.as_deref(), Some("laptop"));
    assert_eq!(device.last_seen_ip.as_deref(), Some("10.0.0.9"));
    assert!(device.last_seen_ts.is_some());
}

async fn deleting_devices_deletes_their_tokens(backend: Backend) {
    let (_db, storage) = fixture(backend).await;
    let user_id = alice();
    storage.create_user(new_user(&user_id), Some(session(device_id!("D1"), "h1"))).await.unwrap();
    storage.open_session(&user_id, session(device_id!("D2"), "h2")).await.unwrap();
    storage.open_session(&user_id, session(device_id!("D3"), "h3")).await.unwrap();
    assert_eq!(storage.delete_devices(&user_id, &[device_id!("D1"), device_id!("UNKNOWN")]).await.unwrap(), 1);
    assert!(storage.token_owner("h1").await.unwrap().is_none());
    assert!(storage.token_owner("h2").await.unwrap().is_some());
    assert_eq!(storage.delete_all_devices(&user_id).await.unwrap(), 2);
    assert_eq!(storage.access_token_count(&user_id).await.unwrap(), 0);
    assert!(storage.devices(&user_id).await.unwrap().is_empty());
}

async fn password_change_can_keep_only_the_current_device(backend: Backend) {
    let (_db, storage) = fixture(backend).await;
    let user_id = alice();
    storage.create_user(new_user(&user_id), Some(session(device_id!("D1"), "h1"))).await.unwrap();
    storage.open_session(&user_id, session(device_id!("D2"), "h2")).await.unwrap();
    storage.set_password_hash(&user_id, "second", None).await.unwrap();
    assert_eq!(storage.devices(&user_id).await.unwrap().len(), 2, "no logout requested");
    storage.set_password_hash(&user_id, "third", Some(device_id!("D1"))).await.unwrap();
    assert_eq!(storage.user(&user_id).await.unwrap().unwrap().password_hash.as_deref(), Some("third"));
    let devices: Vec<_> = storage.devices(&user_id).await.unwrap().into_iter().map(|d| d.device_id).collect();
    assert_eq!(devices, vec![device_id!("D1").to_owned()]);
    assert!(storage.token_owner("h1").await.unwrap().is_some());
    assert!(storage.token_owner("h2").await.unwrap().is_none());
}

async fn deactivation_removes_password_devices_and_tokens(backend: Backend) {
    let (_db, storage) = fixture(backend).await;
    let user_id = alice();
    storage.create_user(new_user(&user_id), Some(session(device_id!("D1"), "h1"))).await.unwrap();
    storage.deactivate_user(&user_id).await.unwrap();
    let user = storage.user(&user_id).await.unwrap().unwrap();
    assert!(user.deactivated);
    assert!(user.password_hash.is_none());
    assert!(storage.token_owner("h1").await.unwrap().is_none());
    assert!(storage.devices(&user_id).await.unwrap().is_empty());
    assert!(storage.user_id_taken(&user_id).await.unwrap(), "a deactivated id stays taken");
}

async fn device_changes_are_a_stream_with_positions(backend: Backend) {
    let (db, storage) = fixture(backend).await;
    let user_id = alice();
    assert_eq!(storage.stream_position(Stream::DeviceLists, "main").await.unwrap(), 0);
    storage.create_user(new_user(&user_id), Some(session(device_id!("D1"), "h1"))).await.unwrap();
    storage.set_device_display_name(&user_id, device_id!("D1"), Some("x")).await.unwrap();
    // A second writer sharing the database and the stream's id sequence.
    let other = db.storage("persister2").await;
    other.open_session(&user_id, session(device_id!("D2"), "h2")).await.unwrap();
    storage.delete_devices(&user_id, &[device_id!("D1")]).await.unwrap();

    let changes = storage.device_list_changes_since(0, 100).await.unwrap();
    let summary: Vec<(&str, &str)> = changes.iter().map(|c| (c.instance_name.as_str(), c.device_id.as_str())).collect();
    assert_eq!(summary, vec![("main", "D1"), ("main", "D1"), ("persister2", "D2"), ("main", "D1")]);
    assert!(changes.windows(2).all(|pair| pair[0].stream_id < pair[1].stream_id), "ids strictly increase");
    // The row written with each change never runs ahead of what is committed, so it
    // lags by the change in flight; the writer's periodic flush brings it level.
    assert!(storage.stream_position(Stream::DeviceLists, "main").await.unwrap() < changes[3].stream_id);
    storage.flush_position(Stream::DeviceLists).await.unwrap();
    other.flush_position(Stream::DeviceLists).await.unwrap();
    assert_eq!(storage.stream_position(Stream::DeviceLists, "main").await.unwrap(), changes[3].stream_id);
    assert_eq!(storage.stream_position(Stream::DeviceLists, "persister2").await.unwrap(), changes[2].stream_id);
    let later = storage.device_list_changes_since(changes[1].stream_id, 1).await.unwrap();
    assert_eq!(later, vec![changes[2].clone()]);
}

async fn uia_sessions_round_trip_and_expire(backend: Backend) {
    let (_db, storage) = fixture(backend).await;
    storage.create_uia_session("s1", "POST /x", Some("@alice:example.org"), None).await.unwrap();
    assert!(matches!(storage.create_uia_session("s1", "POST /x", None, None).await, Err(StorageError::Conflict)));
    let session = storage.uia_session("s1").await.unwrap().unwrap();
    assert_eq!(session.action, "POST /x");
    assert_eq!(session.user_id.as_deref(), Some("@alice:example.org"));
    assert!(session.completed.is_empty());
    storage.set_uia_completed("s1", &["m.login.password".to_owned()]).await.unwrap();
    assert_eq!(storage.uia_session("s1").await.unwrap().unwrap().completed, vec!["m.login.password"]);
    storage.create_uia_session("s2", "POST /y", None, Some("{}")).await.unwrap();
    storage.set_uia_client_params("s2", r#"{"username":"bob"}"#).await.unwrap();
    assert_eq!(storage.uia_session("s2").await.unwrap().unwrap().client_params.as_deref(), Some(r#"{"username":"bob"}"#));
    assert_eq!(storage.uia_session("s1").await.unwrap().unwrap().client_params, None);
    storage.delete_uia_session("s2").await.unwrap();
    assert!(storage.uia_session("s2").await.unwrap().is_none());
    assert_eq!(storage.purge_uia_sessions(session.created_ts).await.unwrap(), 0, "not older than itself");
    assert_eq!(storage.purge_uia_sessions(session.created_ts + 1).await.unwrap(), 1);
    assert!(storage.uia_session("s1").await.unwrap().is_none());
}

/// Migration 0034 moves `event_push_actions`' key from (user_id, event_id)
/// to (user_id, stream_ordering): a table of the earlier shape keeps its
/// rows, and the new key holds.
async fn notifications_survive_the_push_actions_key_migration(backend: Backend) {
    let (db, storage) = fixture(backend).await;
    let earlier_shape = [
        "DROP TABLE event_push_actions",
        "CREATE TABLE event_push_actions (user_id TEXT NOT NULL, event_id TEXT NOT NULL, room_id TEXT NOT NULL, \
         stream_ordering BIGINT NOT NULL, thread_id TEXT NOT NULL, actions TEXT NOT NULL, highlight BOOLEAN NOT NULL, ts BIGINT NOT NULL, \
         PRIMARY KEY (user_id, event_id))",
        "CREATE INDEX event_push_actions_by_room ON event_push_actions (user_id, room_id, stream_ordering)",
        "CREATE INDEX event_push_actions_by_stream ON event_push_actions (user_id, stream_ordering)",
        "CREATE INDEX event_push_actions_by_position ON event_push_actions (stream_ordering)",
        "INSERT INTO event_push_actions VALUES ('@alice:example.org', '$one', '!room:example.org', 7, 'main', '[\"notify\"]', FALSE, 1000)",
        "INSERT INTO event_push_actions VALUES ('@alice:example.org', '$two', '!room:example.org', 9, 'main', '[\"notify\"]', TRUE, 2000)",
    ];
    let migration = match backend {
        Backend::Sqlite => include_str!("../../storage/migrations/sqlite/0034_push_actions_key.sql"),
        Backend::Postgres => include_str!("../../storage/migrations/postgres/0034_push_actions_key.sql"),
    };
    let duplicate = "INSERT INTO event_push_actions VALUES ('@alice:example.org', '$other', '!room:example.org', 9, 'main', '[]', FALSE, 3000)";
    // `fixture` connected the storage, which installed sqlx's drivers for `Any`.
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    for statement in earlier_shape {
        conn.execute(statement).await.unwrap();
    }
    conn.execute(sqlx::raw_sql(migration)).await.expect("migration 0034");
    let duplicate_refused = conn.execute(duplicate).await.is_err();
    assert!(duplicate_refused, "a second row for the same user and position is refused by the new key");
    let found = storage.notifications(&alice(), None, 10, false).await.unwrap();
    let found: Vec<(i64, &str, bool, i64)> =
        found.iter().map(|n| (n.stream_ordering, n.event_id.as_str(), n.actions == serde_json::json!(["notify"]), n.ts)).collect();
    assert_eq!(found, [(9, "$two", true, 2000), (7, "$one", true, 1000)]);
    let highlights = storage.notifications(&alice(), None, 10, true).await.unwrap();
    assert_eq!(highlights.iter().map(|n| n.event_id.as_str()).collect::<Vec<_>>(), ["$two"]);
}

/// An event in `!room:example.org` sent by alice, with nothing else to write.
fn room_event<'a>(event_id: &'a EventId, kind: &'a str, depth: i64, prev_events: &'a [OwnedEventId], sender: &'a UserId) -> NewEvent<'a> {
    NewEvent {
        event_id,
        room_id: room_id!("!room:example.org"),
        sender,
        kind,
        state_key: None,
        depth,
        origin_server_ts: depth,
        json: "{}",
        prev_events,
        membership: None,
        txn: None,
        redaction: None,
        relation: None,
        search_text: None,
        push_actions: &[],
    }
}

/// A message (not state, redacting nothing: PostgreSQL writes it as one
/// statement) is written whole: its row, client transaction, relation,
/// search text, forward extremity and push actions, the actions' JSON as
/// given; a reused client transaction writes none of it.
async fn a_message_is_written_whole_or_not_at_all(backend: Backend) {
    let (_db, storage) = fixture(backend).await;
    let (alice, bob) = (alice(), UserId::parse("@bob:example.org").unwrap());
    let room_id = room_id!("!room:example.org");
    let (create_id, join_id) = (event_id!("$create:example.org").to_owned(), event_id!("$join:example.org").to_owned());
    let create = NewEvent { state_key: Some(""), ..room_event(&create_id, "m.room.create", 1, &[], &alice) };
    let after_create = [create_id.clone()];
    let join = NewEvent { state_key: Some(alice.as_str()), membership: Some("join"), ..room_event(&join_id, "m.room.member", 2, &after_create, &alice) };
    let room = NewRoom { room_id, room_version: "10", creator: &alice, published: false, alias: None };
    storage.persist_events(Some(room), &[create, join]).await.unwrap();

    let tweak = json!(["notify", {"set_tweak": "sound", "value": "a\u{0}b \"quoted\" \\ done"}]);
    let actions = [PushAction { user_id: bob.to_string(), thread_id: "main".to_owned(), actions: tweak.clone(), highlight: true }];
    let message_id = event_id!("$message:example.org");
    let after_join = [join_id.clone()];
    let txn = (alice.as_ref(), device_id!("PHONE"), "PUT /send/m.room.message/t1");
    let message = NewEvent {
        txn: Some(txn),
        relation: Some((create_id.as_str(), "m.reference")),
        search_text: Some("hello wonderful world"),
        push_actions: &actions,
        ..room_event(message_id, "m.room.message", 3, &after_join, &alice)
    };
    let ordering = storage.persist_events(None, &[message]).await.unwrap()[0];
    assert_eq!(storage.event(message_id).await.unwrap().map(|event| event.stream_ordering), Some(ordering));
    assert!(storage.persisted_events_position() >= ordering);

    let after_message = [message_id.to_owned()];
    let again_id = event_id!("$again:example.org");
    let again = NewEvent {
        txn: Some(txn),
        relation: Some((create_id.as_str(), "m.reference")),
        search_text: Some("another sentence"),
        push_actions: &actions,
        ..room_event(again_id, "m.room.message", 4, &after_message, &alice)
    };
    assert!(matches!(storage.persist_events(None, &[again]).await, Err(StorageError::Conflict)));

    // What the first message wrote, and nothing of the refused one.
    assert!(storage.event(again_id).await.unwrap().is_none());
    assert_eq!(storage.forward_extremities(room_id).await.unwrap(), [(message_id.to_owned(), 3)]);
    assert_eq!(storage.txn_event(&alice, device_id!("PHONE"), txn.2).await.unwrap().as_deref(), Some(message_id));
    let related = storage.relating_events(room_id, create_id.as_str(), None, None, 0, i64::MAX, 10, false, 1).await.unwrap();
    assert_eq!(related.iter().map(|event| event.event_id.as_str()).collect::<Vec<_>>(), [message_id.as_str()]);
    let found = storage.search_events(&alice, "wonderful", None, true, 10, 0).await.unwrap();
    assert_eq!(found.iter().map(|(event, _)| event.event_id.as_str()).collect::<Vec<_>>(), [message_id.as_str()]);
    assert!(storage.search_events(&alice, "sentence", None, true, 10, 0).await.unwrap().is_empty());
    let notifications = storage.notifications(&bob, None, 10, false).await.unwrap();
    let notifications: Vec<(i64, &str, &serde_json::Value)> = notifications.iter().map(|n| (n.stream_ordering, n.event_id.as_str(), &n.actions)).collect();
    assert_eq!(notifications, [(ordering, message_id.as_str(), &tweak)]);
    assert_eq!(storage.notifications(&bob, None, 10, true).await.unwrap().len(), 1, "the action is a highlight");

    // The next message builds on the first.
    let next = NewEvent { search_text: Some("another sentence"), ..room_event(again_id, "m.room.message", 4, &after_message, &alice) };
    let next_ordering = storage.persist_events(None, &[next]).await.unwrap()[0];
    assert!(next_ordering > ordering);
    assert_eq!(storage.forward_extremities(room_id).await.unwrap(), [(again_id.to_owned(), 4)]);
    assert_eq!(storage.search_events(&alice, "sentence", None, true, 10, 0).await.unwrap().len(), 1);
}
