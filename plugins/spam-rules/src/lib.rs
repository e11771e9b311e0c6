//! The reference spam-checking plugin: rules from its configuration.
//!
//! ```toml
//! [plugins.config]
//! errcode = "M_FORBIDDEN"                 # the errcode of every rejection
//! body_patterns = ["(?i)buy now", "bit\\.ly/"]   # message bodies to refuse
//! blocked_users = ["@spammer:example.org"]       # their events, invites, rooms, logins
//! blocked_servers = ["evil.example"]             # events and invites from there; federated events dropped
//! invites = "anyone"                      # or "same-server", "nobody"
//! username_patterns = ["^admin", "viagra"]       # hidden in the directory, refused at registration
//! registration_action = "deny"            # or "shadow-ban", for names matching username_patterns
//! room_creators = ["@alice:example.org", "*:example.org"]  # who may create rooms (empty: anyone)
//! room_publishers = ["*:example.org"]     # who may publish rooms in the directory (empty: anyone)
//! media_max_bytes = 10485760
//! media_allowed_types = ["image/*", "video/mp4"]  # empty: any type
//! min_age_secs = 3600                     # local accounts younger than this may not invite or create rooms
//! ```
//!
//! `min_age_secs` reads the account's creation time from the homeserver
//! view, which the operator grants with `capabilities.homeserver =
//! ["users"]`; when the view cannot answer, the call fails (the server
//! applies `on_error`) rather than guess an age.
//!
//! `validate_config` (the `validate-config` export, asked by `weft
//! check-config` and every start) checks every option at once, in
//! `validate`. `new` only reads the configuration; a list of patterns is
//! compiled by the first callback that needs it and kept in the checker, so
//! an instance that answers several calls (`max_calls_per_instance`)
//! compiles it once.

mod validate;

use std::cell::OnceCell;

use regex_lite::Regex;
use weft_plugin_sdk::{
    PluginConfig, PluginError, homeserver, now_ms,
    spam::{Event, MediaInfo, RegistrationVerdict, RequestInfo, SpamChecker, UserProfile, Verdict, server_of},
};

struct SpamRules {
    errcode: String,
    body_patterns: Patterns,
    blocked_users: Vec<String>,
    blocked_servers: Vec<String>,
    invites: InvitePolicy,
    username_patterns: Patterns,
    registration_action: RegistrationVerdict,
    room_creators: Vec<String>,
    room_publishers: Vec<String>,
    media_max_bytes: Option<u64>,
    media_allowed_types: Vec<String>,
    min_age_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvitePolicy {
    Anyone,
    SameServer,
    Nobody,
}

impl SpamChecker for SpamRules {
    fn new(config: &PluginConfig) -> Result<Self, PluginError> {
        let invites = match config.str("invites")? {
            None | Some("anyone") => InvitePolicy::Anyone,
            Some("same-server") => InvitePolicy::SameServer,
            Some("nobody") => InvitePolicy::Nobody,
            Some(other) => return Err(PluginError::new(format!("`invites` must be anyone, same-server or nobody, not `{other}`"))),
        };
        let registration_action = match config.str("registration_action")? {
            None | Some("deny") => RegistrationVerdict::Deny,
            Some("shadow-ban") => RegistrationVerdict::ShadowBan,
            Some(other) => return Err(PluginError::new(format!("`registration_action` must be deny or shadow-ban, not `{other}`"))),
        };
        Ok(Self {
            errcode: config.str("errcode")?.unwrap_or("M_FORBIDDEN").to_owned(),
            body_patterns: Patterns::new(config.strings("body_patterns")?),
            blocked_users: config.strings("blocked_users")?,
            blocked_servers: config.strings("blocked_servers")?,
            invites,
            username_patterns: Patterns::new(config.strings("username_patterns")?),
            registration_action,
            room_creators: config.strings("room_creators")?,
            room_publishers: config.strings("room_publishers")?,
            media_max_bytes: config.u64("media_max_bytes")?,
            media_allowed_types: config.strings("media_allowed_types")?,
            min_age_secs: config.u64("min_age_secs")?,
        })
    }

    fn validate_config(config: &PluginConfig) -> Result<(), Vec<String>> {
        validate::validate(config)
    }

    fn check_event_for_spam(&self, event: &Event) -> Verdict {
        if let Some(verdict) = self.blocked_sender(&event.sender) {
            return verdict;
        }
        if let Some(body) = event.body()
            && let Some(pattern) = self.body_patterns.first_match(body)
        {
            weft_plugin_sdk::log::log(weft_plugin_sdk::log::Level::Info, "message refused", &[("pattern", pattern), ("sender", &event.sender)]);
            return self.reject("This message matches a blocked pattern").with_field("pattern", pattern.into());
        }
        Verdict::Allow
    }

    fn should_drop_federated_event(&self, event: &Event) -> bool {
        self.server_blocked(event.sender_server())
    }

    fn user_may_invite(&self, inviter: &str, invitee: &str, _room: &str) -> Verdict {
        if let Some(verdict) = self.blocked_sender(inviter).or_else(|| self.too_new(inviter, "invite users")) {
            return verdict;
        }
        match self.invites {
            InvitePolicy::Anyone => Verdict::Allow,
            InvitePolicy::SameServer if server_of(inviter) == server_of(invitee) => Verdict::Allow,
            InvitePolicy::SameServer => self.reject("Invites to other servers are not allowed"),
            InvitePolicy::Nobody => self.reject("Invites are disabled"),
        }
    }

    fn federated_user_may_invite(&self, event: &Event) -> Verdict {
        if let Some(verdict) = self.blocked_sender(&event.sender) {
            return verdict;
        }
        match self.invites {
            InvitePolicy::Anyone => Verdict::Allow,
            _ => self.reject("Invites from other servers are not allowed"),
        }
    }

    fn user_may_send_3pid_invite(&self, inviter: &str, _medium: &str, _address: &str, _room: &str) -> Verdict {
        if let Some(verdict) = self.blocked_sender(inviter) {
            return verdict;
        }
        match self.invites {
            InvitePolicy::Nobody => self.reject("Invites are disabled"),
            _ => Verdict::Allow,
        }
    }

    fn user_may_join_room(&self, user: &str, _room: &str, _is_invited: bool) -> Verdict {
        self.blocked_sender(user).unwrap_or_default()
    }

    fn user_may_create_room(&self, user: &str, _room_config: &weft_plugin_sdk::serde_json::Value) -> Verdict {
        if let Some(verdict) = self.blocked_sender(user).or_else(|| self.too_new(user, "create rooms")) {
            return verdict;
        }
        if self.room_creators.is_empty() || listed(&self.room_creators, user) { Verdict::Allow } else { self.reject("You may not create rooms on this server") }
    }

    fn user_may_create_room_alias(&self, user: &str, _alias: &str) -> Verdict {
        self.blocked_sender(user).unwrap_or_default()
    }

    fn user_may_publish_room(&self, user: &str, _room: &str) -> Verdict {
        if let Some(verdict) = self.blocked_sender(user) {
            return verdict;
        }
        if self.room_publishers.is_empty() || listed(&self.room_publishers, user) {
            Verdict::Allow
        } else {
            self.reject("You may not publish rooms in the directory")
        }
    }

    fn user_may_send_state_event(
        &self,
        user: &str,
        _room: &str,
        _event_type: &str,
        _state_key: &str,
        _content: &weft_plugin_sdk::serde_json::Value,
    ) -> Verdict {
        self.blocked_sender(user).unwrap_or_default()
    }

    fn check_username_for_spam(&self, profile: &UserProfile, _requester: &str) -> bool {
        let localpart = profile.user_id.trim_start_matches('@').split(':').next().unwrap_or("");
        self.username_patterns.first_match(localpart).is_some()
            || profile.display_name.as_deref().is_some_and(|name| self.username_patterns.first_match(name).is_some())
    }

    fn check_registration_for_spam(
        &self,
        _email: Option<&str>,
        username: Option<&str>,
        _request_info: &[RequestInfo],
        _auth_provider_id: Option<&str>,
    ) -> RegistrationVerdict {
        match username {
            Some(name) if self.username_patterns.first_match(name).is_some() => self.registration_action,
            _ => RegistrationVerdict::Allow,
        }
    }

    fn check_media_file_for_spam(&self, file: &MediaInfo) -> Verdict {
        if let Some(max) = self.media_max_bytes
            && file.length > max
        {
            return Verdict::reject("M_TOO_LARGE", format!("Files are limited to {max} bytes")).with_field("max_bytes", max.into());
        }
        if !self.media_allowed_types.is_empty() {
            let content_type = file.content_type.as_deref().unwrap_or("");
            let allowed = self.media_allowed_types.iter().any(|allowed| match allowed.strip_suffix("/*") {
                Some(family) => content_type.split('/').next() == Some(family),
                None => allowed == content_type,
            });
            if !allowed {
                return self.reject(format!("Files of type `{content_type}` are not allowed"));
            }
        }
        Verdict::Allow
    }

    fn check_login_for_spam(
        &self,
        user: &str,
        _device_id: Option<&str>,
        _initial_display_name: Option<&str>,
        _request_info: &[RequestInfo],
        _auth_provider_id: Option<&str>,
    ) -> Verdict {
        self.blocked_sender(user).unwrap_or_default()
    }
}

impl SpamRules {
    fn reject(&self, message: impl Into<String>) -> Verdict {
        Verdict::reject(&self.errcode, message)
    }

    fn server_blocked(&self, server: &str) -> bool {
        self.blocked_servers.iter().any(|blocked| blocked.eq_ignore_ascii_case(server))
    }

    /// A rejection, with the milliseconds left as `retry_after_ms`, when
    /// `user`'s local account is younger than `min_age_secs`.
    fn too_new(&self, user: &str, action: &str) -> Option<Verdict> {
        let min_age_ms = self.min_age_secs?.saturating_mul(1000);
        let account = match homeserver::user_info(user) {
            // Not a local account: its age is not known here.
            Ok(account) => account?,
            Err(error) => panic!("`min_age_secs` cannot read the account of {user}: {error}"),
        };
        let age_ms = now_ms().saturating_sub(account.created_ms);
        (age_ms < min_age_ms).then(|| self.reject(format!("Your account is too new to {action}")).with_field("retry_after_ms", (min_age_ms - age_ms).into()))
    }

    /// A rejection when `user` or its server is blocked.
    fn blocked_sender(&self, user: &str) -> Option<Verdict> {
        if self.blocked_users.iter().any(|blocked| blocked == user) {
            return Some(self.reject("You are blocked on this server"));
        }
        if self.server_blocked(server_of(user)) {
            return Some(self.reject("Your server is blocked on this server"));
        }
        None
    }
}

/// Whether `user` is in a list of user ids and `*:server` entries.
fn listed(list: &[String], user: &str) -> bool {
    list.iter().any(|entry| match entry.strip_prefix("*:") {
        Some(server) => server_of(user) == server,
        None => entry == user,
    })
}

/// A list of patterns from the configuration. A pattern that is a plain
/// string (optionally `(?i)`, with `\\`-escaped punctuation) is matched
/// without a regex engine: with a fresh instance per call, compiling is most
/// of a check's cost. An invalid pattern matches nothing and is logged.
struct Patterns {
    sources: Vec<String>,
    compiled: OnceCell<Vec<Matcher>>,
}

enum Matcher {
    Literal { text: String, ignore_case: bool },
    Regex(Regex),
    Invalid,
}

impl Patterns {
    fn new(sources: Vec<String>) -> Self {
        Self { sources, compiled: OnceCell::new() }
    }

    /// The first pattern (as configured) that matches `text`.
    fn first_match(&self, text: &str) -> Option<&str> {
        if self.sources.is_empty() {
            return None;
        }
        let matchers = self.compiled.get_or_init(|| self.sources.iter().map(|source| Matcher::compile(source)).collect());
        let lowercase = OnceCell::new();
        let index = matchers.iter().position(|matcher| match matcher {
            Matcher::Literal { text: literal, ignore_case: false } => text.contains(literal.as_str()),
            Matcher::Literal { text: literal, ignore_case: true } => lowercase.get_or_init(|| text.to_lowercase()).contains(literal.as_str()),
            Matcher::Regex(regex) => regex.is_match(text),
            Matcher::Invalid => false,
        })?;
        Some(&self.sources[index])
    }
}

impl Matcher {
    fn compile(pattern: &str) -> Self {
        if let Some((text, ignore_case)) = as_literal(pattern) {
            let text = if ignore_case { text.to_lowercase() } else { text };
            return Self::Literal { text, ignore_case };
        }
        match Regex::new(pattern) {
            Ok(regex) => Self::Regex(regex),
            Err(error) => {
                weft_plugin_sdk::log::warn(&format!("invalid pattern `{pattern}`: {error}"));
                Self::Invalid
            }
        }
    }
}

/// Why `pattern` cannot be compiled, if it cannot.
fn pattern_error(pattern: &str) -> Option<String> {
    if as_literal(pattern).is_some() {
        return None;
    }
    Regex::new(pattern).err().map(|error| error.to_string())
}

/// The literal a pattern stands for, if it has no regex syntax.
fn as_literal(pattern: &str) -> Option<(String, bool)> {
    let (body, ignore_case) = match pattern.strip_prefix("(?i)") {
        Some(rest) => (rest, true),
        None => (pattern, false),
    };
    let mut literal = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) if escaped.is_ascii_punctuation() => literal.push(escaped),
                _ => return None,
            },
            '.' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' => return None,
            other => literal.push(other),
        }
    }
    (!literal.is_empty()).then_some((literal, ignore_case))
}

weft_plugin_sdk::export_spam_checker!(SpamRules);
