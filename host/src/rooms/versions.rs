//! The room versions this server supports. Each version's rules come from
//! ruma (`RoomVersionRules`), so supporting another version is a row here.

use ruma::{RoomVersionId, api::client::discovery::get_capabilities::v3::RoomVersionStability};

/// The version of new rooms when a client does not ask for one (Synapse's default).
pub const DEFAULT: RoomVersionId = RoomVersionId::V10;

/// Every supported version and its stability.
pub fn supported() -> [(RoomVersionId, RoomVersionStability); 2] {
    [(RoomVersionId::V10, RoomVersionStability::Stable), (RoomVersionId::V11, RoomVersionStability::Stable)]
}
