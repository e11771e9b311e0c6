//! What the plugin knows of the provider: its metadata (discovered from
//! `{issuer}/.well-known/openid-configuration`, over the configured
//! endpoints, as Synapse) and its signing keys (JWKS), both fetched through
//! the host's HTTP and cached for `metadata_cache_secs` at two levels: in
//! the plugin's key-value store, so a fresh instance does not refetch them,
//! and in the instance (`Cache`: the discovered document and the decoded
//! keys), so a warm instance's next call reads neither the store nor the
//! JWK set again. Nothing of a login is kept here: only what the provider
//! publishes to everyone. Also the HTTP helpers every request to the
//! provider uses.
//!
//! Metadata is checked as Synapse checks it (issuer, https endpoints, the
//! `code` response type, the client's authentication method) unless
//! `skip_verification` is set.

use std::{cell::RefCell, rc::Rc};

use jsonwebtoken::{Algorithm, DecodingKey, jwk::Jwk};
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

/// What this instance fetched or read from the store (a warm instance
/// keeps it from one call to the next; a fresh one starts empty).
#[derive(Default)]
pub struct Cache {
    discovered: Memo<Metadata>,
    keys: Memo<Keys>,
}

/// One cached value of the instance: its key-value store key, when it was
/// fetched, and the value.
struct Memo<T>(RefCell<Option<(String, u64, Rc<T>)>>);

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Self(RefCell::new(None))
    }
}

impl<T> Memo<T> {
    /// The value under `key` when fetched less than `ttl_secs` ago.
    fn get(&self, key: &str, ttl_secs: u64, now_ms: u64) -> Option<Rc<T>> {
        match &*self.0.borrow() {
            Some((held, fetched_at_ms, value)) if held == key && fresh(*fetched_at_ms, ttl_secs, now_ms) => Some(value.clone()),
            _ => None,
        }
    }

    fn put(&self, key: String, fetched_at_ms: u64, value: T) -> Rc<T> {
        let value = Rc::new(value);
        *self.0.borrow_mut() = Some((key, fetched_at_ms, value.clone()));
        value
    }
}

fn fresh(fetched_at_ms: u64, ttl_secs: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(fetched_at_ms) < ttl_secs.saturating_mul(1000)
}

/// The provider's signing keys, decoded (a key of a type this plugin does
/// not know, or for encryption, is left out: it must not hide the others).
pub struct Keys(Vec<(Option<String>, DecodingKey)>);

impl Keys {
    fn decode(set: &[Value]) -> Self {
        let keys = set
            .iter()
            .filter(|key| key.get("use").and_then(Value::as_str) != Some("enc"))
            .filter_map(|key| {
                let jwk = serde_json::from_value::<Jwk>(key.clone()).ok()?;
                let decoded = DecodingKey::from_jwk(&jwk).ok()?;
                Some((key.get("kid").and_then(Value::as_str).map(str::to_owned), decoded))
            })
            .collect();
        Self(keys)
    }

    /// The signing key with `kid` (any of the algorithm's family when the
    /// token names none).
    pub fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Option<&DecodingKey> {
        self.0
            .iter()
            .filter(|(key_id, _)| kid.is_none_or(|kid| key_id.as_deref() == Some(kid)))
            .map(|(_, key)| key)
            .find(|key| key.family() == algorithm.family())
    }
}

fn unavailable(message: String) -> Refusal {
    Refusal::new(RefusalKind::ProviderUnavailable, message)
}

/// The provider's metadata: the configured endpoints, with what discovery
/// found over them (cached).
pub fn metadata(config: &Config, cache: &Cache, now_ms: u64) -> Result<Metadata, Refusal> {
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
        let key = format!("metadata:{url}");
        let discovered = match cache.discovered.get(&key, config.metadata_cache_secs, now_ms) {
            Some(discovered) => discovered,
            None => {
                let (discovered, fetched_at_ms) = stored(&key, config.metadata_cache_secs, now_ms, false, || {
                    let document = get_json(&url, None)?;
                    serde_json::from_value(document).map_err(|e| unavailable(format!("The identity provider's metadata at {url} is not usable: {e}")))
                })?;
                cache.discovered.put(key, fetched_at_ms, discovered)
            }
        };
        let discovered = Metadata::clone(&discovered);
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

/// The provider's keys (the JWK set at `jwks_uri`), from the caches unless
/// `refresh` (a key the cached set lacks: the provider rotated its keys).
pub fn keys(config: &Config, cache: &Cache, metadata: &Metadata, now_ms: u64, refresh: bool) -> Result<Rc<Keys>, Refusal> {
    let url = Metadata::endpoint(&metadata.jwks_uri, "jwks_uri")?.to_owned();
    let key = format!("jwks:{url}");
    if !refresh && let Some(keys) = cache.keys.get(&key, config.metadata_cache_secs, now_ms) {
        return Ok(keys);
    }
    let (set, fetched_at_ms) = stored(&key, config.metadata_cache_secs, now_ms, refresh, || match get_json(&url, None)? {
        Value::Object(mut set) => match set.remove("keys") {
            Some(Value::Array(keys)) => Ok(keys),
            _ => Err(unavailable(format!("The identity provider's keys at {url} are not a JWK set"))),
        },
        _ => Err(unavailable(format!("The identity provider's keys at {url} are not a JWK set"))),
    })?;
    Ok(cache.keys.put(key, fetched_at_ms, Keys::decode(&set)))
}

/// `key`'s value from the key-value store when younger than `ttl_secs`,
/// else `fetch`ed and stored (a value the store refuses is used uncached);
/// with when it was fetched.
fn stored<T: Serialize + for<'de> Deserialize<'de>>(
    key: &str,
    ttl_secs: u64,
    now_ms: u64,
    refresh: bool,
    fetch: impl FnOnce() -> Result<T, Refusal>,
) -> Result<(T, u64), Refusal> {
    if !refresh
        && let Some(bytes) = kv::get(key)
        && let Ok(entry) = serde_json::from_slice::<Cached<T>>(&bytes)
        && fresh(entry.fetched_at_ms, ttl_secs, now_ms)
    {
        return Ok((entry.value, entry.fetched_at_ms));
    }
    let value = fetch()?;
    if let Ok(bytes) = serde_json::to_vec(&Cached { fetched_at_ms: now_ms, value: &value })
        && let Err(error) = kv::set(key, &bytes)
    {
        log::warn(&format!("cannot cache {key}: {error}"));
    }
    Ok((value, now_ms))
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
