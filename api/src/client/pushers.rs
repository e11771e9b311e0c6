//! `GET /pushers` and `POST /pushers/set`. Setting is an upsert on the
//! user, `app_id` and `pushkey`; without `append` it also takes that app id
//! and pushkey away from every other user; `kind: null` deletes. The pusher
//! records the device it was set from and goes when that device goes.
//!
//! Whether a pusher is valid is the pusher plugins' call
//! (`services.pushers.check_pusher`): the plugin serving its kind and app id
//! refuses it with 400 and its own errcode and message (the reference
//! `http-pusher`: a `data.url` that is not a push gateway URL is Synapse's
//! `M_MISSING_PARAM`, a gateway address `ip_range_blacklist` refuses is
//! `M_INVALID_PARAM`); a pusher no plugin serves (an `email` pusher, unless
//! a plugin delivers them) is `M_INVALID_PARAM`; a plugin that cannot answer
//! is 503. Nothing is stored when refused. The spec's length limits on
//! `app_id` (64 characters) and `pushkey` (512 bytes) are checked first.
//!
//! May call: `weft_storage` (the pusher rows), `weft_services::plugins::pusher`.

use ruma::api::client::push::{
    Pusher, PusherKind, get_pushers,
    set_pusher::v3::{PusherAction, PusherPostData},
};
use serde_json::{Value, json};

use weft_services::{
    plugins::pusher::{PusherCheck, PusherInfo},
    services::AppState,
};
use weft_storage::{NewPusher, PusherKey, StoredPusher};

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

pub mod set_pusher {
    //! `POST /_matrix/client/v3/pushers/set`, declared here because ruma's
    //! request reads a body without `kind` as `kind: null`, a deletion, where
    //! the spec and Synapse make `kind` required.
    use ruma::{
        api::{auth_scheme::AccessToken, metadata, request, response},
        serde::JsonObject,
    };

    metadata! {
        method: POST,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/pushers/set",
            1.1 => "/_matrix/client/v3/pushers/set",
        }
    }

    #[request]
    pub struct Request {
        /// Parsed into ruma's `PusherAction` once `kind` is known to be there.
        #[ruma_api(body)]
        pub content: JsonObject,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

const MAX_APP_ID_CHARS: usize = 64;
const MAX_PUSHKEY_BYTES: usize = 512;

pub async fn list(state: AppState, request: Ruma<get_pushers::v3::Request>) -> ApiResult<get_pushers::v3::Response> {
    let sender = request.sender()?;
    let pushers = state.storage.user_pushers(&sender.user_id).await?;
    Ok(get_pushers::v3::Response::new(pushers.into_iter().map(to_api).collect::<ApiResult<_>>()?))
}

pub async fn set(state: AppState, request: Ruma<set_pusher::Request>) -> ApiResult<set_pusher::Response> {
    let sender = request.sender()?;
    let content = &request.body.content;
    if !content.contains_key("kind") {
        return Err(ApiError::missing_param("Missing parameter: kind"));
    }
    let action: PusherAction = serde_json::from_value(Value::Object(content.clone())).map_err(|error| {
        let message = error.to_string();
        if message.starts_with("missing field") { ApiError::missing_param(message) } else { ApiError::bad_json(message) }
    })?;
    let (pusher, append) = match action {
        PusherAction::Delete(ids) => {
            let key = PusherKey { user_id: &sender.user_id, app_id: &ids.app_id, pushkey: &ids.pushkey };
            state.storage.delete_pusher(key).await?;
            return Ok(set_pusher::Response {});
        }
        PusherAction::Post(PusherPostData { pusher, append, .. }) => (pusher, append),
        _ => return Err(ApiError::invalid_param("Unsupported pusher action")),
    };
    check_ids(&pusher)?;
    let kind = match &pusher.kind {
        PusherKind::Http(_) => "http",
        PusherKind::Email(_) => "email",
        _ => content.get("kind").and_then(Value::as_str).ok_or_else(|| ApiError::bad_json("'kind' must be a string"))?,
    };
    // The client's own `data` object, every field as sent.
    let data = content.get("data").and_then(Value::as_object).ok_or_else(|| ApiError::bad_json("'data' must be an object"))?;
    let info = PusherInfo {
        user_id: sender.user_id.clone(),
        kind: kind.to_owned(),
        app_id: pusher.ids.app_id.clone(),
        pushkey: pusher.ids.pushkey.clone(),
        pushkey_ts: u64::try_from(weft_storage::now_ms()).unwrap_or_default(),
        app_display_name: pusher.app_display_name.clone(),
        device_display_name: pusher.device_display_name.clone(),
        profile_tag: pusher.profile_tag.clone(),
        lang: pusher.lang.clone(),
        data: data.clone(),
    };
    match state.pushers.check_pusher(&info).await {
        PusherCheck::Valid => {}
        PusherCheck::Invalid(refusal) => return Err(ApiError::custom(http::StatusCode::BAD_REQUEST, &refusal.errcode, refusal.message)),
        PusherCheck::Unavailable { reason } => {
            tracing::warn!(%reason, kind, app_id = %info.app_id, "the pusher plugin could not check a pusher");
            return Err(ApiError::custom(http::StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN", "The pusher cannot be checked right now; try again later"));
        }
    }
    let new = NewPusher {
        key: PusherKey { user_id: &sender.user_id, app_id: &pusher.ids.app_id, pushkey: &pusher.ids.pushkey },
        device_id: &sender.device_id,
        kind,
        app_display_name: &pusher.app_display_name,
        device_display_name: &pusher.device_display_name,
        profile_tag: pusher.profile_tag.as_deref(),
        lang: &pusher.lang,
        data,
    };
    state.storage.set_pusher(new, append).await?;
    Ok(set_pusher::Response {})
}

fn check_ids(pusher: &Pusher) -> ApiResult<()> {
    if pusher.ids.app_id.chars().count() > MAX_APP_ID_CHARS {
        return Err(ApiError::invalid_param(format!("'app_id' is longer than {MAX_APP_ID_CHARS} characters")));
    }
    if pusher.ids.pushkey.len() > MAX_PUSHKEY_BYTES {
        return Err(ApiError::invalid_param(format!("'pushkey' is longer than {MAX_PUSHKEY_BYTES} bytes")));
    }
    Ok(())
}

fn to_api(pusher: StoredPusher) -> ApiResult<Pusher> {
    let json = json!({
        "app_id": pusher.app_id,
        "pushkey": pusher.pushkey,
        "kind": pusher.kind,
        "data": pusher.data,
        "app_display_name": pusher.app_display_name,
        "device_display_name": pusher.device_display_name,
        "profile_tag": pusher.profile_tag,
        "lang": pusher.lang,
    });
    serde_json::from_value(json).map_err(|error| {
        tracing::error!(%error, user_id = %pusher.user_id, "a stored pusher does not parse");
        ApiError::internal()
    })
}
