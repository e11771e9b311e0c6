//! MSC3983 and MSC3984 through the reference notifier: with Synapse's
//! `experimental_features` switches on, a one-time key claim for an
//! appservice's exclusive user that the server cannot fill from its own
//! one-time keys is asked of the appservice (its fallback key only after),
//! and a key query for such a user merges the appservice's devices; other
//! users are never asked about. A notifier built for WIT 0.1.3 (no
//! `appservice-keys` export) still loads and delivers, and asks for no keys.

use http::StatusCode;
use serde_json::{Value, json};

use super::{
    AS_TOKEN, HS_TOKEN,
    fake::{FakeAppservice, Mode, Received},
    registration, server,
};
use crate::{
    on_both_backends,
    support::{Backend, TestServer, encode},
};

on_both_backends!(
    keys_of_exclusive_users_are_claimed_and_queried_through_the_appservice,
    the_unstable_claim_takes_several_keys_and_always_the_fallback_key,
    a_notifier_built_for_0_1_3_loads_and_asks_for_no_keys,
);

const SWITCHED_ON: &str = "[experimental_features]\nmsc3983_appservice_otk_claims = true\nmsc3984_appservice_key_query = true\n";

fn key_requests(appservice: &FakeAppservice, endpoint: &str) -> Vec<Received> {
    appservice.received().into_iter().filter(|r| r.path.ends_with(endpoint)).collect()
}

async fn claim(server: &TestServer, token: &str, wanted: Value) -> Value {
    let (status, body) = server.post("/_matrix/client/v3/keys/claim", Some(token), json!({"one_time_keys": wanted})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["one_time_keys"].clone()
}

async fn keys_of_exclusive_users_are_claimed_and_queried_through_the_appservice(backend: Backend) {
    let appservice = FakeAppservice::start(Mode::Accept).await;
    let registrations = [registration("bridge", Some(&appservice.url()), AS_TOKEN, "org.matrix.msc3202: true\n")];
    let (server, _dir) = server(backend, &registrations, SWITCHED_ON).await;
    let upload = json!({
        "one_time_keys": {"signed_curve25519:A1": {"key": "server-otk"}},
        "fallback_keys": {"signed_curve25519:F1": {"key": "server-fallback", "fallback": true}},
    });
    let puppet = puppet_with_keys(&server, |_| upload).await;
    let carol = server.register("carol", "pw").await;
    let dave = server.register("dave", "pw").await;

    let ghost_device = json!({
        "user_id": puppet, "device_id": "ASDEV", "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
        "keys": {"curve25519:ASDEV": "as-curve", "ed25519:ASDEV": "as-ed"}, "signatures": {},
    });
    appservice.answer_keys(
        json!({
            puppet.clone(): {"ASDEV": {"signed_curve25519:AS1": {"key": "appservice-otk"}}},
            "@bridge_elsewhere:example.org": {"X": {"signed_curve25519:Z": {"key": "not asked"}}},
        }),
        json!({"device_keys": {puppet.clone(): {"ASDEV": ghost_device}, carol.user_id.clone(): {"EVIL": {"keys": {}}}}}),
    );

    // The server's own one-time key first; the appservice for the rest.
    let claimed = claim(
        &server,
        &carol.access_token,
        json!({puppet.clone(): {"PUPPETDEV": "signed_curve25519", "ASDEV": "signed_curve25519", "NODEV": "signed_curve25519"}}),
    )
    .await;
    assert_eq!(
        claimed,
        json!({puppet.clone(): {"PUPPETDEV": {"signed_curve25519:A1": {"key": "server-otk"}}, "ASDEV": {"signed_curve25519:AS1": {"key": "appservice-otk"}}}}),
        "the server's key, then the appservice's; nothing it was not asked for"
    );
    let asked = key_requests(&appservice, "/_matrix/app/unstable/org.matrix.msc3983/keys/claim");
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(asked[0].body, json!({puppet.clone(): {"ASDEV": ["signed_curve25519"], "NODEV": ["signed_curve25519"]}}));
    assert_eq!(asked[0].authorization.as_deref(), Some(format!("Bearer {HS_TOKEN}").as_str()));

    // No one-time key left and none from the appservice: the fallback key.
    let claimed = claim(&server, &carol.access_token, json!({puppet.clone(): {"PUPPETDEV": "signed_curve25519"}})).await;
    assert_eq!(claimed, json!({puppet.clone(): {"PUPPETDEV": {"signed_curve25519:F1": {"key": "server-fallback", "fallback": true}}}}));
    let asked = key_requests(&appservice, "/keys/claim");
    assert_eq!(asked.len(), 2, "asked before the fallback: {asked:#?}");
    assert_eq!(asked[1].body, json!({puppet.clone(): {"PUPPETDEV": ["signed_curve25519"]}}));

    // Another user's claim is not the appservice's business.
    claim(&server, &carol.access_token, json!({dave.user_id.clone(): {dave.device_id.clone(): "signed_curve25519"}})).await;
    assert_eq!(key_requests(&appservice, "/keys/claim").len(), 2);

    // Queries: the appservice's devices join the server's, for its users only.
    let wanted = json!({"device_keys": {puppet.clone(): [], carol.user_id.clone(): []}});
    let (status, body) = server.post("/_matrix/client/v3/keys/query", Some(&dave.access_token), wanted).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device_keys"][&puppet]["ASDEV"], ghost_device, "{body}");
    assert!(body["device_keys"][&carol.user_id].get("EVIL").is_none(), "only the users it was asked about: {body}");
    let asked = key_requests(&appservice, "/_matrix/app/unstable/org.matrix.msc3984/keys/query");
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(asked[0].body, json!({puppet.clone(): []}));
    let wanted = json!({"device_keys": {puppet.clone(): ["PUPPETDEV"]}});
    let (_, body) = server.post("/_matrix/client/v3/keys/query", Some(&dave.access_token), wanted).await;
    assert!(body["device_keys"][&puppet].get("ASDEV").is_none(), "a device not asked for is left out: {body}");
    assert_eq!(key_requests(&appservice, "/keys/query")[1].body, json!({puppet.clone(): ["PUPPETDEV"]}));

    // An appservice that knows nothing of the endpoints: the server's keys alone.
    let (server2, _dir2) = super::server(
        backend,
        &[registration("quiet", Some(&FakeAppservice::start(Mode::Accept).await.url()), "as-quiet", "org.matrix.msc3202: true\n")],
        SWITCHED_ON,
    )
    .await;
    let erin = server2.register("erin", "pw").await;
    let claimed = claim(&server2, &erin.access_token, json!({server2.user_id("quiet_x"): {"D": "signed_curve25519"}})).await;
    assert_eq!(claimed, json!({}), "a 404 from the appservice is no keys");
}

const UNSTABLE_CLAIM: &str = "/_matrix/client/unstable/org.matrix.msc3983/keys/claim";

/// Registers `bridge_alice` through the appservice with device `PUPPETDEV`
/// and uploads the keys `upload` makes for its user id; the user id.
pub(super) async fn puppet_with_keys(server: &TestServer, upload: impl FnOnce(&str) -> Value) -> String {
    let (status, body) = server
        .post(
            "/_matrix/client/v3/register",
            Some(AS_TOKEN),
            json!({"type": "m.login.application_service", "username": "bridge_alice", "device_id": "PUPPETDEV"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let puppet = body["user_id"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/keys/upload?user_id={}&device_id=PUPPETDEV", encode(&puppet));
    let (status, body) = server.post(&path, Some(AS_TOKEN), upload(&puppet)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    puppet
}

/// Synapse's unstable `/keys/claim`: a list of algorithms a device, one
/// key for each, the server's one-time keys first, the appservice for the
/// rest, and the device's fallback key always, used up only when no
/// one-time key was found; not served with MSC3983 off.
async fn the_unstable_claim_takes_several_keys_and_always_the_fallback_key(backend: Backend) {
    let appservice = FakeAppservice::start(Mode::Accept).await;
    let (server, _dir) = server(backend, &[registration("bridge", Some(&appservice.url()), AS_TOKEN, "org.matrix.msc3202: true\n")], SWITCHED_ON).await;
    let upload = json!({
        "one_time_keys": {"signed_curve25519:A1": {"key": "otk-1"}, "signed_curve25519:A2": {"key": "otk-2"}},
        "fallback_keys": {"signed_curve25519:F1": {"key": "server-fallback", "fallback": true}},
    });
    let puppet = puppet_with_keys(&server, |_| upload).await;
    let carol = server.register("carol", "pw").await;
    appservice.answer_keys(
        json!({puppet.clone(): {"ASDEV": {"signed_curve25519:AS1": {"key": "as-1"}, "signed_curve25519:AS2": {"key": "as-2"}}}}),
        json!({"device_keys": {}}),
    );
    let curve = "signed_curve25519";
    let wanted = json!({"one_time_keys": {puppet.clone(): {"PUPPETDEV": [curve, curve, curve], "ASDEV": [curve, curve]}}});
    let (status, body) = server.post(UNSTABLE_CLAIM, Some(&carol.access_token), wanted).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["one_time_keys"],
        json!({puppet.clone(): {
            "PUPPETDEV": {"signed_curve25519:A1": {"key": "otk-1"}, "signed_curve25519:A2": {"key": "otk-2"}, "signed_curve25519:F1": {"key": "server-fallback", "fallback": true}},
            "ASDEV": {"signed_curve25519:AS1": {"key": "as-1"}, "signed_curve25519:AS2": {"key": "as-2"}},
        }}),
        "both one-time keys, the fallback key beside them, the appservice's two"
    );
    let asked = key_requests(&appservice, "/_matrix/app/unstable/org.matrix.msc3983/keys/claim");
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(asked[0].body, json!({puppet.clone(): {"ASDEV": [curve, curve], "PUPPETDEV": [curve]}}), "only what the server lacked");
    let user_id = ruma::UserId::parse(puppet.as_str()).unwrap();
    let device_id: &ruma::DeviceId = "PUPPETDEV".into();
    let (counts, unused_fallback) = server.state.storage.key_counts(&user_id, device_id).await.unwrap();
    assert!(counts.values().all(|count| *count == 0), "{counts:?}");
    assert_eq!(unused_fallback, vec![curve.to_owned()], "shown beside one-time keys, the fallback key stays unused");

    // Nothing left but the fallback key: it is used up.
    let wanted = json!({"one_time_keys": {puppet.clone(): {"PUPPETDEV": [curve]}}});
    let (status, body) = server.post(UNSTABLE_CLAIM, Some(&carol.access_token), wanted.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["one_time_keys"], json!({puppet.clone(): {"PUPPETDEV": {"signed_curve25519:F1": {"key": "server-fallback", "fallback": true}}}}));
    assert!(server.state.storage.key_counts(&user_id, device_id).await.unwrap().1.is_empty(), "the fallback key is used");

    // An appservice that gives a fallback key of its own: the server's is not added.
    appservice.answer_keys(json!({puppet.clone(): {"PUPPETDEV": {"signed_curve25519:ASF": {"key": "as-fallback", "fallback": true}}}}), json!({}));
    let (_, body) = server.post(UNSTABLE_CLAIM, Some(&carol.access_token), wanted).await;
    assert_eq!(body["one_time_keys"], json!({puppet.clone(): {"PUPPETDEV": {"signed_curve25519:ASF": {"key": "as-fallback", "fallback": true}}}}));

    // A bad body is a Matrix error; with MSC3983 off the endpoint is not served.
    let (status, body) = server.post(UNSTABLE_CLAIM, Some(&carol.access_token), json!({"one_time_keys": {puppet.clone(): {"PUPPETDEV": curve}}})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")), "{body}");
    let (off, _dir_off) = super::server(backend, &[registration("bridge", Some(&appservice.url()), AS_TOKEN, "")], "").await;
    let erin = off.register("erin", "pw").await;
    let (status, body) = off.post(UNSTABLE_CLAIM, Some(&erin.access_token), json!({"one_time_keys": {}})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_UNRECOGNIZED")), "{body}");
}

/// The reference notifier as released with WIT 0.1.3, before `appservice-keys`.
fn notifier_0_1_3() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/fixtures/appservice-http-0.1.3.wasm")
}

async fn a_notifier_built_for_0_1_3_loads_and_asks_for_no_keys(backend: Backend) {
    let appservice = FakeAppservice::start(Mode::Accept).await;
    appservice.answer_keys(json!({}), json!({"device_keys": {}}));
    let (dir, paths) = super::files(&[registration("bridge", Some(&appservice.url()), AS_TOKEN, "")]);
    let config = format!(
        "app_service_config_files = [{:?}]\n{SWITCHED_ON}\n[[plugins]]\nname = \"appservice-http\"\nrole = \"appservice-notifier\"\npath = {:?}\n",
        paths[0].display().to_string(),
        notifier_0_1_3().display().to_string()
    );
    let server = TestServer::builder(backend).config(&config).start().await;
    let carol = server.register("carol", "pw").await;
    let (_, room) = server.post("/_matrix/client/v3/createRoom", Some(&carol.access_token), json!({"preset": "public_chat"})).await;
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let (status, _) = server.post(&format!("/_matrix/client/v3/join/{room_id}"), Some(AS_TOKEN), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    appservice.wait_for(20, "a transaction through the 0.1.3 notifier", |_| !appservice.transactions().is_empty()).await;
    let claimed = claim(&server, &carol.access_token, json!({server.user_id("bridge_x"): {"D": "signed_curve25519"}})).await;
    assert_eq!(claimed, json!({}));
    assert!(key_requests(&appservice, "/keys/claim").is_empty(), "a 0.1.3 component has no claim-keys to call");
    drop(dir);
}
