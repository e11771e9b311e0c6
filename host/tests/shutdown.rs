//! Shutdown under load: clients keep sending messages while the server is
//! told to stop. Every send the server acknowledged must be in the database
//! after a restart, and the stream positions recorded in `stream_positions`
//! must be the final ones: the position recorder stops after the requests in
//! flight and the other jobs have finished.

use std::sync::{Arc, Mutex};

use http::StatusCode;
use ruma::OwnedEventId;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use weft::storage::{Storage, Stream};

use crate::{
    on_both_backends,
    support::{Backend, TestServer, encode},
};

on_both_backends!(shutdown_under_load_loses_no_acknowledged_write_and_records_final_positions);

/// The jobs started (and listed at start-up) follow the configuration; the
/// position recorder comes first so that it stops last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_an_instance_runs_follow_its_configuration() {
    let server = TestServer::start(Backend::Sqlite).await;
    assert_eq!(
        weft::server::job_names(&server.state),
        ["stream positions", "replication", "user directory", "federation sender", "push sender", "auth session purge", "media clean-up", "presence timer"]
    );
    let server = TestServer::builder(Backend::Sqlite).config("[presence]\nenabled = false").start().await;
    assert_eq!(
        weft::server::job_names(&server.state),
        ["stream positions", "replication", "user directory", "federation sender", "push sender", "auth session purge", "media clean-up"]
    );
}

const CLIENTS: usize = 8;
/// Acknowledged sends before the stop, so that the stop finds more in flight.
const BEFORE_STOP: usize = 40;

async fn shutdown_under_load_loses_no_acknowledged_write_and_records_final_positions(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let (status, body) = server.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let room = encode(body["room_id"].as_str().expect("room_id"));

    let acknowledged: Arc<Mutex<Vec<OwnedEventId>>> = Arc::default();
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let mut clients = JoinSet::new();
    for n in 0..CLIENTS {
        let (client, acknowledged, token) = (client.clone(), acknowledged.clone(), alice.access_token.clone());
        let url = format!("{}/_matrix/client/v3/rooms/{room}/send/m.room.message", server.base);
        clients.spawn(async move {
            for txn in 0.. {
                let sent = client.put(format!("{url}/c{n}t{txn}")).bearer_auth(&token).json(&json!({"msgtype": "m.text", "body": txn})).send().await;
                // After the stop: refused, reset, or closed before an answer.
                let Ok(response) = sent else { return };
                let status = response.status();
                let Ok(body) = response.json::<Value>().await else { return };
                assert!(status == StatusCode::OK, "a send during shutdown answered {status}: {body}");
                let event_id = body["event_id"].as_str().expect("event_id").try_into().expect("an event id");
                acknowledged.lock().unwrap().push(event_id);
            }
        });
    }
    while acknowledged.lock().unwrap().len() < BEFORE_STOP {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let at_stop = acknowledged.lock().unwrap().len();
    server.stop().await;
    while let Some(finished) = clients.join_next().await {
        finished.expect("a client failed");
    }

    // After the stop: the recorded row of every stream this instance writes
    // is its final position.
    let instance = server.state.config.instance_name().to_owned();
    let probe = Storage::connect_url(&server.db.url, Some(1), Some(1), "probe").await.expect("connect");
    let recorded = probe.recorded_positions().await.expect("recorded positions");
    probe.close().await;
    for stream in Stream::ALL.into_iter().filter(|stream| stream.is_in_database() && server.state.replication.writers().writes(*stream)) {
        let row = recorded.iter().find(|(s, i, _)| *s == stream && *i == instance).map_or(0, |(_, _, position)| *position);
        assert_eq!(row, server.state.storage.persisted_position(stream), "the recorded position of {}", stream.as_str());
    }
    let final_events = server.state.storage.persisted_position(Stream::Events);

    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(acknowledged.len() >= BEFORE_STOP);
    assert!(acknowledged.len() > at_stop, "no send was in flight at the stop");
    let server = server.restart().await;
    for event_id in &acknowledged {
        let event = server.state.storage.event(event_id).await.expect("read").unwrap_or_else(|| panic!("acknowledged {event_id} is lost"));
        assert!(event.stream_ordering <= final_events, "{event_id} is past the recorded position");
    }
}
