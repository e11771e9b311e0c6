//! The plugin's check of its own configuration (`validate_config`): unknown
//! options, each option's type and value, patterns that do not compile,
//! and the `homeserver` grant `min_age_secs` needs. Every problem at once,
//! one line each, for the operator.

use weft_plugin_sdk::{
    PluginConfig,
    homeserver::{self, ViewError},
    serde_json::Value,
};

/// Every option `SpamRules` reads.
const OPTIONS: [&str; 12] = [
    "errcode",
    "body_patterns",
    "blocked_users",
    "blocked_servers",
    "invites",
    "username_patterns",
    "registration_action",
    "room_creators",
    "room_publishers",
    "media_max_bytes",
    "media_allowed_types",
    "min_age_secs",
];

const LISTS: [&str; 7] = ["body_patterns", "blocked_users", "blocked_servers", "username_patterns", "room_creators", "room_publishers", "media_allowed_types"];

pub fn validate(config: &PluginConfig) -> Result<(), Vec<String>> {
    let Some(table) = config.0.as_object() else { return Err(vec!["the configuration must be a table".into()]) };
    let mut errors = Vec::new();
    for key in table.keys().filter(|key| !OPTIONS.contains(&key.as_str())) {
        errors.push(format!("unknown option `{key}` (known: {})", OPTIONS.join(", ")));
    }
    if let Some(code) = set(table.get("errcode")) {
        match code.as_str() {
            Some(code) if is_errcode(code) => {}
            _ => errors.push(format!("`errcode` must be a Matrix errcode such as \"M_FORBIDDEN\", not {code}")),
        }
    }
    one_of(table.get("invites"), "invites", &["anyone", "same-server", "nobody"], &mut errors);
    one_of(table.get("registration_action"), "registration_action", &["deny", "shadow-ban"], &mut errors);
    for key in LISTS {
        let Some(value) = set(table.get(key)) else { continue };
        let Some(items) = value.as_array().filter(|items| items.iter().all(Value::is_string)) else {
            errors.push(format!("`{key}` must be a list of strings, not {value}"));
            continue;
        };
        if key.ends_with("_patterns") {
            for pattern in items.iter().filter_map(Value::as_str) {
                if let Some(reason) = super::pattern_error(pattern) {
                    errors.push(format!("`{key}`: `{pattern}` is not a valid pattern: {reason}"));
                }
            }
        }
    }
    for key in ["media_max_bytes", "min_age_secs"] {
        if let Some(value) = set(table.get(key))
            && value.as_u64().is_none()
        {
            let unit = if key == "min_age_secs" { "seconds" } else { "bytes" };
            errors.push(format!("`{key}` must be a whole number of {unit}, not {value}"));
        }
    }
    if set(table.get("min_age_secs")).is_some()
        && let Err(ViewError::NotGranted(_)) = homeserver::user_info("@weft-config-check:localhost")
    {
        errors.push("`min_age_secs` reads accounts' creation time: the operator must grant `capabilities.homeserver = [\"users\"]`".into());
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// The value of an option that is set (absent and `null` are not).
fn set(value: Option<&Value>) -> Option<&Value> {
    value.filter(|value| !value.is_null())
}

fn one_of(value: Option<&Value>, key: &str, allowed: &[&str], errors: &mut Vec<String>) {
    let Some(value) = set(value) else { return };
    if !value.as_str().is_some_and(|text| allowed.contains(&text)) {
        errors.push(format!("`{key}` must be one of {}, not {value}", allowed.join(", ")));
    }
}

/// The shape the server accepts in a rejection: `M_FORBIDDEN`, `ORG.EXAMPLE_SPAM`.
fn is_errcode(code: &str) -> bool {
    (3..=128).contains(&code.len())
        && code.starts_with(|c: char| c.is_ascii_uppercase())
        && code.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '_' | '.'))
        && code.contains('_')
}
