//! Requests that must be refused: a missing, malformed or wrongly signed
//! X-Matrix header, an unknown key, another destination (401
//! `M_UNAUTHORIZED` each), a body that is not JSON (400, never 500), and the
//! operator's limits: an address in `ip_range_blacklist`, a server outside
//! `federation_domain_whitelist` (both directions).

use http::{Method, StatusCode};
use ruma::{
    OwnedServerName,
    api::federation::authentication::{XMatrix, XMatrixSigningInput},
    signatures::Ed25519KeyPair,
};
use serde_json::Value;

use crate::support::{Backend, TestServer, encode, errcode, synapse::https_client};

/// `Authorization: X-Matrix ...` for a request, signed with `key` as `origin`.
fn x_matrix(origin: &str, destination: &str, key: &Ed25519KeyPair, method: &Method, uri: &str, body: &[u8]) -> String {
    let request = http::Request::builder().method(method.clone()).uri(uri).body(body.to_vec()).unwrap();
    let input = XMatrixSigningInput::new(OwnedServerName::try_from(origin).unwrap(), OwnedServerName::try_from(destination).unwrap(), key);
    XMatrix::sign_http_request(&request, input).unwrap().to_string()
}

async fn send(base: &str, method: Method, uri: &str, authorization: Option<String>, body: &[u8]) -> (StatusCode, Value) {
    let mut request = https_client().request(method, format!("{base}{uri}")).body(body.to_vec());
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn new_key(version: &str) -> Ed25519KeyPair {
    Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), version.into()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_badly_signed_requests_are_refused() {
    let target = TestServer::builder(Backend::Sqlite).federation().start().await;
    let caller = TestServer::builder(Backend::Sqlite).federation().start().await;
    target.register("alice", "password-alice").await;
    let base = target.federation_base();
    let uri = format!("/_matrix/federation/v1/query/profile?user_id={}", encode(&target.user_id("alice")));
    let get = Method::GET;
    let (origin, destination) = (caller.server_name.as_str(), target.server_name.as_str());
    let own_key = &caller.state.signing_key.pair;

    // Signed properly: answered (the target fetched the caller's key).
    let (status, body) = send(&base, get.clone(), &uri, Some(x_matrix(origin, destination, own_key, &get, &uri, b"")), b"").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(
        &base,
        get.clone(),
        "/_matrix/federation/v1/version",
        Some(x_matrix(origin, destination, own_key, &get, "/_matrix/federation/v1/version", b"")),
        b"",
    )
    .await;
    assert_eq!((status, &body["server"]["name"]), (StatusCode::OK, &Value::from("Weft")), "{body}");

    let unauthorized = |(status, body): (StatusCode, Value), what: &str| {
        assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED"), "{what}: {body}");
    };
    unauthorized(send(&base, get.clone(), &uri, None, b"").await, "no Authorization header");
    // `version` needs no signature (as the specification says).
    let (status, _) = send(&base, get.clone(), "/_matrix/federation/v1/version", None, b"").await;
    assert_eq!(status, StatusCode::OK);
    unauthorized(send(&base, get.clone(), &uri, Some("X-Matrix origin=nonsense".into()), b"").await, "a malformed header");
    // The caller's key id, another key: the signature does not verify.
    let impostor = new_key(own_key.version());
    unauthorized(send(&base, get.clone(), &uri, Some(x_matrix(origin, destination, &impostor, &get, &uri, b"")), b"").await, "a wrong signature");
    // A key id the caller does not have.
    let unknown = new_key("unknown");
    unauthorized(send(&base, get.clone(), &uri, Some(x_matrix(origin, destination, &unknown, &get, &uri, b"")), b"").await, "an unknown key");
    // Signed for another destination.
    unauthorized(send(&base, get.clone(), &uri, Some(x_matrix(origin, "localhost:1", own_key, &get, &uri, b"")), b"").await, "another destination");
    // Signed for another URI.
    let other_uri = format!("/_matrix/federation/v1/query/profile?user_id={}", encode(&target.user_id("bob")));
    unauthorized(send(&base, get.clone(), &uri, Some(x_matrix(origin, destination, own_key, &get, &other_uri, b"")), b"").await, "another request");

    // A body that is not JSON: 400, not 500.
    let post = Method::POST;
    let keys_query = "/_matrix/federation/v1/user/keys/query";
    let garbage = b"{\"device_keys\": [garbage";
    let (status, body) = send(&base, post.clone(), keys_query, Some(x_matrix(origin, destination, own_key, &post, keys_query, b"{}")), garbage).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_NOT_JSON"), "{body}");
    // JSON of the wrong shape, properly signed: 400 too.
    let wrong = br#"{"device_keys": 5}"#;
    let (status, body) = send(&base, post.clone(), keys_query, Some(x_matrix(origin, destination, own_key, &post, keys_query, wrong)), wrong).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_policy_and_the_domain_whitelist_are_enforced() {
    let target = TestServer::builder(Backend::Sqlite).federation().start().await;
    let alice = target.register("alice", "password-alice").await;
    let profile = format!("/_matrix/client/v3/profile/{}", encode(&alice.user_id));

    // Without `ip_range_whitelist`, loopback is refused: Synapse's default blacklist.
    let blocked = TestServer::builder(Backend::Sqlite).federation().config("ip_range_whitelist = []").start().await;
    let bob = blocked.register("bob", "password-bob").await;
    let (status, body) = blocked.get(&profile, Some(&bob.access_token)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("ip_range_blacklist"), "{body}");
    // An IP literal is judged the same way, before any connection.
    let port = target.server_name.rsplit_once(':').unwrap().1;
    let literal = format!("/_matrix/client/v3/profile/{}", encode(&format!("@alice:127.0.0.1:{port}")));
    let (status, body) = blocked.get(&literal, Some(&bob.access_token)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("ip_range_blacklist"), "{body}");

    // A server outside `federation_domain_whitelist` is neither asked nor heard.
    let restricted = TestServer::builder(Backend::Sqlite).federation().config("federation_domain_whitelist = [\"elsewhere.example\"]").start().await;
    let carol = restricted.register("carol", "password-carol").await;
    let (status, body) = restricted.get(&profile, Some(&carol.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    let uri = format!("/_matrix/federation/v1/query/profile?user_id={}", encode(&carol.user_id));
    let get = Method::GET;
    let signed = x_matrix(&target.server_name, &restricted.server_name, &target.state.signing_key.pair, &get, &uri, b"");
    let (status, body) = send(&restricted.federation_base(), get, &uri, Some(signed), b"").await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    // The whitelisted direction still works: the target asks nothing of it,
    // but answers its own users.
    let (status, body) = target.get(&profile, Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
