//! Weft's reference SSO plugin: logging in with an OpenID Connect provider
//! (the authorization code flow with PKCE), configured as one entry of
//! Synapse's `oidc_providers` (the host hands the entry over as the
//! plugin's configuration).
//!
//! - `provider`: the identity provider, with Synapse's `oidc-` id prefix.
//! - `authorize`: the authorization URL (`response_type=code`, the
//!   configured scopes, the host's `state` and `nonce`, the S256 challenge
//!   when PKCE applies), after discovery (`provider`).
//! - `complete`: the callback's error or code (and `iss`, RFC 9207), the
//!   code exchanged (`token`), the ID token checked (`id_token`), userinfo
//!   when the profile comes from it, `attribute_requirements`, and the
//!   user's attributes from the templates (`mapping`).
//!
//! Modules: `config` (the entry, checked), `provider` (metadata and keys,
//! cached in the key-value store and in the instance; HTTP helpers),
//! `token` (token and userinfo endpoints, client authentication),
//! `id_token`, `mapping`. Nothing is kept between `authorize` and
//! `complete` but what travels in the attempt and in the context
//! (`{"pkce": bool}`); nothing of one login is kept for the next either:
//! a warm instance (the sso-provider role's default) keeps only its
//! configuration, its compiled templates and what the provider publishes
//! (`provider::Cache`).

// Natively (the unit tests) the export macro expands to nothing.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod config;
mod id_token;
mod mapping;
mod provider;
mod token;

use serde_json::{Map, Value, json};
use weft_plugin_sdk::{
    PluginConfig, PluginError, log, now_ms,
    sso::{Authorization, Callback, IdentityProvider, LoginAttempt, Refusal, RefusalKind, SsoProvider, UserAttributes},
};

use crate::{
    config::{Config, PkceMethod},
    mapping::Mapping,
    provider::{Cache, Metadata},
};

struct Oidc {
    config: Config,
    mapping: Mapping,
    cache: Cache,
}

impl SsoProvider for Oidc {
    fn new(config: &PluginConfig) -> Result<Self, PluginError> {
        let config = Config::from_json(&config.0)?;
        let mapping = mapping::from_config(&config).map_err(PluginError::new)?;
        Ok(Self { config, mapping, cache: Cache::default() })
    }

    fn provider(&self) -> IdentityProvider {
        IdentityProvider {
            id: self.config.provider_id(),
            name: self.config.idp_name.clone(),
            icon: self.config.idp_icon.clone(),
            brand: self.config.idp_brand.clone(),
            allow_existing_users: self.config.allow_existing_users,
        }
    }

    fn authorize(&self, attempt: &LoginAttempt) -> Result<Authorization, Refusal> {
        let metadata = provider::metadata(&self.config, &self.cache, now_ms())?;
        let endpoint = Metadata::endpoint(&metadata.authorization_endpoint, "authorization_endpoint")?;
        let pkce = match self.config.pkce_method {
            PkceMethod::Always => true,
            PkceMethod::Never => false,
            PkceMethod::Auto => metadata.code_challenge_methods_supported.as_ref().is_some_and(|methods| methods.iter().any(|m| m == "S256")),
        };
        let scope = self.config.scopes.join(" ");
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.extend_pairs([
            ("response_type", "code"),
            ("client_id", &self.config.client_id),
            ("redirect_uri", &attempt.redirect_uri),
            ("scope", &scope),
            ("state", &attempt.state),
            ("nonce", &attempt.nonce),
        ]);
        if pkce {
            query.extend_pairs([("code_challenge", attempt.code_challenge.as_str()), ("code_challenge_method", "S256")]);
        }
        query.extend_pairs(&self.config.additional_authorization_parameters);
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        Ok(Authorization { url: format!("{endpoint}{separator}{}", query.finish()), context: json!({"pkce": pkce}).to_string() })
    }

    fn complete(&self, callback: &Callback) -> Result<UserAttributes, Refusal> {
        let result = self.complete_login(callback);
        if let Err(refusal) = &result {
            log::log(log::Level::Info, "login refused", &[("kind", &format!("{:?}", refusal.kind)), ("reason", &refusal.message)]);
        }
        result
    }
}

impl Oidc {
    fn complete_login(&self, callback: &Callback) -> Result<UserAttributes, Refusal> {
        let config = &self.config;
        if let Some(error) = callback.param("error") {
            let detail = callback.param("error_description").map(|d| format!(": {d}")).unwrap_or_default();
            return Err(Refusal::new(RefusalKind::ProviderError, format!("The identity provider answered {error}{detail}")));
        }
        let code = callback.param("code").ok_or_else(|| Refusal::new(RefusalKind::InvalidCallback, "The identity provider's answer has no code"))?;
        if let Some(iss) = callback.param("iss")
            && iss != config.issuer
        {
            return Err(Refusal::new(RefusalKind::InvalidCallback, format!("The answer comes from {iss}, not {}", config.issuer)));
        }
        let now = now_ms();
        let metadata = provider::metadata(config, &self.cache, now)?;
        let context: Map<String, Value> = serde_json::from_str(&callback.context).unwrap_or_default();
        let pkce = context.get("pkce").and_then(Value::as_bool).unwrap_or(false);
        let verifier = pkce.then_some(callback.attempt.code_verifier.as_str());
        let tokens = token::exchange(config, &metadata, code, &callback.attempt.redirect_uri, verifier, now)?;

        let id_claims = match (config.uses_id_token(), &tokens.id_token) {
            (true, Some(id_token)) => Some(id_token::check(id_token, &callback.attempt.nonce, config, &self.cache, &metadata, now)?),
            (true, None) => return Err(Refusal::new(RefusalKind::InvalidClaims, "The identity provider answered no ID token")),
            (false, _) => None,
        };
        let claims = match id_claims {
            Some(id_claims) if !config.uses_userinfo() => id_claims,
            id_claims => {
                let userinfo = token::userinfo(&metadata, &tokens.access_token)?;
                // OpenID Connect Core 5.3.2: the userinfo `sub` must be the ID token's.
                if let Some(id_claims) = id_claims
                    && userinfo.get("sub") != id_claims.get("sub")
                {
                    return Err(Refusal::new(RefusalKind::InvalidClaims, "The identity provider's userinfo is about another user than its ID token"));
                }
                userinfo
            }
        };
        if !mapping::meets(&claims, &config.attribute_requirements) {
            return Err(Refusal::new(RefusalKind::NotAllowed, "You are not authorised to log in here."));
        }
        self.mapping.map(&claims)
    }
}

weft_plugin_sdk::export_sso_provider!(Oidc);
