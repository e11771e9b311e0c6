//! The Server-Server API. So far the server's own signing keys and the
//! OpenID userinfo check.

mod keys;
mod openid;

use weft_core::endpoint_groups::EndpointGroup;

use super::ruma_route::RouteTable;

pub fn key_routes(table: &mut RouteTable) {
    table.add::<ruma::api::federation::discovery::get_server_keys::v2::Request, _, _>(EndpointGroup::ServerKeys, keys::server_keys);
}

/// What the `federation` resource serves besides the keys.
pub fn federation_routes(table: &mut RouteTable) {
    table.add::<ruma::api::federation::openid::get_openid_userinfo::v1::Request, _, _>(EndpointGroup::Federation, openid::userinfo);
}
