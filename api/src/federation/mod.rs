//! The Server-Server API: the server's keys and the notary (`keys`), and the
//! requests that need no room events: `version`, `query/profile`,
//! `query/directory` (`query`), a user's devices and keys (`user`), the
//! OpenID userinfo check (`openid`), the public room directory
//! (`directory`), a room's hierarchy and `timestamp_to_event`
//! (`room_queries`), and rooms across servers (`rooms`: transactions, joins,
//! missing events). The authenticated media downloads are `crate::media`'s.
//! Every endpoint but the keys requires an
//! X-Matrix signature, checked by the request pipeline
//! (`ruma_route`, `weft_federation::inbound`) before the handler runs.

mod directory;
mod keys;
mod openid;
mod query;
mod room_queries;
mod rooms;
mod user;

use ruma::api::federation as fed;
use weft_core::endpoint_groups::EndpointGroup;

use super::ruma_route::RouteTable;

pub fn key_routes(table: &mut RouteTable) {
    table
        .add::<fed::discovery::get_server_keys::v2::Request, _, _>(EndpointGroup::ServerKeys, keys::server_keys)
        .add::<fed::discovery::get_remote_server_keys::v2::Request, _, _>(EndpointGroup::Federation, keys::query)
        .add::<fed::discovery::get_remote_server_keys_batch::v2::Request, _, _>(EndpointGroup::Federation, keys::query_batch);
}

/// What the `federation` resource serves besides the keys.
pub fn federation_routes(table: &mut RouteTable) {
    table
        .add::<fed::openid::get_openid_userinfo::v1::Request, _, _>(EndpointGroup::Federation, openid::userinfo)
        .add::<fed::discovery::get_server_version::v1::Request, _, _>(EndpointGroup::Federation, query::version)
        .add::<fed::query::get_profile_information::v1::Request, _, _>(EndpointGroup::Federation, query::profile)
        .add::<fed::query::get_room_information::v1::Request, _, _>(EndpointGroup::Federation, query::directory)
        .add::<fed::device::get_devices::v1::Request, _, _>(EndpointGroup::Federation, user::devices)
        .add::<fed::keys::get_keys::v1::Request, _, _>(EndpointGroup::Federation, user::query)
        .add::<weft_federation::unstable::claim_keys::Request, _, _>(EndpointGroup::Federation, user::claim_unstable)
        .add::<fed::keys::claim_keys::v1::Request, _, _>(EndpointGroup::Federation, user::claim)
        .add::<directory::get_public_rooms::Request, _, _>(EndpointGroup::Federation, directory::public_rooms)
        .add::<directory::get_public_rooms_filtered::Request, _, _>(EndpointGroup::Federation, directory::public_rooms_filtered)
        .add::<room_queries::get_hierarchy::Request, _, _>(EndpointGroup::Federation, room_queries::hierarchy)
        .add::<fed::event::get_event_by_timestamp::v1::Request, _, _>(EndpointGroup::Federation, room_queries::timestamp_to_event)
        .add::<fed::transactions::send_transaction_message::v1::Request, _, _>(EndpointGroup::FederationTransactions, rooms::send_transaction)
        .add::<fed::membership::prepare_join_event::v1::Request, _, _>(EndpointGroup::Federation, rooms::make_join)
        .add::<fed::membership::create_join_event::v2::Request, _, _>(EndpointGroup::Federation, rooms::send_join)
        .add::<fed::membership::prepare_leave_event::v1::Request, _, _>(EndpointGroup::Federation, rooms::make_leave)
        .add::<fed::membership::create_leave_event::v2::Request, _, _>(EndpointGroup::Federation, rooms::send_leave)
        .add::<fed::membership::prepare_knock_event::v1::Request, _, _>(EndpointGroup::Federation, rooms::make_knock)
        .add::<fed::membership::create_knock_event::v1::Request, _, _>(EndpointGroup::Federation, rooms::send_knock)
        .add::<fed::event::get_missing_events::v1::Request, _, _>(EndpointGroup::Federation, rooms::missing_events)
        .add::<fed::event::get_event::v1::Request, _, _>(EndpointGroup::Federation, rooms::event)
        .add::<fed::event::get_room_state::v1::Request, _, _>(EndpointGroup::Federation, rooms::state)
        .add::<fed::event::get_room_state_ids::v1::Request, _, _>(EndpointGroup::Federation, rooms::state_ids)
        .add::<fed::authorization::get_event_authorization::v1::Request, _, _>(EndpointGroup::Federation, rooms::event_auth)
        .add::<fed::backfill::get_backfill::v1::Request, _, _>(EndpointGroup::Federation, rooms::backfill)
        .add::<fed::membership::create_invite::v2::Request, _, _>(EndpointGroup::Federation, rooms::invite);
}
