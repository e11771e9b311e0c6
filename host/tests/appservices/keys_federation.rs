//! MSC3983 and MSC3984 across servers, Weft with Weft: another server
//! asking for an appservice's exclusive user's devices (`user/devices`, as
//! Synapse's `on_federation_query_user_devices`: the appservice's devices
//! over the server's) and keys (`user/keys/query`), and claiming several
//! of its one-time keys through Synapse's unstable `user/keys/claim`.

use http::StatusCode;
use ruma::api::federation::device::get_devices;
use serde_json::{Value, json};

use super::{
    AS_TOKEN,
    fake::{FakeAppservice, Mode},
    registration,
};
use crate::{
    on_both_backends,
    support::{Backend, TestServer},
};

on_both_backends!(other_servers_get_the_appservice_s_devices_and_keys);

const SWITCHED_ON: &str = "[experimental_features]\nmsc3983_appservice_otk_claims = true\nmsc3984_appservice_key_query = true\n";

async fn other_servers_get_the_appservice_s_devices_and_keys(backend: Backend) {
    let appservice = FakeAppservice::start(Mode::Accept).await;
    let (_dir, config) = super::config(&[registration("bridge", Some(&appservice.url()), AS_TOKEN, "org.matrix.msc3202: true\n")], SWITCHED_ON);
    let home = TestServer::builder(backend).federation().config(&config).start().await;
    let other = TestServer::builder(backend).federation().config(SWITCHED_ON).start().await;

    let key = crate::federation::DeviceKey::new();
    let puppet = super::keys::puppet_with_keys(&home, |puppet| key.upload_body(puppet, "PUPPETDEV")).await;
    let replaced = json!({"user_id": puppet, "device_id": "PUPPETDEV", "algorithms": [], "keys": {"ed25519:PUPPETDEV": "from-the-appservice"}});
    let ghost = json!({
        "user_id": puppet, "device_id": "ASDEV", "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
        "keys": {"curve25519:ASDEV": "as-curve", "ed25519:ASDEV": "as-ed"}, "signatures": {},
    });
    appservice.answer_keys(
        json!({puppet.clone(): {"ASDEV": {"signed_curve25519:AS1": {"key": "as-1"}, "signed_curve25519:AS2": {"key": "as-2"}}}}),
        json!({"device_keys": {puppet.clone(): {"ASDEV": ghost, "PUPPETDEV": replaced}}}),
    );
    let asked = |endpoint: &str| -> Vec<Value> { appservice.received().into_iter().filter(|r| r.path.ends_with(endpoint)).map(|r| r.body).collect() };

    // `user/devices`: the appservice is asked about every device; its devices replace or join the server's.
    let home_name = ruma::ServerName::parse(&home.server_name).unwrap();
    let user_id = ruma::UserId::parse(puppet.as_str()).unwrap();
    let answer = other.state.federation.client.send_request(&home_name, get_devices::v1::Request::new(user_id.clone())).await.expect("the devices");
    let devices: Vec<(String, Value)> =
        answer.devices.iter().map(|device| (device.device_id.to_string(), serde_json::from_str(device.keys.json().get()).unwrap())).collect();
    assert_eq!(devices.len(), 2, "{devices:?}");
    assert!(devices.contains(&("ASDEV".to_owned(), ghost.clone())), "{devices:?}");
    assert!(devices.contains(&("PUPPETDEV".to_owned(), replaced.clone())), "the appservice's answer wins: {devices:?}");
    assert_eq!(asked("/org.matrix.msc3984/keys/query"), vec![json!({puppet.clone(): []})]);

    // A client of the other server: `/keys/query` goes over `user/keys/query`.
    let carol = other.register("carol", "pw").await;
    let (status, body) = other.post("/_matrix/client/v3/keys/query", Some(&carol.access_token), json!({"device_keys": {puppet.clone(): []}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device_keys"][&puppet]["ASDEV"], ghost, "{body}");
    assert_eq!(asked("/org.matrix.msc3984/keys/query").len(), 2);

    // Several keys of one device: the unstable claim, over Synapse's unstable federation endpoint.
    let curve = "signed_curve25519";
    let wanted = json!({"one_time_keys": {puppet.clone(): {"ASDEV": [curve, curve]}}});
    let (status, body) = other.post("/_matrix/client/unstable/org.matrix.msc3983/keys/claim", Some(&carol.access_token), wanted).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["one_time_keys"],
        json!({puppet.clone(): {"ASDEV": {"signed_curve25519:AS1": {"key": "as-1"}, "signed_curve25519:AS2": {"key": "as-2"}}}}),
        "{body}"
    );
    let claims = asked("/org.matrix.msc3983/keys/claim");
    assert_eq!(claims, vec![json!({puppet.clone(): {"ASDEV": [curve, curve]}})], "both keys asked of the appservice at home");

    // One key a device: the stable endpoints, the device's own key first.
    let wanted = json!({"one_time_keys": {puppet.clone(): {"PUPPETDEV": curve}}});
    let (status, body) = other.post("/_matrix/client/v3/keys/claim", Some(&carol.access_token), wanted).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["one_time_keys"][&puppet]["PUPPETDEV"].get("signed_curve25519:AAAAAQ").is_some(), "{body}");
    assert_eq!(asked("/org.matrix.msc3983/keys/claim").len(), 1, "the server's own key needed no appservice");
}
