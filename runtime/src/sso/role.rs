//! The sso-provider role as the runtime sees it (`Role`): the
//! `sso-provider` world's bindings, how each `SsoCall` runs its export, and
//! the checks on the guest's answer. Fail-closed, whatever `on_error` says.

use wasmtime::{Store, component::InstancePre};

use super::{Authorization, IdentityProvider, LoginAttempt, Refusal, RefusalKind, SsoAnswer, SsoCall, UserAttributes};
use crate::{
    bindings::types,
    config::{OnError, PluginRole},
    host_services::BoxFuture,
    limits::Limits,
    role::Role,
    state::CallState,
};

mod bindings {
    wasmtime::component::bindgen!({
        world: "weft:plugin/sso-provider@0.1.4",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "weft:plugin/types": crate::bindings::types,
            "weft:plugin/host": crate::bindings::host,
            "weft:plugin/homeserver": crate::bindings::homeserver,
        },
    });
}

use bindings::{SsoProvider as World, SsoProviderPre as WorldPre, exports::weft::plugin::sso as wit};

/// The longest identity provider id (a path segment and a database key).
const MAX_ID_LEN: usize = 255;

/// The sso-provider role.
pub struct Sso;

/// The raw answer of the guest, before it is checked.
pub enum Raw {
    Provider(wit::IdentityProvider),
    Authorization(Result<wit::Authorization, wit::Refusal>),
    User(Result<wit::UserAttributes, wit::Refusal>),
}

impl Role for Sso {
    const ROLE: PluginRole = PluginRole::SsoProvider;
    const DEFAULT_ON_ERROR: OnError = OnError::FailClosed;

    type Pre = WorldPre<CallState>;
    type Guest = World;
    type Call = SsoCall;
    type Answer = SsoAnswer;
    type Raw = Raw;

    fn pre(pre: InstancePre<CallState>) -> wasmtime::Result<Self::Pre> {
        WorldPre::new(pre)
    }

    fn instantiate<'a>(pre: &'a Self::Pre, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<Self::Guest>> {
        Box::pin(pre.instantiate_async(store))
    }

    fn describe<'a>(guest: &'a Self::Guest, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<types::PluginInfo>> {
        Box::pin(guest.weft_plugin_plugin().call_describe(store))
    }

    fn call_name(call: &SsoCall) -> &'static str {
        call.name()
    }

    fn input_size(call: &SsoCall) -> usize {
        call.input_size()
    }

    fn invoke<'a>(guest: &'a World, store: &'a mut Store<CallState>, call: &SsoCall) -> BoxFuture<'a, wasmtime::Result<Raw>> {
        let g = guest.weft_plugin_sso();
        match call {
            SsoCall::Provider => Box::pin(async move { g.call_provider(store).await.map(Raw::Provider) }),
            SsoCall::Authorize { attempt } => {
                let attempt = to_wit(attempt);
                Box::pin(async move { g.call_authorize(store, &attempt).await.map(Raw::Authorization) })
            }
            SsoCall::Complete { attempt, context, params } => {
                let callback = wit::Callback { attempt: to_wit(attempt), context: context.clone(), params: params.clone() };
                Box::pin(async move { g.call_complete(store, &callback).await.map(Raw::User) })
            }
        }
    }

    fn check(_call: &SsoCall, raw: Raw, limits: &Limits) -> Result<SsoAnswer, String> {
        let answer = match raw {
            Raw::Provider(provider) => SsoAnswer::Provider(check_provider(provider)?),
            Raw::Authorization(Ok(authorization)) => SsoAnswer::Authorization(check_authorization(authorization)?),
            Raw::User(Ok(user)) => SsoAnswer::User(check_user(user)?),
            Raw::Authorization(Err(refusal)) | Raw::User(Err(refusal)) => SsoAnswer::Refused(refusal_from_wit(refusal)),
        };
        let size = answer_size(&answer);
        if size as u64 > limits.max_output_bytes {
            return Err(format!("the answer is {size} bytes, more than max_output_bytes ({})", limits.max_output_bytes));
        }
        Ok(answer)
    }

    fn answers(call: &SsoCall, answer: &SsoAnswer) -> bool {
        call.answered_by(answer)
    }

    /// Fail-closed whatever the policy: a failed login has no user to let in
    /// (and `verify` refuses `fail-open` for this role).
    fn failure_answer(_call: &SsoCall, _policy: OnError) -> SsoAnswer {
        SsoAnswer::Refused(Refusal::plugin_failed())
    }
}

fn to_wit(attempt: &LoginAttempt) -> wit::LoginAttempt {
    wit::LoginAttempt {
        state: attempt.state.clone(),
        nonce: attempt.nonce.clone(),
        code_verifier: attempt.code_verifier.clone(),
        code_challenge: attempt.code_challenge(),
        redirect_uri: attempt.redirect_uri.clone(),
    }
}

fn check_provider(provider: wit::IdentityProvider) -> Result<IdentityProvider, String> {
    let id = &provider.id;
    let id_chars = id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'));
    if id.is_empty() || id.len() > MAX_ID_LEN || !id_chars {
        return Err(format!("`{}` is not an identity provider id (1 to {MAX_ID_LEN} of A-Z a-z 0-9 - . _ ~)", id.escape_debug()));
    }
    if provider.name.trim().is_empty() {
        return Err(format!("the identity provider `{id}` has no name"));
    }
    if let Some(icon) = &provider.icon
        && !icon.starts_with("mxc://")
    {
        return Err(format!("the icon `{}` is not an mxc:// URI", icon.escape_debug()));
    }
    Ok(IdentityProvider {
        id: provider.id,
        name: provider.name,
        icon: provider.icon,
        brand: provider.brand,
        allow_existing_users: provider.allow_existing_users,
    })
}

fn check_authorization(authorization: wit::Authorization) -> Result<Authorization, String> {
    let absolute = authorization.url.parse::<http::Uri>().ok().filter(|uri| matches!(uri.scheme_str(), Some("https" | "http")) && uri.host().is_some());
    if absolute.is_none() {
        return Err(format!("`{}` is not an absolute http or https URL", authorization.url.escape_debug()));
    }
    Ok(Authorization { url: authorization.url, context: authorization.context })
}

fn check_user(user: wit::UserAttributes) -> Result<UserAttributes, String> {
    if user.subject.is_empty() {
        return Err("the user's subject is empty".into());
    }
    if user.localpart.as_deref() == Some("") {
        return Err("the suggested localpart is empty (answer none to let the user pick one)".into());
    }
    Ok(UserAttributes {
        subject: user.subject,
        localpart: user.localpart,
        confirm_localpart: user.confirm_localpart,
        display_name: user.display_name,
        emails: user.emails,
        picture: user.picture,
    })
}

fn refusal_from_wit(refusal: wit::Refusal) -> Refusal {
    use wit::RefusalKind as K;
    let kind = match refusal.kind {
        K::ProviderError => RefusalKind::ProviderError,
        K::InvalidCallback => RefusalKind::InvalidCallback,
        K::ProviderUnavailable => RefusalKind::ProviderUnavailable,
        K::TokenRefused => RefusalKind::TokenRefused,
        K::BadSignature => RefusalKind::BadSignature,
        K::WrongIssuer => RefusalKind::WrongIssuer,
        K::WrongAudience => RefusalKind::WrongAudience,
        K::Expired => RefusalKind::Expired,
        K::WrongNonce => RefusalKind::WrongNonce,
        K::InvalidClaims => RefusalKind::InvalidClaims,
        K::NotAllowed => RefusalKind::NotAllowed,
    };
    Refusal { kind, message: refusal.message }
}

/// About the bytes of an answer, for `max_output_bytes`.
fn answer_size(answer: &SsoAnswer) -> usize {
    let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
    match answer {
        SsoAnswer::Provider(p) => p.id.len() + p.name.len() + opt(&p.icon) + opt(&p.brand),
        SsoAnswer::Authorization(a) => a.url.len() + a.context.len(),
        SsoAnswer::User(u) => u.subject.len() + opt(&u.localpart) + opt(&u.display_name) + opt(&u.picture) + u.emails.iter().map(String::len).sum::<usize>(),
        SsoAnswer::Refused(r) => r.message.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(subject: &str, localpart: Option<&str>) -> wit::UserAttributes {
        wit::UserAttributes {
            subject: subject.into(),
            localpart: localpart.map(str::to_owned),
            confirm_localpart: false,
            display_name: None,
            emails: Vec::new(),
            picture: None,
        }
    }

    #[test]
    fn answers_a_host_cannot_use_are_malformed() {
        let limits = Limits::from_config(&crate::config::PluginLimitsConfig { max_output_bytes: 64, ..Default::default() });
        let provider = |id: &str, icon: Option<&str>| {
            Raw::Provider(wit::IdentityProvider { id: id.into(), name: "Test".into(), icon: icon.map(str::to_owned), brand: None, allow_existing_users: false })
        };
        let call = SsoCall::Provider;
        assert!(Sso::check(&call, provider("oidc-test", Some("mxc://example.org/abc")), &limits).is_ok());
        assert!(Sso::check(&call, provider("oidc/test", None), &limits).unwrap_err().contains("not an identity provider id"));
        assert!(Sso::check(&call, provider("", None), &limits).is_err());
        assert!(Sso::check(&call, provider("oidc-test", Some("https://example.org/icon.png")), &limits).unwrap_err().contains("mxc"));

        let authorization = |url: &str| Raw::Authorization(Ok(wit::Authorization { url: url.into(), context: String::new() }));
        assert!(Sso::check(&call, authorization("https://idp.example.org/auth?x=1"), &limits).is_ok());
        assert!(Sso::check(&call, authorization("/auth"), &limits).is_err());
        assert!(Sso::check(&call, authorization("javascript:alert(1)"), &limits).is_err());
        assert!(Sso::check(&call, authorization(&format!("https://idp.example.org/{}", "a".repeat(64))), &limits).unwrap_err().contains("max_output_bytes"));

        assert!(Sso::check(&call, Raw::User(Ok(user("sub", Some("alice")))), &limits).is_ok());
        assert!(Sso::check(&call, Raw::User(Ok(user("", Some("alice")))), &limits).is_err());
        assert!(Sso::check(&call, Raw::User(Ok(user("sub", Some("")))), &limits).is_err());
        let refused = Raw::User(Err(wit::Refusal { kind: wit::RefusalKind::Expired, message: "too late".into() }));
        assert_eq!(Sso::check(&call, refused, &limits).unwrap(), SsoAnswer::Refused(Refusal { kind: RefusalKind::Expired, message: "too late".into() }));
    }

    #[test]
    fn a_failed_call_refuses_under_either_policy() {
        let call = SsoCall::Authorize { attempt: LoginAttempt::new("https://example.org/cb") };
        for policy in [OnError::FailClosed, OnError::FailOpen] {
            assert_eq!(Sso::failure_answer(&call, policy), SsoAnswer::Refused(Refusal::plugin_failed()));
        }
    }
}
