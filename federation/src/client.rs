//! `FederationClient`: sends any ruma federation request to another server
//! and parses its answer. Requests whose endpoint says `ServerSignatures`
//! carry an X-Matrix `Authorization` header (origin, destination, key id and
//! the signature of the request object) made with this server's signing key;
//! key requests go unsigned. Destinations are checked against
//! `federation_domain_whitelist` before anything is sent, resolved by
//! `discovery`, and reached only at addresses the address policy allows
//! (host names through the resolver; IP literals, also those a redirect
//! names, checked here). Media downloads are `media`'s. Every request is an
//! `egress::Outbound` handed to `send`, which sends it from here
//! (`send_direct`) or through an instance of `outbound_federation_restricted_to`.

use std::{sync::Arc, time::Duration};

use http::header::HOST;
use ruma::{
    OwnedServerName, ServerName,
    api::{
        IncomingResponseExt, OutgoingBody, OutgoingRequest,
        auth_scheme::{AuthScheme, NoAuthentication},
        federation::authentication::{ServerSignatures, XMatrixSigningInput},
        path_builder::SinglePath,
    },
};

use weft_core::{address_policy::AddressPolicy, config::Config, crypto::server_key::SigningKey};

use crate::{
    FederationError,
    discovery::Discovery,
    egress::{Answer, Egress, InternalTransport, Outbound, Target},
    resolver::PolicyResolver,
};

/// How long one request may take, as Synapse's default federation timeout.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The most of an answer read into memory.
const MAX_RESPONSE_SIZE: usize = 100 * 1024 * 1024;
/// The most redirects followed (well-known look-ups, media locations).
const MAX_REDIRECTS: usize = 10;

/// The IP address a URL names literally, if it does.
pub(crate) fn literal_ip(url: &reqwest::Url) -> Option<std::net::IpAddr> {
    url.host_str()?.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Whether requests of an endpoint carry this server's X-Matrix signature.
pub trait SignWith: AuthScheme {
    const SIGNED: bool;
}

impl SignWith for ServerSignatures {
    const SIGNED: bool = true;
}

impl SignWith for NoAuthentication {
    const SIGNED: bool = false;
}

pub struct FederationClient {
    origin: OwnedServerName,
    key: Arc<SigningKey>,
    pub(crate) http: reqwest::Client,
    /// Judges IP literals in URLs, which reqwest does not resolve.
    pub(crate) policy: Arc<AddressPolicy>,
    discovery: Discovery,
    domain_whitelist: Option<Arc<[String]>>,
    pub(crate) egress: Egress,
}

impl FederationClient {
    pub(crate) fn from_config(
        config: &Config,
        origin: OwnedServerName,
        key: Arc<SigningKey>,
        domain_whitelist: Option<Arc<[String]>>,
        transport: Option<Arc<dyn InternalTransport>>,
    ) -> Result<Self, FederationError> {
        let egress = Egress::from_config(config, transport)?;
        let policy = Arc::new(AddressPolicy::new(config.ip_range_blacklist.as_deref(), &config.ip_range_whitelist).map_err(FederationError::Config)?);
        let resolver = PolicyResolver::new(policy.clone());
        let redirect_policy = policy.clone();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::tls::client_config(config)?)
            .dns_resolver(resolver.clone())
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    return attempt.error("too many redirects");
                }
                match literal_ip(attempt.url()).map(|ip| redirect_policy.check(ip)) {
                    Some(Err(refused)) => attempt.error(refused),
                    _ => attempt.follow(),
                }
            }))
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("Weft/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FederationError::Config(e.to_string()))?;
        let discovery = Discovery::new(resolver, http.clone());
        Ok(Self { origin, key, http, policy, discovery, domain_whitelist, egress })
    }

    pub fn origin(&self) -> &ServerName {
        &self.origin
    }

    /// Sends `request` to `destination`, signed as its endpoint requires,
    /// and parses the answer; an error answer is `FederationError::Remote`.
    pub async fn send_request<R>(&self, destination: &ServerName, request: R) -> Result<R::IncomingResponse, FederationError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
        R::Authentication: SignWith,
    {
        let outbound = outbound(destination, request, R::Authentication::SIGNED, MAX_RESPONSE_SIZE)?;
        let Answer { status, headers, body } = self.send(outbound).await?;
        if status.as_u16() >= 400 {
            let body = serde_json::from_slice(&body).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
            return Err(FederationError::Remote { server: destination.to_string(), status, body });
        }
        let mut response = http::Response::builder().status(status).body(body.as_slice()).map_err(|e| FederationError::Request(e.to_string()))?;
        // Some answers are read from their headers too (multipart media).
        *response.headers_mut() = headers;
        R::IncomingResponse::try_from_http_response(response)
            .map_err(|e| FederationError::InvalidResponse { server: destination.to_string(), reason: e.to_string() })
    }

    /// Makes `request` from this instance (`send` checked the domain
    /// whitelist): discovery, the address policy (in the resolver and for
    /// IP literals), the signature, at most `request.limit` bytes of the answer.
    pub(crate) async fn send_direct(&self, request: Outbound) -> Result<Answer, FederationError> {
        let server: &ServerName = &request.destination;
        let method = http::Method::from_bytes(request.method.as_bytes()).map_err(|e| FederationError::Request(e.to_string()))?;
        let (url, timeout, host) = match &request.target {
            Target::Path(path) => {
                let target = self.discovery.resolve(server).await?;
                (format!("{}{path}", target.base_url()), REQUEST_TIMEOUT, Some(target.host_header))
            }
            Target::Location(location) => (crate::media::checked_location(self, server, location)?.to_string(), crate::media::LOCATION_TIMEOUT, None),
        };
        let mut headers = http::HeaderMap::new();
        if let Some(content_type) = request.content_type.as_deref().and_then(|value| value.parse().ok()) {
            headers.insert(http::header::CONTENT_TYPE, content_type);
        }
        if let Some(host) = host {
            headers.insert(HOST, host.parse().map_err(|_| FederationError::Request(format!("bad Host {host}")))?);
        }
        if request.sign
            && let Target::Path(path) = &request.target
        {
            let mut signed = http::Request::builder()
                .method(method.clone())
                .uri(path.as_str())
                .body(request.body.as_slice())
                .map_err(|e| FederationError::Request(e.to_string()))?;
            let input = XMatrixSigningInput::new(self.origin.clone(), server.to_owned(), &self.key.pair);
            ServerSignatures::add_authentication(&mut signed, input).map_err(|e| FederationError::Request(e.to_string()))?;
            if let Some(authorization) = signed.headers_mut().remove(http::header::AUTHORIZATION) {
                headers.insert(http::header::AUTHORIZATION, authorization);
            }
        }
        let sent = self.http.request(method, url).headers(headers).body(request.body).timeout(timeout).send().await;
        let (status, headers, body) = read_limited(server, sent.map_err(|error| transport(server, error))?, request.limit).await?;
        Ok(Answer { status, headers, body })
    }

    pub(crate) fn check_allowed(&self, destination: &ServerName) -> Result<(), FederationError> {
        if crate::allowed(self.domain_whitelist.as_deref(), destination) { Ok(()) } else { Err(FederationError::NotWhitelisted(destination.to_string())) }
    }
}

/// `request` for `destination` as an `Outbound`: its path from the
/// server's root, not yet signed.
pub(crate) fn outbound<R>(destination: &ServerName, request: R, sign: bool, limit: usize) -> Result<Outbound, FederationError>
where
    R: OutgoingRequest<PathBuilder = SinglePath>,
{
    let failed = |e: ruma::api::error::IntoHttpError| FederationError::Request(e.to_string());
    let (parts, body) = request.try_into_http_request_inner("", ()).map_err(failed)?.into_parts();
    let content_type = parts.headers.get(http::header::CONTENT_TYPE).cloned().or_else(|| body.content_type());
    let body: Vec<u8> = body.try_into_buf().map_err(|e| failed(e.into()))?;
    Ok(Outbound {
        destination: destination.to_owned(),
        method: parts.method.to_string(),
        target: Target::Path(parts.uri.to_string()),
        content_type: content_type.and_then(|value| value.to_str().ok().map(str::to_owned)),
        sign,
        limit,
        body,
    })
}

/// A transport failure with its whole chain of causes (such as a refused address).
pub(crate) fn transport(server: &ServerName, error: reqwest::Error) -> FederationError {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    FederationError::Transport { server: server.to_string(), reason }
}

/// The status, headers and body of `response`, refused once the body passes `limit` bytes.
pub(crate) async fn read_limited(
    server: &ServerName,
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(http::StatusCode, http::HeaderMap, Vec<u8>), FederationError> {
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let body = read_bounded(response, limit).await.map_err(|error| match error {
        BodyError::TooLarge => FederationError::TooLarge { server: server.to_string(), limit: limit as u64 },
        BodyError::Transport(error) => transport(server, error),
    })?;
    Ok((status, headers, body))
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
