//! Which endpoints take a `POST` or `PUT` without a body. Everywhere else an
//! empty body is 400 `M_NOT_JSON`, as Synapse answers where it reads a JSON
//! body (`parse_json_object_from_request` without `allow_empty_body`): an
//! empty body read as `{}` would send a message with empty content.
//!
//! The exceptions are Synapse's, endpoint by endpoint: the membership
//! endpoints (`join`, `leave`, `invite`, `kick`, `ban`, `unban`) read their
//! body with `allow_empty_body=True`; `logout`, `logout/all` and `forget` never
//! read one; `delete_devices` takes a missing body as `{}` for older clients.

use std::any::TypeId;

use ruma::api::client::{
    device::delete_devices,
    membership::{ban_user, forget_room, invite_user, join_room_by_id, join_room_by_id_or_alias, kick_user, leave_room, unban_user},
    session::{logout, logout_all},
};

/// Whether request type `R` may come with an empty body (read as `{}`).
pub fn allowed<R: 'static>() -> bool {
    let id = TypeId::of::<R>();
    [
        TypeId::of::<join_room_by_id::v3::Request>(),
        TypeId::of::<join_room_by_id_or_alias::v3::Request>(),
        TypeId::of::<leave_room::v3::Request>(),
        TypeId::of::<invite_user::v3::Request>(),
        TypeId::of::<kick_user::v3::Request>(),
        TypeId::of::<ban_user::v3::Request>(),
        TypeId::of::<unban_user::v3::Request>(),
        TypeId::of::<forget_room::v3::Request>(),
        TypeId::of::<logout::v3::Request>(),
        TypeId::of::<logout_all::v3::Request>(),
        TypeId::of::<delete_devices::v3::Request>(),
    ]
    .contains(&id)
}
