//! `GET /_matrix/client/v3/capabilities`.

use ruma::api::client::discovery::get_capabilities::v3::{
    Capabilities, ChangePasswordCapability, GetLoginTokenCapability, Request, Response, RoomVersionsCapability, ThirdPartyIdChangesCapability,
};

use weft_services::rooms::versions;
use weft_services::services::AppState;

use crate::{error::ApiResult, ruma_route::Ruma};

pub async fn capabilities(state: AppState, _: Ruma<Request>) -> ApiResult<Response> {
    let mut capabilities = Capabilities::new();
    capabilities.change_password = ChangePasswordCapability::new(state.config.password_config.enabled);
    capabilities.room_versions = RoomVersionsCapability::new(versions::DEFAULT, versions::supported().into_iter().collect());
    capabilities.thirdparty_id_changes = ThirdPartyIdChangesCapability::new(false);
    capabilities.get_login_token = GetLoginTokenCapability::new(false);
    Ok(Response::new(capabilities))
}
