//! The token endpoint and the userinfo endpoint: exchanging the
//! authorization code (with the PKCE verifier when the attempt used PKCE)
//! under the configured client authentication, and fetching the user's
//! claims with the access token.
//!
//! Client authentication: `client_secret_basic` (RFC 6749 2.3.1: id and
//! secret form-encoded, then base64), `client_secret_post`, `none`, and
//! `private_key_jwt` (RFC 7523: a short-lived JWT signed with the client's
//! key, audience the token endpoint).

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use weft_plugin_sdk::{
    http, random_bytes,
    sso::{Refusal, RefusalKind},
};

use crate::{
    config::{ClientAuthMethod, Config},
    provider::{self, Metadata},
};

/// How long a client assertion is valid.
const ASSERTION_LIFETIME_SECS: u64 = 120;

/// What the token endpoint answered.
pub struct Tokens {
    pub access_token: String,
    pub id_token: Option<String>,
}

/// Exchanges `code` at the token endpoint.
pub fn exchange(config: &Config, metadata: &Metadata, code: &str, redirect_uri: &str, verifier: Option<&str>, now_ms: u64) -> Result<Tokens, Refusal> {
    let endpoint = Metadata::endpoint(&metadata.token_endpoint, "token_endpoint")?;
    let mut form = vec![("grant_type", "authorization_code".to_owned()), ("code", code.to_owned()), ("redirect_uri", redirect_uri.to_owned())];
    if let Some(verifier) = verifier {
        form.push(("code_verifier", verifier.to_owned()));
    }
    let mut basic = None;
    let secret = || config.client_secret.clone().unwrap_or_default();
    match config.client_auth_method {
        ClientAuthMethod::ClientSecretBasic => {
            let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(&config.client_id), encode(&secret()));
            basic = Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)));
        }
        ClientAuthMethod::ClientSecretPost => {
            form.push(("client_id", config.client_id.clone()));
            form.push(("client_secret", secret()));
        }
        ClientAuthMethod::None => form.push(("client_id", config.client_id.clone())),
        ClientAuthMethod::PrivateKeyJwt => {
            form.push(("client_id", config.client_id.clone()));
            form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into()));
            form.push(("client_assertion", client_assertion(config, endpoint, now_ms)?));
        }
    }
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str()))).finish();
    let mut request = http::Request::post(endpoint, body).header("Content-Type", "application/x-www-form-urlencoded").header("Accept", "application/json");
    if let Some(authorization) = basic {
        request = request.header("Authorization", authorization);
    }
    let response = provider::send(&request)?;
    let answer: Map<String, Value> = serde_json::from_slice(&response.body).unwrap_or_default();
    let text = |name: &str| answer.get(name).and_then(Value::as_str);
    if !(200..300).contains(&response.status) {
        // RFC 6749 5.2: a refused grant or client is a 400 (or 401) with `error`.
        return Err(match text("error") {
            Some(error) if response.status < 500 => {
                let detail = text("error_description").map(|d| format!(" ({d})")).unwrap_or_default();
                Refusal::new(RefusalKind::TokenRefused, format!("The identity provider refused the login: {error}{detail}"))
            }
            _ => Refusal::new(RefusalKind::ProviderUnavailable, format!("The identity provider's token endpoint answered {}", response.status)),
        });
    }
    if !text("token_type").is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
        return Err(Refusal::new(RefusalKind::InvalidClaims, format!("The identity provider answered a token of type {:?}, not Bearer", text("token_type"))));
    }
    let access_token = text("access_token").ok_or_else(|| Refusal::new(RefusalKind::InvalidClaims, "The identity provider answered no access token"))?;
    Ok(Tokens { access_token: access_token.to_owned(), id_token: text("id_token").map(str::to_owned) })
}

/// The user's claims from the userinfo endpoint.
pub fn userinfo(metadata: &Metadata, access_token: &str) -> Result<Map<String, Value>, Refusal> {
    let endpoint = Metadata::endpoint(&metadata.userinfo_endpoint, "userinfo_endpoint")?;
    match provider::get_json(endpoint, Some(access_token))? {
        Value::Object(claims) => Ok(claims),
        _ => Err(Refusal::new(RefusalKind::InvalidClaims, "The identity provider's userinfo is not a JSON object")),
    }
}

/// RFC 7523's client assertion for `audience` (the token endpoint).
fn client_assertion(config: &Config, audience: &str, now_ms: u64) -> Result<String, Refusal> {
    // `Config::check` made sure the key is there.
    let jwt_key = config.client_secret_jwt_key.as_ref().ok_or_else(|| misconfigured("client_secret_jwt_key is missing"))?;
    let pem = jwt_key.key.as_deref().unwrap_or_default().as_bytes();
    let alg = jwt_key.jwt_header.get("alg").and_then(Value::as_str).unwrap_or("RS256");
    let algorithm: Algorithm = alg.parse().map_err(|_| misconfigured(&format!("client_secret_jwt_key.jwt_header.alg `{alg}` is not known")))?;
    let key = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => EncodingKey::from_rsa_pem(pem),
        _ => return Err(misconfigured(&format!("client_secret_jwt_key.jwt_header.alg `{alg}` is not an asymmetric algorithm"))),
    }
    .map_err(|e| misconfigured(&format!("client_secret_jwt_key.key is not a {alg} private key in PEM: {e}")))?;
    let mut header = Header::new(algorithm);
    header.kid = jwt_key.jwt_header.get("kid").and_then(Value::as_str).map(str::to_owned);
    let now = now_ms / 1000;
    let jti: String = random_bytes(16).iter().map(|b| format!("{b:02x}")).collect();
    let claims = json!({"iss": config.client_id, "sub": config.client_id, "aud": audience, "jti": jti, "iat": now, "exp": now + ASSERTION_LIFETIME_SECS});
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| misconfigured(&format!("cannot sign the client assertion: {e}")))
}

/// A configuration problem found while logging in: the login cannot go on.
fn misconfigured(reason: &str) -> Refusal {
    weft_plugin_sdk::log::error(reason);
    Refusal::new(RefusalKind::TokenRefused, format!("This server's login with the identity provider is misconfigured: {reason}"))
}
