//! What every endpoint shares: unknown paths and methods, CORS, body limits,
//! versions and capabilities, health, metrics and request ids.

use http::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    on_both_backends,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(
    unknown_paths_and_methods_are_unrecognized,
    options_and_cors_headers,
    oversized_bodies_are_refused_before_anything_is_written,
    versions_and_capabilities,
    health_metrics_and_request_ids,
    client_discovery_is_served_when_configured,
    turn_credentials_follow_the_configuration,
);

async fn unknown_paths_and_methods_are_unrecognized(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.get("/_matrix/client/v3/no_such_endpoint", None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_UNRECOGNIZED"));
    let (status, body) = server.get("/", None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_UNRECOGNIZED"));
    let (status, body) = server.request(Method::DELETE, "/_matrix/client/v3/login", None, None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED"));
    let (status, body) = server.request(Method::PUT, "/_matrix/client/v3/account/whoami", None, Some(json!({}))).await;
    assert_eq!((status, errcode(&body)), (StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED"));
}

async fn options_and_cors_headers(backend: Backend) {
    let server = TestServer::start(backend).await;
    for path in ["/_matrix/client/v3/login", "/_matrix/client/v3/anything/at/all"] {
        let response =
            server.raw(Method::OPTIONS, path).header("Origin", "https://app.example").header("Access-Control-Request-Method", "POST").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(headers["access-control-allow-origin"], "*");
        let methods = headers["access-control-allow-methods"].to_str().unwrap();
        for method in ["GET", "POST", "PUT", "DELETE", "OPTIONS"] {
            assert!(methods.contains(method), "{methods}");
        }
        let allowed = headers["access-control-allow-headers"].to_str().unwrap();
        for header in ["X-Requested-With", "Content-Type", "Authorization"] {
            assert!(allowed.contains(header), "{allowed}");
        }
    }
    let response = server.raw(Method::GET, "/_matrix/client/versions").send().await.unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let response = server.raw(Method::GET, "/nope").send().await.unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*", "errors carry CORS headers too");
}

async fn oversized_bodies_are_refused_before_anything_is_written(backend: Backend) {
    let server = TestServer::builder(backend).config("max_request_body_size = 1024").start().await;
    let big = json!({"username": "alice", "password": "x".repeat(2000), "auth": {"type": "m.login.dummy"}});
    let (status, body) = server.post("/_matrix/client/v3/register", None, big).await;
    assert_eq!((status, errcode(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE"));

    // A chunked body has no Content-Length: the limit applies while reading.
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let chunk = format!("{{\"username\": \"alice\", \"password\": \"{}\"}}", "y".repeat(1500));
    let request = format!(
        "POST /_matrix/client/v3/register HTTP/1.1\r\nHost: {address}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("M_TOO_LARGE"), "{response}");
    assert!(!server.state.storage.user_id_taken(&server.uid("alice")).await.unwrap());
}

async fn versions_and_capabilities(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    let versions: Vec<&str> = body["versions"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert!(versions.contains(&"v1.1") && versions.contains(&"r0.6.1"), "{body}");

    let alice = server.register("alice", "pw").await;
    let (status, body) = server.get("/_matrix/client/v3/capabilities", None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"));
    let (status, body) = server.get("/_matrix/client/v3/capabilities", Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK);
    let capabilities = &body["capabilities"];
    // ruma leaves out capabilities at their default (enabled), which the spec allows.
    assert_ne!(capabilities["m.change_password"]["enabled"], false);
    assert_eq!(capabilities["m.room_versions"]["default"], "12");
    assert_eq!(capabilities["m.room_versions"]["available"]["1"], "stable");
    assert_eq!(capabilities["m.room_versions"]["available"]["12"], "stable");
    assert_eq!(capabilities["m.3pid_changes"]["enabled"], false);
}

async fn health_metrics_and_request_ids(backend: Backend) {
    let server = TestServer::start(backend).await;
    let response = server.raw(Method::GET, "/health").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.text().await.unwrap(), "OK");
    server.register("alice", "pw").await;
    let metrics = server.raw(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("weft_http_requests_total{group=\"registration\",method=\"POST\",status=\"200\"}"), "{metrics}");
    assert!(metrics.contains("weft_http_request_duration_seconds_bucket{group=\"registration\""), "{metrics}");
    assert!(metrics.contains("weft_db_pool_connections{state=\"open\"}"), "{metrics}");
    let (a, b) = (server.raw(Method::GET, "/health").send().await.unwrap(), server.raw(Method::GET, "/health").send().await.unwrap());
    assert_ne!(a.headers()["x-request-id"], b.headers()["x-request-id"]);
}

/// `/.well-known/matrix/client`: a 404 by default, as in Synapse; with
/// `serve_client_wellknown`, `public_baseurl` and the extra content.
async fn client_discovery_is_served_when_configured(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.get("/.well-known/matrix/client", None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{body}");

    let config = "public_baseurl = \"https://matrix.example.org/\"\nserve_client_wellknown = true\n[extra_well_known_client_content]\n\"org.example.custom\" = { \"x\" = 1 }";
    let server = TestServer::builder(backend).config(config).start().await;
    let (status, body) = server.get("/.well-known/matrix/client", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"m.homeserver": {"base_url": "https://matrix.example.org/"}, "org.example.custom": {"x": 1}}));
}

/// `/voip/turnServer`: `{}` without TURN servers; time-limited credentials
/// from the shared secret (TURN REST API); static ones otherwise.
async fn turn_credentials_follow_the_configuration(backend: Backend) {
    use base64::Engine;
    use hmac::Mac;

    let path = "/_matrix/client/v3/voip/turnServer";
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let (status, body) = server.get(path, Some(&alice.access_token)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (status, _) = server.get(path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let config = "turn_uris = [\"turn:turn.example.org:3478?transport=udp\"]\nturn_shared_secret = \"s3cret\"\nturn_user_lifetime = \"2h\"";
    let server = TestServer::builder(backend).config(config).start().await;
    let alice = server.register("alice", "pw").await;
    let (status, body) = server.get(path, Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ttl"], 7200);
    assert_eq!(body["uris"], json!(["turn:turn.example.org:3478?transport=udp"]));
    let username = body["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, alice.user_id);
    let expiry: u64 = expiry.parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!((now + 7100..=now + 7300).contains(&expiry), "{expiry} vs {now}");
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"s3cret").unwrap();
    mac.update(username.as_bytes());
    assert_eq!(body["password"], json!(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())));

    let config = "turn_uris = [\"turns:turn.example.org\"]\nturn_username = \"u\"\nturn_password = \"p\"";
    let server = TestServer::builder(backend).config(config).start().await;
    let alice = server.register("alice", "pw").await;
    let (_, body) = server.get(path, Some(&alice.access_token)).await;
    assert_eq!(body, json!({"username": "u", "password": "p", "uris": ["turns:turn.example.org"], "ttl": 3600}));
}
