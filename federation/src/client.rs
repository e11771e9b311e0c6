//! `FederationClient`: sends any ruma federation request to another server
//! and parses its answer. Requests whose endpoint says `ServerSignatures`
//! carry an X-Matrix `Authorization` header (origin, destination, key id and
//! the signature of the request object) made with this server's signing key;
//! key requests go unsigned. Destinations are checked against
//! `federation_domain_whitelist` before anything is sent, resolved by
//! `discovery`, and reached only at addresses the address policy allows.

use std::{sync::Arc, time::Duration};

use http::header::HOST;
use ruma::{
    OwnedServerName, ServerName,
    api::{
        IncomingResponseExt, OutgoingRequest, OutgoingRequestExt,
        auth_scheme::{AuthScheme, NoAuthentication},
        federation::authentication::{ServerSignatures, XMatrixSigningInput},
        path_builder::SinglePath,
    },
    signatures::Ed25519KeyPair,
};

use weft_core::{address_policy::AddressPolicy, config::Config, crypto::server_key::SigningKey};

use crate::{
    FederationError,
    discovery::{Destination, Discovery},
    resolver::PolicyResolver,
};

/// How long one request may take, as Synapse's default federation timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The most of an answer read into memory.
const MAX_RESPONSE_SIZE: usize = 100 * 1024 * 1024;

/// How a request of an endpoint is authenticated from this server's key.
pub trait SignWith: AuthScheme {
    fn input<'a>(origin: &ServerName, destination: &ServerName, key: &'a Ed25519KeyPair) -> Self::Input<'a>;
}

impl SignWith for ServerSignatures {
    fn input<'a>(origin: &ServerName, destination: &ServerName, key: &'a Ed25519KeyPair) -> XMatrixSigningInput<'a> {
        XMatrixSigningInput::new(origin.to_owned(), destination.to_owned(), key)
    }
}

impl SignWith for NoAuthentication {
    fn input(_: &ServerName, _: &ServerName, _: &Ed25519KeyPair) {}
}

pub struct FederationClient {
    origin: OwnedServerName,
    key: Arc<SigningKey>,
    http: reqwest::Client,
    discovery: Discovery,
    domain_whitelist: Option<Arc<[String]>>,
}

impl FederationClient {
    pub(crate) fn from_config(
        config: &Config,
        origin: OwnedServerName,
        key: Arc<SigningKey>,
        domain_whitelist: Option<Arc<[String]>>,
    ) -> Result<Self, FederationError> {
        let policy = AddressPolicy::new(config.ip_range_blacklist.as_deref(), &config.ip_range_whitelist).map_err(FederationError::Config)?;
        let resolver = PolicyResolver::new(Arc::new(policy));
        let tls = crate::tls::client_config(config)?;
        let builder = |redirects: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls.clone())
                .dns_resolver(resolver.clone())
                .no_proxy()
                .https_only(true)
                .redirect(redirects)
                .connect_timeout(Duration::from_secs(10))
                .pool_idle_timeout(Duration::from_secs(90))
                .user_agent(concat!("Weft/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| FederationError::Config(e.to_string()))
        };
        // Federation requests never follow redirects: a redirect to an IP
        // literal would never meet the resolver's address policy.
        let http = builder(reqwest::redirect::Policy::none())?;
        let well_known_http = builder(crate::discovery::checked_redirects(resolver.policy_handle()))?;
        let discovery = Discovery::new(resolver, well_known_http);
        Ok(Self { origin, key, http, discovery, domain_whitelist })
    }

    pub fn origin(&self) -> &ServerName {
        &self.origin
    }

    /// Where `destination` is reached (discovery, cached).
    pub async fn destination(&self, destination: &ServerName) -> Result<Destination, FederationError> {
        self.check_allowed(destination)?;
        self.discovery.resolve(destination).await
    }

    /// Sends `request` to `destination`, signed as its endpoint requires,
    /// and parses the answer; an error answer is `FederationError::Remote`.
    pub async fn send_request<R>(&self, destination: &ServerName, request: R) -> Result<R::IncomingResponse, FederationError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
        R::Authentication: SignWith,
    {
        let target = self.destination(destination).await?;
        let http_request = request
            .try_into_http_request::<Vec<u8>>(&target.base_url(), R::Authentication::input(&self.origin, destination, &self.key.pair), ())
            .map_err(|e| FederationError::Request(e.to_string()))?;
        let (status, body) = self.execute(destination, &target, http_request).await?;
        if status.as_u16() >= 400 {
            let body = serde_json::from_slice(&body).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
            return Err(FederationError::Remote { server: destination.to_string(), status, body });
        }
        let response = http::Response::builder().status(status).body(body.as_slice()).map_err(|e| FederationError::Request(e.to_string()))?;
        R::IncomingResponse::try_from_http_response(response)
            .map_err(|e| FederationError::InvalidResponse { server: destination.to_string(), reason: e.to_string() })
    }

    async fn execute(
        &self,
        server: &ServerName,
        target: &Destination,
        request: http::Request<Vec<u8>>,
    ) -> Result<(http::StatusCode, Vec<u8>), FederationError> {
        let transport = |error: reqwest::Error| {
            let mut reason = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                reason = format!("{reason}: {cause}");
                source = cause.source();
            }
            FederationError::Transport { server: server.to_string(), reason }
        };
        let (parts, body) = request.into_parts();
        let mut headers = parts.headers;
        headers.insert(HOST, target.host_header.parse().map_err(|_| FederationError::Request(format!("bad Host {}", target.host_header)))?);
        let response =
            self.http.request(parts.method, parts.uri.to_string()).headers(headers).body(body).timeout(REQUEST_TIMEOUT).send().await.map_err(transport)?;
        let status = response.status();
        if response.content_length().is_some_and(|length| length as usize > MAX_RESPONSE_SIZE) {
            return Err(FederationError::InvalidResponse { server: server.to_string(), reason: "the answer is too large".into() });
        }
        let body = read_bounded(response, MAX_RESPONSE_SIZE).await.map_err(|error| match error {
            BodyError::TooLarge => FederationError::InvalidResponse { server: server.to_string(), reason: "the answer is too large".into() },
            BodyError::Transport(error) => transport(error),
        })?;
        Ok((status, body))
    }

    fn check_allowed(&self, destination: &ServerName) -> Result<(), FederationError> {
        if crate::allowed(self.domain_whitelist.as_deref(), destination) { Ok(()) } else { Err(FederationError::NotWhitelisted(destination.to_string())) }
    }
}

pub(crate) enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

/// The answer's body, read chunk by chunk and abandoned once past `limit`
/// bytes, whatever `Content-Length` said (a chunked answer has none).
pub(crate) async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|length| length as usize > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
