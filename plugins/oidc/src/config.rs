//! The plugin's configuration: one entry of Synapse's `oidc_providers`, as
//! the host hands it over (the `[plugins.config]` table, as JSON), read and
//! checked once per instance. What Synapse accepts and this plugin cannot do
//! is refused with a reason, never ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use weft_plugin_sdk::PluginError;

/// The JWS algorithms an ID token may be signed with (never `none`, never
/// an HMAC keyed with the client secret).
pub const SUPPORTED_ALGS: [&str; 9] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub idp_id: String,
    pub idp_name: String,
    pub idp_icon: Option<String>,
    pub idp_brand: Option<String>,
    #[serde(default = "yes")]
    pub discover: bool,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub client_secret_path: Option<String>,
    pub client_secret_jwt_key: Option<JwtKey>,
    #[serde(default)]
    pub client_auth_method: ClientAuthMethod,
    #[serde(default)]
    pub pkce_method: PkceMethod,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    pub id_token_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(default)]
    pub skip_verification: bool,
    #[serde(default)]
    pub user_profile_method: UserProfileMethod,
    #[serde(default)]
    pub allow_existing_users: bool,
    #[serde(default)]
    pub attribute_requirements: Vec<AttributeRequirement>,
    #[serde(default)]
    pub additional_authorization_parameters: BTreeMap<String, String>,
    #[serde(default)]
    pub user_mapping_provider: UserMappingProvider,
    /// Weft's own: how long discovered metadata and keys are cached in the
    /// plugin's key-value store (default an hour). An ID token signed with a
    /// key the cached set lacks (the provider rotated its keys) refetches them.
    #[serde(default = "default_cache_secs")]
    pub metadata_cache_secs: u64,
}

fn yes() -> bool {
    true
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into()]
}

fn default_cache_secs() -> u64 {
    3600
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client: `client_id` alone (PKCE is then its protection).
    None,
    /// RFC 7523: a JWT signed with `client_secret_jwt_key` (Weft's addition;
    /// Synapse has no such method).
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PkceMethod {
    /// PKCE when the metadata lists S256 in `code_challenge_methods_supported`.
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserProfileMethod {
    /// The ID token's claims when `openid` is in the scopes, else userinfo.
    #[default]
    Auto,
    UserinfoEndpoint,
}

/// `client_secret_jwt_key`: the client's private key, as PEM.
#[derive(Debug, Clone, Deserialize)]
pub struct JwtKey {
    pub key: Option<String>,
    pub key_file: Option<String>,
    #[serde(default)]
    pub jwt_header: BTreeMap<String, Value>,
}

/// `{attribute, value}` or `{attribute, one_of: [...]}`: the claim must
/// equal (or, for a list claim, contain) one of the values; with neither,
/// it must be present.
#[derive(Debug, Clone, Deserialize)]
pub struct AttributeRequirement {
    pub attribute: String,
    pub value: Option<String>,
    pub one_of: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserMappingProvider {
    pub module: Option<String>,
    #[serde(default)]
    pub config: MappingConfig,
}

/// Synapse's default (Jinja2) mapping provider's options.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MappingConfig {
    /// Deprecated in Synapse for `subject_template`; still honoured.
    pub subject_claim: Option<String>,
    pub subject_template: Option<String>,
    pub localpart_template: Option<String>,
    pub display_name_template: Option<String>,
    pub email_template: Option<String>,
    pub picture_template: Option<String>,
    #[serde(default)]
    pub confirm_localpart: bool,
}

/// Synapse's default mapping module, the only one there is here.
const JINJA_MODULE: &str = "synapse.handlers.oidc.JinjaOidcMappingProvider";

impl Config {
    /// Reads and checks the host's JSON.
    pub fn from_json(value: &Value) -> Result<Self, PluginError> {
        let config: Self = serde_json::from_value(value.clone()).map_err(|e| PluginError::new(format!("not an oidc_providers entry: {e}")))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), PluginError> {
        let fail = |message: String| Err(PluginError::new(message));
        let id_chars = self.idp_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'));
        if self.idp_id.is_empty() || self.idp_id.len() > 250 || !id_chars {
            return fail(format!("idp_id `{}` must be 1 to 250 of A-Z a-z 0-9 - . _ ~", self.idp_id));
        }
        if let Some(icon) = &self.idp_icon
            && !icon.starts_with("mxc://")
        {
            return fail(format!("idp_icon `{icon}` must be an mxc:// URI"));
        }
        if !self.skip_verification && !self.issuer.starts_with("https://") {
            return fail(format!("issuer `{}` must be https (or set skip_verification = true, for tests)", self.issuer));
        }
        if self.client_secret_path.is_some() || self.client_secret_jwt_key.as_ref().is_some_and(|k| k.key_file.is_some()) {
            return fail("client_secret_path and key_file are not supported: a plugin reads no files; put the secret in client_secret or key".into());
        }
        match self.client_auth_method {
            ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost if self.client_secret_jwt_key.is_some() => {
                return fail(
                    "client_secret_jwt_key as a client secret (Synapse's JWT secret) is not supported: use client_auth_method = \"private_key_jwt\"".into(),
                );
            }
            ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost if self.client_secret.is_none() => {
                return fail(format!("client_auth_method {} needs client_secret", self.client_auth_method.as_str()));
            }
            ClientAuthMethod::PrivateKeyJwt if self.client_secret_jwt_key.as_ref().and_then(|k| k.key.as_ref()).is_none() => {
                return fail("client_auth_method private_key_jwt needs client_secret_jwt_key.key (a PEM private key)".into());
            }
            _ => {}
        }
        if !self.discover {
            for (key, value) in [("authorization_endpoint", &self.authorization_endpoint), ("token_endpoint", &self.token_endpoint)] {
                if value.is_none() {
                    return fail(format!("{key} is needed when discover is false"));
                }
            }
            if self.uses_id_token() && self.jwks_uri.is_none() {
                return fail("jwks_uri is needed when discover is false and `openid` is in scopes".into());
            }
            if self.uses_userinfo() && self.userinfo_endpoint.is_none() {
                return fail("userinfo_endpoint is needed when discover is false and the profile comes from it".into());
            }
        }
        if let Some(module) = &self.user_mapping_provider.module
            && module != JINJA_MODULE
        {
            return fail(format!("user_mapping_provider.module `{module}` is not supported: only the default ({JINJA_MODULE}), configured by its templates"));
        }
        if let Some(algs) = &self.id_token_signing_alg_values_supported
            && let Some(alg) = algs.iter().find(|alg| !SUPPORTED_ALGS.contains(&alg.as_str()))
        {
            return fail(format!("id_token_signing_alg_values_supported: `{alg}` is not supported (one of {})", SUPPORTED_ALGS.join(", ")));
        }
        for requirement in &self.attribute_requirements {
            if requirement.value.is_some() && requirement.one_of.is_some() {
                return fail(format!("attribute_requirements: `{}` has both value and one_of", requirement.attribute));
            }
        }
        Ok(())
    }

    /// The id clients see: Synapse's `oidc-` prefix, but for the legacy `oidc`.
    pub fn provider_id(&self) -> String {
        if self.idp_id == "oidc" { self.idp_id.clone() } else { format!("oidc-{}", self.idp_id) }
    }

    /// Whether an ID token is asked for (and then required and checked).
    pub fn uses_id_token(&self) -> bool {
        self.scopes.iter().any(|scope| scope == "openid")
    }

    /// Whether the user's claims come from the userinfo endpoint (else from the ID token).
    pub fn uses_userinfo(&self) -> bool {
        !self.uses_id_token() || self.user_profile_method == UserProfileMethod::UserinfoEndpoint
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(extra: Value) -> Value {
        let mut base = json!({"idp_id": "test", "idp_name": "Test", "issuer": "https://idp.example.org", "client_id": "c", "client_secret": "s"});
        base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        base
    }

    #[test]
    fn synapse_entries_are_read_and_checked() {
        let config = Config::from_json(&entry(json!({}))).unwrap();
        assert_eq!(config.provider_id(), "oidc-test");
        assert_eq!(config.scopes, ["openid"]);
        assert!(config.discover && config.uses_id_token() && !config.uses_userinfo());
        let legacy = Config::from_json(&entry(json!({"idp_id": "oidc"}))).unwrap();
        assert_eq!(legacy.provider_id(), "oidc");

        let refused = |extra: Value| Config::from_json(&entry(extra)).unwrap_err().0;
        assert!(refused(json!({"issuer": "http://idp.example.org"})).contains("skip_verification"));
        assert!(Config::from_json(&entry(json!({"issuer": "http://idp.example.org", "skip_verification": true}))).is_ok());
        assert!(refused(json!({"idp_id": "a/b"})).contains("idp_id"));
        assert!(refused(json!({"idp_icon": "https://x/icon.png"})).contains("mxc"));
        assert!(refused(json!({"client_secret": null})).contains("needs client_secret"));
        assert!(refused(json!({"client_auth_method": "private_key_jwt"})).contains("client_secret_jwt_key"));
        assert!(refused(json!({"discover": false})).contains("authorization_endpoint"));
        assert!(refused(json!({"user_mapping_provider": {"module": "my.Module"}})).contains("not supported"));
        assert!(refused(json!({"id_token_signing_alg_values_supported": ["HS256"]})).contains("HS256"));
        assert!(refused(json!({"client_auth_method": "tls_client_auth"})).contains("oidc_providers"));
        let userinfo = Config::from_json(&entry(json!({"scopes": ["profile"]}))).unwrap();
        assert!(!userinfo.uses_id_token() && userinfo.uses_userinfo());
    }
}
