//! Checking an ID token (OpenID Connect Core 3.1.3.7): the signature
//! against the provider's keys with an allowed algorithm (never `none`, never
//! an HMAC), then issuer, audience (and `azp` with several audiences),
//! expiry and issue time with a leeway, the attempt's nonce, and a subject.
//! Each failure is its own refusal kind. Times are the host's clock
//! (`now_ms`), not the token library's.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};
use weft_plugin_sdk::sso::{Refusal, RefusalKind};

use crate::{
    config::{Config, SUPPORTED_ALGS},
    provider::{self, Cache, Metadata},
};

/// Clock skew tolerated between the provider and the host (Synapse's).
pub const LEEWAY_SECS: i64 = 120;

/// The claims of a valid ID token for the attempt with `nonce`.
pub fn check(token: &str, nonce: &str, config: &Config, cache: &Cache, metadata: &Metadata, now_ms: u64) -> Result<Map<String, Value>, Refusal> {
    let refuse = |kind, message: String| Err(Refusal::new(kind, message));
    let (alg, kid) = header(token)?;
    let allowed: Vec<&str> = match &metadata.id_token_signing_alg_values_supported {
        Some(listed) => listed.iter().map(String::as_str).filter(|alg| SUPPORTED_ALGS.contains(alg)).collect(),
        None => vec!["RS256"],
    };
    if !allowed.contains(&alg.as_str()) {
        return refuse(RefusalKind::BadSignature, format!("The ID token is signed with `{alg}`, which is not allowed ({})", allowed.join(", ")));
    }
    let algorithm: Algorithm = alg.parse().map_err(|_| Refusal::new(RefusalKind::BadSignature, format!("`{alg}` is not a known algorithm")))?;
    let mut keys = provider::keys(config, cache, metadata, now_ms, false)?;
    if keys.find(kid.as_deref(), algorithm).is_none() {
        keys = provider::keys(config, cache, metadata, now_ms, true)?;
    }
    let key = keys.find(kid.as_deref(), algorithm).ok_or_else(|| {
        Refusal::new(RefusalKind::BadSignature, format!("The identity provider has no key {} for the ID token", kid.as_deref().unwrap_or("(no kid)")))
    })?;
    let claims = verify_signature(token, key, algorithm)?;

    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(config.issuer.as_str()) {
        return refuse(RefusalKind::WrongIssuer, format!("The ID token was issued by {}, not {}", shown(claims.get("iss")), config.issuer));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&config.client_id.as_str()) {
        return refuse(RefusalKind::WrongAudience, format!("The ID token is for {}, not this server's client", shown(claims.get("aud"))));
    }
    if audiences.len() > 1 && text("azp").is_some_and(|azp| azp != config.client_id) {
        return refuse(RefusalKind::WrongAudience, "The ID token was issued to another party (azp)".into());
    }
    let now = (now_ms / 1000) as i64;
    let time = |name: &str| claims.get(name).and_then(Value::as_i64);
    match time("exp") {
        Some(exp) if exp + LEEWAY_SECS > now => {}
        Some(_) => return refuse(RefusalKind::Expired, "The ID token has expired".into()),
        None => return refuse(RefusalKind::InvalidClaims, "The ID token has no expiry (exp)".into()),
    }
    if time("iat").is_some_and(|iat| iat - LEEWAY_SECS > now) || time("nbf").is_some_and(|nbf| nbf - LEEWAY_SECS > now) {
        return refuse(RefusalKind::Expired, "The ID token was issued in the future: check the clocks".into());
    }
    if text("nonce") != Some(nonce) {
        return refuse(RefusalKind::WrongNonce, "The ID token does not belong to this login attempt (nonce)".into());
    }
    if text("sub").is_none_or(str::is_empty) {
        return refuse(RefusalKind::InvalidClaims, "The ID token has no subject (sub)".into());
    }
    Ok(claims)
}

/// The header's `alg` and `kid`, read here so `none` and unknown
/// algorithms get a clear refusal.
fn header(token: &str) -> Result<(String, Option<String>), Refusal> {
    use base64::Engine as _;
    let not_jwt = || Refusal::new(RefusalKind::InvalidClaims, "The ID token is not a JWT");
    let head = token.split('.').next().ok_or_else(not_jwt)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(head.trim_end_matches('=')).map_err(|_| not_jwt())?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| not_jwt())?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or_else(not_jwt)?.to_owned();
    Ok((alg, header.get("kid").and_then(Value::as_str).map(str::to_owned)))
}

/// The claims, when the signature verifies (claims are checked by the caller).
fn verify_signature(token: &str, key: &DecodingKey, algorithm: Algorithm) -> Result<Map<String, Value>, Refusal> {
    let mut validation = Validation::new(algorithm);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map(|data| data.claims).map_err(|error| match error.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => Refusal::new(RefusalKind::BadSignature, "The ID token's signature is not the identity provider's"),
        _ => Refusal::new(RefusalKind::InvalidClaims, format!("The ID token cannot be read: {error}")),
    })
}

/// A claim for a message (an absent one says so).
fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "(nobody)".into(), Value::to_string)
}
