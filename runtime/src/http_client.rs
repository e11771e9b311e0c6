//! Outbound HTTP clients (internal calls between instances, plugins'
//! `http-send`, `weft register-user`) are built here, on one rustls
//! configuration made on first use and shared. It lives in the plugin
//! runtime, the lowest crate that makes outbound requests; the server
//! re-exports it as `weft::http_client`.
//!
//! reqwest's own default builds a verifier per client, which reads and parses
//! the system's trust store each time and makes building any client, HTTPS
//! or not, fail on a host without one. Here the store is read once; a host
//! without one gets a warning and clients that refuse every certificate.

use std::sync::OnceLock;

use rustls::{ClientConfig, RootCertStore};
use rustls_platform_verifier::ConfigVerifierExt;

/// A client builder with the shared TLS configuration.
pub fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_backend_preconfigured(tls().clone())
}

fn tls() -> &'static ClientConfig {
    static TLS: OnceLock<ClientConfig> = OnceLock::new();
    TLS.get_or_init(|| {
        ClientConfig::with_platform_verifier().unwrap_or_else(|error| {
            tracing::warn!(%error, "no trusted certificates: outbound HTTPS will fail (install the system's CA certificates, or set SSL_CERT_FILE)");
            ClientConfig::builder().with_root_certificates(RootCertStore::empty()).with_no_client_auth()
        })
    })
}
