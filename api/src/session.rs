//! A new login session: a device id (the client's or a fresh one) and an
//! access token, of which only the hash is stored. Shared by registration,
//! login and shared-secret registration.

use ruma::OwnedDeviceId;

use weft_core::crypto::token;
use weft_storage::NewSession;

pub struct IssuedSession {
    pub device_id: OwnedDeviceId,
    /// Returned to the client once; never stored.
    pub access_token: String,
    token_hash: String,
}

impl IssuedSession {
    pub fn new(requested_device: Option<OwnedDeviceId>) -> Self {
        let access_token = token::new_access_token();
        Self { device_id: requested_device.unwrap_or_else(|| token::new_device_id().into()), token_hash: token::hash_access_token(&access_token), access_token }
    }

    /// What storage writes for this session.
    pub fn to_store<'a>(&'a self, display_name: Option<&'a str>, client_addr: &'a str) -> NewSession<'a> {
        NewSession { device_id: &self.device_id, display_name, token_hash: &self.token_hash, ip: Some(client_addr) }
    }
}
