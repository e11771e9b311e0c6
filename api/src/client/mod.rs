//! The Client-Server API endpoints, one file per family, each handler typed
//! by its ruma request.

mod account;
mod account_data;
mod appservice;
mod appservice_api;
mod backup;
mod capabilities;
mod cross_signing;
mod devices;
pub(crate) mod directory;
mod federated;
pub(crate) mod key_claims;
pub(crate) mod keys;
mod listed;
mod login;
mod logout;
mod notifications;
mod openid;
mod presence;
mod profile;
mod push_rules;
mod pushers;
mod receipts;
mod register;
mod relation_checks;
mod relations;
mod reports;
mod room_context;
mod room_events;
mod rooms;
mod search;
pub(crate) mod spaces;
mod sync;
mod thirdparty;
mod to_device;
mod typing;
mod user_directory;
mod versions;
mod voip;

pub(crate) use register::validate_new_localpart;

/// A spam checker's verdict at a call site: allowed, or the 403 carrying the
/// plugin's errcode and fields, with Synapse's message for the site.
pub(crate) fn spam_allows(verdict: SpamVerdict, message: &str) -> super::error::ApiResult<()> {
    match verdict {
        SpamVerdict::Allow => Ok(()),
        SpamVerdict::Reject(rejection) => Err(super::error::ApiError::spam_rejected(rejection, message)),
    }
}

use ruma::api::client::{
    account::{change_password, deactivate, get_username_availability, register as register_api, whoami},
    alias::{create_alias, delete_alias, get_alias},
    device::{delete_device, delete_devices, get_device, get_devices, update_device},
    directory::{get_public_rooms_filtered, get_room_visibility},
    discovery::{get_capabilities, get_supported_versions},
    filter::{create_filter, get_filter},
    membership::{
        ban_user, forget_room, get_member_events, invite_user, join_room_by_id, join_room_by_id_or_alias, joined_members, joined_rooms, kick_user, leave_room,
        unban_user,
    },
    message::{get_message_events, send_message_event},
    profile::{delete_profile_field, get_profile, get_profile_field},
    push,
    room::{aliases, create_room, get_room_event},
    session::{get_login_types, login as login_api, logout as logout_api, logout_all},
    state::{get_state_event_for_key, get_state_events, send_state_event},
    sync::sync_events,
};

use weft_core::endpoint_groups::EndpointGroup as G;
use weft_services::plugins::spam::SpamVerdict;

use super::ruma_route::RouteTable;

pub fn routes(table: &mut RouteTable) {
    table
        .add::<get_supported_versions::Request, _, _>(G::ClientReads, versions::versions)
        .add::<get_capabilities::v3::Request, _, _>(G::ClientReads, capabilities::capabilities)
        .add::<listed::Reshaped<register_api::v3::Request>, _, _>(G::Registration, register::register)
        .add::<get_username_availability::v3::Request, _, _>(G::Registration, register::available)
        .add::<get_login_types::v3::Request, _, _>(G::Login, login::login_types)
        .add::<login_api::v3::Request, _, _>(G::Login, login::login)
        .add::<logout_api::v3::Request, _, _>(G::Login, logout::logout)
        .add::<logout_all::v3::Request, _, _>(G::Login, logout::logout_all)
        .add::<whoami::v3::Request, _, _>(G::Account, account::whoami)
        .add::<ruma::api::client::account::request_openid_token::v3::Request, _, _>(G::ClientReads, openid::request_token)
        .add::<change_password::v3::Request, _, _>(G::Account, account::change_password)
        .add::<deactivate::v3::Request, _, _>(G::Account, account::deactivate)
        .add::<account::get_3pids::Request, _, _>(G::ClientReads, account::third_party_ids)
        .add::<ruma::api::client::thirdparty::get_protocols::v3::Request, _, _>(G::ClientReads, thirdparty::protocols)
        .add::<ruma::api::client::thirdparty::get_protocol::v3::Request, _, _>(G::ClientReads, thirdparty::protocol)
        .add::<ruma::api::client::thirdparty::get_location_for_protocol::v3::Request, _, _>(G::ClientReads, thirdparty::locations)
        .add::<ruma::api::client::thirdparty::get_location_for_room_alias::v3::Request, _, _>(G::ClientReads, thirdparty::locations_for_alias)
        .add::<ruma::api::client::thirdparty::get_user_for_protocol::v3::Request, _, _>(G::ClientReads, thirdparty::users)
        .add::<ruma::api::client::thirdparty::get_user_for_user_id::v3::Request, _, _>(G::ClientReads, thirdparty::users_for_id)
        .add::<ruma::api::client::account::delete_3pid::v3::Request, _, _>(G::ClientReads, account::delete_third_party_id)
        .add::<ruma::api::client::account::unbind_3pid::v3::Request, _, _>(G::ClientReads, account::unbind_third_party_id)
        .add::<ruma::api::client::account::check_registration_token_validity::v1::Request, _, _>(G::Registration, account::registration_token_validity)
        .add::<ruma::api::client::session::refresh_token::v3::Request, _, _>(G::Login, login::refresh)
        .add::<voip::turn_server::Request, _, _>(G::ClientReads, voip::turn_server)
        .add::<get_devices::v3::Request, _, _>(G::Devices, devices::list)
        .add::<get_device::v3::Request, _, _>(G::Devices, devices::get)
        .add::<update_device::v3::Request, _, _>(G::Devices, devices::update)
        .add::<delete_device::v3::Request, _, _>(G::Devices, devices::delete)
        .add::<delete_devices::v3::Request, _, _>(G::Devices, devices::delete_many)
        .add::<create_room::v3::Request, _, _>(G::RoomCreation, rooms::create)
        .add::<ruma::api::client::room::upgrade_room::v3::Request, _, _>(G::RoomCreation, rooms::upgrade)
        .add::<join_room_by_id::v3::Request, _, _>(G::Membership, rooms::join_by_id)
        .add::<join_room_by_id_or_alias::v3::Request, _, _>(G::Membership, rooms::join_by_id_or_alias)
        .add::<leave_room::v3::Request, _, _>(G::Membership, rooms::leave)
        .add::<invite_user::v3::Request, _, _>(G::Membership, rooms::invite)
        .add::<kick_user::v3::Request, _, _>(G::Membership, rooms::kick)
        .add::<ban_user::v3::Request, _, _>(G::Membership, rooms::ban)
        .add::<unban_user::v3::Request, _, _>(G::Membership, rooms::unban)
        .add::<forget_room::v3::Request, _, _>(G::Membership, rooms::forget)
        .add::<joined_rooms::v3::Request, _, _>(G::ClientReads, rooms::joined)
        .add::<send_message_event::v3::Request, _, _>(G::EventSending, room_events::send)
        .add::<send_state_event::v3::Request, _, _>(G::EventSending, room_events::put_state)
        .add::<ruma::api::client::redact::redact_event::v3::Request, _, _>(G::EventSending, room_events::redact)
        .add::<get_state_events::v3::Request, _, _>(G::ClientReads, room_events::get_state)
        .add::<get_state_event_for_key::v3::Request, _, _>(G::ClientReads, room_events::get_state_for_key)
        .add::<get_room_event::v3::Request, _, _>(G::ClientReads, room_events::get_event)
        .add::<get_message_events::v3::Request, _, _>(G::RoomMessages, room_events::messages)
        .add::<get_member_events::v3::Request, _, _>(G::ClientReads, room_events::members)
        .add::<joined_members::v3::Request, _, _>(G::ClientReads, room_events::joined_members)
        .add::<get_profile::v3::Request, _, _>(G::ClientReads, profile::get)
        .add::<get_profile_field::v3::Request, _, _>(G::ClientReads, profile::get_field)
        .add::<profile::set_profile_field::Request, _, _>(G::Profile, profile::set_field)
        .add::<delete_profile_field::v3::Request, _, _>(G::Profile, profile::delete_field)
        .add::<create_alias::v3::Request, _, _>(G::Directory, directory::create)
        .add::<get_alias::v3::Request, _, _>(G::ClientReads, directory::get)
        .add::<delete_alias::v3::Request, _, _>(G::Directory, directory::delete)
        .add::<aliases::v3::Request, _, _>(G::ClientReads, directory::room_aliases)
        .add::<get_room_visibility::v3::Request, _, _>(G::ClientReads, directory::get_visibility)
        .add::<directory::set_room_visibility::Request, _, _>(G::Directory, directory::set_visibility)
        .add::<ruma::api::client::appservice::set_room_visibility::v3::Request, _, _>(G::Directory, appservice_api::set_network_visibility)
        .add::<ruma::api::client::appservice::request_ping::v1::Request, _, _>(G::ClientReads, appservice_api::ping)
        .add::<directory::get_public_rooms::Request, _, _>(G::ClientReads, directory::public_rooms)
        .add::<get_public_rooms_filtered::v3::Request, _, _>(G::ClientReads, directory::public_rooms_filtered)
        .add::<listed::get_context::Request, _, _>(G::ClientReads, room_context::context)
        .add::<ruma::api::client::room::get_event_by_timestamp::v1::Request, _, _>(G::ClientReads, room_context::timestamp_to_event)
        .add::<ruma::api::client::peeking::get_current_state::v3::Request, _, _>(G::ClientReads, room_context::initial_sync)
        .add::<ruma::api::client::knock::knock_room::v3::Request, _, _>(G::Membership, rooms::knock)
        .add::<ruma::api::client::relations::get_relating_events::v1::Request, _, _>(G::ClientReads, relations::relating)
        .add::<ruma::api::client::relations::get_relating_events_with_rel_type::v1::Request, _, _>(G::ClientReads, relations::relating_with_type)
        .add::<ruma::api::client::relations::get_relating_events_with_rel_type_and_event_type::v1::Request, _, _>(
            G::ClientReads,
            relations::relating_with_types,
        )
        .add::<ruma::api::client::threads::get_threads::v1::Request, _, _>(G::ClientReads, relations::threads)
        .add::<listed::search_events::Request, _, _>(G::ClientReads, search::search)
        .add::<ruma::api::client::space::get_hierarchy::v1::Request, _, _>(G::ClientReads, spaces::hierarchy)
        // Reports are rows for the administrators, written by whichever instance takes them.
        .add::<ruma::api::client::room::report_content::v3::Request, _, _>(G::ClientReads, reports::report_event)
        .add::<ruma::api::client::room::report_room::v3::Request, _, _>(G::ClientReads, reports::report_room)
        .add::<sync_events::v3::Request, _, _>(G::Sync, sync::sync)
        .add::<create_filter::v3::Request, _, _>(G::ClientReads, sync::create_filter)
        .add::<get_filter::v3::Request, _, _>(G::ClientReads, sync::get_filter)
        .add::<typing::create_typing_event::Request, _, _>(G::Typing, typing::set)
        .add::<ruma::api::client::receipt::create_receipt::v3::Request, _, _>(G::Receipts, receipts::receipt)
        .add::<ruma::api::client::read_marker::set_read_marker::v3::Request, _, _>(G::Receipts, receipts::read_markers)
        .add::<ruma::api::client::config::set_global_account_data::v3::Request, _, _>(G::AccountData, account_data::set_global)
        .add::<ruma::api::client::config::get_global_account_data::v3::Request, _, _>(G::ClientReads, account_data::get_global)
        .add::<ruma::api::client::config::set_room_account_data::v3::Request, _, _>(G::AccountData, account_data::set_room)
        .add::<ruma::api::client::config::get_room_account_data::v3::Request, _, _>(G::ClientReads, account_data::get_room)
        .add::<ruma::api::client::tag::get_tags::v3::Request, _, _>(G::ClientReads, account_data::get_tags)
        .add::<ruma::api::client::tag::create_tag::v3::Request, _, _>(G::AccountData, account_data::put_tag)
        .add::<ruma::api::client::tag::delete_tag::v3::Request, _, _>(G::AccountData, account_data::delete_tag)
        .add::<ruma::api::client::to_device::send_event_to_device::v3::Request, _, _>(G::ToDevice, to_device::send)
        .add::<ruma::api::client::keys::upload_keys::v3::Request, _, _>(G::Keys, keys::upload)
        .add::<ruma::api::client::keys::get_keys::v3::Request, _, _>(G::ClientReads, keys::query)
        .add::<ruma::api::client::keys::claim_keys::v3::Request, _, _>(G::Keys, key_claims::claim)
        .add::<ruma::api::client::keys::claim_keys::v4::Request, _, _>(G::Keys, key_claims::claim_unstable)
        .add::<ruma::api::client::keys::get_key_changes::v3::Request, _, _>(G::ClientReads, keys::changes)
        .add::<ruma::api::client::keys::upload_signing_keys::v3::Request, _, _>(G::Keys, cross_signing::upload_keys)
        .add::<ruma::api::client::keys::upload_signatures::v3::Request, _, _>(G::Keys, cross_signing::upload_signatures);
    key_backup_routes(table);
    table
        .add::<ruma::api::client::push::get_pushers::v3::Request, _, _>(G::Pushers, pushers::list)
        .add::<pushers::set_pusher::Request, _, _>(G::Pushers, pushers::set)
        .add::<ruma::api::client::push::get_notifications::v3::Request, _, _>(G::ClientReads, notifications::list)
        .add::<ruma::api::client::presence::set_presence::v3::Request, _, _>(G::Presence, presence::set)
        .add::<ruma::api::client::presence::get_presence::v3::Request, _, _>(G::ClientReads, presence::get)
        .add::<listed::Reshaped<push::get_pushrules_all::v3::Request>, _, _>(G::ClientReads, push_rules::all)
        .add::<listed::Reshaped<push::get_pushrules_global_scope::v3::Request>, _, _>(G::ClientReads, push_rules::global)
        .add::<listed::Reshaped<push::get_pushrule::v3::Request>, _, _>(G::ClientReads, push_rules::get)
        .add::<push::get_pushrule_enabled::v3::Request, _, _>(G::ClientReads, push_rules::get_enabled)
        .add::<listed::Reshaped<push::get_pushrule_actions::v3::Request>, _, _>(G::ClientReads, push_rules::get_actions)
        .add::<push::set_pushrule::v3::Request, _, _>(G::PushRules, push_rules::set)
        .add::<push::delete_pushrule::v3::Request, _, _>(G::PushRules, push_rules::delete)
        .add::<push::set_pushrule_enabled::v3::Request, _, _>(G::PushRules, push_rules::set_enabled)
        .add::<push::set_pushrule_actions::v3::Request, _, _>(G::PushRules, push_rules::set_actions)
        .add::<ruma::api::client::user_directory::search_users::v3::Request, _, _>(G::ClientReads, user_directory::search);
}

fn key_backup_routes(table: &mut RouteTable) {
    use ruma::api::client::backup::*;
    table
        .add::<create_backup_version::v3::Request, _, _>(G::KeyBackup, backup::create_version)
        .add::<get_latest_backup_info::v3::Request, _, _>(G::KeyBackup, backup::latest_version)
        .add::<get_backup_info::v3::Request, _, _>(G::KeyBackup, backup::get_version)
        .add::<update_backup_version::v3::Request, _, _>(G::KeyBackup, backup::update_version)
        .add::<delete_backup_version::v3::Request, _, _>(G::KeyBackup, backup::delete_version)
        .add::<add_backup_keys::v3::Request, _, _>(G::KeyBackup, backup::put_all)
        .add::<add_backup_keys_for_room::v3::Request, _, _>(G::KeyBackup, backup::put_room)
        .add::<add_backup_keys_for_session::v3::Request, _, _>(G::KeyBackup, backup::put_session)
        .add::<get_backup_keys::v3::Request, _, _>(G::KeyBackup, backup::get_all)
        .add::<get_backup_keys_for_room::v3::Request, _, _>(G::KeyBackup, backup::get_room)
        .add::<get_backup_keys_for_session::v3::Request, _, _>(G::KeyBackup, backup::get_session)
        .add::<delete_backup_keys::v3::Request, _, _>(G::KeyBackup, backup::delete_all)
        .add::<delete_backup_keys_for_room::v3::Request, _, _>(G::KeyBackup, backup::delete_room)
        .add::<delete_backup_keys_for_session::v3::Request, _, _>(G::KeyBackup, backup::delete_session);
}
