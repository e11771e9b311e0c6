//! The room versions this server supports. Each version's rules come from
//! ruma (`RoomVersionRules`), so supporting another version is a row here.

use ruma::{RoomVersionId, api::client::discovery::get_capabilities::v3::RoomVersionStability, room_version_rules::RoomVersionRules};

/// The version of new rooms when a client does not ask for one (Synapse's default).
pub const DEFAULT: RoomVersionId = RoomVersionId::V10;

/// Every supported version and its stability.
pub fn supported() -> [(RoomVersionId, RoomVersionStability); 2] {
    [(RoomVersionId::V10, RoomVersionStability::Stable), (RoomVersionId::V11, RoomVersionStability::Stable)]
}

/// The rules of a supported version; `None` for any other.
pub fn rules(version: &RoomVersionId) -> Option<RoomVersionRules> {
    supported().iter().any(|(supported, _)| supported == version).then(|| version.rules()).flatten()
}

/// Whether `redacts` goes in the content (v11 on) rather than at the top level.
pub fn redacts_in_content(rules: &RoomVersionRules) -> bool {
    rules.redaction.content_field_redacts
}
