//! Application services as the homeserver knows them: one registration
//! (read from the YAML file a bridge writes, by `config::appservice`), its
//! namespaces, and the questions every other crate asks of it: may it act as
//! this user, does it claim this alias, is this event of interest to it.
//!
//! Namespace regexes match from the start of the string but need not cover
//! all of it, as Synapse's `re.match`.

use std::{net::IpAddr, path::PathBuf};

use ruma::{OwnedUserId, UserId};

/// One `namespaces.<kind>` entry.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub exclusive: bool,
    /// The registration's pattern, as written.
    pub pattern: String,
    /// The pattern anchored at the start (`^(?:pattern)`).
    pub regex: regex::Regex,
}

impl Namespace {
    pub fn new(pattern: &str, exclusive: bool) -> Result<Self, regex::Error> {
        let regex = regex::Regex::new(&format!("^(?:{pattern})"))?;
        Ok(Self { exclusive, pattern: pattern.to_owned(), regex })
    }

    fn matches(&self, candidate: &str) -> bool {
        self.regex.is_match(candidate)
    }
}

/// The three namespaces of a registration.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    pub users: Vec<Namespace>,
    pub aliases: Vec<Namespace>,
    pub rooms: Vec<Namespace>,
}

/// One application service registration, checked.
#[derive(Debug, Clone)]
pub struct AppService {
    /// The file it was read from, for messages.
    pub file: PathBuf,
    pub id: String,
    /// Where transactions and queries go; `None` (an explicit `null`): nowhere.
    pub url: Option<String>,
    pub as_token: String,
    pub hs_token: String,
    /// `@{sender_localpart}:{server_name}`.
    pub sender: OwnedUserId,
    pub namespaces: Namespaces,
    /// `rate_limited` (default true); the sender user is never rate limited.
    pub rate_limited: bool,
    pub protocols: Vec<String>,
    /// `receive_ephemeral`, or the legacy `de.sorunome.msc2409.push_ephemeral`
    /// (or `push_ephemeral`): typing, receipts, presence and to-device messages.
    pub receive_ephemeral: bool,
    /// `org.matrix.msc3202`: device masquerading (`device_id` and
    /// `org.matrix.msc3202.device_id`), and in transactions one-time key
    /// counts, fallback keys and device list changes.
    pub msc3202: bool,
    /// `io.element.msc4190`: the appservice manages its users' devices.
    pub msc4190: bool,
    /// `ip_range_whitelist`: when not empty, the `as_token` is only accepted
    /// from these ranges.
    pub ip_range_whitelist: Vec<ipnet::IpNet>,
}

impl AppService {
    /// Whether the appservice may act as `user_id`: its sender or a user of
    /// its users namespace (exclusive or not).
    pub fn is_interested_in_user(&self, user_id: &UserId) -> bool {
        user_id == &*self.sender || self.namespaces.users.iter().any(|ns| ns.matches(user_id.as_str()))
    }

    /// Whether `user_id` is its sender or in one of its exclusive user
    /// namespaces (Synapse's `is_exclusive_user`).
    pub fn is_exclusive_user(&self, user_id: &str) -> bool {
        user_id == self.sender.as_str() || self.namespaces.users.iter().any(|ns| ns.exclusive && ns.matches(user_id))
    }

    /// Whether `user_id` is in its users namespace (not counting the sender).
    pub fn is_user_in_namespace(&self, user_id: &str) -> bool {
        self.namespaces.users.iter().any(|ns| ns.matches(user_id))
    }

    pub fn is_interested_in_alias(&self, alias: &str) -> bool {
        self.namespaces.aliases.iter().any(|ns| ns.matches(alias))
    }

    pub fn is_exclusive_alias(&self, alias: &str) -> bool {
        self.namespaces.aliases.iter().any(|ns| ns.exclusive && ns.matches(alias))
    }

    pub fn is_interested_in_room(&self, room_id: &str) -> bool {
        self.namespaces.rooms.iter().any(|ns| ns.matches(room_id))
    }

    /// Whether a request from `ip` may use the `as_token`.
    pub fn accepts_address(&self, ip: Option<IpAddr>) -> bool {
        if self.ip_range_whitelist.is_empty() {
            return true;
        }
        ip.is_some_and(|ip| {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                v4 => v4,
            };
            self.ip_range_whitelist.iter().any(|range| range.contains(&ip))
        })
    }

    /// Whether requests through its token are rate limited for `user_id`.
    pub fn is_rate_limited(&self, user_id: &UserId) -> bool {
        self.rate_limited && user_id != &*self.sender
    }

    /// Whether it may choose the device it acts through.
    pub fn may_masquerade_devices(&self) -> bool {
        self.msc3202 || self.msc4190
    }
}

/// The registrations of a configuration, and the lookups of the request path.
#[derive(Debug, Clone, Default)]
pub struct AppServices {
    all: Vec<std::sync::Arc<AppService>>,
}

impl AppServices {
    pub fn new(all: Vec<AppService>) -> Self {
        Self { all: all.into_iter().map(std::sync::Arc::new).collect() }
    }

    pub fn all(&self) -> &[std::sync::Arc<AppService>] {
        &self.all
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn by_as_token(&self, token: &str) -> Option<&std::sync::Arc<AppService>> {
        self.all.iter().find(|service| service.as_token == token)
    }

    pub fn by_id(&self, id: &str) -> Option<&std::sync::Arc<AppService>> {
        self.all.iter().find(|service| service.id == id)
    }

    /// The appservice, if any, that claims `user_id` exclusively.
    pub fn exclusive_owner_of_user(&self, user_id: &str) -> Option<&std::sync::Arc<AppService>> {
        self.all.iter().find(|service| service.is_exclusive_user(user_id))
    }

    /// The appservice, if any, that claims `alias` exclusively.
    pub fn exclusive_owner_of_alias(&self, alias: &str) -> Option<&std::sync::Arc<AppService>> {
        self.all.iter().find(|service| service.is_exclusive_alias(alias))
    }

    /// Whether `user_id` is some appservice's sender.
    pub fn is_sender(&self, user_id: &UserId) -> bool {
        self.all.iter().any(|service| &*service.sender == user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(users: &[(&str, bool)]) -> AppService {
        AppService {
            file: "irc.yaml".into(),
            id: "irc".into(),
            url: None,
            as_token: "as".into(),
            hs_token: "hs".into(),
            sender: UserId::parse("@irc_bot:example.org").unwrap(),
            namespaces: Namespaces {
                users: users.iter().map(|(pattern, exclusive)| Namespace::new(pattern, *exclusive).unwrap()).collect(),
                aliases: vec![Namespace::new("#irc_.*", true).unwrap()],
                rooms: vec![],
            },
            rate_limited: true,
            protocols: vec![],
            receive_ephemeral: false,
            msc3202: false,
            msc4190: false,
            ip_range_whitelist: vec!["10.0.0.0/8".parse().unwrap()],
        }
    }

    #[test]
    fn namespaces_match_from_the_start_as_python_re_match() {
        let service = service(&[("@irc_.*", true), ("@shared_", false)]);
        let user = |id: &str| UserId::parse(id).unwrap();
        assert!(service.is_interested_in_user(&user("@irc_alice:example.org")));
        assert!(service.is_interested_in_user(&user("@irc_bot:example.org")), "the sender");
        assert!(service.is_interested_in_user(&user("@shared_bob:other.org")), "a prefix suffices");
        assert!(!service.is_interested_in_user(&user("@alice_irc_x:example.org")), "anchored at the start");
        assert!(service.is_exclusive_user("@irc_alice:example.org"));
        assert!(!service.is_exclusive_user("@shared_bob:example.org"));
        assert!(service.is_exclusive_user("@irc_bot:example.org"), "the sender is exclusive");
        assert!(service.is_exclusive_alias("#irc_libera:example.org"));
        assert!(!service.is_interested_in_alias("#other:example.org"));
        assert!(!service.is_rate_limited(&user("@irc_bot:example.org")), "the sender is never limited");
        assert!(service.is_rate_limited(&user("@irc_alice:example.org")));
    }

    #[test]
    fn the_address_whitelist_judges_mapped_ipv6_as_ipv4() {
        let service = service(&[]);
        assert!(service.accepts_address(Some("10.1.2.3".parse().unwrap())));
        assert!(service.accepts_address(Some("::ffff:10.1.2.3".parse().unwrap())));
        assert!(!service.accepts_address(Some("192.168.1.1".parse().unwrap())));
        assert!(!service.accepts_address(None));
    }
}
