//! `GET /_matrix/client/versions`.

use std::collections::BTreeMap;

use ruma::api::client::discovery::get_supported_versions::{Request, Response};

use weft_services::services::AppState;

use crate::{error::ApiResult, ruma_route::Ruma};

/// The spec versions clients may assume. Weft answers the r0 paths too.
const VERSIONS: &[&str] = &["r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12"];

pub async fn versions(_: AppState, _: Ruma<Request>) -> ApiResult<Response> {
    let mut response = Response::new(VERSIONS.iter().map(|v| (*v).to_owned()).collect());
    response.unstable_features = BTreeMap::new();
    Ok(response)
}
