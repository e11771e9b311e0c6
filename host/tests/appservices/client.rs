//! The client side of an appservice: its token, identity assertion,
//! registration and login of its users, exclusive namespaces, rate limits,
//! device masquerading, its network's room directory, and the checks of
//! `app_service_config_files`.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{AS_TOKEN, registration, server};
use crate::{
    on_both_backends,
    support::{Backend, TestServer, encode, errcode},
};

on_both_backends!(
    the_as_token_is_the_sender_and_user_id_masquerades_in_the_namespace,
    the_appservice_registers_and_logs_in_its_users_only,
    exclusive_namespaces_are_refused_to_others,
    an_appservice_without_rate_limits_is_not_limited,
    device_masquerading_needs_the_registration_flag_and_a_real_device,
    the_appservice_publishes_rooms_in_its_network_directory,
);

async fn get_as(server: &TestServer, path: &str, user_id: Option<&str>) -> (StatusCode, Value) {
    let path = match user_id {
        Some(user_id) => as_user(path, user_id),
        None => path.to_owned(),
    };
    server.send(server.raw(Method::GET, &path).bearer_auth(AS_TOKEN)).await
}

/// `path` with the identity assertion `?user_id=`.
fn as_user(path: &str, user_id: &str) -> String {
    format!("{path}?user_id={}", encode(user_id))
}

async fn register_puppet(server: &TestServer, localpart: &str) -> (StatusCode, Value) {
    server
        .post("/_matrix/client/v3/register", Some(AS_TOKEN), json!({"type": "m.login.application_service", "username": localpart, "inhibit_login": true}))
        .await
}

async fn the_as_token_is_the_sender_and_user_id_masquerades_in_the_namespace(backend: Backend) {
    let (server, _dir) = server(backend, &[registration("bridge", None, AS_TOKEN, "")], "").await;
    let (status, me) = get_as(&server, "/_matrix/client/v3/account/whoami", None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user_id"], server.user_id("bridgebot"));
    assert!(me.get("device_id").is_none(), "an appservice without device masquerading has no device: {me}");

    let puppet = server.user_id("bridge_alice");
    let (status, body) = get_as(&server, "/_matrix/client/v3/account/whoami", Some(&puppet)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "a puppet not registered yet: {body}");
    let (status, body) = register_puppet(&server, "bridge_alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], puppet);
    assert!(body.get("access_token").is_none(), "inhibit_login: {body}");
    let (status, me) = get_as(&server, "/_matrix/client/v3/account/whoami", Some(&puppet)).await;
    assert_eq!((status, me["user_id"].as_str()), (StatusCode::OK, Some(puppet.as_str())), "{me}");

    let carol = server.register("carol", "pw").await;
    for outside in [carol.user_id.clone(), "@bridge_x:elsewhere.example".to_owned(), "not a user id".to_owned()] {
        let (status, body) = get_as(&server, "/_matrix/client/v3/account/whoami", Some(&outside)).await;
        assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{outside}: {body}");
    }
    let (status, body) = server.get("/_matrix/client/v3/account/whoami", Some("as-token-nobody-has")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN"), "{body}");

    // The puppet acts: it creates a room and sends into it.
    let request = server.raw(Method::POST, &as_user("/_matrix/client/v3/createRoom", &puppet)).bearer_auth(AS_TOKEN).json(&json!({}));
    let (status, room) = server.send(request).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let room_id = room["room_id"].as_str().unwrap();
    let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1");
    let request = server.raw(Method::PUT, &as_user(&path, &puppet)).bearer_auth(AS_TOKEN).json(&json!({"msgtype": "m.text", "body": "hi"}));
    let (status, sent) = server.send(request.try_clone().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let (_, again) = server.send(request).await;
    assert_eq!(again["event_id"], sent["event_id"], "the same transaction id is the same event");
}

async fn the_appservice_registers_and_logs_in_its_users_only(backend: Backend) {
    let (server, _dir) = server(backend, &[registration("bridge", None, AS_TOKEN, ""), registration("other", None, "as-token-other", "")], "").await;
    let (status, body) = register_puppet(&server, "outsider").await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_EXCLUSIVE"), "{body}");
    let (status, body) = register_puppet(&server, "other_x").await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_EXCLUSIVE"), "another appservice's exclusive namespace: {body}");
    let (status, body) = server.post("/_matrix/client/v3/register", None, json!({"type": "m.login.application_service", "username": "bridge_a"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no token: {body}");
    let carol = server.register("carol", "pw").await;
    let (status, body) =
        server.post("/_matrix/client/v3/register", Some(&carol.access_token), json!({"type": "m.login.application_service", "username": "bridge_a"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN"), "a user's token: {body}");

    let (status, body) =
        server.post("/_matrix/client/v3/register", Some(AS_TOKEN), json!({"type": "m.login.application_service", "username": "bridge_bob"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["access_token"].is_string() && body["device_id"].is_string(), "logged in without inhibit_login: {body}");
    let (status, body) = register_puppet(&server, "bridge_bob").await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_USER_IN_USE"), "{body}");

    let login = |user: &str| json!({"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": user}});
    let (status, body) = server.post("/_matrix/client/v3/login", Some(AS_TOKEN), login("bridge_bob")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], server.user_id("bridge_bob"));
    let (status, me) = server.get("/_matrix/client/v3/account/whoami", body["access_token"].as_str()).await;
    assert_eq!((status, me["device_id"].clone()), (StatusCode::OK, body["device_id"].clone()), "{me}");
    let (status, body) = server.post("/_matrix/client/v3/login", Some(AS_TOKEN), login("carol")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "outside the namespace: {body}");
    let (status, body) = server.post("/_matrix/client/v3/login", Some(&carol.access_token), login("bridge_bob")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a user's token: {body}");
    let (_, flows) = server.get("/_matrix/client/v3/login", None).await;
    assert!(flows["flows"].as_array().unwrap().iter().any(|flow| flow["type"] == "m.login.application_service"), "{flows}");
}

async fn exclusive_namespaces_are_refused_to_others(backend: Backend) {
    let (server, _dir) = server(backend, &[registration("bridge", None, AS_TOKEN, "")], "").await;
    let (status, body) = server.post("/_matrix/client/v3/register", None, json!({"username": "bridge_mallory", "password": "pw"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_EXCLUSIVE"), "{body}");
    let (status, body) = server.post("/_matrix/client/v3/register", None, json!({"username": "bridgebot", "password": "pw"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_EXCLUSIVE"), "the sender's id: {body}");
    let (status, body) = server.get("/_matrix/client/v3/register/available?username=bridge_mallory", None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_EXCLUSIVE"), "{body}");

    let carol = server.register("carol", "pw").await;
    let (_, room) = server.post("/_matrix/client/v3/createRoom", Some(&carol.access_token), json!({})).await;
    let room_id = room["room_id"].as_str().unwrap();
    let alias = |local: &str| format!("/_matrix/client/v3/directory/room/{}", crate::support::encode(&format!("#{local}:{}", server.server_name)));
    let (status, body) = server.put(&alias("bridge_chat"), Some(&carol.access_token), json!({"room_id": room_id})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_EXCLUSIVE"), "{body}");
    let (status, body) = server.post("/_matrix/client/v3/createRoom", Some(&carol.access_token), json!({"room_alias_name": "bridge_room"})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_EXCLUSIVE"), "{body}");
    let (status, _) = server.put(&alias("carols"), Some(&carol.access_token), json!({"room_id": room_id})).await;
    assert_eq!(status, StatusCode::OK);

    // The appservice takes aliases of its namespace, in the room or not, and no others.
    let (status, body) = server.put(&alias("bridge_chat"), Some(AS_TOKEN), json!({"room_id": room_id})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.put(&alias("elsewhere"), Some(AS_TOKEN), json!({"room_id": room_id})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_EXCLUSIVE"), "{body}");
    let (status, body) = server.delete(&alias("bridge_chat"), Some(&carol.access_token), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_EXCLUSIVE"), "the room's creator may not delete it either: {body}");
    let (status, _) = server.delete(&alias("bridge_chat"), Some(AS_TOKEN), json!({})).await;
    assert_eq!(status, StatusCode::OK);
}

async fn an_appservice_without_rate_limits_is_not_limited(backend: Backend) {
    let limits = "[rc_message]\nper_second = 0.1\nburst_count = 2\n";
    let (server, _dir) =
        server(backend, &[registration("bridge", None, AS_TOKEN, "rate_limited: false\n"), registration("slow", None, "as-token-slow", "")], limits).await;
    register_puppet(&server, "bridge_alice").await;
    let puppet = server.user_id("bridge_alice");
    let request = server.raw(Method::POST, &as_user("/_matrix/client/v3/createRoom", &puppet)).bearer_auth(AS_TOKEN).json(&json!({}));
    let (_, room) = server.send(request).await;
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    for n in 0..6 {
        let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/n{n}");
        let request = server.raw(Method::PUT, &as_user(&path, &puppet)).bearer_auth(AS_TOKEN).json(&json!({"msgtype": "m.text", "body": "x"}));
        let (status, body) = server.send(request).await;
        assert_eq!(status, StatusCode::OK, "message {n}: {body}");
    }
    // An appservice that keeps its limits, and its sender, which has none.
    let (_, room) = server.post("/_matrix/client/v3/createRoom", Some("as-token-slow"), json!({})).await;
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    for n in 0..4 {
        let (status, _) = server
            .put(&format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/s{n}"), Some("as-token-slow"), json!({"msgtype": "m.text", "body": "x"}))
            .await;
        assert_eq!(status, StatusCode::OK, "the sender user is never limited ({n})");
    }
    let (status, _) = server
        .post("/_matrix/client/v3/register", Some("as-token-slow"), json!({"type": "m.login.application_service", "username": "slow_a", "inhibit_login": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let puppet = server.user_id("slow_a");
    let mut limited = false;
    for n in 0..4 {
        let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/p{n}");
        let request = server.raw(Method::PUT, &as_user(&path, &puppet)).bearer_auth("as-token-slow").json(&json!({"msgtype": "m.text", "body": "x"}));
        let (status, _) = server.send(request).await;
        limited |= status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "a rate-limited appservice's puppet is limited");
}

async fn device_masquerading_needs_the_registration_flag_and_a_real_device(backend: Backend) {
    let (server, _dir) =
        server(backend, &[registration("bridge", None, AS_TOKEN, "org.matrix.msc3202: true\n"), registration("plain", None, "as-token-plain", "")], "").await;
    let (_, body) = server
        .post("/_matrix/client/v3/register", Some(AS_TOKEN), json!({"type": "m.login.application_service", "username": "bridge_d", "device_id": "PHONE"}))
        .await;
    assert_eq!(body["device_id"], "PHONE", "{body}");
    let puppet = server.user_id("bridge_d");
    let whoami = |device: &str, token: &'static str, user: &str| {
        server.raw(Method::GET, &format!("{}&org.matrix.msc3202.device_id={device}", as_user("/_matrix/client/v3/account/whoami", user))).bearer_auth(token)
    };
    let (status, me) = server.send(whoami("PHONE", AS_TOKEN, &puppet)).await;
    assert_eq!((status, me["device_id"].as_str()), (StatusCode::OK, Some("PHONE")), "{me}");
    let (status, body) = server.send(whoami("NOPE", AS_TOKEN, &puppet)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_EXCLUSIVE"), "{body}");
    let (status, me) =
        server.send(server.raw(Method::GET, &format!("{}&device_id=PHONE", as_user("/_matrix/client/v3/account/whoami", &puppet))).bearer_auth(AS_TOKEN)).await;
    assert_eq!((status, me["device_id"].as_str()), (StatusCode::OK, Some("PHONE")), "the stable parameter name: {me}");
    // Without the flag the parameter is ignored, as Synapse does.
    server
        .post(
            "/_matrix/client/v3/register",
            Some("as-token-plain"),
            json!({"type": "m.login.application_service", "username": "plain_d", "device_id": "PHONE"}),
        )
        .await;
    let (status, me) = server.send(whoami("NOPE", "as-token-plain", &server.user_id("plain_d"))).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert!(me.get("device_id").is_none(), "{me}");
}

async fn the_appservice_publishes_rooms_in_its_network_directory(backend: Backend) {
    let (server, _dir) = server(backend, &[registration("bridge", None, AS_TOKEN, "protocols: [\"irc\"]\n")], "").await;
    let (_, room) = server.post("/_matrix/client/v3/createRoom", Some(AS_TOKEN), json!({"name": "Bridged channel"})).await;
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/directory/list/appservice/libera/{room_id}");
    let carol = server.register("carol", "pw").await;
    let (status, body) = server.put(&path, Some(&carol.access_token), json!({"visibility": "public"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only appservices: {body}");
    let (status, body) = server.put(&path, Some(AS_TOKEN), json!({"visibility": "public"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = |filter: Value| async { server.post("/_matrix/client/v3/publicRooms", Some(&carol.access_token), filter).await };
    let (_, matrix) = listed(json!({})).await;
    assert_eq!(matrix["chunk"].as_array().unwrap().len(), 0, "not in the Matrix directory: {matrix}");
    let (_, network) = listed(json!({"third_party_instance_id": "bridge|libera"})).await;
    assert_eq!(network["chunk"][0]["room_id"], room_id.as_str(), "{network}");
    let (_, all) = listed(json!({"include_all_networks": true})).await;
    assert_eq!(all["chunk"].as_array().unwrap().len(), 1, "{all}");
    let (_, other) = listed(json!({"third_party_instance_id": "bridge|oftc"})).await;
    assert_eq!(other["chunk"].as_array().unwrap().len(), 0, "{other}");
    let (status, _) = server.put(&path, Some(AS_TOKEN), json!({"visibility": "private"})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, network) = listed(json!({"third_party_instance_id": "bridge|libera"})).await;
    assert_eq!(network["chunk"].as_array().unwrap().len(), 0, "{network}");
}
