//! User-interactive authentication (the spec's UIA): sessions bound to one
//! request, with the `m.login.dummy`, `m.login.password` and `m.login.sso`
//! stages (the last completed by `sso::reauth` through the fallback page,
//! then acknowledged by the client with the session alone).
//!
//! A request without `auth` gets 401 with the flows and a new session; each
//! completed stage is stored on the session (shared by all processes) until a
//! flow is complete. A session is never accepted for another request or user.
//! A request may keep its own parameters with its session (Synapse's
//! `clientdict`), so that a later one of the session may carry only `auth`.

use ruma::{
    UserId,
    api::{
        client::uiaa::{AuthData, AuthFlow, AuthType, UiaaInfo, UserIdentifier},
        error::ErrorKind,
    },
};
use serde_json::value::to_raw_value;

use weft_core::crypto;
use weft_services::services::Services;

use super::error::{ApiError, ApiResult};

/// Sessions older than this are forgotten.
pub const SESSION_LIFETIME_MS: i64 = 15 * 60 * 1000;

/// What a request must prove, and about whom.
pub struct Requirement<'a> {
    /// Method and path; the session is bound to it.
    pub action: &'a str,
    /// The account the caller must prove to own (`m.login.password`).
    pub user: Option<&'a UserId>,
    pub flows: Vec<Vec<AuthType>>,
    /// The request's parameters (JSON) to keep with its session.
    pub client_params: Option<String>,
}

impl<'a> Requirement<'a> {
    /// Proving ownership of `user` by password, as account operations need.
    pub fn password(action: &'a str, user: &'a UserId) -> Self {
        Self { action, user: Some(user), flows: vec![vec![AuthType::Password]], client_params: None }
    }

    /// Proving ownership of `user` as the account allows: by password when
    /// it has one, by SSO when it is mapped to an identity provider (an
    /// SSO-only user is offered `m.login.sso` alone).
    pub async fn account(services: &Services, action: &'a str, user: &'a UserId) -> ApiResult<Self> {
        let mut flows = Vec::new();
        let has_password = services.storage.user(user).await?.is_some_and(|account| account.password_hash.is_some());
        if has_password {
            flows.push(vec![AuthType::Password]);
        }
        if services.sso.enabled() && !services.storage.external_ids_of(user).await?.is_empty() {
            flows.push(vec![AuthType::Sso]);
        }
        if flows.is_empty() {
            flows.push(vec![AuthType::Password]);
        }
        Ok(Self { action, user: Some(user), flows, client_params: None })
    }

    /// Registration with nothing to prove but the wish to register.
    pub fn dummy(action: &'a str) -> Self {
        Self { action, user: None, flows: vec![vec![AuthType::Dummy]], client_params: None }
    }

    /// Keeps `params` with the session.
    pub fn keeping(mut self, params: String) -> Self {
        self.client_params = Some(params);
        self
    }
}

/// The parameters kept with the session `auth` names, if it is a live one.
pub async fn kept_params(services: &Services, auth: Option<&AuthData>) -> ApiResult<Option<String>> {
    let Some(id) = auth.and_then(AuthData::session) else { return Ok(None) };
    let session = services.storage.uia_session(id).await?;
    Ok(session.filter(|session| session.created_ts > weft_storage::now_ms() - SESSION_LIFETIME_MS).and_then(|session| session.client_params))
}

/// Succeeds once a flow of `requirement` is complete; otherwise answers 401
/// with what remains.
pub async fn authenticate(services: &Services, auth: Option<&AuthData>, requirement: &Requirement<'_>) -> ApiResult<()> {
    let storage = &services.storage;
    let Some(auth) = auth else {
        let session = crypto::token::random_string(24);
        storage.create_uia_session(&session, requirement.action, requirement.user.map(UserId::as_str), requirement.client_params.as_deref()).await?;
        return Err(ApiError::uia(info(requirement, &session, Vec::new()), None));
    };

    let session = match auth.session() {
        Some(id) => storage
            .uia_session(id)
            .await?
            .filter(|session| session.created_ts > weft_storage::now_ms() - SESSION_LIFETIME_MS)
            .ok_or_else(|| ApiError::unknown(http::StatusCode::BAD_REQUEST, "Unknown session ID"))?,
        None => {
            let id = crypto::token::random_string(24);
            storage.create_uia_session(&id, requirement.action, requirement.user.map(UserId::as_str), requirement.client_params.as_deref()).await?;
            storage.uia_session(&id).await?.ok_or_else(ApiError::internal)?
        }
    };
    if let Some(reason) = &session.refused {
        return Err(ApiError::forbidden(reason.clone()));
    }
    if session.action != requirement.action || session.user_id.as_deref() != requirement.user.map(UserId::as_str) {
        return Err(ApiError::forbidden("Requested operation has changed during the UI authentication session."));
    }
    if let Some(params) = &requirement.client_params
        && session.client_params.as_ref() != Some(params)
    {
        storage.set_uia_client_params(&session.session_id, params).await?;
    }

    let offered = |stage: &AuthType| requirement.flows.iter().any(|flow| flow.contains(stage));
    let mut completed: Vec<AuthType> = session.completed.iter().map(|s| AuthType::from(s.as_str())).collect();
    let stage = auth.auth_type();
    let fail = |completed: &[AuthType], kind: ErrorKind, message: &str| {
        Err(ApiError::uia(info(requirement, &session.session_id, completed.to_vec()), Some((kind, message.to_owned()))))
    };
    match auth {
        // Only the session: the client asks how far it has got, or says a
        // fallback page (SSO) completed a stage.
        AuthData::FallbackAcknowledgement(_) => {}
        AuthData::Dummy(_) if offered(&AuthType::Dummy) => {}
        AuthData::Password(password) if offered(&AuthType::Password) => {
            let Some(owner) = requirement.user else {
                return fail(&completed, ErrorKind::Unrecognized, "Password authentication is not offered here");
            };
            if !identifies(&password.identifier, owner) {
                return Err(ApiError::forbidden("Requested authentication as another user"));
            }
            let stored = storage.user(owner).await?.and_then(|user| user.password_hash);
            let valid = match stored {
                Some(hash) => crypto::password::verify(&password.password, &hash).await,
                None => false,
            };
            if !valid {
                return fail(&completed, ErrorKind::Forbidden, "Invalid password");
            }
        }
        _ => return fail(&completed, ErrorKind::Unrecognized, "Unsupported authentication type"),
    }
    if let Some(stage) = stage
        && !completed.contains(&stage)
    {
        completed.push(stage);
    }

    let done = requirement.flows.iter().any(|flow| flow.iter().all(|stage| completed.contains(stage)));
    if done {
        storage.delete_uia_session(&session.session_id).await?;
        Ok(())
    } else {
        let names: Vec<String> = completed.iter().map(|stage| stage.as_str().to_owned()).collect();
        storage.set_uia_completed(&session.session_id, &names).await?;
        Err(ApiError::uia(info(requirement, &session.session_id, completed), None))
    }
}

/// Records `stage` as completed on `session` (a fallback page's stage, such
/// as SSO's, done outside the request it authorises).
pub async fn record_stage(services: &Services, session: &weft_storage::UiaSession, stage: AuthType) -> ApiResult<()> {
    let mut completed = session.completed.clone();
    if !completed.iter().any(|done| *done == stage.as_str()) {
        completed.push(stage.as_str().to_owned());
    }
    services.storage.set_uia_completed(&session.session_id, &completed).await?;
    Ok(())
}

fn info(requirement: &Requirement<'_>, session: &str, completed: Vec<AuthType>) -> UiaaInfo {
    let mut info = UiaaInfo::new(requirement.flows.iter().map(|stages| AuthFlow::new(stages.clone())).collect());
    info.session = Some(session.to_owned());
    info.completed = completed;
    info.params = to_raw_value(&serde_json::json!({})).ok();
    info
}

/// Whether a UIA identifier names `user` (by full id or local part).
fn identifies(identifier: &UserIdentifier, user: &UserId) -> bool {
    match identifier {
        UserIdentifier::Matrix(id) => {
            let given = id.user.as_str();
            given.eq_ignore_ascii_case(user.as_str()) || given.eq_ignore_ascii_case(user.localpart())
        }
        _ => false,
    }
}
