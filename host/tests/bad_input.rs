//! Hostile input: U+0000 in every field that reached PostgreSQL text, and a
//! sweep of every route that takes a body with NULs, wrong types, empty
//! bodies and oversized fields. No input may answer 500 (the test client
//! fails on any) or leave anything written.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::{Backend, Session, TestServer, encode, errcode},
};

on_both_backends!(nul_bytes_are_refused_in_every_field_and_nothing_is_written, every_route_with_a_body_survives_bad_bodies);

const V3: &str = "/_matrix/client/v3";

async fn setup(server: &TestServer) -> (Session, String) {
    let alice = server.register("alice", "pw").await;
    let (status, body) = server.post(&format!("{V3}/createRoom"), Some(&alice.access_token), json!({"name": "room"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (alice, body["room_id"].as_str().unwrap().to_owned())
}

async fn nul_bytes_are_refused_in_every_field_and_nothing_is_written(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, room_id) = setup(&server).await;
    let token = Some(alice.access_token.as_str());
    let user = encode(&alice.user_id);
    let room = encode(&room_id);
    let device = encode(&alice.device_id);
    let nul = "a\u{0}b";
    let cases: Vec<(Method, String, Value)> = vec![
        (Method::PUT, format!("{V3}/rooms/{room}/send/m.room.message/t1"), json!({"msgtype": "m.text", "body": nul})),
        (Method::PUT, format!("{V3}/rooms/{room}/send/m.room%00message/t2"), json!({"body": "x"})),
        (Method::PUT, format!("{V3}/rooms/{room}/state/org.example/a%00b"), json!({})),
        (Method::PUT, format!("{V3}/rooms/{room}/state/m.room.name/"), json!({"name": nul})),
        (Method::PUT, format!("{V3}/rooms/{room}/state/m.room.topic/"), json!({"topic": nul})),
        (Method::PUT, format!("{V3}/user/{user}/account_data/a%00b"), json!({})),
        (Method::PUT, format!("{V3}/user/{user}/account_data/org.example"), json!({nul: 1})),
        (Method::PUT, format!("{V3}/sendToDevice/a%00b/t3"), json!({"messages": {}})),
        (Method::PUT, format!("{V3}/presence/{user}/status"), json!({"presence": "online", "status_msg": nul})),
        (
            Method::POST,
            format!("{V3}/pushers/set"),
            json!({"kind": "http", "app_id": nul, "pushkey": "k", "app_display_name": "a", "device_display_name": "d", "lang": "en", "data": {"url": "https://p.example.org/_matrix/push/v1/notify"}}),
        ),
        (Method::PUT, format!("{V3}/devices/{device}"), json!({"display_name": nul})),
        (Method::POST, format!("{V3}/search"), json!({"search_categories": {"room_events": {"search_term": nul}}})),
        (Method::POST, format!("{V3}/rooms/{room}/report"), json!({"reason": nul})),
        (Method::POST, format!("{V3}/room_keys/version"), json!({"algorithm": nul, "auth_data": {}})),
        (Method::POST, format!("{V3}/keys/upload"), json!({"one_time_keys": {format!("signed_curve25519:{nul}"): {"key": "k"}}})),
        (Method::PUT, format!("{V3}/profile/{user}/displayname"), json!({"displayname": nul})),
        (Method::PUT, format!("{V3}/profile/{user}/avatar_url"), json!({"avatar_url": nul})),
        (Method::POST, format!("{V3}/createRoom"), json!({"name": nul})),
        (Method::POST, format!("{V3}/user/{user}/filter"), json!({"room": {"rooms": [nul]}})),
        (Method::PUT, format!("{V3}/rooms/{room}/typing/{user}"), json!({"typing": true, "timeout": 1000, nul: 1})),
        (Method::GET, format!("{V3}/rooms/{room}/messages?dir=b&filter=%7B%22types%22%3A%5B%22a%00%22%5D%7D"), Value::Null),
        (Method::GET, format!("{V3}/profile/@a%00b:example.org"), Value::Null),
        (Method::POST, format!("{V3}/user_directory/search"), json!({"search_term": nul})),
        (Method::POST, format!("{V3}/login"), json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": nul}, "password": "pw"})),
        (Method::POST, format!("{V3}/register"), json!({"username": nul, "password": "pw", "auth": {"type": "m.login.dummy"}})),
    ];
    for (method, path, body) in cases {
        let body = if body.is_null() { None } else { Some(body) };
        let (status, reply) = server.request(method.clone(), &path, token, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {reply}");
        assert!(matches!(errcode(&reply), "M_BAD_JSON" | "M_INVALID_PARAM"), "{method} {path}: {reply}");
    }
    // Nothing was written: the profile, the room's name and the timeline are as before.
    let (_, profile) = server.get(&format!("{V3}/profile/{user}"), token).await;
    assert_eq!(profile["displayname"], "alice");
    let (_, name) = server.get(&format!("{V3}/rooms/{room}/state/m.room.name/"), token).await;
    assert_eq!(name["name"], "room");
    let (_, messages) = server.get(&format!("{V3}/rooms/{room}/messages?dir=b&limit=50"), token).await;
    let bodies: Vec<&Value> = messages["chunk"].as_array().unwrap().iter().filter(|e| e["type"] == "m.room.message").collect();
    assert!(bodies.is_empty(), "{bodies:?}");
    // A NUL written as text (a backslash, then `u0000`) is ordinary text.
    let (status, reply) = server.put(&format!("{V3}/rooms/{room}/send/m.room.message/t9"), token, json!({"msgtype": "m.text", "body": "\\u0000"})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

/// A value for each path parameter, so that most requests reach their handler.
fn fill(path: &str, server: &TestServer, session: &Session, room_id: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e + 1);
        let name = &rest[start + 1..end - 1];
        let value = match name {
            n if n.contains("room_id") || n == "room_id_or_alias" => room_id.to_owned(),
            n if n.contains("user_id") || n == "userId" => session.user_id.clone(),
            n if n.contains("device_id") => session.device_id.clone(),
            n if n.contains("server_name") || n == "origin" => server.server_name.clone(),
            n if n.contains("alias") => format!("#a:{}", server.server_name),
            "event_type" | "type" | "kind" => "org.example.type".to_owned(),
            "state_key" => String::new(),
            n if n.contains("event_id") => "$unknown".to_owned(),
            _ => "x1".to_owned(),
        };
        out.push_str(&encode(&value));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

async fn every_route_with_a_body_survives_bad_bodies(backend: Backend) {
    let server = TestServer::builder(backend).config("[rc_media_create]\nper_second = 1000\nburst_count = 1000").start().await;
    let (alice, room_id) = setup(&server).await;
    let long = "x".repeat(70_000);
    let bodies: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("{}".to_owned()),
        Some("[]".to_owned()),
        Some("null".to_owned()),
        Some("{\"a\":".to_owned()),
        Some(json!({"\u{0}": "\u{0}"}).to_string()),
        Some(json!({"body": 1, "type": [], "content": "x", "auth": 7, "user_id": {}, "room_id": false}).to_string()),
        Some(json!({"name": long, "topic": long, "displayname": long, "body": long, "reason": long}).to_string()),
    ];
    let mut sent = 0;
    for route in weft::api::route_list::all_routes() {
        if !matches!(route.method, Method::POST | Method::PUT) || route.path.contains("/logout") || route.path.contains("/deactivate") {
            continue;
        }
        let path = fill(route.path, &server, &alice, &room_id);
        for body in &bodies {
            let mut request = server.raw(route.method.clone(), &path).bearer_auth(&alice.access_token);
            if let Some(body) = body {
                request = request.header("content-type", "application/json").body(body.clone());
            }
            // `send` fails the test on a 500.
            let (status, reply) = server.send(request).await;
            assert!(
                status.as_u16() < 500 || status == StatusCode::NOT_IMPLEMENTED || status == StatusCode::BAD_GATEWAY,
                "{} {path}: {status} {reply}",
                route.method
            );
            sent += 1;
        }
    }
    assert!(sent > 500, "only {sent} requests were sent");
    // The account still works after all of it.
    let (status, _) = server.get(&format!("{V3}/account/whoami"), Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK);
}
