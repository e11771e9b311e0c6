//! The api layer's error: a Matrix errcode with its HTTP status, built here
//! and nowhere else. Inner layers return their own errors; `From` impls map
//! them, so an unexpected storage failure is a logged 500 and bad input is
//! always a 4xx with the spec's errcode.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use ruma::api::{
    client::uiaa::UiaaInfo,
    error::{ErrorKind, LimitExceededErrorData, RetryAfter, StandardErrorBody, UnknownTokenErrorData, WrongRoomKeysVersionErrorData},
};

use weft_services::rooms::RoomError;
use weft_storage::StorageError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorKind,
    pub message: String,
    /// Set for user-interactive authentication: the body then carries the
    /// flows and session beside the errcode, with status 401.
    pub uia: Option<Box<UiaaInfo>>,
    /// Extra fields merged into the body (a spam checker's rejection fields).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into(), uia: None, extra: serde_json::Map::new() }
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::BadJson, message)
    }
    pub fn not_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::NotJson, message)
    }
    pub fn missing_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::MissingParam, message)
    }
    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorKind::Forbidden, message)
    }
    /// 401 `M_UNAUTHORIZED`: a federation request without a valid signature.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorKind::NotFound, message)
    }
    pub fn unknown(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, ErrorKind::Unknown, message)
    }
    pub fn missing_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorKind::MissingToken, "Missing access token")
    }
    pub fn unknown_token(soft_logout: bool) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorKind::UnknownToken({
                let mut data = UnknownTokenErrorData::new();
                data.soft_logout = soft_logout;
                data
            }),
            "Unrecognised access token",
        )
    }
    pub fn limit_exceeded(retry_after: Duration) -> Self {
        let mut data = LimitExceededErrorData::new();
        data.retry_after = Some(RetryAfter::Delay(retry_after));
        Self::new(StatusCode::TOO_MANY_REQUESTS, ErrorKind::LimitExceeded(data), "Too many requests")
    }
    /// A registration a spam checker denied: Synapse answers a rate limit
    /// on purpose, to hide the reason from the client.
    pub fn registration_denied() -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, ErrorKind::LimitExceeded(LimitExceededErrorData::new()), "Rate limited")
    }
    pub fn too_large(limit: u64) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge, format!("Request body is larger than {limit} bytes"))
    }
    /// The body did not arrive within `http_timeouts.body`.
    pub fn body_timeout() -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, ErrorKind::Unknown, "The request body took too long to arrive")
    }
    pub fn unrecognized(status: StatusCode) -> Self {
        Self::new(status, ErrorKind::Unrecognized, "Unrecognized request")
    }
    pub fn user_in_use() -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::UserInUse, "User ID already taken.")
    }
    pub fn invalid_username(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidUsername, message)
    }
    /// Keys go to the current backup version only.
    pub fn wrong_room_keys_version(current_version: String) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorKind::WrongRoomKeysVersion(WrongRoomKeysVersionErrorData::new(current_version)), "Wrong backup version")
    }
    pub fn threepid_not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::ThreepidNotFound, message)
    }
    pub fn internal() -> Self {
        Self::unknown(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }

    /// An error whose errcode ruma has no variant for (`M_INVALID_SIGNATURE`, ...).
    pub fn custom(status: StatusCode, errcode: &str, message: impl Into<String>) -> Self {
        let kind = serde_json::from_value::<StandardErrorBody>(serde_json::json!({ "errcode": errcode, "error": "" }))
            .map(|body| body.kind)
            .unwrap_or(ErrorKind::Unknown);
        Self::new(status, kind, message)
    }

    /// A spam checker's refusal: 403 with the plugin's errcode and extra
    /// fields, and its message or else `default_message` (Synapse's per call site).
    pub fn spam_rejected(rejection: weft_services::plugins::spam::Rejection, default_message: &str) -> Self {
        let kind = serde_json::from_value::<StandardErrorBody>(serde_json::json!({ "errcode": rejection.errcode, "error": "" }))
            .map(|body| body.kind)
            .unwrap_or(ErrorKind::Forbidden);
        let mut error = Self::new(StatusCode::FORBIDDEN, kind, rejection.message.unwrap_or_else(|| default_message.to_owned()));
        error.extra = rejection.fields;
        error
    }

    /// A 401 asking for (more) user-interactive authentication, optionally
    /// with the error of a failed stage.
    pub fn uia(info: UiaaInfo, failure: Option<(ErrorKind, String)>) -> Self {
        let (kind, message) = failure.unwrap_or((ErrorKind::Unknown, String::new()));
        let mut error = Self::new(StatusCode::UNAUTHORIZED, kind, message);
        error.uia = Some(Box::new(info));
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The spec asks for the header too (since v1.10), in whole seconds.
        let retry_after = match &self.kind {
            ErrorKind::LimitExceeded(data) => match data.retry_after {
                Some(RetryAfter::Delay(delay)) => Some(delay.as_millis().div_ceil(1000).max(1).to_string()),
                _ => None,
            },
            _ => None,
        };
        let body = match self.uia {
            Some(info) => {
                let mut body = serde_json::to_value(&*info).unwrap_or_else(|_| serde_json::json!({}));
                if !self.message.is_empty()
                    && let (Some(object), Ok(serde_json::Value::Object(error))) =
                        (body.as_object_mut(), serde_json::to_value(StandardErrorBody::new(self.kind, self.message)))
                {
                    object.extend(error);
                }
                body
            }
            None => {
                let soft_logout = match &self.kind {
                    ErrorKind::UnknownToken(data) => Some(data.soft_logout),
                    _ => None,
                };
                let mut body = serde_json::to_value(StandardErrorBody::new(self.kind, self.message))
                    .unwrap_or_else(|_| serde_json::json!({"errcode": "M_UNKNOWN", "error": "Internal server error"}));
                // ruma leaves out `soft_logout: false`; Synapse sends it and clients read it.
                if let (Some(soft_logout), Some(object)) = (soft_logout, body.as_object_mut()) {
                    object.insert("soft_logout".into(), soft_logout.into());
                }
                if let Some(object) = body.as_object_mut() {
                    for (key, value) in self.extra {
                        object.entry(key).or_insert(value);
                    }
                }
                body
            }
        };
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        if let Some(seconds) = retry_after.and_then(|seconds| http::HeaderValue::from_str(&seconds).ok()) {
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        response
    }
}

impl From<RoomError> for ApiError {
    fn from(error: RoomError) -> Self {
        match error {
            RoomError::UnknownRoom => Self::not_found("Unknown room"),
            RoomError::UnknownEvent => Self::not_found("Event not found"),
            RoomError::Forbidden(reason) => Self::forbidden(reason),
            RoomError::TooLarge(size) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge, format!("Event is {size} bytes; the limit is 65536")),
            RoomError::FieldTooLarge(field) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge, format!("'{field}' too large")),
            RoomError::Invalid(reason) => Self::bad_json(reason),
            RoomError::InvalidParam(reason) => Self::invalid_param(reason),
            RoomError::CreatorInPowerLevels(creator) => {
                Self::unknown(StatusCode::BAD_REQUEST, format!("Creator user {creator} must not appear in content.users"))
            }
            RoomError::UnsupportedVersion(version) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorKind::UnsupportedRoomVersion, format!("Room version {version} is not supported"))
            }
            RoomError::UnableToGrantJoin => Self::new(StatusCode::BAD_REQUEST, ErrorKind::UnableToGrantJoin, "No member of the room may authorise this join"),
            RoomError::AliasTaken => Self::new(StatusCode::BAD_REQUEST, ErrorKind::RoomInUse, "Room alias already taken"),
            RoomError::Storage(error) => error.into(),
            RoomError::Remote { status, body } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let errcode = body.get("errcode").and_then(serde_json::Value::as_str).unwrap_or("M_UNKNOWN");
                let message = body.get("error").and_then(serde_json::Value::as_str).unwrap_or("The room's persister failed");
                let mut error = Self::custom(status, errcode, message);
                if let serde_json::Value::Object(mut fields) = body {
                    fields.remove("errcode");
                    fields.remove("error");
                    error.extra = fields;
                }
                error
            }
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        tracing::error!(%error, "storage failure");
        Self::internal()
    }
}
