//! Synapse's unstable federation endpoints that ruma does not declare,
//! for both sides: this server asks them and serves them.

pub mod claim_keys {
    //! `POST /_matrix/federation/unstable/user/keys/claim` (MSC3983, as
    //! Synapse): a list of algorithms a device, one key for each.
    use std::collections::BTreeMap;

    use ruma::{
        OneTimeKeyAlgorithm, OwnedDeviceId, OwnedUserId,
        api::{federation::authentication::ServerSignatures, metadata, request},
    };

    pub use ruma::api::federation::keys::claim_keys::v1::Response;

    metadata! {
        method: POST,
        rate_limited: false,
        authentication: ServerSignatures,
        path: "/_matrix/federation/unstable/user/keys/claim",
    }

    #[request]
    pub struct Request {
        pub one_time_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Vec<OneTimeKeyAlgorithm>>>,
    }

    impl Request {
        pub fn new(one_time_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Vec<OneTimeKeyAlgorithm>>>) -> Self {
            Self { one_time_keys }
        }
    }
}
