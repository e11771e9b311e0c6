//! `/account/whoami`, `/account/password`, `/account/deactivate` (the last
//! two need the account's password through user-interactive auth; a
//! deactivated account leaves its rooms and rejects its invites),
//! `/account/3pid` (list, delete, unbind), which find no third-party
//! identifiers: Weft keeps none, and the registration-token check.

use ruma::api::client::account::{ThirdPartyIdRemovalStatus, change_password, check_registration_token_validity, deactivate, delete_3pid, unbind_3pid, whoami};

use ruma::UserId;

use weft_core::crypto::password;
use weft_services::rooms::Membership;
use weft_services::services::{AppState, Services};

use super::register::{check_password_length, required_password};
use crate::{error::ApiResult, ruma_route::Ruma, uia};

pub async fn whoami(_: AppState, request: Ruma<whoami::v3::Request>) -> ApiResult<whoami::v3::Response> {
    let sender = request.sender()?;
    let mut response = whoami::v3::Response::new(sender.user_id.clone(), false);
    // An appservice acting without a device has none to show.
    response.device_id = sender.has_device.then(|| sender.device_id.clone());
    Ok(response)
}

pub mod get_3pids {
    //! `GET /_matrix/client/v3/account/3pid`, declared here because ruma's
    //! response leaves an empty `threepids` out, and Element's settings
    //! wait forever for a list that is not there (Synapse sends `[]`).
    use ruma::api::{auth_scheme::AccessToken, metadata, request, response};

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/account/3pid",
            1.1 => "/_matrix/client/v3/account/3pid",
        }
    }

    #[request]
    pub struct Request {}

    #[response]
    pub struct Response {
        pub threepids: Vec<serde_json::Value>,
    }
}

pub async fn third_party_ids(_: AppState, request: Ruma<get_3pids::Request>) -> ApiResult<get_3pids::Response> {
    request.sender()?;
    Ok(get_3pids::Response { threepids: Vec::new() })
}

pub async fn change_password(state: AppState, request: Ruma<change_password::v3::Request>) -> ApiResult<change_password::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    check_password_length(&body.new_password)?;
    // Refused before it uses up a session; a call without `auth` gets the flows first.
    if body.auth.is_some() {
        required_password(Some(&body.new_password))?;
    }
    uia::authenticate(&state, body.auth.as_ref(), &uia::Requirement::account(&state, &request.action, &sender.user_id).await?).await?;
    let hash = password::hash(required_password(Some(&body.new_password))?).await;
    // `logout_devices` (default true) signs out every other device.
    let keep_only = body.logout_devices.then_some(sender.device_id.as_ref());
    state.storage.set_password_hash(&sender.user_id, &hash, keep_only).await?;
    state.stream_advanced(weft_storage::Stream::DeviceLists);
    Ok(change_password::v3::Response::new())
}

pub async fn deactivate(state: AppState, request: Ruma<deactivate::v3::Request>) -> ApiResult<deactivate::v3::Response> {
    let sender = request.sender()?;
    uia::authenticate(&state, request.body.auth.as_ref(), &uia::Requirement::account(&state, &request.action, &sender.user_id).await?).await?;
    // Rooms first: should this request fail half-way, the account is still
    // usable and the client may try again, where the other order would leave
    // a deactivated member in rooms nobody can take it out of.
    part_every_room(&state, &sender.user_id).await?;
    state.storage.deactivate_user(&sender.user_id).await?;
    state.stream_advanced(weft_storage::Stream::DeviceLists);
    tracing::info!(user_id = %sender.user_id, "deactivated a user");
    // No identifier was bound, so every unbinding there was to do succeeded (Synapse's answer).
    Ok(deactivate::v3::Response::new(ThirdPartyIdRemovalStatus::Success))
}

/// As Synapse: a deactivated account leaves every room it is in and
/// rejects its invites and withdraws its knocks, so that other members
/// stop listing it and encrypting to it. A room that refuses is logged and
/// skipped.
async fn part_every_room(state: &Services, user_id: &UserId) -> ApiResult<()> {
    for (room_id, membership, _) in state.storage.memberships_of(user_id).await? {
        if !matches!(membership.as_str(), "join" | "invite" | "knock") {
            continue;
        }
        // A room this server is not in (a remote invite or knock) is left through another server.
        let left = match weft_services::federation::at_persister::leave_remote(state, &room_id, user_id, None).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => state.rooms.set_membership(state, &room_id, user_id, user_id, Membership::Leave, None).await.map(|_| ()),
            Err(error) => Err(error),
        };
        if let Err(error) = left {
            tracing::warn!(%user_id, %room_id, %error, "deactivation: could not leave the room");
        }
    }
    Ok(())
}

/// Weft keeps no third-party identifiers, so there is nothing to unbind
/// from an identity server (Synapse's answer without one).
pub async fn delete_third_party_id(_: AppState, request: Ruma<delete_3pid::v3::Request>) -> ApiResult<delete_3pid::v3::Response> {
    request.sender()?;
    Ok(delete_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport))
}

pub async fn unbind_third_party_id(_: AppState, request: Ruma<unbind_3pid::v3::Request>) -> ApiResult<unbind_3pid::v3::Response> {
    request.sender()?;
    Ok(unbind_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport))
}

/// Registration tokens are not offered, so none is valid; with
/// registration closed, Synapse's 403.
pub async fn registration_token_validity(
    state: AppState,
    _: Ruma<check_registration_token_validity::v1::Request>,
) -> ApiResult<check_registration_token_validity::v1::Response> {
    if !state.config.enable_registration {
        return Err(crate::error::ApiError::forbidden("Registration has been disabled"));
    }
    Ok(check_registration_token_validity::v1::Response::new(false))
}
