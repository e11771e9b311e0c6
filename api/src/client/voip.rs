//! `GET /voip/turnServer`: TURN credentials for calls, as Synapse makes
//! them. With `turn_shared_secret`, time-limited ones (the TURN REST API:
//! the username is `<expiry>:<user id>`, the password the base64 HMAC-SHA1
//! of it); else `turn_username` and `turn_password` as they are. Without
//! `turn_uris` (or any credentials) the answer is `{}`, as in Synapse.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

use weft_services::services::AppState;

use crate::{error::ApiResult, ruma_route::Ruma};

pub mod turn_server {
    //! `GET /_matrix/client/v3/voip/turnServer`, declared here because the
    //! answer without a TURN server is `{}`, which ruma's response cannot be.
    use ruma::{
        api::{auth_scheme::AccessToken, metadata, request, response},
        serde::JsonObject,
    };

    metadata! {
        method: GET,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/voip/turnServer",
            1.1 => "/_matrix/client/v3/voip/turnServer",
        }
    }

    #[request]
    pub struct Request {}

    #[response]
    pub struct Response {
        #[ruma_api(body)]
        pub body: JsonObject,
    }
}

pub async fn turn_server(state: AppState, request: Ruma<turn_server::Request>) -> ApiResult<turn_server::Response> {
    let sender = request.sender()?;
    let config = &state.config;
    let lifetime = config.turn_user_lifetime();
    let credentials = if config.turn_uris.is_empty() {
        None
    } else if let Some(secret) = &config.turn_shared_secret {
        let expiry = (weft_storage::now_ms() as u128 + lifetime.as_millis()) / 1000;
        let username = format!("{expiry}:{}", sender.user_id);
        let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
        mac.update(username.as_bytes());
        Some((username, base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())))
    } else {
        config.turn_username.clone().zip(config.turn_password.clone())
    };
    let body = match credentials {
        Some((username, password)) => json!({"username": username, "password": password, "uris": config.turn_uris, "ttl": lifetime.as_secs()}),
        None => json!({}),
    };
    let Value::Object(body) = body else { unreachable!("both arms are objects") };
    Ok(turn_server::Response { body })
}
