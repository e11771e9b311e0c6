//! Weft's Server-Server transport (`weft-federation`): how this server
//! reaches other servers and how it knows who is calling.
//!
//! The map: `discovery` (a server name to where to connect: IP literals,
//! explicit ports, `.well-known/matrix/server`, SRV, port 8448), `resolver`
//! (every address a name resolves to is judged by the address policy before
//! a connection), `tls` (the outbound certificate checks of Synapse's
//! options), `client` (`FederationClient::send_request`: any ruma federation
//! request, X-Matrix signed, to any destination), `keys` (other servers'
//! signing keys: fetched directly or through notaries, verified, cached in
//! memory and in the database), `inbound` (checking an incoming request's
//! X-Matrix signature), `media` (downloading other servers' media),
//! `egress` (whether a request leaves from this instance or through one of
//! `outbound_federation_restricted_to`, and serving other instances' requests),
//! `unstable` (Synapse's endpoints that ruma does not declare).
//! `Federation` bundles them for the server's state.
//!
//! May call: `weft_core` (configuration, the signing key, the address
//! policy), `weft_storage` (the key cache), other instances through the
//! `egress::InternalTransport` it is given. Knows nothing of rooms or of
//! HTTP serving: the API layer turns `inbound`'s answers into responses.

pub mod client;
pub mod discovery;
pub mod egress;
mod error;
pub mod inbound;
pub mod keys;
pub mod media;
mod resolver;
mod tls;
pub mod unstable;

use std::sync::Arc;

use ruma::{OwnedServerName, ServerName};

use weft_core::{config::Config, crypto::server_key::SigningKey};
use weft_storage::Storage;

pub use client::FederationClient;
pub use error::FederationError;
pub use keys::ServerKeys;

/// Everything federation needs, built once at start-up.
#[derive(Clone)]
pub struct Federation {
    pub client: Arc<FederationClient>,
    pub keys: Arc<ServerKeys>,
    /// `federation_domain_whitelist`: when set, the only servers talked to
    /// or heard from.
    domain_whitelist: Option<Arc<[String]>>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation").finish_non_exhaustive()
    }
}

impl Federation {
    /// `transport` reaches the other instances (the internal API), for the
    /// instances `outbound_federation_restricted_to` leaves out.
    pub fn from_config(
        config: &Config,
        server_name: OwnedServerName,
        signing_key: Arc<SigningKey>,
        storage: Storage,
        transport: Option<Arc<dyn egress::InternalTransport>>,
    ) -> Result<Self, FederationError> {
        let domain_whitelist: Option<Arc<[String]>> =
            config.federation_domain_whitelist.as_ref().map(|names| names.iter().map(|name| name.to_ascii_lowercase()).collect());
        let client = Arc::new(FederationClient::from_config(config, server_name.clone(), signing_key.clone(), domain_whitelist.clone(), transport)?);
        let keys = Arc::new(ServerKeys::new(config, server_name, signing_key, storage, client.clone()));
        Ok(Self { client, keys, domain_whitelist })
    }

    /// Whether `federation_domain_whitelist` lets this server talk to `server`.
    pub fn allows(&self, server: &ServerName) -> bool {
        allowed(self.domain_whitelist.as_deref(), server)
    }
}

pub(crate) fn allowed(whitelist: Option<&[String]>, server: &ServerName) -> bool {
    whitelist.is_none_or(|names| names.iter().any(|name| name.eq_ignore_ascii_case(server.as_str())))
}
