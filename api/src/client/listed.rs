//! Endpoints declared here rather than taken from ruma because their
//! responses must keep empty lists: ruma leaves an empty `events_after` or
//! `results` out, which the spec allows for some of them, but Synapse always
//! sends them and clients (matrix-nio, matrix-js-sdk) read them as required.
//! Requests are ruma's, field for field; responses are JSON objects the
//! handlers fill.
//!
//! `Reshaped<R>` does the same for any ruma request `R` without copying it:
//! `R`'s metadata and parsing, answered with a JSON object (`register`
//! leaves `device_id` out rather than `null`; push rules list every kind).

use ruma::{
    api::{IncomingRequest, Metadata, error::DeserializationError},
    serde::JsonObject,
};
use serde_json::Value;

/// Ruma's request `R`, answered with `json_body::Response`.
pub struct Reshaped<R>(pub R);

impl<R: Metadata> Metadata for Reshaped<R> {
    const METHOD: http::Method = R::METHOD;
    const RATE_LIMITED: bool = R::RATE_LIMITED;
    type Authentication = R::Authentication;
    type PathBuilder = R::PathBuilder;
    const PATH_BUILDER: Self::PathBuilder = R::PATH_BUILDER;
}

impl<R: IncomingRequest> IncomingRequest for Reshaped<R> {
    type EndpointError = R::EndpointError;
    type OutgoingResponse = json_body::Response;

    fn try_from_http_request_inner(request: http::Request<&[u8]>, path_args: &[&str]) -> Result<Self, DeserializationError> {
        R::try_from_http_request_inner(request, path_args).map(Reshaped)
    }
}

pub mod json_body {
    //! A response that is a JSON object, as the handler made it.
    use ruma::{api::response, serde::JsonObject};

    #[response]
    pub struct Response {
        #[ruma_api(body)]
        pub body: JsonObject,
    }

    impl Response {
        pub fn new(body: JsonObject) -> Self {
            Self { body }
        }
    }
}

/// `object` with each of `lists` present, an empty list where it was missing.
pub fn with_lists(mut object: JsonObject, lists: &[&str]) -> JsonObject {
    for list in lists {
        object.entry(*list).or_insert_with(|| Value::Array(Vec::new()));
    }
    object
}

pub mod get_context {
    //! `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}`
    use ruma::{
        OwnedEventId, OwnedRoomId, UInt,
        api::{auth_scheme::AccessToken, client::filter::RoomEventFilter, metadata, request, response},
        serde::JsonObject,
    };

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/rooms/{room_id}/context/{event_id}",
            1.1 => "/_matrix/client/v3/rooms/{room_id}/context/{event_id}",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,
        #[ruma_api(path)]
        pub event_id: OwnedEventId,
        #[ruma_api(query)]
        #[serde(default = "default_limit")]
        pub limit: UInt,
        #[ruma_api(query)]
        #[serde(with = "ruma::serde::json_string", default)]
        pub filter: RoomEventFilter,
    }

    fn default_limit() -> UInt {
        UInt::from(10u32)
    }

    #[response]
    pub struct Response {
        #[ruma_api(body)]
        pub body: JsonObject,
    }
}

pub mod search_events {
    //! `POST /_matrix/client/v3/search`
    use ruma::{
        api::{auth_scheme::AccessToken, client::search::search_events::v3::Categories, metadata, request, response},
        serde::JsonObject,
    };

    metadata! {
        method: POST,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/search",
            1.1 => "/_matrix/client/v3/search",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(query)]
        pub next_batch: Option<String>,
        pub search_categories: Categories,
    }

    #[response]
    pub struct Response {
        #[ruma_api(body)]
        pub body: JsonObject,
    }
}
