//! The sso-provider role: logging in with an identity provider through a
//! plugin that speaks its protocol (OpenID Connect in `plugins/oidc`). The
//! calls and answers (serialisable: the host keeps a login attempt in its
//! database and a call may be forwarded to the instance hosting the
//! plugin), and the typed functions the host's SSO endpoints use
//! (`SsoProviders`, `SsoProvider`). How the runtime runs the
//! `sso-provider` world is in `role`.
//!
//! The host owns the login attempt: it makes one with `LoginAttempt::new`
//! (random `state`, `nonce` and PKCE verifier), stores it with the
//! `Authorization::context` that `authorize` answers, and hands both back
//! to `complete` with the callback's parameters. The plugin keeps nothing
//! between the two calls, so they may run on different instances.
//!
//! Failure policy: fail closed, always. A call that traps, times out or
//! answers garbage answers `Refused` with `RefusalKind::PluginFailed`, and
//! `verify` refuses `on_error = "fail-open"` for this role: there is no
//! user to let in when the plugin gave none.

mod role;

use std::sync::Arc;

use base64::Engine as _;
use rand::{Rng, distributions::Alphanumeric};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use self::role::Sso;
use super::role::PluginBackend;

/// The identity provider a plugin stands for, as clients see it and with
/// the policy the host applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityProvider {
    /// Unique among the server's providers and stable (`/login/sso/redirect/{id}`,
    /// and with the subject, how a returning user is found): `oidc-<idp_id>`
    /// for the OpenID Connect plugin.
    pub id: String,
    pub name: String,
    /// An `mxc://` URI.
    pub icon: Option<String>,
    pub brand: Option<String>,
    /// Whether a suggested localpart naming an existing, unmapped user logs
    /// in as that user (Synapse's `allow_existing_users`).
    pub allow_existing_users: bool,
}

/// One login attempt: what the host generates at the redirect and keeps
/// (in its database) until the callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginAttempt {
    pub state: String,
    pub nonce: String,
    /// The PKCE verifier; the challenge is derived (`code_challenge`).
    pub code_verifier: String,
    /// The absolute callback URL (`<public_baseurl>_synapse/client/oidc/callback`).
    pub redirect_uri: String,
}

impl LoginAttempt {
    /// A fresh attempt: random `state` (32 characters), `nonce` (32) and
    /// PKCE verifier (48, within RFC 7636's 43 to 128), as Synapse makes them.
    pub fn new(redirect_uri: impl Into<String>) -> Self {
        let random = |len: usize| rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect::<String>();
        Self { state: random(32), nonce: random(32), code_verifier: random(48), redirect_uri: redirect_uri.into() }
    }

    /// The PKCE S256 challenge: base64url(sha256(verifier)), unpadded.
    pub fn code_challenge(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(self.code_verifier.as_bytes()))
    }
}

/// Where the user's browser goes to log in, and what the host keeps for
/// the callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// The provider's authorization URL (absolute http or https).
    pub url: String,
    /// Opaque to the host: stored with the attempt, handed to `complete`.
    pub context: String,
}

/// Who logged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAttributes {
    /// The user's id at the provider; with the provider's id, the key of
    /// the mapping to a Matrix user.
    pub subject: String,
    /// The localpart a new user is registered with; `None`: the user picks one.
    pub localpart: Option<String>,
    /// Whether the user confirms or changes `localpart` on the picker page first.
    pub confirm_localpart: bool,
    pub display_name: Option<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    /// A picture URL (`https` or `mxc`).
    pub picture: Option<String>,
}

/// Why a login cannot go on (the WIT `refusal-kind`, and `PluginFailed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalKind {
    /// The provider redirected back with an error (the user declined, ...).
    ProviderError,
    /// The callback cannot be completed (no code, a mismatching `iss`).
    InvalidCallback,
    /// The provider could not be reached or answered something unusable.
    ProviderUnavailable,
    /// The token endpoint refused the code or the client's credentials.
    TokenRefused,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    /// Expired, or issued in the future beyond the leeway.
    Expired,
    WrongNonce,
    /// A token or the claims are not usable.
    InvalidClaims,
    /// The user does not meet the attribute requirements.
    NotAllowed,
    /// The plugin trapped, timed out, went over a limit or answered
    /// garbage (never answered by a plugin: the runtime's fail-closed answer).
    PluginFailed,
}

impl RefusalKind {
    /// The kebab-case name (a metric label, a log field).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProviderError => "provider-error",
            Self::InvalidCallback => "invalid-callback",
            Self::ProviderUnavailable => "provider-unavailable",
            Self::TokenRefused => "token-refused",
            Self::BadSignature => "bad-signature",
            Self::WrongIssuer => "wrong-issuer",
            Self::WrongAudience => "wrong-audience",
            Self::Expired => "expired",
            Self::WrongNonce => "wrong-nonce",
            Self::InvalidClaims => "invalid-claims",
            Self::NotAllowed => "not-allowed",
            Self::PluginFailed => "plugin-failed",
        }
    }
}

/// A refused login: the kind, and a message for the user's error page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

impl Refusal {
    /// The answer of a plugin that failed (fail-closed).
    pub fn plugin_failed() -> Self {
        Self { kind: RefusalKind::PluginFailed, message: "Logging in with this identity provider is unavailable: its plugin failed. Try again later.".into() }
    }
}

/// Every export of the sso-provider world, with its arguments. The JSON form
/// (`{"callback": "complete", ...}`) is what a call forwarded to another
/// instance carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "callback", rename_all = "kebab-case")]
pub enum SsoCall {
    /// Which identity provider the plugin is (asked at start).
    Provider,
    /// The authorization URL for a new attempt.
    Authorize { attempt: LoginAttempt },
    /// The provider's callback for a stored attempt.
    Complete {
        attempt: LoginAttempt,
        /// What `authorize` answered as `Authorization::context`.
        context: String,
        /// The callback's query parameters (or form fields), in order.
        params: Vec<(String, String)>,
    },
}

impl SsoCall {
    /// The WIT name of the export.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Authorize { .. } => "authorize",
            Self::Complete { .. } => "complete",
        }
    }

    pub(crate) fn input_size(&self) -> usize {
        let attempt = |a: &LoginAttempt| a.state.len() + a.nonce.len() + 2 * a.code_verifier.len() + a.redirect_uri.len();
        match self {
            Self::Provider => 0,
            Self::Authorize { attempt: a } => attempt(a),
            Self::Complete { attempt: a, context, params } => attempt(a) + context.len() + params.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
        }
    }

    /// Whether `answer` is of a kind this export answers.
    pub fn answered_by(&self, answer: &SsoAnswer) -> bool {
        matches!(
            (self, answer),
            (Self::Provider, SsoAnswer::Provider(_))
                | (Self::Authorize { .. }, SsoAnswer::Authorization(_) | SsoAnswer::Refused(_))
                | (Self::Complete { .. }, SsoAnswer::User(_) | SsoAnswer::Refused(_))
        )
    }
}

/// A checked answer of an sso-provider export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum SsoAnswer {
    Provider(IdentityProvider),
    Authorization(Authorization),
    User(UserAttributes),
    /// `authorize` or `complete` refused, or the plugin failed.
    Refused(Refusal),
}

/// The SSO provider plugins of this instance (loaded here, or forwarded to
/// the instances hosting them), in configuration order.
#[derive(Clone, Default)]
pub struct SsoProviders {
    plugins: Vec<Arc<dyn PluginBackend<Sso>>>,
}

impl std::fmt::Debug for SsoProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.plugins.iter().map(|p| p.name())).finish()
    }
}

impl SsoProviders {
    pub fn new(plugins: Vec<Arc<dyn PluginBackend<Sso>>>) -> Self {
        Self { plugins }
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// How many plugins (whether or not they answer).
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    /// Asks every plugin which identity provider it is, in configuration
    /// order. A plugin that fails is left out (the runtime logged why), and
    /// so is one whose id an earlier plugin already has (logged here).
    pub async fn identity_providers(&self) -> Vec<SsoProvider> {
        let mut providers: Vec<SsoProvider> = Vec::new();
        for plugin in &self.plugins {
            let SsoAnswer::Provider(info) = plugin.answer(&SsoCall::Provider).await else { continue };
            if let Some(earlier) = providers.iter().find(|p| p.info.id == info.id) {
                tracing::error!(plugin = %plugin.name(), earlier = %earlier.plugin.name(), id = %info.id,
                    "two SSO plugins stand for the same identity provider id: the later is left out");
                continue;
            }
            providers.push(SsoProvider { info, plugin: plugin.clone() });
        }
        providers
    }
}

/// One identity provider and the plugin behind it.
#[derive(Clone)]
pub struct SsoProvider {
    pub info: IdentityProvider,
    plugin: Arc<dyn PluginBackend<Sso>>,
}

impl std::fmt::Debug for SsoProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoProvider").field("info", &self.info).field("plugin", &self.plugin.name()).finish()
    }
}

impl SsoProvider {
    pub fn new(info: IdentityProvider, plugin: Arc<dyn PluginBackend<Sso>>) -> Self {
        Self { info, plugin }
    }

    /// The `[[plugins]]` name of the plugin.
    pub fn plugin_name(&self) -> &str {
        self.plugin.name()
    }

    /// The authorization URL for `attempt`; store the answer's `context` with it.
    pub async fn authorize(&self, attempt: &LoginAttempt) -> Result<Authorization, Refusal> {
        match self.plugin.answer(&SsoCall::Authorize { attempt: attempt.clone() }).await {
            SsoAnswer::Authorization(authorization) => Ok(authorization),
            SsoAnswer::Refused(refusal) => Err(refusal),
            // `answer` only passes answers of the call's kind.
            _ => Err(Refusal::plugin_failed()),
        }
    }

    /// Completes the login of the stored `attempt` from the callback's `params`.
    pub async fn complete(&self, attempt: &LoginAttempt, context: &str, params: &[(String, String)]) -> Result<UserAttributes, Refusal> {
        let call = SsoCall::Complete { attempt: attempt.clone(), context: context.to_owned(), params: params.to_vec() };
        match self.plugin.answer(&call).await {
            SsoAnswer::User(user) => Ok(user),
            SsoAnswer::Refused(refusal) => Err(refusal),
            _ => Err(Refusal::plugin_failed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // RFC 7636, appendix B.
        let attempt = LoginAttempt {
            state: String::new(),
            nonce: String::new(),
            code_verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
            redirect_uri: String::new(),
        };
        assert_eq!(attempt.code_challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let fresh = LoginAttempt::new("https://example.org/cb");
        assert_eq!((fresh.state.len(), fresh.nonce.len(), fresh.code_verifier.len()), (32, 32, 48));
        assert_ne!(fresh.state, LoginAttempt::new("https://example.org/cb").state);
    }

    #[test]
    fn calls_and_answers_have_a_stable_json_form() {
        let call = SsoCall::Complete {
            attempt: LoginAttempt { state: "s".into(), nonce: "n".into(), code_verifier: "v".into(), redirect_uri: "https://h/cb".into() },
            context: "{}".into(),
            params: vec![("code".into(), "c".into())],
        };
        let json = serde_json::to_value(&call).unwrap();
        assert_eq!(json["callback"], "complete");
        assert_eq!(json["params"], serde_json::json!([["code", "c"]]));
        assert_eq!(serde_json::from_value::<SsoCall>(json).unwrap(), call);
        let refused = SsoAnswer::Refused(Refusal { kind: RefusalKind::WrongNonce, message: "m".into() });
        assert_eq!(serde_json::to_value(&refused).unwrap(), serde_json::json!({"answer": "refused", "kind": "wrong-nonce", "message": "m"}));
        assert!(call.answered_by(&refused) && !SsoCall::Provider.answered_by(&refused));
    }
}
