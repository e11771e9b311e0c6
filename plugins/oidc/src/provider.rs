//! What the plugin knows of the provider: its metadata (discovered from
//! `{issuer}/.well-known/openid-configuration`, over the configured
//! endpoints, as Synapse) and its signing keys (JWKS), both fetched through
//! the host's HTTP and cached in the plugin's key-value store for
//! `metadata_cache_secs`, so a fresh instance per call does not refetch
//! them. Also the HTTP helpers every request to the provider uses.
//!
//! Metadata is checked as Synapse checks it (issuer, https endpoints, the
//! `code` response type, the client's authentication method) unless
//! `skip_verification` is set.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_plugin_sdk::{
    http, kv, log,
    sso::{Refusal, RefusalKind},
};

use crate::config::Config;

/// The provider's endpoints and abilities the plugin uses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metadata {
    pub issuer: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub response_types_supported: Vec<String>,
    pub code_challenge_methods_supported: Option<Vec<String>>,
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    pub id_token_signing_alg_values_supported: Option<Vec<String>>,
}

impl Metadata {
    /// An endpoint the flow needs, or why it cannot go on.
    pub fn endpoint<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, Refusal> {
        value.as_deref().ok_or_else(|| unavailable(format!("The identity provider's metadata has no {name}")))
    }
}

/// A cached value and when it was fetched.
#[derive(Serialize, Deserialize)]
struct Cached<T> {
    fetched_at_ms: u64,
    value: T,
}

fn unavailable(message: String) -> Refusal {
    Refusal::new(RefusalKind::ProviderUnavailable, message)
}

/// The provider's metadata: the configured endpoints, with what discovery
/// found over them (cached).
pub fn metadata(config: &Config, now_ms: u64) -> Result<Metadata, Refusal> {
    let mut metadata = Metadata {
        issuer: Some(config.issuer.clone()),
        authorization_endpoint: config.authorization_endpoint.clone(),
        token_endpoint: config.token_endpoint.clone(),
        userinfo_endpoint: config.userinfo_endpoint.clone(),
        jwks_uri: config.jwks_uri.clone(),
        id_token_signing_alg_values_supported: config.id_token_signing_alg_values_supported.clone(),
        ..Metadata::default()
    };
    if config.discover {
        let url = format!("{}/.well-known/openid-configuration", config.issuer.trim_end_matches('/'));
        let discovered: Metadata = cached(&format!("metadata:{url}"), config.metadata_cache_secs, now_ms, false, || {
            let document = get_json(&url, None)?;
            serde_json::from_value(document).map_err(|e| unavailable(format!("The identity provider's metadata at {url} is not usable: {e}")))
        })?;
        let keep = |ours: Option<String>, theirs: Option<String>| theirs.or(ours);
        metadata = Metadata {
            issuer: keep(metadata.issuer, discovered.issuer),
            authorization_endpoint: keep(metadata.authorization_endpoint, discovered.authorization_endpoint),
            token_endpoint: keep(metadata.token_endpoint, discovered.token_endpoint),
            userinfo_endpoint: keep(metadata.userinfo_endpoint, discovered.userinfo_endpoint),
            jwks_uri: keep(metadata.jwks_uri, discovered.jwks_uri),
            response_types_supported: discovered.response_types_supported,
            code_challenge_methods_supported: discovered.code_challenge_methods_supported,
            token_endpoint_auth_methods_supported: discovered.token_endpoint_auth_methods_supported,
            id_token_signing_alg_values_supported: metadata.id_token_signing_alg_values_supported.or(discovered.id_token_signing_alg_values_supported),
        };
    }
    if !config.skip_verification {
        verify(config, &metadata).map_err(|reason| {
            log::warn(&format!("the identity provider's metadata is not valid: {reason}"));
            unavailable(format!("The identity provider's metadata is not valid: {reason}"))
        })?;
    }
    Ok(metadata)
}

/// Synapse's checks of the metadata (what `skip_verification` skips).
fn verify(config: &Config, metadata: &Metadata) -> Result<(), String> {
    if metadata.issuer.as_deref() != Some(config.issuer.as_str()) {
        return Err(format!("its issuer is {:?}, not the configured `{}`", metadata.issuer, config.issuer));
    }
    let mut https = vec![("authorization_endpoint", &metadata.authorization_endpoint), ("token_endpoint", &metadata.token_endpoint)];
    if config.uses_id_token() {
        https.push(("jwks_uri", &metadata.jwks_uri));
    }
    if config.uses_userinfo() {
        https.push(("userinfo_endpoint", &metadata.userinfo_endpoint));
    }
    for (name, value) in https {
        match value {
            Some(url) if url.starts_with("https://") => {}
            Some(url) => return Err(format!("{name} `{url}` is not https")),
            None => return Err(format!("it has no {name}")),
        }
    }
    if config.discover && !metadata.response_types_supported.iter().any(|t| t == "code") {
        return Err("response_types_supported does not include `code`".into());
    }
    if let Some(methods) = &metadata.token_endpoint_auth_methods_supported
        && !methods.iter().any(|m| m == config.client_auth_method.as_str())
    {
        return Err(format!("the token endpoint does not support {} (it lists {})", config.client_auth_method.as_str(), methods.join(", ")));
    }
    Ok(())
}

/// The provider's keys (the JWK set's `keys`, each read when used: a key of
/// a type this plugin does not know must not hide the others), from the
/// cache unless `refresh` (a key the cached set lacks).
pub fn jwks(config: &Config, metadata: &Metadata, now_ms: u64, refresh: bool) -> Result<Vec<Value>, Refusal> {
    let url = Metadata::endpoint(&metadata.jwks_uri, "jwks_uri")?.to_owned();
    cached(&format!("jwks:{url}"), config.metadata_cache_secs, now_ms, refresh, || match get_json(&url, None)? {
        Value::Object(mut set) => match set.remove("keys") {
            Some(Value::Array(keys)) => Ok(keys),
            _ => Err(unavailable(format!("The identity provider's keys at {url} are not a JWK set"))),
        },
        _ => Err(unavailable(format!("The identity provider's keys at {url} are not a JWK set"))),
    })
}

/// `key`'s value from the key-value store when younger than `ttl_secs`,
/// else `fetch`ed and stored (a value the store refuses is used uncached).
fn cached<T: Serialize + for<'de> Deserialize<'de>>(
    key: &str,
    ttl_secs: u64,
    now_ms: u64,
    refresh: bool,
    fetch: impl FnOnce() -> Result<T, Refusal>,
) -> Result<T, Refusal> {
    if !refresh
        && let Some(bytes) = kv::get(key)
        && let Ok(entry) = serde_json::from_slice::<Cached<T>>(&bytes)
        && now_ms.saturating_sub(entry.fetched_at_ms) < ttl_secs.saturating_mul(1000)
    {
        return Ok(entry.value);
    }
    let value = fetch()?;
    if let Ok(bytes) = serde_json::to_vec(&Cached { fetched_at_ms: now_ms, value: &value })
        && let Err(error) = kv::set(key, &bytes)
    {
        log::warn(&format!("cannot cache {key}: {error}"));
    }
    Ok(value)
}

/// A GET answered with JSON (2xx), optionally with a bearer token.
pub fn get_json(url: &str, bearer: Option<&str>) -> Result<Value, Refusal> {
    let mut request = http::Request::get(url).header("Accept", "application/json");
    if let Some(token) = bearer {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = send(&request)?;
    if !(200..300).contains(&response.status) {
        return Err(unavailable(format!("The identity provider answered {} at {url}", response.status)));
    }
    serde_json::from_slice(&response.body).map_err(|_| unavailable(format!("The identity provider's answer at {url} is not JSON")))
}

/// Sends a request to the provider; a transport failure is `provider-unavailable`.
pub fn send(request: &http::Request) -> Result<http::Response, Refusal> {
    http::send(request).map_err(|error| {
        let reason = match error {
            http::Error::Denied(reason) => format!("refused by the server ({reason}): add it to the plugin's allowed_outbound_hosts"),
            http::Error::InvalidRequest(reason) | http::Error::Unreachable(reason) => reason,
            http::Error::Timeout => "no answer in time".into(),
            http::Error::TooLarge => "the answer is too large".into(),
        };
        log::warn(&format!("{} {}: {reason}", request.method, request.url));
        unavailable(format!("The identity provider cannot be reached at {}: {reason}", request.url))
    })
}
