//! `GET` and `POST /_matrix/federation/v1/publicRooms`: this server's public
//! room directory for other servers, only when
//! `allow_public_rooms_over_federation` is set (otherwise 403 `M_FORBIDDEN`,
//! as Synapse answers). The same listing as the client's `/publicRooms`
//! (`client::directory::directory_page`), without rooms created with
//! `m.federate: false`.
//!
//! Both requests are declared here rather than taken from ruma because
//! Synapse sends `include_all_networks` as the strings `"true"` and
//! `"false"` (in the query, and in the `POST` body), which ruma's types read
//! as `false` or refuse.

use ruma::{ServerName, UInt, directory::RoomNetwork};
use serde_json::Value;

use weft_services::services::{AppState, Services};

use crate::{
    client::directory::directory_page,
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

pub mod get_public_rooms {
    //! `GET /_matrix/federation/v1/publicRooms`
    use ruma::{
        UInt,
        api::{federation::authentication::ServerSignatures, metadata, request},
    };

    pub use ruma::api::federation::directory::get_public_rooms::v1::Response;

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: ServerSignatures,
        path: "/_matrix/federation/v1/publicRooms",
    }

    #[request]
    pub struct Request {
        #[ruma_api(query)]
        pub limit: Option<UInt>,
        #[ruma_api(query)]
        pub since: Option<String>,
        #[ruma_api(query)]
        pub include_all_networks: Option<String>,
        #[ruma_api(query)]
        pub third_party_instance_id: Option<String>,
    }
}

pub mod get_public_rooms_filtered {
    //! `POST /_matrix/federation/v1/publicRooms` (MSC2197, a search)
    use ruma::{
        UInt,
        api::{federation::authentication::ServerSignatures, metadata, request},
        directory::Filter,
    };

    pub use ruma::api::federation::directory::get_public_rooms_filtered::v1::Response;

    metadata! {
        method: POST,
        rate_limited: false,
        authentication: ServerSignatures,
        path: "/_matrix/federation/v1/publicRooms",
    }

    #[request]
    pub struct Request {
        pub limit: Option<UInt>,
        pub since: Option<String>,
        pub filter: Option<Filter>,
        /// A boolean, or the strings `"true"` and `"false"` (Synapse).
        #[serde(default)]
        pub include_all_networks: serde_json::Value,
        pub third_party_instance_id: Option<String>,
    }
}

/// Refuses other servers when the directory is not shared with them.
fn check_shared(state: &Services, origin: &ServerName) -> ApiResult<()> {
    if !state.config.allow_public_rooms_over_federation {
        return Err(ApiError::forbidden(format!("Federation denied with {origin}.")));
    }
    Ok(())
}

/// The network asked for; all networks and one of them are exclusive.
fn network(include_all_networks: bool, third_party_instance_id: Option<&str>) -> ApiResult<RoomNetwork> {
    match (include_all_networks, third_party_instance_id) {
        (true, Some(_)) => Err(ApiError::invalid_param("Can't use include_all_networks with an explicit network")),
        (true, None) => Ok(RoomNetwork::All),
        (false, Some(instance)) => Ok(RoomNetwork::ThirdParty(instance.to_owned())),
        (false, None) => Ok(RoomNetwork::Matrix),
    }
}

fn flag(value: &Value) -> bool {
    match value {
        Value::Bool(flag) => *flag,
        Value::String(text) => text.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A limit of 0 means none (Synapse).
fn limit_of(limit: Option<UInt>) -> Option<UInt> {
    limit.filter(|limit| u64::from(*limit) > 0)
}

pub async fn public_rooms(state: AppState, request: Ruma<get_public_rooms::Request>) -> ApiResult<get_public_rooms::Response> {
    check_shared(&state, request.origin()?)?;
    let body = &request.body;
    let all = body.include_all_networks.as_deref().is_some_and(|value| value.eq_ignore_ascii_case("true"));
    let network = network(all, body.third_party_instance_id.as_deref())?;
    let page = directory_page(&state, limit_of(body.limit), body.since.as_deref(), None, &[], &network, true).await?;
    let mut response = get_public_rooms::Response::new();
    (response.chunk, response.next_batch, response.prev_batch, response.total_room_count_estimate) = page;
    Ok(response)
}

pub async fn public_rooms_filtered(state: AppState, request: Ruma<get_public_rooms_filtered::Request>) -> ApiResult<get_public_rooms_filtered::Response> {
    check_shared(&state, request.origin()?)?;
    let body = &request.body;
    let network = network(flag(&body.include_all_networks), body.third_party_instance_id.as_deref())?;
    let filter = body.filter.clone().unwrap_or_default();
    let term = filter.generic_search_term.as_deref();
    let page = directory_page(&state, limit_of(body.limit), body.since.as_deref(), term, &filter.room_types, &network, true).await?;
    let mut response = get_public_rooms_filtered::Response::new();
    (response.chunk, response.next_batch, response.prev_batch, response.total_room_count_estimate) = page;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use ruma::directory::RoomNetwork;
    use serde_json::json;

    use super::{flag, network};

    #[test]
    fn synapse_sends_its_flags_as_strings() {
        assert!(flag(&json!(true)) && flag(&json!("true")) && flag(&json!("TRUE")));
        assert!(!flag(&json!(false)) && !flag(&json!("false")) && !flag(&json!(null)) && !flag(&json!(1)));
    }

    #[test]
    fn all_networks_and_one_network_are_exclusive() {
        assert_eq!(network(false, None).unwrap(), RoomNetwork::Matrix);
        assert_eq!(network(true, None).unwrap(), RoomNetwork::All);
        assert_eq!(network(false, Some("irc|freenode")).unwrap(), RoomNetwork::ThirdParty("irc|freenode".into()));
        assert!(network(true, Some("irc|freenode")).is_err());
    }
}
