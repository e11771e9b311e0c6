//! Every method and path template the HTTP API knows, with its endpoint
//! group: the source of `weft_core::routes` (`core/src/routes.txt`), the
//! same list as data, which `weft router` classifies requests by and `weft
//! gen-proxy-config` turns into proxy locations. The test below fails when
//! the two differ; `WEFT_UPDATE_ROUTES=1 cargo test -p weft-api route_list`
//! rewrites the file.
//!
//! Two sources: the routes the server registers (the same `RouteTable` calls
//! that build each listener's router, so the list cannot drift from what is
//! served), and routes declared here from ruma's request types: those of the
//! worker document's groups that Weft does not serve yet (federation),
//! and the media repository's, which `media` serves with handlers of its
//! own (file bodies, not JSON). A registered route wins over a declared one with the same method and
//! path, so implementing an endpoint needs no change here, only eventually
//! the removal of its now redundant line.

use std::collections::BTreeSet;

use http::Method;
use ruma::api::{Metadata, path_builder::PathBuilder};

use weft_core::endpoint_groups::EndpointGroup;

use super::{
    admin, client, federation,
    ruma_route::{RouteEntry, RouteTable},
};

/// Every route of the client, admin and federation resources, registered
/// routes first, without duplicates.
pub fn all_routes() -> Vec<RouteEntry> {
    let mut table = RouteTable::default();
    client::routes(&mut table);
    admin::routes(&mut table);
    federation::key_routes(&mut table);
    federation::federation_routes(&mut table);
    let mut routes = table.entries().to_vec();
    routes.extend(super::sso::route_entries());
    routes.extend(not_yet_served());

    let mut seen = BTreeSet::new();
    routes.retain(|route| seen.insert((route.method.to_string(), route.path)));
    routes
}

/// Routes no `RouteTable` registers: not served yet, or served by `api::media`.
// The unauthenticated media endpoints are deprecated, but clients still call them.
#[allow(deprecated)]
fn not_yet_served() -> Vec<RouteEntry> {
    use EndpointGroup as G;
    use ruma::api::{client as c, federation as f};
    let mut out = Vec::new();
    let mut add = |group: EndpointGroup, routes: &[(Method, Vec<&'static str>)]| {
        for (method, paths) in routes {
            for path in paths {
                out.push(RouteEntry { method: method.clone(), path, group });
            }
        }
    };

    add(
        G::Federation,
        &[
            declared::<f::discovery::get_server_version::v1::Request>(),
            declared::<f::query::get_profile_information::v1::Request>(),
            declared::<f::query::get_room_information::v1::Request>(),
            declared::<f::thirdparty::exchange_invite::v1::Request>(),
            declared::<f::device::get_devices::v1::Request>(),
            declared::<f::keys::get_keys::v1::Request>(),
            declared::<f::keys::claim_keys::v1::Request>(),
            declared::<f::discovery::get_remote_server_keys::v2::Request>(),
            declared::<f::discovery::get_remote_server_keys_batch::v2::Request>(),
        ],
    );
    add(
        G::Media,
        &[
            declared::<c::media::create_content::v3::Request>(),
            declared::<c::media::create_content_async::v3::Request>(),
            declared::<c::media::create_mxc_uri::v1::Request>(),
            declared::<c::media::get_content::v3::Request>(),
            declared::<c::media::get_content_as_filename::v3::Request>(),
            declared::<c::media::get_content_thumbnail::v3::Request>(),
            declared::<c::media::get_media_config::v3::Request>(),
            declared::<c::media::get_media_preview::v3::Request>(),
            declared::<c::authenticated_media::get_content::v1::Request>(),
            declared::<c::authenticated_media::get_content_as_filename::v1::Request>(),
            declared::<c::authenticated_media::get_content_thumbnail::v1::Request>(),
            declared::<c::authenticated_media::get_media_config::v1::Request>(),
            declared::<c::authenticated_media::get_media_preview::v1::Request>(),
            declared::<f::authenticated_media::get_content::v1::Request>(),
            declared::<f::authenticated_media::get_content_thumbnail::v1::Request>(),
        ],
    );
    out
}

/// The method and every historical path of a ruma request type.
fn declared<R: Metadata>() -> (Method, Vec<&'static str>) {
    (R::METHOD, R::PATH_BUILDER.all_paths().collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_route_table_in_core_is_this_list() {
        let text = weft_core::routes::render(&super::all_routes());
        if std::env::var_os("WEFT_UPDATE_ROUTES").is_some() {
            std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/../core/src/routes.txt"), &text).expect("core/src/routes.txt is writable");
            return;
        }
        assert!(
            text == weft_core::routes::TABLE,
            "core/src/routes.txt differs from the routes the API serves and declares: run `WEFT_UPDATE_ROUTES=1 cargo test -p weft-api route_list` and commit it"
        );
    }
}
