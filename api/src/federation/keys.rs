//! The key endpoints: `GET /_matrix/key/v2/server` (this server's verify
//! key, signed with itself) and the notary endpoints `GET
//! /_matrix/key/v2/query/{serverName}` and `POST /_matrix/key/v2/query`:
//! other servers' keys as this server verified them (fetched when unknown or
//! not valid long enough), each answer countersigned by this server.

use std::time::Duration;

use ruma::{
    MilliSecondsSinceUnixEpoch, ServerName,
    api::federation::discovery::{ServerSigningKeys, get_remote_server_keys, get_remote_server_keys_batch, get_server_keys},
    serde::Raw,
};

use weft_services::services::{AppState, Services};

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// How long other servers may cache the key, Synapse's default refresh interval.
const KEY_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);
/// The most servers one notary query may name.
const MAX_QUERIED_SERVERS: usize = 100;

pub async fn server_keys(state: AppState, _: Ruma<get_server_keys::v2::Request>) -> ApiResult<get_server_keys::v2::Response> {
    let signed = state.federation.keys.own_keys(KEY_VALIDITY).ok_or_else(|| {
        tracing::error!("could not sign the server keys");
        ApiError::internal()
    })?;
    Ok(get_server_keys::v2::Response::new(signed))
}

/// The countersigned answers about `server` valid until `minimum_valid_until`.
async fn notarised(state: &Services, server: &ServerName, minimum_valid_until: MilliSecondsSinceUnixEpoch) -> Vec<Raw<ServerSigningKeys>> {
    if server == state.server_name {
        return state.federation.keys.own_keys(KEY_VALIDITY).into_iter().collect();
    }
    let minimum: i64 = minimum_valid_until.get().into();
    match state.federation.keys.keys_for_notary(server, minimum).await {
        Ok(Some(keys)) => keys.json.as_deref().and_then(|json| state.federation.keys.countersign(json)).into_iter().collect(),
        Ok(None) => Vec::new(),
        Err(error) => {
            tracing::info!(%server, %error, "notary: cannot fetch the server's keys");
            Vec::new()
        }
    }
}

pub async fn query(state: AppState, request: Ruma<get_remote_server_keys::v2::Request>) -> ApiResult<get_remote_server_keys::v2::Response> {
    let body = request.body;
    Ok(get_remote_server_keys::v2::Response::new(notarised(&state, &body.server_name, body.minimum_valid_until_ts).await))
}

pub async fn query_batch(state: AppState, request: Ruma<get_remote_server_keys_batch::v2::Request>) -> ApiResult<get_remote_server_keys_batch::v2::Response> {
    let servers = request.body.server_keys;
    if servers.len() > MAX_QUERIED_SERVERS {
        return Err(ApiError::invalid_param(format!("server_keys names more than {MAX_QUERIED_SERVERS} servers")));
    }
    let asks = servers.iter().map(|(server, criteria)| {
        let minimum = criteria.values().filter_map(|c| c.minimum_valid_until_ts).max().unwrap_or_else(MilliSecondsSinceUnixEpoch::now);
        notarised(&state, server, minimum)
    });
    let answers = futures_util::future::join_all(asks).await.into_iter().flatten().collect();
    Ok(get_remote_server_keys_batch::v2::Response::new(answers))
}
