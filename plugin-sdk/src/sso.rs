//! The sso-provider role: implement [`SsoProvider`] for an identity
//! provider's protocol and export it with
//! [`export_sso_provider!`](crate::export_sso_provider).
//!
//! The host owns the login: it generates the attempt (`state`, `nonce`, the
//! PKCE verifier), keeps it in its database with the [`Authorization::context`]
//! you answered, matches the callback to it, and maps the
//! [`UserAttributes`] you answer to a Matrix user. Your plugin speaks the
//! protocol: the authorization URL, then the code exchange and every check
//! on what the provider answered. Keep nothing between `authorize` and
//! `complete` but what `context` carries: they may run on different
//! instances, minutes apart. Outbound HTTP goes through [`crate::http`]
//! (the operator lists the provider in `allowed_outbound_hosts`); cache
//! what may be cached (metadata, keys) in [`crate::kv`].
//!
//! Instances are warm by default (the role's `max_calls_per_instance` is
//! 1,000): `new` runs once per instance and the provider answers that
//! instance's calls, so it may also keep what the identity provider
//! publishes (metadata, decoded keys) in itself. Keep nothing of a login
//! (a code, a token, claims) beyond its call: the next call may be anyone's.

use crate::{PluginConfig, PluginError};

/// The identity provider, as clients list it and with the host's policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentityProvider {
    /// Unique among the server's providers and stable (users are mapped by
    /// it): `A-Z a-z 0-9 - . _ ~`, at most 255.
    pub id: String,
    pub name: String,
    /// An `mxc://` URI.
    pub icon: Option<String>,
    pub brand: Option<String>,
    /// Whether a suggested localpart naming an existing user not yet mapped
    /// to this provider logs in as that user.
    pub allow_existing_users: bool,
}

/// One login attempt, as the host generated and stored it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoginAttempt {
    pub state: String,
    pub nonce: String,
    /// PKCE (RFC 7636): the verifier ...
    pub code_verifier: String,
    /// ... and its S256 challenge.
    pub code_challenge: String,
    /// The absolute callback URL the provider must redirect to.
    pub redirect_uri: String,
}

/// Where to send the user's browser, and what you need back at `complete`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Authorization {
    /// The absolute authorization URL.
    pub url: String,
    /// Opaque to the host, handed back in [`Callback::context`] (a few
    /// hundred bytes at most: it counts against `max_output_bytes`).
    pub context: String,
}

/// The provider's redirect back to the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Callback {
    /// The attempt the callback's `state` matched.
    pub attempt: LoginAttempt,
    /// What `authorize` answered as [`Authorization::context`].
    pub context: String,
    /// The query parameters (or form fields), in order.
    pub params: Vec<(String, String)>,
}

impl Callback {
    /// The first parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// Who logged in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserAttributes {
    /// The user's stable id at the provider (never empty).
    pub subject: String,
    /// The localpart for a new user (`None`: the user picks one).
    pub localpart: Option<String>,
    /// Whether the user confirms or changes it on the host's page first.
    pub confirm_localpart: bool,
    pub display_name: Option<String>,
    pub emails: Vec<String>,
    /// A picture URL (`https` or `mxc`).
    pub picture: Option<String>,
}

/// Why a login cannot go on; the host shows the message on its error page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The provider redirected back with an error.
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
    /// Expired, or issued in the future beyond a small leeway.
    Expired,
    WrongNonce,
    /// A token or the claims are not usable.
    InvalidClaims,
    /// The user does not meet the attribute requirements.
    NotAllowed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    /// For the user and the log: never a secret or a token.
    pub message: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

/// An SSO provider plugin. Every method is required but `validate_config`.
///
/// `new` runs once per instance (by default a fresh instance per call), and
/// an `Err` fails the call: the host refuses the login (fail-closed) and
/// logs the message.
pub trait SsoProvider: Sized + 'static {
    fn new(config: &PluginConfig) -> Result<Self, PluginError>;

    /// Checks a configuration before any call runs with it (`weft
    /// check-config` and every start), as
    /// [`SpamChecker::validate_config`](crate::spam::SpamChecker::validate_config):
    /// every problem, one line each. The default answers `new`'s error.
    fn validate_config(config: &PluginConfig) -> Result<(), Vec<String>> {
        Self::new(config).map(drop).map_err(|error| vec![error.to_string()])
    }

    /// Which identity provider this is (the host asks at start).
    fn provider(&self) -> IdentityProvider;

    /// The authorization URL for `attempt`.
    fn authorize(&self, attempt: &LoginAttempt) -> Result<Authorization, Refusal>;

    /// Completes a login from the provider's callback.
    fn complete(&self, callback: &Callback) -> Result<UserAttributes, Refusal>;
}

/// The glue the export macro calls: WIT values in, trait call, WIT values out.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod glue {
    use super::*;
    use crate::bindings::sso_provider::exports::weft::plugin::sso as wit;

    pub fn build<T: SsoProvider>() -> T {
        match T::new(&PluginConfig::from_host()) {
            Ok(provider) => provider,
            Err(error) => panic!("the plugin cannot start: {error}"),
        }
    }

    pub fn provider(p: IdentityProvider) -> wit::IdentityProvider {
        wit::IdentityProvider { id: p.id, name: p.name, icon: p.icon, brand: p.brand, allow_existing_users: p.allow_existing_users }
    }

    pub fn attempt(a: wit::LoginAttempt) -> LoginAttempt {
        LoginAttempt { state: a.state, nonce: a.nonce, code_verifier: a.code_verifier, code_challenge: a.code_challenge, redirect_uri: a.redirect_uri }
    }

    pub fn callback(c: wit::Callback) -> Callback {
        Callback { attempt: attempt(c.attempt), context: c.context, params: c.params }
    }

    pub fn authorization(answer: Result<Authorization, Refusal>) -> Result<wit::Authorization, wit::Refusal> {
        answer.map(|a| wit::Authorization { url: a.url, context: a.context }).map_err(refusal)
    }

    pub fn user(answer: Result<UserAttributes, Refusal>) -> Result<wit::UserAttributes, wit::Refusal> {
        answer
            .map(|u| wit::UserAttributes {
                subject: u.subject,
                localpart: u.localpart,
                confirm_localpart: u.confirm_localpart,
                display_name: u.display_name,
                emails: u.emails,
                picture: u.picture,
            })
            .map_err(refusal)
    }

    fn refusal(r: Refusal) -> wit::Refusal {
        let kind = match r.kind {
            RefusalKind::ProviderError => wit::RefusalKind::ProviderError,
            RefusalKind::InvalidCallback => wit::RefusalKind::InvalidCallback,
            RefusalKind::ProviderUnavailable => wit::RefusalKind::ProviderUnavailable,
            RefusalKind::TokenRefused => wit::RefusalKind::TokenRefused,
            RefusalKind::BadSignature => wit::RefusalKind::BadSignature,
            RefusalKind::WrongIssuer => wit::RefusalKind::WrongIssuer,
            RefusalKind::WrongAudience => wit::RefusalKind::WrongAudience,
            RefusalKind::Expired => wit::RefusalKind::Expired,
            RefusalKind::WrongNonce => wit::RefusalKind::WrongNonce,
            RefusalKind::InvalidClaims => wit::RefusalKind::InvalidClaims,
            RefusalKind::NotAllowed => wit::RefusalKind::NotAllowed,
        };
        wit::Refusal { kind, message: r.message }
    }
}

/// Exports an [`SsoProvider`] implementation as the component's
/// `sso-provider` world (`describe` answers the crate's name and version),
/// with the optional `configuration` export (`validate_config`).
#[macro_export]
macro_rules! export_sso_provider {
    ($provider:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::sso_provider::exports::weft::plugin::{configuration, plugin, sso};
            use $crate::bindings::sso_provider::weft::plugin::types as wit;
            use $crate::sso::{SsoProvider as _, glue};

            struct Export;

            /// The instance's provider, built by its first call.
            fn instance() -> &'static $provider {
                ::std::thread_local! {
                    static PROVIDER: ::std::cell::OnceCell<&'static $provider> = const { ::std::cell::OnceCell::new() };
                }
                PROVIDER.with(|cell| *cell.get_or_init(|| ::std::boxed::Box::leak(::std::boxed::Box::new(glue::build::<$provider>()))))
            }

            impl plugin::Guest for Export {
                fn describe() -> wit::PluginInfo {
                    wit::PluginInfo { name: env!("CARGO_PKG_NAME").into(), version: env!("CARGO_PKG_VERSION").into() }
                }
            }

            impl configuration::Guest for Export {
                fn validate_config(config: String) -> Result<(), Vec<String>> {
                    $crate::__private::validate_config(&config, <$provider as $crate::sso::SsoProvider>::validate_config)
                }
            }

            impl sso::Guest for Export {
                fn provider() -> sso::IdentityProvider {
                    glue::provider(instance().provider())
                }
                fn authorize(attempt: sso::LoginAttempt) -> Result<sso::Authorization, sso::Refusal> {
                    glue::authorization(instance().authorize(&glue::attempt(attempt)))
                }
                fn complete(callback: sso::Callback) -> Result<sso::UserAttributes, sso::Refusal> {
                    glue::user(instance().complete(&glue::callback(callback)))
                }
            }

    $crate::bindings::sso_provider::export_world!(Export with_types_in $crate::bindings::sso_provider);
        };
    };
}
