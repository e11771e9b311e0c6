//! `GET /_matrix/key/v2/server`: this server's verify key, signed with itself.

use std::time::{Duration, SystemTime};

use ruma::{
    CanonicalJsonValue, MilliSecondsSinceUnixEpoch, ServerSigningKeyId,
    api::federation::discovery::{
        ServerSigningKeys, VerifyKey,
        get_server_keys::v2::{Request, Response},
    },
    serde::{Base64, Raw},
};

use weft_services::services::AppState;

use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

/// How long other servers may cache the key, Synapse's default refresh interval.
const KEY_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);

pub async fn server_keys(state: AppState, _: Ruma<Request>) -> ApiResult<Response> {
    let key = &state.signing_key;
    let valid_until = MilliSecondsSinceUnixEpoch::from_system_time(SystemTime::now() + KEY_VALIDITY).ok_or_else(ApiError::internal)?;
    let mut keys = ServerSigningKeys::new(state.server_name.clone(), valid_until);
    let key_id = ServerSigningKeyId::parse(key.key_id()).map_err(|_| ApiError::internal())?;
    keys.verify_keys.insert(key_id, VerifyKey::new(Base64::new(key.pair.public_key().to_vec())));

    let signed = (|| {
        let CanonicalJsonValue::Object(mut object) = ruma::canonical_json::to_canonical_value(&keys).ok()? else { return None };
        ruma::signatures::sign_json(state.server_name.as_str(), &key.pair, &mut object).ok()?;
        Raw::from_json_string(serde_json::to_string(&object).ok()?).ok()
    })();
    Ok(Response::new(signed.ok_or_else(|| {
        tracing::error!("could not sign the server keys");
        ApiError::internal()
    })?))
}
