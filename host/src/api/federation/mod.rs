//! The Server-Server API. So far only the server's own signing keys.

mod keys;

use super::{groups::EndpointGroup, ruma_route::RouteTable};

pub fn key_routes(table: &mut RouteTable) {
    table.add::<ruma::api::federation::discovery::get_server_keys::v2::Request, _, _>(EndpointGroup::ServerKeys, keys::server_keys);
}
