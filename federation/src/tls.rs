//! The outbound TLS configuration of federation, from Synapse's options:
//! `federation_custom_ca_list` replaces the system's trust store,
//! `federation_verify_certificates = false` checks nothing, and
//! `federation_certificate_verification_whitelist` names servers (`*`
//! wildcards) whose certificates are not checked. The handshake's own
//! signatures are always checked.

use std::{path::Path, sync::Arc};

use rustls::{
    ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

use weft_core::config::Config;

use crate::FederationError;

pub(crate) fn client_config(config: &Config) -> Result<ClientConfig, FederationError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let checked: Option<Arc<dyn ServerCertVerifier>> = if config.federation_custom_ca_list.is_empty() {
        match rustls_platform_verifier::Verifier::new(provider.clone()) {
            Ok(system) => Some(Arc::new(system)),
            Err(error) => {
                // As the plugins' HTTPS: the server starts; only what needs a trusted certificate fails.
                tracing::warn!(%error, "no trusted certificates: federation over HTTPS will fail (install the system's CA certificates, or set federation_custom_ca_list)");
                None
            }
        }
    } else {
        let mut roots = RootCertStore::empty();
        for path in &config.federation_custom_ca_list {
            for cert in read_certificates(path)? {
                roots.add(cert).map_err(|e| FederationError::Config(format!("federation_custom_ca_list: {}: {e}", path.display())))?;
            }
        }
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| FederationError::Config(format!("federation_custom_ca_list: {e}")))?,
        )
    };
    let verifier = Verifier {
        checked,
        verify_all: config.federation_verify_certificates,
        unchecked: config.federation_certificate_verification_whitelist.iter().map(|name| name.to_ascii_lowercase()).collect(),
        provider: provider.clone(),
    };
    let mut tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FederationError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, FederationError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| FederationError::Config(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(FederationError::Config(format!("{} holds no certificate", path.display())));
    }
    Ok(certs)
}

#[derive(Debug)]
struct Verifier {
    /// `None`: no trust store could be loaded, so no certificate is trusted.
    checked: Option<Arc<dyn ServerCertVerifier>>,
    verify_all: bool,
    /// `federation_certificate_verification_whitelist`, lowercased.
    unchecked: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    fn skips(&self, server_name: &ServerName<'_>) -> bool {
        if !self.verify_all {
            return true;
        }
        let name = match server_name {
            ServerName::DnsName(name) => name.as_ref().to_ascii_lowercase(),
            ServerName::IpAddress(address) => std::net::IpAddr::from(*address).to_string(),
            _ => return false,
        };
        self.unchecked.iter().any(|pattern| wildcard_match(pattern, &name))
    }
}

/// `*` matches any run of characters (Synapse's glob of the whitelist).
fn wildcard_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, rest)) => {
            let Some(after) = name.strip_prefix(prefix) else { return false };
            (0..=after.len()).any(|skip| after.is_char_boundary(skip) && wildcard_match(rest, &after[skip..]))
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.skips(server_name) {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.checked {
            Some(checked) => checked.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
            None => Err(Error::General("no trusted certificates (install the system's CA certificates, or set federation_custom_ca_list)".into())),
        }
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn whitelist_patterns_are_globs() {
        assert!(wildcard_match("*.example.org", "a.example.org"));
        assert!(!wildcard_match("*.example.org", "example.org"));
        assert!(wildcard_match("example.org", "example.org"));
        assert!(wildcard_match("a*c", "abbbc") && !wildcard_match("a*c", "abd"));
    }
}
