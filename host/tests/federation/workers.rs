//! The Weft and Synapse scenario through a worker deployment: `main` serves
//! federation on a TLS listener of its own, or the router's TLS port sends
//! the federation endpoint groups to `worker2` (sticky by origin for
//! transactions) and the rest to `main`; the rooms are
//! persisted by two event persisters, typing, receipts and to-device are
//! written by `worker1`, and clients go through `weft router`. What `main`
//! receives for a room (PDUs, joins, invites) is persisted by the room's
//! persister, the EDUs by their stream's writer, and a local user's join of
//! a Synapse room is made by that room's persister. With two federation
//! senders, each destination is sent to by one of them. Through one
//! sender, nothing acknowledged is lost when the sender is SIGKILLed or
//! Redis restarted during a burst, or the other server is down a while.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::peers::Peer;
use super::rooms::{has_message, send_message, synapse_typing_and_receipt_reach, sync_until, weft_user_joins_a_synapse_room};
use crate::{
    support::{Backend, Session, TestServer, encode, synapse::Synapse},
    workers::Deployment,
};

/// The deployment as a federation peer: every client call goes through the router.
pub(super) struct ThroughRouter(pub(super) Deployment);

impl Peer for ThroughRouter {
    fn name(&self) -> &str {
        &self.0.server_name
    }
    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, body) = self.0.call("router", method.as_str(), path, Some(token), body).await;
        (StatusCode::from_u16(status).unwrap(), body)
    }
    async fn user(&self, localpart: &str) -> Session {
        let (access_token, user_id) = self.0.register("router", localpart).await;
        Session { user_id, access_token, device_id: String::new() }
    }
    fn logs(&self) -> String {
        ["main", "persister1", "persister2", "worker1", "worker2", "router"].iter().map(|name| format!("----- {name} -----\n{}", self.0.log(name))).collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn weft_workers_with_main_serving_federation_share_rooms_with_synapse() {
    let mut deployment = Deployment::start_federating("").await;
    deployment.start_router().await;
    share_rooms_with_synapse(deployment).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn weft_workers_behind_the_routers_tls_port_share_rooms_with_synapse() {
    let mut deployment = Deployment::start_federating_through_router().await;
    deployment.start_router().await;
    let deployment = share_rooms_with_synapse(deployment).await;
    let transactions = |instance| deployment.metric(instance, "weft_http_requests_total", &["group=\"federation_transactions\"", "status=\"200\""]);
    assert!(transactions("worker2").await.is_some_and(|count| count > 0.0), "worker2 answered Synapse's transactions");
    assert_eq!(transactions("main").await, None, "main answered no transaction");
}

pub(super) async fn share_rooms_with_synapse(deployment: Deployment) -> Deployment {
    let synapse = Synapse::start().await;
    let weft = ThroughRouter(deployment);
    let alice = weft.user("alice").await;
    let bob = synapse.register("bob").await;

    // Synapse joins a Weft room of each persister by alias: main answers the
    // directory query, the room's persister makes and takes the join.
    for (index, tag) in [(0, "one"), (1, "two")] {
        let room_id = weft.0.room_on_persister("router", &alice.access_token, index, json!({"preset": "public_chat"})).await;
        let alias = format!("#fed-{tag}:{}", weft.0.server_name);
        let (status, body) = weft
            .call(Method::PUT, &format!("/_matrix/client/v3/directory/room/{}", encode(&alias)), &alice.access_token, Some(json!({"room_id": room_id})))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, joined) = synapse.post(&format!("/_matrix/client/v3/join/{}", encode(&alias)), Some(&bob.access_token), json!({})).await;
        assert_eq!(status, StatusCode::OK, "Synapse joins {alias} (persister{}): {joined}\n{}\n{}", index + 1, synapse.logs(), weft.logs());
        assert_eq!(joined["room_id"], room_id.as_str());
        sync_until(&weft, &alice, &room_id, "bob's join", |events| {
            events.iter().any(|event| event["type"] == "m.room.member" && event["state_key"] == bob.user_id && event["content"]["membership"] == "join")
        })
        .await;
        send_message(&weft, &alice, &room_id, &format!("hello from Weft {tag}")).await;
        sync_until(&synapse, &bob, &room_id, "Weft's message", |events| has_message(events, &format!("hello from Weft {tag}"))).await;
        send_message(&synapse, &bob, &room_id, &format!("hello from Synapse {tag}")).await;
        sync_until(&weft, &alice, &room_id, "Synapse's message", |events| has_message(events, &format!("hello from Synapse {tag}"))).await;
    }

    // Typing and a read receipt from Synapse reach main, which passes them
    // to their writer (worker1); alice's /sync shows them.
    let room_id = weft.0.room_on_persister("router", &alice.access_token, 1, json!({"preset": "public_chat"})).await;
    let (status, body) = synapse
        .post(&format!("/_matrix/client/v3/join/{}?server_name={}", encode(&room_id), encode(&weft.0.server_name)), Some(&bob.access_token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "Synapse joins {room_id} by id: {body}");
    let read_me = send_message(&weft, &alice, &room_id, "read me").await;
    sync_until(&synapse, &bob, &room_id, "the message to read", |events| has_message(events, "read me")).await;
    synapse_typing_and_receipt_reach(&weft, &alice, &synapse, &bob, &room_id, &read_me).await;

    // A Weft user joins a Synapse room by id with `via`: the room's persister
    // makes the join; messages flow both ways.
    weft_user_joins_a_synapse_room(&weft, &synapse, &bob).await;
    weft.0
}

/// `federation_sender_instances = ["worker1", "worker2"]` and three other
/// servers in one room: each server gets every message, and each is sent
/// to by exactly the sender sha256 of its name picks, never by main.
#[tokio::test(flavor = "multi_thread")]
async fn two_federation_senders_share_the_destinations() {
    let mut deployment = Deployment::start_federating("federation_sender_instances = [\"worker1\", \"worker2\"]\n").await;
    deployment.start_router().await;
    let weft = ThroughRouter(deployment);
    let alice = weft.user("alice").await;
    let room_id = weft.0.room_on_persister("router", &alice.access_token, 0, json!({"preset": "public_chat"})).await;
    let mut remotes = Vec::new();
    for _ in 0..3 {
        let remote = TestServer::builder(Backend::Sqlite).federation().start().await;
        let user = remote.user("remote").await;
        let path = format!("/_matrix/client/v3/join/{}?server_name={}", encode(&room_id), encode(&weft.0.server_name));
        let (status, body) = remote.call(Method::POST, &path, &user.access_token, Some(json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{} joins: {body}\n{}", remote.server_name, weft.logs());
        remotes.push((remote, user));
    }
    for n in 0..5 {
        send_message(&weft, &alice, &room_id, &format!("to everyone {n}")).await;
    }
    for (remote, user) in &remotes {
        sync_until(remote, user, &room_id, "every message", |events| (0..5).all(|n| has_message(events, &format!("to everyone {n}")))).await;
    }
    let senders = ["worker1", "worker2"];
    for (remote, _) in &remotes {
        let label = format!("destination=\"{}\"", remote.server_name);
        let owner = senders[weft::replication::shard(&remote.server_name, senders.len())];
        for instance in ["main", "worker1", "worker2"] {
            let sent = weft.0.metric(instance, "weft_federation_transactions_sent_total", &[label.as_str()]).await.unwrap_or(0.0);
            match instance == owner {
                true => assert!(sent > 0.0, "{owner} sent to {}", remote.server_name),
                false => assert_eq!(sent, 0.0, "{instance} sent to {}, which {owner} owns", remote.server_name),
            }
        }
    }
}

/// The only federation sender SIGKILLed during a burst to another server:
/// once it is back, every acknowledged message reaches that server.
#[tokio::test(flavor = "multi_thread")]
async fn a_federation_sender_killed_during_a_burst_loses_nothing() {
    burst_through_one_sender(async |deployment: &mut Deployment| {
        deployment.kill("worker1");
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        deployment.start_process("worker1").await;
    })
    .await;
}

/// Redis stopped during a burst through the federation sender, then
/// started again: every acknowledged message reaches the other server.
#[tokio::test(flavor = "multi_thread")]
async fn redis_restarted_during_a_burst_through_the_sender_loses_nothing() {
    burst_through_one_sender(async |deployment: &mut Deployment| {
        deployment.redis.stop();
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        deployment.redis.restart();
    })
    .await;
}

/// A deployment whose one federation sender is `worker1`, a room shared
/// with another Weft, and 150 messages sent while `fault` happens 0.4 s
/// in: every acknowledged message reaches the other server, and nothing
/// is sent twice beyond one transaction (the one in flight).
async fn burst_through_one_sender(fault: impl AsyncFnOnce(&mut Deployment)) {
    let mut deployment = Deployment::start_federating("federation_sender_instances = [\"worker1\"]\n").await;
    deployment.start_router().await;
    let (token, _) = deployment.register("router", "alice").await;
    let alice = Session { user_id: String::new(), access_token: token, device_id: String::new() };
    let room_id = deployment.room_on_persister("router", &alice.access_token, 1, json!({"preset": "public_chat"})).await;
    let remote = TestServer::builder(Backend::Sqlite).federation().start().await;
    let user = remote.user("remote").await;
    let path = format!("/_matrix/client/v3/join/{}?server_name={}", encode(&room_id), encode(&deployment.server_name));
    let (status, body) = remote.call(Method::POST, &path, &user.access_token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let burst = {
        let (url, token, http, room_id) = (deployment.client_url("router"), alice.access_token.clone(), deployment.http.clone(), room_id.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..150 {
                let body = format!("burst {n}");
                let sent = http
                    .put(format!("{url}/_matrix/client/v3/rooms/{}/send/m.room.message/b{n}", encode(&room_id)))
                    .bearer_auth(&token)
                    .json(&json!({"msgtype": "m.text", "body": body}))
                    .send()
                    .await;
                if sent.is_ok_and(|response| response.status() == 200) {
                    acknowledged.push(body);
                }
            }
            acknowledged
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!burst.is_finished(), "the burst outlasts the 0.4 s before the fault");
    fault(&mut deployment).await;
    let acknowledged = burst.await.unwrap();
    assert_eq!(acknowledged.len(), 150, "the sends do not depend on the sender or Redis");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let stored = room_bodies(&remote, &user, &room_id).await;
        let missing: Vec<&String> = acknowledged.iter().filter(|body| !stored.contains(body)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{} never received {missing:?}\n{}", remote.server_name, weft_logs(&deployment));
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let repeated = super::repeated_pdus(&remote, &deployment.server_name).await;
    assert!(repeated <= 50.0, "{repeated} events sent twice: more than the one transaction in flight");
}

/// Synapse down while messages are sent through the federation sender:
/// they wait in its queue and arrive, in order, once Synapse is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_down_for_a_while_is_caught_up_by_the_sender() {
    let mut deployment = Deployment::start_federating("federation_sender_instances = [\"worker1\"]\n").await;
    deployment.start_router().await;
    let weft = ThroughRouter(deployment);
    let alice = weft.user("alice").await;
    let room_id = weft.0.room_on_persister("router", &alice.access_token, 0, json!({"preset": "public_chat"})).await;
    let mut synapse = Synapse::start().await;
    let bob = synapse.register("bob").await;
    let path = format!("/_matrix/client/v3/join/{}?server_name={}", encode(&room_id), encode(&weft.0.server_name));
    let (status, body) = synapse.post(&path, Some(&bob.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    send_message(&weft, &alice, &room_id, "before the outage").await;
    sync_until(&synapse, &bob, &room_id, "the first message", |events| has_message(events, "before the outage")).await;

    synapse.stop();
    for n in 0..10 {
        send_message(&weft, &alice, &room_id, &format!("during the outage {n}")).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let failed = weft.0.metric("worker1", "weft_federation_transactions_failed_total", &[&format!("destination=\"{}\"", synapse.server_name)]).await;
    assert!(failed.is_some_and(|count| count > 0.0), "the sender tried Synapse while it was down");
    synapse.resume().await;
    sync_until(&synapse, &bob, &room_id, "every message of the outage", |events| (0..10).all(|n| has_message(events, &format!("during the outage {n}")))).await;
    let stored = room_bodies(&synapse, &bob, &room_id).await;
    let outage: Vec<&String> = stored.iter().filter(|body| body.starts_with("during the outage")).collect();
    let expected: Vec<String> = (0..10).rev().map(|n| format!("during the outage {n}")).collect();
    assert_eq!(outage, expected.iter().collect::<Vec<_>>(), "each once, in order (newest first)");
}

/// Every message body of the room `session` can page back to on `peer`.
async fn room_bodies(peer: &impl Peer, session: &Session, room_id: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut from = String::new();
    loop {
        let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100{from}", encode(room_id));
        let (status, page) = peer.call(Method::GET, &path, &session.access_token, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
        bodies.extend(chunk.iter().filter_map(|event| event["content"]["body"].as_str().map(str::to_owned)));
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = format!("&from={}", encode(end)),
            _ => return bodies,
        }
    }
}

fn weft_logs(deployment: &Deployment) -> String {
    ["main", "worker1"].iter().map(|name| format!("----- {name} -----\n{}", deployment.log(name))).collect()
}

/// Media over federation on a media worker: `worker1` runs the media
/// repository (main does not), the router sends it the media group from
/// both ports. A Weft user's download of Synapse's media is fetched, kept
/// and thumbnailed there (and served again once Synapse is gone); Synapse's
/// download of Weft's media comes in on the router's TLS port and is
/// answered there.
#[tokio::test(flavor = "multi_thread")]
async fn a_media_worker_fetches_and_serves_media_over_federation_behind_the_router() {
    use super::media::{DOWNLOAD, THUMBNAIL, media_id, png, read, upload_to_synapse};
    let own = [("main", "enable_media_repo = false"), ("worker1", "enable_media_repo = true")];
    let mut deployment = Deployment::start_federating_configured("", &own, true).await;
    deployment.start_router().await;
    let mut synapse = Synapse::start().await;
    let (token, _) = deployment.register("router", "viewer").await;
    let on_synapse = synapse.register("viewer").await;
    let router = deployment.client_url("router");
    let upload = |body: Vec<u8>| {
        deployment
            .http
            .post(format!("{router}/_matrix/media/v3/upload?filename=weft.png"))
            .bearer_auth(&token)
            .header("content-type", "image/png")
            .body(body)
            .send()
    };
    let get = |path: String| deployment.http.get(format!("{router}{path}")).bearer_auth(&token).send();
    let picture = png(64, 48);

    // Synapse's media, through the router to worker1, which downloads it.
    let synapse_id = upload_to_synapse(&synapse, &on_synapse, "syn.png", picture.clone()).await;
    let download = format!("{DOWNLOAD}/{}/{synapse_id}", synapse.server_name);
    let (status, content_type, body) = read(get(download.clone()).await.unwrap(), "content-type").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/png"), "{}\n{}", String::from_utf8_lossy(&body), deployment.log("worker1"));
    assert!(body == picture);
    let thumbnail = format!("{THUMBNAIL}/{}/{synapse_id}?width=32&height=32&method=crop", synapse.server_name);
    let (status, content_type, body) = read(get(thumbnail.clone()).await.unwrap(), "content-type").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/png"), "{}", String::from_utf8_lossy(&body));
    image::load_from_memory(&body).expect("worker1's thumbnail of Synapse's image");

    // Weft's media, asked for by Synapse on the router's TLS port.
    let uploaded = upload(picture.clone()).await.unwrap();
    assert_eq!(uploaded.status(), StatusCode::OK);
    let weft_id = media_id(&uploaded.json().await.unwrap(), &deployment.server_name);
    for path in [
        format!("{DOWNLOAD}/{}/{weft_id}", deployment.server_name),
        format!("{THUMBNAIL}/{}/{weft_id}?width=32&height=32&method=scale", deployment.server_name),
    ] {
        let response = synapse.raw(Method::GET, &path).bearer_auth(&on_synapse.access_token).send().await.unwrap();
        let (status, _, body) = read(response, "content-type").await;
        assert_eq!(status, StatusCode::OK, "{path}: {}\n{}\n{}", String::from_utf8_lossy(&body), synapse.logs(), deployment.log("router"));
        image::load_from_memory(&body).expect("Weft's image");
    }
    let served = |instance| deployment.metric(instance, "weft_http_requests_total", &["group=\"media\"", "method=\"GET\"", "status=\"200\""]);
    // Two downloads of the Weft user, at least one of Synapse's (it may thumbnail what it downloaded).
    assert!(served("worker1").await.is_some_and(|count| count >= 3.0), "worker1 served the media requests");
    for instance in ["main", "worker2"] {
        assert_eq!(served(instance).await, None, "{instance} served media");
    }

    // With Synapse gone, worker1 serves what it kept.
    synapse.stop();
    let (status, _, body) = read(get(download).await.unwrap(), "content-type").await;
    assert_eq!((status, body == picture), (StatusCode::OK, true));
    let (status, _, _) = read(get(thumbnail.replace("width=32", "width=40")).await.unwrap(), "").await;
    assert_eq!(status, StatusCode::OK);
}
