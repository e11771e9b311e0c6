//! `weft router` and `weft gen-proxy-config`: classification of requests
//! into endpoint groups, the table derived from `instance_map`, validation,
//! rendezvous hashing, and the proxy itself.
//!
//! Proxy tests that must know which instance answered use small axum
//! backends that report their name (a Weft instance does not say who it
//! is); the failover test end to end runs real `weft run` processes on one
//! PostgreSQL database behind a real `weft router` process.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Json, extract::Request};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use weft::{
    api::route_list,
    config,
    endpoint_groups::EndpointGroup as G,
    router::{self, Classifier, RouterState, RoutingTable, Sticky},
};

use crate::support::{Backend, TestDb, TestServer, WEFT, errcode, free_port};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A shared configuration routing to `main` and to `workers` (name, client port, groups).
fn routing_config(main_port: u16, workers: &[(&str, u16, &[&str])], extra: &str, database: &str) -> String {
    let mut text = format!(
        "server_name = \"router.test\"\nworker_replication_secret = \"secret\"\n{extra}\n[redis]\nenabled = true\n{database}\n\
         [instance_map.main]\nhost = \"127.0.0.1\"\nport = 9093\nclient_port = {main_port}\n"
    );
    for (index, (name, port, serves)) in workers.iter().enumerate() {
        let serves: Vec<String> = serves.iter().map(|group| format!("\"{group}\"")).collect();
        text.push_str(&format!(
            "[instance_map.{name}]\nhost = \"127.0.0.1\"\nport = {}\nclient_port = {port}\nserves = [{}]\n",
            9100 + index,
            serves.join(", ")
        ));
    }
    text
}

const POSTGRES_STUB: &str = "[database]\nname = \"psycopg2\"\nargs = { dbname = \"weft\" }\n";

#[test]
fn requests_are_classified_by_the_registered_routes() {
    let classifier = Classifier::new(&route_list::all_routes(), true).expect("the routes do not conflict");
    let group = |method: Method, path: &str, query: Option<&str>| classifier.classify(&method, path, query).group;

    let sync = classifier.classify(&Method::GET, "/_matrix/client/v3/sync", Some("since=s1&timeout=30000"));
    assert_eq!((sync.group, sync.sticky), (Some(G::Sync), Sticky::User));
    assert_eq!(group(Method::GET, "/_matrix/client/r0/sync", None), Some(G::InitialSync), "no `since`: an initial sync");
    assert_eq!(group(Method::GET, "/_matrix/client/v3/sync", Some("since=")), Some(G::InitialSync));
    let not_separate = Classifier::new(&route_list::all_routes(), false).unwrap();
    assert_eq!(not_separate.classify(&Method::GET, "/_matrix/client/v3/sync", None).group, Some(G::Sync));

    let messages = classifier.classify(&Method::GET, "/_matrix/client/v3/rooms/%21abc%3Aexample.org/messages", Some("dir=b"));
    assert_eq!((messages.group, messages.sticky), (Some(G::RoomMessages), Sticky::Room("!abc:example.org".into())));
    let transaction = classifier.classify(&Method::PUT, "/_matrix/federation/v1/send/txn1", None);
    assert_eq!((transaction.group, transaction.sticky), (Some(G::FederationTransactions), Sticky::Origin));
    let send = classifier.classify(&Method::PUT, "/_matrix/client/v3/rooms/%21abc%3Aexample.org/send/m.room.message/t1", None);
    assert_eq!((send.group, send.sticky), (Some(G::EventSending), Sticky::RoomWriter("!abc:example.org".into())));
    let sso = classifier.classify(&Method::GET, "/_matrix/client/v3/login/sso/redirect", Some("redirectUrl=x"));
    // A login's state is in the database: any instance serving `sso` takes any step.
    assert_eq!((sso.group, sso.sticky), (Some(G::Sso), Sticky::None));
    assert_eq!(group(Method::GET, "/_matrix/client/v3/login/sso/redirect/oidc-github", None), Some(G::Sso));

    for (method, path, expected) in [
        (Method::GET, "/_matrix/client/versions", G::ClientReads),
        (Method::HEAD, "/_matrix/client/versions", G::ClientReads),
        (Method::POST, "/_matrix/client/v3/login", G::Login),
        (Method::POST, "/_matrix/client/v3/register", G::Registration),
        (Method::PUT, "/_matrix/client/v3/rooms/!r:x/send/m.room.message/t1", G::EventSending),
        (Method::PUT, "/_matrix/client/v3/rooms/!r:x/state/m.room.name/", G::EventSending),
        (Method::GET, "/_matrix/client/v3/rooms/!r:x/state/m.room.name", G::ClientReads),
        (Method::GET, "/_matrix/client/v3/profile/@u:x/displayname", G::ClientReads),
        (Method::PUT, "/_matrix/client/v3/profile/@u:x/displayname", G::Profile),
        (Method::PUT, "/_matrix/client/v3/rooms/!r:x/typing/@u:x", G::Typing),
        (Method::POST, "/_matrix/client/v3/rooms/!r:x/receipt/m.read/$e", G::Receipts),
        (Method::PUT, "/_matrix/client/v3/sendToDevice/m.x/t1", G::ToDevice),
        (Method::PUT, "/_matrix/client/v3/user/@u:x/account_data/m.x", G::AccountData),
        (Method::POST, "/_matrix/client/v3/keys/upload", G::Keys),
        (Method::POST, "/_matrix/client/v3/createRoom", G::RoomCreation),
        (Method::GET, "/_matrix/key/v2/server", G::ServerKeys),
        (Method::GET, "/_synapse/admin/v1/register", G::Admin),
        (Method::GET, "/_matrix/federation/v1/state/!r:x", G::Federation),
        (Method::GET, "/_matrix/media/v3/download/x/abc", G::Media),
        (Method::GET, "/_matrix/client/v1/media/download/x/abc", G::Media),
    ] {
        assert_eq!(group(method.clone(), path, None), Some(expected), "{method} {path}");
    }
    assert_eq!(group(Method::GET, "/_matrix/client/v3/no_such_endpoint", None), None, "unknown paths go to main");
    assert_eq!(group(Method::GET, "/", None), None);
}

#[test]
fn the_table_follows_serves_then_stream_writers_then_main() {
    let text = format!(
        "{}\n[stream_writers]\ntyping = \"typer\"\nreceipts = [\"sync1\"]\n[instance_map.typer]\nhost = \"127.0.0.1\"\nport = 9200\nclient_port = 8090\n\
         [instance_map.persister]\nhost = \"127.0.0.1\"\nport = 9201\n",
        routing_config(
            8080,
            &[("sync1", 8081, &["sync", "room_messages"]), ("sync2", 8082, &["sync", "initial_sync"])],
            "[router]\ninitial_sync_separately = true",
            POSTGRES_STUB
        )
    );
    let config = config::load_str("shared.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let table = RoutingTable::from_config(&config).unwrap();
    assert_eq!(table.names_serving(G::Sync), ["sync1", "sync2"], "instance_map order");
    assert_eq!(table.names_serving(G::InitialSync), ["sync2"]);
    assert_eq!(table.names_serving(G::RoomMessages), ["sync1"]);
    assert_eq!(table.names_serving(G::Typing), ["typer"], "nobody serves typing: its writer");
    assert_eq!(table.names_serving(G::Receipts), ["sync1"], "a receipts writer with a client listener");
    assert_eq!(table.names_serving(G::ClientReads), ["main"], "nobody serves it, no writer: main");
    assert_eq!(table.names_serving(G::AccountData), ["main"]);
    let names: Vec<&str> = table.instances().iter().map(|instance| instance.name.as_str()).collect();
    assert_eq!(names, ["main", "sync1", "sync2", "typer"], "an instance without a client listener is not routed to");

    // Without `initial_sync` instances, initial syncs go to the sync instances.
    let text = routing_config(8080, &[("sync1", 8081, &["sync"])], "[router]\ninitial_sync_separately = true", POSTGRES_STUB);
    let table = RoutingTable::from_config(&config::load_str("shared.toml", &text).unwrap()).unwrap();
    assert_eq!(table.names_serving(G::InitialSync), ["sync1"]);

    // A monolith: main's client listener from `listeners`.
    let monolith = "server_name = \"m.test\"\n[[listeners]]\nport = 8448\nbind_addresses = [\"0.0.0.0\"]\n[[listeners.resources]]\nnames = [\"client\"]\n";
    let table = RoutingTable::from_config(&config::load_str("m.toml", monolith).unwrap()).unwrap();
    assert_eq!(table.instances()[0].address.to_string(), "127.0.0.1:8448");
    assert_eq!(table.names_serving(G::Sync), ["main"]);
}

fn errors_of(text: &str) -> Vec<String> {
    config::load_str("shared.toml", text).expect_err("refused").0.iter().map(ToString::to_string).collect()
}

#[test]
fn routing_mistakes_are_reported_with_their_key() {
    let text = routing_config(8080, &[("sync1", 8081, &["sync", "synk", "initial_sync"])], "", POSTGRES_STUB)
        + "[instance_map.nowhere]\nhost = \"127.0.0.1\"\nport = 9300\nserves = [\"media\"]\n\
           [instance_map.both]\nhost = \"127.0.0.1\"\nport = 9301\nclient_port = 1\nclient_path = \"/tmp/x.sock\"\n";
    let errors = errors_of(&text);
    let has = |needle: &str| errors.iter().any(|error| error.contains(needle));
    assert!(has("`instance_map.sync1.serves`: `synk` is not an endpoint group; the groups are client_reads, "), "{errors:#?}");
    assert!(has("`instance_map.sync1.serves`: lists `initial_sync`, which only applies with `initial_sync_separately = true`"), "{errors:#?}");
    assert!(has("`instance_map.nowhere.serves`: the router needs this instance's client listener"), "{errors:#?}");
    assert!(has("`instance_map.both`: has `client_port` and `client_path`"), "{errors:#?}");

    let no_main = "server_name = \"r.test\"\nworker_replication_secret = \"s\"\n[redis]\nenabled = true\n[router]\nport = 8008\nconnect_timeout_ms = 0\ntls_port = 8448\n\
                   [database]\nname = \"psycopg2\"\nargs = { dbname = \"weft\" }\n[instance_map.main]\nhost = \"127.0.0.1\"\nport = 9093\n";
    let errors = errors_of(no_main);
    assert!(errors.iter().any(|e| e.contains("`instance_map.main.client_port`: the router sends every group no instance serves to `main`")), "{errors:#?}");
    assert!(errors.iter().any(|e| e.contains("`router.connect_timeout_ms`: must be more than 0")), "{errors:#?}");
    assert!(errors.iter().any(|e| e.contains("`router.tls_port`: needs tls_certificate_path and tls_private_key_path")), "{errors:#?}");
}

#[test]
fn rendezvous_hashing_moves_only_the_keys_of_a_lost_instance() {
    let names = ["main", "sync1", "sync2", "sync3"];
    let name_of = |index: usize| names[index].to_owned();
    let all = [0, 1, 2, 3];
    let users: Vec<String> = (0..400).map(|n| format!("@user{n}:example.org")).collect();
    let first: Vec<usize> = users.iter().map(|user| router::rendezvous(user, &all, name_of)[0]).collect();
    let again: Vec<usize> = users.iter().map(|user| router::rendezvous(user, &all, name_of)[0]).collect();
    assert_eq!(first, again, "stable");
    let mut per_instance = BTreeMap::new();
    for index in &first {
        *per_instance.entry(*index).or_insert(0) += 1;
    }
    assert_eq!(per_instance.len(), 4, "spread over every instance: {per_instance:?}");
    assert!(per_instance.values().all(|count| *count > 50), "roughly even: {per_instance:?}");

    let without_sync2 = [0, 1, 3];
    for (user, before) in users.iter().zip(&first) {
        let after = router::rendezvous(user, &without_sync2, name_of)[0];
        if *before != 2 {
            assert_eq!(after, *before, "{user} did not live on sync2 and stays");
        }
    }
    // Scores do not depend on the process: a fixed value.
    assert_eq!(router::score("@alice:example.org", "sync1"), router::score("@alice:example.org", "sync1"));
    assert_ne!(router::score("@alice:example.org", "sync1"), router::score("@alice:example.org", "sync2"));
}

/// An HTTP server that answers every request with its name and what it received.
struct NameBackend {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl NameBackend {
    async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().fallback(move |request: Request| echo(name, request));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self { port, stop: Some(stop), task }
    }

    /// Stops listening and closes every connection.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

async fn echo(name: &'static str, request: Request) -> Json<Value> {
    let (parts, body) = request.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = axum::body::to_bytes(body, 1 << 24).await.unwrap_or_default();
    Json(json!({
        "instance": name, "method": parts.method.to_string(), "path": parts.uri.path(), "query": parts.uri.query(),
        "x_forwarded_for": header("x-forwarded-for"), "host": header("host"), "body": String::from_utf8_lossy(&body),
    }))
}

/// A router in this process; stops when dropped.
struct InProcessRouter {
    base: String,
    _stop: oneshot::Sender<()>,
}

async fn start_router(config_text: &str, storage: Option<weft::storage::Storage>) -> InProcessRouter {
    let config = config::load_str("shared.toml", config_text).unwrap_or_else(|e| panic!("{e}"));
    let state = Arc::new(RouterState::new(&config, storage).expect("router"));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(router::serve(vec![listener], Vec::new(), state, weft::server::connections::ConnectionLimits::from_config(&config), async move {
        let _ = stopped.await;
    }));
    InProcessRouter { base: format!("http://{address}"), _stop: stop }
}

async fn get_json(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the router answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn instance_of(request: reqwest::RequestBuilder) -> String {
    let (status, body) = get_json(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["instance"].as_str().expect("a backend answered").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_sticks_by_user_and_fails_over_within_its_group() {
    // Real access tokens in a real database: the router looks their owners up.
    let server = TestServer::start(Backend::Postgres).await;
    let mut sessions = Vec::new();
    for n in 0..12 {
        sessions.push(server.register(&format!("user{n}"), "pw").await);
    }
    let second_device = server.login("user0", "pw").await;

    let main = NameBackend::start("main").await;
    let sync1 = NameBackend::start("sync1").await;
    let sync2 = NameBackend::start("sync2").await;
    let sync3 = NameBackend::start("sync3").await;
    let fresh = NameBackend::start("fresh").await;
    let text = routing_config(
        main.port,
        &[
            ("sync1", sync1.port, &["sync", "room_messages"]),
            ("sync2", sync2.port, &["sync", "room_messages"]),
            ("sync3", sync3.port, &["sync", "room_messages"]),
            ("fresh", fresh.port, &["initial_sync"]),
        ],
        "[router]\ninitial_sync_separately = true\ndown_for_ms = 60000",
        &server.db.config_toml,
    );
    let router = start_router(&text, Some(server.db.storage("router").await)).await;
    let http = client();
    let sync = |token: &str| http.get(format!("{}/_matrix/client/v3/sync?since=s1&timeout=0", router.base)).bearer_auth(token);

    // The same user always reaches the same instance, whichever device or token form.
    let mut home = BTreeMap::new();
    for session in &sessions {
        let first = instance_of(sync(&session.access_token)).await;
        for _ in 0..3 {
            assert_eq!(instance_of(sync(&session.access_token)).await, first, "{} is sticky", session.user_id);
        }
        home.insert(session.user_id.clone(), first);
    }
    let by_query = http.get(format!("{}/_matrix/client/v3/sync?since=s1&access_token={}", router.base, sessions[0].access_token));
    assert_eq!(instance_of(by_query).await, home[&sessions[0].user_id], "the access_token parameter too");
    assert_eq!(instance_of(sync(&second_device.access_token)).await, home[&sessions[0].user_id], "another device of the same user");
    let used: BTreeSet<&String> = home.values().collect();
    assert!(used.len() >= 2, "users spread over the sync instances: {home:?}");
    assert!(home.values().all(|instance| instance.starts_with("sync")), "{home:?}");

    // Initial syncs go to their own group; everything unknown to main.
    let initial = http.get(format!("{}/_matrix/client/v3/sync", router.base)).bearer_auth(&sessions[0].access_token);
    assert_eq!(instance_of(initial).await, "fresh");
    assert_eq!(instance_of(http.get(format!("{}/_matrix/client/versions", router.base))).await, "main");
    let unknown_token = instance_of(sync("not-a-token")).await;
    assert!(unknown_token.starts_with("sync"), "an unknown token still reaches the group: {unknown_token}");

    // Room pagination sticks by room.
    let messages = |room: &str| http.get(format!("{}/_matrix/client/v3/rooms/{room}/messages?dir=b", router.base));
    let room_home = instance_of(messages("!room:router.test")).await;
    assert_eq!(instance_of(messages("%21room%3Arouter.test")).await, room_home, "the same room however it is encoded");

    // Method, path, query and body arrive as sent; X-Forwarded-For is the
    // peer the router saw, whatever the client claimed.
    let (status, echoed) =
        get_json(http.post(format!("{}/_matrix/client/v3/createRoom?x=1", router.base)).header("x-forwarded-for", "203.0.113.9").body("{\"a\":1}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/_matrix/client/v3/createRoom");
    assert_eq!(echoed["query"], "x=1");
    assert_eq!(echoed["body"], "{\"a\":1}");
    assert_eq!(echoed["x_forwarded_for"], "127.0.0.1");
    assert!(echoed["host"].as_str().unwrap().starts_with("127.0.0.1:"), "the client's Host is kept: {echoed}");

    // One sync instance stops: its users move, the others stay.
    let lost = home[&sessions[0].user_id].clone();
    match lost.as_str() {
        "sync1" => sync1.stop().await,
        "sync2" => sync2.stop().await,
        _ => sync3.stop().await,
    }
    for session in &sessions {
        let now = instance_of(sync(&session.access_token)).await;
        let before = &home[&session.user_id];
        if *before == lost {
            assert_ne!(now, lost, "{} moved off the stopped instance", session.user_id);
            assert!(now.starts_with("sync"), "and stayed in its group: {now}");
        } else {
            assert_eq!(&now, before, "{} did not move", session.user_id);
        }
    }
    let health = http.get(format!("{}/health", router.base)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap(), "OK", "the router answers /health itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_instances_of_a_group_down_is_a_502_with_a_matrix_error() {
    let main = NameBackend::start("main").await;
    let sync1 = NameBackend::start("sync1").await;
    let sync2 = NameBackend::start("sync2").await;
    let text = routing_config(main.port, &[("sync1", sync1.port, &["sync"]), ("sync2", sync2.port, &["sync"])], "", POSTGRES_STUB);
    // No database: /sync is balanced round robin.
    let router = start_router(&text, None).await;
    let http = client();
    let sync = || http.get(format!("{}/_matrix/client/v3/sync?since=s", router.base));
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        seen.insert(instance_of(sync()).await);
    }
    assert_eq!(seen, BTreeSet::from(["sync1".to_owned(), "sync2".to_owned()]), "round robin without a key");

    sync1.stop().await;
    for _ in 0..4 {
        assert_eq!(instance_of(sync()).await, "sync2");
    }
    sync2.stop().await;
    let (status, body) = get_json(sync()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(errcode(&body), "M_UNKNOWN");
    assert!(body["error"].as_str().unwrap().contains("`sync`"), "{body}");
    assert_eq!(instance_of(http.get(format!("{}/_matrix/client/versions", router.base))).await, "main", "other groups still work");

    // A POST with a body is retried when the connection is refused.
    let (status, _) = get_json(http.post(format!("{}/_matrix/client/v3/sync?since=s", router.base)).body("{}")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    main.stop().await;
    let (status, body) = get_json(http.get(format!("{}/_matrix/client/v3/whatever", router.base))).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_GATEWAY, "M_UNKNOWN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_go_to_the_rooms_persister_when_it_serves_event_sending() {
    let main = NameBackend::start("main").await;
    let client1 = NameBackend::start("client1").await;
    let persister1 = NameBackend::start("persister1").await;
    let persister2 = NameBackend::start("persister2").await;
    let text = routing_config(
        main.port,
        &[
            ("client1", client1.port, &["event_sending", "client_reads"]),
            ("persister1", persister1.port, &["event_sending"]),
            ("persister2", persister2.port, &["event_sending"]),
        ],
        "[stream_writers]\nevents = [\"persister1\", \"persister2\"]\n[router]\ndown_for_ms = 60000",
        POSTGRES_STUB,
    );
    let router = start_router(&text, None).await;
    let http = client();
    let rooms: Vec<String> = (0..16).map(|n| format!("!room{n}:router.test")).collect();
    let persister_of = |room: &str| ["persister1", "persister2"][weft::replication::shard(room, 2)];
    let send = |room: &str, verb: &str| {
        let path = match verb {
            "send" => format!("send/m.room.message/t{}", rand_suffix()),
            "state" => "state/m.room.topic/".to_owned(),
            _ => format!("redact/$e/t{}", rand_suffix()),
        };
        http.put(format!("{}/_matrix/client/v3/rooms/{}/{path}", router.base, room.replace('!', "%21").replace(':', "%3A"))).body("{}")
    };
    for room in &rooms {
        for verb in ["send", "state", "redact"] {
            assert_eq!(instance_of(send(room, verb)).await, persister_of(room), "{verb} into {room} goes to its persister");
        }
    }
    assert!(rooms.iter().any(|room| persister_of(room) == "persister1") && rooms.iter().any(|room| persister_of(room) == "persister2"));

    // The persister down: its rooms' sends go to the group's other instances.
    let persister1_port = persister1.port;
    persister1.stop().await;
    for room in rooms.iter().filter(|room| persister_of(room) == "persister1") {
        let now = instance_of(send(room, "send")).await;
        assert!(now == "client1" || now == "persister2", "{room} went to {now}");
    }
    for room in rooms.iter().filter(|room| persister_of(room) == "persister2") {
        assert_eq!(instance_of(send(room, "send")).await, "persister2");
    }

    // A persister that does not serve `event_sending` is not sent to.
    let text = routing_config(
        main.port,
        &[("client1", client1.port, &["event_sending"]), ("persister1", persister1_port, &[]), ("persister2", persister2.port, &["client_reads"])],
        "[stream_writers]\nevents = [\"persister1\", \"persister2\"]",
        POSTGRES_STUB,
    );
    let router = start_router(&text, None).await;
    for room in &rooms {
        let path = format!("{}/_matrix/client/v3/rooms/{room}/send/m.room.message/t1", router.base);
        assert_eq!(instance_of(http.put(path).body("{}")).await, "client1");
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A child process, killed if the test fails.
struct Process {
    child: Child,
}

impl Process {
    fn spawn(args: &[&str]) -> Self {
        let child = Command::new(WEFT).args(args).env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().expect("weft starts");
        Self { child }
    }

    /// SIGTERM, and whether it then stopped cleanly.
    fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "weft did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_healthy(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = client().get(format!("{base}/health")).send().await
            && response.status() == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing healthy at {base}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_router_fails_over_between_real_weft_processes() {
    // Two monoliths on one database stand in for two instances: enough for
    // routing, as long as only one of them writes (presence is off, and
    // users are registered before the second starts).
    let db = TestDb::new(Backend::Postgres).await;
    let dir = db.dir().to_owned();
    let (port_a, port_b, port_router) = (free_port(), free_port(), free_port());
    let instance_config = |port: u16| {
        format!(
            "server_name = \"shared.test\"\nsigning_key_path = {:?}\nenable_registration = true\nenable_registration_without_verification = true\n\
             [presence]\nenabled = false\n[rc_registration]\nper_second = 1000\nburst_count = 1000\n\
             [rc_login.address]\nper_second = 1000\nburst_count = 1000\n{}\n\
             [[listeners]]\nport = {port}\nbind_addresses = [\"127.0.0.1\"]\n[[listeners.resources]]\nnames = [\"client\", \"health\"]\n",
            dir.join("signing.key").display().to_string(),
            db.config_toml
        )
    };
    std::fs::write(dir.join("a.toml"), instance_config(port_a)).unwrap();
    std::fs::write(dir.join("b.toml"), instance_config(port_b)).unwrap();
    let groups = "serves = [\"sync\", \"client_reads\", \"account\", \"registration\"]";
    std::fs::write(
        dir.join("shared.toml"),
        format!(
            "server_name = \"shared.test\"\nworker_replication_secret = \"secret\"\n[redis]\nenabled = true\n{}\n\
             [router]\nport = {port_router}\ndown_for_ms = 60000\n\
             [instance_map.main]\nhost = \"127.0.0.1\"\nport = 9093\nclient_port = {port_a}\n{groups}\n\
             [instance_map.b]\nhost = \"127.0.0.1\"\nport = 9094\nclient_port = {port_b}\n{groups}\n",
            db.config_toml
        ),
    )
    .unwrap();
    let path = |name: &str| dir.join(name).display().to_string();

    let a = Process::spawn(&["run", "-c", &path("a.toml")]);
    let base_a = format!("http://127.0.0.1:{port_a}");
    wait_healthy(&base_a).await;
    let http = client();
    let mut tokens = Vec::new();
    for n in 0..6 {
        let body = json!({"username": format!("user{n}"), "password": "pw", "auth": {"type": "m.login.dummy"}});
        let (status, body) = get_json(http.post(format!("{base_a}/_matrix/client/v3/register")).json(&body)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    let b = Process::spawn(&["run", "-c", &path("b.toml")]);
    wait_healthy(&format!("http://127.0.0.1:{port_b}")).await;
    let router = Process::spawn(&["router", "-c", &path("shared.toml")]);
    let base = format!("http://127.0.0.1:{port_router}");
    wait_healthy(&base).await;

    let sync = |token: &str| http.get(format!("{base}/_matrix/client/v3/sync?timeout=0")).bearer_auth(token.to_owned());
    for token in &tokens {
        let (status, body) = get_json(sync(token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["next_batch"].is_string(), "{body}");
    }

    assert!(b.terminate(), "b stops cleanly");
    for token in &tokens {
        let (status, body) = get_json(sync(token)).await;
        assert_eq!(status, StatusCode::OK, "every user is served by the remaining instance: {body}");
        let (status, body) = get_json(http.get(format!("{base}/_matrix/client/v3/account/whoami")).bearer_auth(token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    assert!(a.terminate());
    let (status, body) = get_json(sync(&tokens[0])).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_GATEWAY, "M_UNKNOWN"), "{body}");
    assert!(router.terminate(), "the router stops cleanly on SIGTERM");
}

#[test]
fn gen_proxy_config_prints_the_equivalent_nginx_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared.toml");
    let ca = crate::support::synapse::test_ca();
    let text = routing_config(
        8080,
        &[
            ("sync1", 8081, &["sync", "room_messages", "sso"]),
            ("sync2", 8082, &["sync", "room_messages", "sso", "federation_transactions"]),
            ("fresh", 8083, &["initial_sync"]),
        ],
        &format!(
            "tls_certificate_path = {:?}\ntls_private_key_path = {:?}\n[router]\ninitial_sync_separately = true\nport = 8448\ntls_port = 8449",
            ca.chain.display().to_string(),
            ca.key.display().to_string()
        ),
        POSTGRES_STUB,
    );
    std::fs::write(&shared, text).unwrap();
    let output = Command::new(WEFT).args(["gen-proxy-config", "nginx", "-c"]).arg(&shared).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let nginx = String::from_utf8(output.stdout).unwrap();
    let block = |start: &str| {
        let from = nginx.find(start).unwrap_or_else(|| panic!("no `{start}` in\n{nginx}"));
        let end = nginx[from..].find('}').unwrap() + from;
        nginx[from..end].to_owned()
    };

    let sync = block("upstream weft_sync {");
    assert!(
        sync.contains("hash $weft_access_token consistent;") && sync.contains("server 127.0.0.1:8081;") && sync.contains("server 127.0.0.1:8082;"),
        "{sync}"
    );
    assert!(block("upstream weft_initial_sync {").contains("server 127.0.0.1:8083;"));
    assert!(block("upstream weft_room_messages {").contains("hash $weft_room consistent;"));
    let federation = block("upstream weft_federation_transactions {");
    assert!(federation.contains("hash $weft_origin consistent;") && federation.contains("server 127.0.0.1:8082;"), "{federation}");
    let sso = block("upstream weft_sso {");
    assert!(sso.contains("server 127.0.0.1:8081;") && sso.contains("server 127.0.0.1:8082;") && !sso.contains("backup"), "SSO balanced: {sso}");
    assert!(block("upstream weft_client_reads {").contains("server 127.0.0.1:8080;"), "unlisted groups go to main");
    assert!(nginx.contains("map $arg_since $weft_sync_upstream {"), "{nginx}");
    assert!(nginx.contains("listen 127.0.0.1:8448;"));
    assert!(nginx.contains("listen 127.0.0.1:8449 ssl;"), "the router's tls_port: {nginx}");
    assert!(nginx.contains(&format!("ssl_certificate {};", ca.chain.display())) && nginx.contains(&format!("ssl_certificate_key {};", ca.key.display())));
    // The client's own X-Forwarded-For is replaced, never extended.
    assert!(nginx.contains("proxy_set_header X-Forwarded-For $remote_addr;"), "{nginx}");
    assert!(!nginx.contains("$proxy_add_x_forwarded_for"), "{nginx}");

    let messages = block("location ~ \"^/_matrix/client/v3/rooms/(?<weft_room_id>[^/]+)/messages$\" {");
    assert!(messages.contains("set $weft_room $weft_room_id;") && messages.contains("proxy_pass http://weft_room_messages;"), "{messages}");
    assert!(block("location ~ \"^/_matrix/client/v3/sync$\" {").contains("proxy_pass http://$weft_sync_upstream;"));
    let profile = nginx
        .split("location ~ ")
        .find(|location| location.starts_with("\"^/_matrix/client/v3/profile/(?<weft_user_id>[^/]+)/(?<weft_field>[^/]+)$\""))
        .unwrap_or_else(|| panic!("no profile field location in\n{nginx}"));
    assert!(profile.contains("set $weft_upstream weft_client_reads;") && profile.contains("if ($request_method = PUT)"), "{profile}");
    assert!(nginx.contains("location ~ \"^/_matrix/federation/v1/send/(?<weft_transaction_id>[^/]+)$\""), "{nginx}");

    // Every upstream used is defined; `location /` comes last; braces balance.
    for used in nginx.split("proxy_pass http://").skip(1) {
        let name = &used[..used.find(';').unwrap()];
        if !name.starts_with('$') {
            assert!(nginx.contains(&format!("upstream {name} {{")), "{name} is defined");
        }
    }
    assert!(nginx.rfind("location ~").unwrap() < nginx.find("location / {").unwrap());
    assert_eq!(nginx.matches('{').count(), nginx.matches('}').count(), "balanced braces");

    // Literal segments win over parameters, as in the router's matcher.
    let position = |path: &str| nginx.find(&format!("location ~ \"{}\"", weft::router::nginx::template_regex(path))).unwrap_or(usize::MAX);
    let locations = weft::router::nginx::locations();
    for (index, (path, _)) in locations.iter().enumerate() {
        assert!(position(path) < usize::MAX, "{path} has a location");
        if index > 0 {
            assert!(position(locations[index - 1].0) < position(path), "in order");
        }
    }

    // nginx is optional; when it is installed it must accept the output.
    if Command::new("nginx").arg("-v").output().is_ok() {
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, format!("events {{}}\nhttp {{\n{nginx}\n}}\n")).unwrap();
        let check = Command::new("nginx").args(["-t", "-e", "stderr", "-p"]).arg(dir.path()).arg("-c").arg(&conf).output().unwrap();
        assert!(check.status.success(), "nginx accepts it: {}", String::from_utf8_lossy(&check.stderr));
    }

    std::fs::write(&shared, "server_name = \"x.test\"\n[instance_map.w]\nhost = \"h\"\nport = 1\nserves = [\"nope\"]\n").unwrap();
    let output = Command::new(WEFT).args(["gen-proxy-config", "nginx", "-c"]).arg(&shared).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("`nope` is not an endpoint group"), "{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_behind_a_unix_socket_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("media.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, axum::Router::new().fallback(|request: Request| echo("media", request))).await;
    });
    let main = NameBackend::start("main").await;
    let text = routing_config(main.port, &[], "", POSTGRES_STUB)
        + &format!("[instance_map.media1]\nhost = \"127.0.0.1\"\nport = 9400\nclient_path = {:?}\nserves = [\"media\"]\n", socket.display().to_string());
    let router = start_router(&text, None).await;
    let download = client().get(format!("{}/_matrix/client/v1/media/download/router.test/abc", router.base));
    assert_eq!(instance_of(download).await, "media");
    assert_eq!(instance_of(client().get(format!("{}/_matrix/client/v3/capabilities", router.base))).await, "main");
}

/// The generated configuration, run by a real nginx (when installed) in front
/// of named backends: the same routing decisions as `weft router`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_with_the_generated_configuration_routes_like_the_router() {
    if Command::new("nginx").arg("-v").output().is_err() {
        eprintln!("nginx is not installed: skipping the nginx run");
        return;
    }
    let main = NameBackend::start("main").await;
    let sync1 = NameBackend::start("sync1").await;
    let sync2 = NameBackend::start("sync2").await;
    let writer = NameBackend::start("profiles").await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared.toml");
    let text = routing_config(
        main.port,
        &[("sync1", sync1.port, &["sync", "room_messages"]), ("sync2", sync2.port, &["sync", "room_messages"]), ("profiles", writer.port, &["profile"])],
        &format!("[router]\nport = {port}\nconnect_timeout_ms = 500"),
        POSTGRES_STUB,
    );
    std::fs::write(&shared, text).unwrap();
    let output = Command::new(WEFT).args(["gen-proxy-config", "nginx", "-c"]).arg(&shared).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let generated = String::from_utf8(output.stdout).unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\npid {0}/nginx.pid;\nerror_log stderr crit;\nevents {{}}\nhttp {{\naccess_log off;\n{generated}\n}}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let child = Command::new("nginx").arg("-p").arg(dir.path()).arg("-c").arg(&conf).stderr(Stdio::inherit()).spawn().expect("nginx starts");
    let _nginx = Process { child };
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while client().get(format!("{base}/_matrix/client/versions")).send().await.is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http = client();
    let sync = |token: &str| http.get(format!("{base}/_matrix/client/v3/sync?since=s")).bearer_auth(token.to_owned());

    let mut homes = BTreeMap::new();
    for n in 0..20 {
        let token = format!("token{n}");
        let home = instance_of(sync(&token)).await;
        assert_eq!(instance_of(sync(&token)).await, home, "sticky by token");
        homes.insert(token, home);
    }
    let used: BTreeSet<&String> = homes.values().collect();
    assert_eq!(used.len(), 2, "{homes:?}");
    let messages = |room: &str| http.get(format!("{base}/_matrix/client/v3/rooms/{room}/messages"));
    let room_home = instance_of(messages("!a:x")).await;
    for _ in 0..3 {
        assert_eq!(instance_of(messages("!a:x")).await, room_home, "sticky by room");
    }
    assert_eq!(instance_of(http.put(format!("{base}/_matrix/client/v3/profile/@u:x/displayname")).body("{}")).await, "profiles");
    assert_eq!(instance_of(http.get(format!("{base}/_matrix/client/v3/profile/@u:x/displayname"))).await, "main");
    assert_eq!(instance_of(http.get(format!("{base}/_matrix/client/versions"))).await, "main");
    assert_eq!(instance_of(http.get(format!("{base}/no/such/path"))).await, "main");
    let (_, echoed) = get_json(http.get(format!("{base}/_matrix/client/versions")).header("x-forwarded-for", "8.8.8.8")).await;
    assert_eq!(echoed["x_forwarded_for"], "127.0.0.1");

    sync1.stop().await;
    for token in homes.keys() {
        assert_eq!(instance_of(sync(token)).await, "sync2", "nginx fails over within the group");
    }
}
