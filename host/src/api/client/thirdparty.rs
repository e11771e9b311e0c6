//! `GET /thirdparty/protocols`: the protocols that application services
//! bridge to. Empty until appservices arrive; Element's room directory asks
//! for it on every opening, and a 404 there is logged as an error.

use ruma::api::client::thirdparty::get_protocols::v3::{Request, Response};

use crate::{
    api::{error::ApiResult, ruma_route::Ruma},
    services::AppState,
};

pub async fn protocols(_: AppState, request: Ruma<Request>) -> ApiResult<Response> {
    request.sender()?;
    Ok(Response::new(Default::default()))
}
