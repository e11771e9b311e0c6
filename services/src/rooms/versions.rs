//! The room versions this server supports: 1 to 12, as Synapse. Each
//! version's rules come from ruma (`RoomVersionRules`): the event id format
//! (`$random:server` for 1 and 2, the reference hash after), how `prev_events`
//! and `auth_events` reference events (with their hashes for 1 and 2), the
//! redaction algorithm, the authorization rules, the state resolution
//! algorithm, and from 12 room ids that are the create event's reference hash.
//! The event pipeline (`build`, `create`, `redact`, `upgrade`) reads those
//! rules and never a version number, so supporting another version is a row here.

use ruma::{
    RoomVersionId,
    api::client::discovery::get_capabilities::v3::RoomVersionStability,
    room_version_rules::{EventIdFormatVersion, EventsReferenceFormatVersion, RoomIdFormatVersion, RoomVersionRules},
};

/// The version of new rooms when a client does not ask for one (Synapse's default).
pub const DEFAULT: RoomVersionId = RoomVersionId::V12;

/// Every supported version and its stability, as Synapse lists them in
/// `m.room_versions` (its unstable MSC versions aside).
pub fn supported() -> [(RoomVersionId, RoomVersionStability); 12] {
    use RoomVersionId::*;
    [V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12].map(|version| (version, RoomVersionStability::Stable))
}

/// The rules of a supported version; `None` for any other.
pub fn rules(version: &RoomVersionId) -> Option<RoomVersionRules> {
    supported().iter().any(|(supported, _)| supported == version).then(|| version.rules()).flatten()
}

/// Whether `redacts` goes in the content (v11 on) rather than at the top level.
pub fn redacts_in_content(rules: &RoomVersionRules) -> bool {
    rules.redaction.content_field_redacts
}

/// Whether event ids are made up (`$random:server`, v1 and v2) and carried in
/// the event, rather than being the event's reference hash.
pub fn event_ids_are_random(rules: &RoomVersionRules) -> bool {
    rules.event_id_format == EventIdFormatVersion::V1
}

/// Whether `prev_events` and `auth_events` list `[id, {"sha256": hash}]` pairs (v1 and v2).
pub fn references_carry_hashes(rules: &RoomVersionRules) -> bool {
    rules.events_reference_format == EventsReferenceFormatVersion::V1
}

/// Whether the room id is `!` and the create event's reference hash (v12 on),
/// so the create event carries no `room_id`, and a room id has no server part.
pub fn room_id_is_create_hash(rules: &RoomVersionRules) -> bool {
    rules.room_id_format == RoomIdFormatVersion::V2
}

#[cfg(test)]
mod tests {
    use ruma::{RoomVersionId, room_version_rules::StateResolutionVersion};

    use super::*;

    fn rules_of(version: &str) -> RoomVersionRules {
        rules(&RoomVersionId::try_from(version).unwrap()).unwrap_or_else(|| panic!("{version} is supported"))
    }

    #[test]
    fn versions_one_to_twelve_are_supported_and_stable() {
        let listed: Vec<String> = supported().iter().map(|(version, _)| version.to_string()).collect();
        assert_eq!(listed, (1..=12).map(|n| n.to_string()).collect::<Vec<_>>());
        assert!(supported().iter().all(|(_, stability)| *stability == RoomVersionStability::Stable));
        assert_eq!(DEFAULT, RoomVersionId::V12);
        for unsupported in ["13", "org.matrix.msc2870", "banana"] {
            let version = RoomVersionId::try_from(unsupported).unwrap();
            assert!(rules(&version).is_none(), "{unsupported}");
        }
    }

    #[test]
    fn event_id_and_reference_formats_follow_the_version() {
        for version in ["1", "2"] {
            assert!(event_ids_are_random(&rules_of(version)), "{version}");
            assert!(references_carry_hashes(&rules_of(version)), "{version}");
        }
        for version in ["3", "4", "10", "12"] {
            assert!(!event_ids_are_random(&rules_of(version)), "{version}");
            assert!(!references_carry_hashes(&rules_of(version)), "{version}");
        }
        assert_eq!(rules_of("3").event_id_format, EventIdFormatVersion::V2, "v3: standard base64");
        assert_eq!(rules_of("4").event_id_format, EventIdFormatVersion::V3, "v4 on: url-safe base64");
    }

    #[test]
    fn state_resolution_and_room_ids_follow_the_version() {
        assert_eq!(rules_of("1").state_res, StateResolutionVersion::V1);
        for version in ["2", "11"] {
            let v2 = rules_of(version).state_res.v2_rules().copied().expect("state res v2");
            assert!(!v2.consider_conflicted_state_subgraph, "{version}: v2.0");
        }
        let v12 = rules_of("12").state_res.v2_rules().copied().expect("state res v2");
        assert!(v12.consider_conflicted_state_subgraph && v12.begin_iterative_auth_checks_with_empty_state_map, "12: v2.1");
        assert!((1..=11).all(|n| !room_id_is_create_hash(&rules_of(&n.to_string()))));
        assert!(room_id_is_create_hash(&rules_of("12")));
    }

    #[test]
    fn redaction_and_creator_rules_follow_the_version() {
        assert!((1..=10).all(|n| !redacts_in_content(&rules_of(&n.to_string()))));
        assert!(redacts_in_content(&rules_of("11")) && redacts_in_content(&rules_of("12")));
        assert!((1..=10).all(|n| !rules_of(&n.to_string()).authorization.use_room_create_sender), "creator field until 10");
        assert!(rules_of("11").authorization.use_room_create_sender);
        let v12 = rules_of("12").authorization;
        assert!(v12.explicitly_privilege_room_creators && v12.additional_room_creators && v12.room_create_event_id_as_room_id);
        assert!(!rules_of("11").authorization.explicitly_privilege_room_creators);
        assert!(rules_of("6").authorization.strict_canonical_json && !rules_of("5").authorization.strict_canonical_json);
        assert!(rules_of("7").authorization.knocking && !rules_of("6").authorization.knocking);
        assert!(rules_of("8").authorization.restricted_join_rule && !rules_of("7").authorization.restricted_join_rule);
    }
}
