//! Federation: Weft with Synapse 1.163 (a real peer, `support::synapse`) and
//! Weft with Weft, each direction, over TLS with the test CA: signing keys
//! fetched directly and through a notary, profiles, directory aliases and
//! end-to-end keys across servers (`peers`), the requests that must be
//! refused (`faults`), the public room directory (`directory`), rooms'
//! hierarchy, `timestamp_to_event` and server ACLs (`room_queries`), media
//! (`media`, with a scripted remote server, `fake_remote`), rooms shared
//! across servers (`rooms`), the checks of incoming PDUs (`pdu_checks`),
//! a worker deployment sharing rooms with Synapse (`workers`), its
//! instances connecting out only through `outbound_federation_restricted_to`
//! (`egress`), the example deployment of `config/workers/` federating with
//! Synapse (`example`), forks
//! resolved and missing auth events fetched (`forks`), history from
//! before a join fetched with `backfill`, with what the room's history
//! visibility lets another server see (`history`), invites rejected,
//! knocks and the spam checker's federation hooks (`membership`), and
//! device lists, signing keys, presence and end-to-end encryption through
//! matrix-nio across servers (`edus`).

mod directory;
mod edus;
mod egress;
mod example;
mod fake_remote;
mod faults;
mod forks;
mod history;
mod media;
mod membership;
mod pdu_checks;
mod peers;
mod room_queries;
mod rooms;
mod workers;

use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use ruma::{CanonicalJsonObject, signatures::Ed25519KeyPair};
use serde_json::{Value, json};

/// How many PDUs from `origin` the in-process test server `server` already
/// had when they came again (`weft_federation_pdus_repeated_total`).
pub(super) async fn repeated_pdus(server: &crate::support::TestServer, origin: &str) -> f64 {
    let metrics = server.raw(http::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let series = format!("weft_federation_pdus_repeated_total{{origin=\"{origin}\"}}");
    metrics.lines().find_map(|line| line.strip_prefix(&series)?.trim().parse().ok()).unwrap_or(0.0)
}

/// A device's ed25519 key, as a client holds it.
pub(crate) struct DeviceKey {
    der: Vec<u8>,
    pub(crate) public: String,
}

impl DeviceKey {
    pub(crate) fn new() -> Self {
        let der = Ed25519KeyPair::generate().to_vec();
        let pair = Ed25519KeyPair::from_der(&der, "x".into()).unwrap();
        Self { public: STANDARD_NO_PAD.encode(pair.public_key()), der }
    }

    fn sign(&self, user_id: &str, device_id: &str, object: Value) -> Value {
        let mut canonical: CanonicalJsonObject = serde_json::from_value(object).unwrap();
        let pair = Ed25519KeyPair::from_der(&self.der, device_id.into()).unwrap();
        ruma::signatures::sign_json(user_id, &pair, &mut canonical).unwrap();
        serde_json::to_value(canonical).unwrap()
    }

    /// The `/keys/upload` body of this device: its keys and one one-time key.
    pub(crate) fn upload_body(&self, user_id: &str, device_id: &str) -> Value {
        let device_keys = json!({
            "user_id": user_id,
            "device_id": device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {format!("curve25519:{device_id}"): "Y3VydmVrZXlfb2ZfdGhlX2RldmljZQ", format!("ed25519:{device_id}"): self.public},
        });
        let one_time = self.sign(user_id, device_id, json!({"key": "b25lX3RpbWVfa2V5X29mX3RoZV9kZXZpY2U"}));
        json!({
            "device_keys": self.sign(user_id, device_id, device_keys),
            "one_time_keys": {"signed_curve25519:AAAAAQ": one_time},
        })
    }
}
