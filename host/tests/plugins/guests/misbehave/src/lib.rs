//! A spam checker that misbehaves on purpose, chosen by its `mode` setting:
//!
//! - `allow`, `reject`: behaves (reject answers `M_FORBIDDEN` with a field).
//! - `loop`: never returns.
//! - `memory`: allocates without bound.
//! - `panic`: panics.
//! - `http`: GETs `url`; answers allow when the host let it through, panics
//!   when refused.
//! - `file`: opens `path` (default `/etc/passwd`); answers allow if it could,
//!   panics if not.
//! - `garbage`: answers a rejection whose errcode is not one.
//! - `huge`: answers a rejection larger than any output limit.
//! - `log-flood`: writes many log lines, then allows.
//! - `count`: counts calls in its key-value store; rejects from the third on.
//! - `now`: rejects with the host clock and random bytes as fields.
//! - `window`: counts the call in its key-value store under the current
//!   minute of WASI's wall clock (`calls/<minute>`); allows `limit` calls
//!   a minute (default 2) and rejects the rest with `minute`, `count` and
//!   the host's `now_ms` as fields.
//! - `homeserver`: `user-may-invite` asks the homeserver view about the
//!   inviter, the invitee and the room, and rejects with every answer (or
//!   error) as a field; the other callbacks allow.
//! - `instance-calls`: counts the calls its instance answered in a static
//!   and rejects with the count as `instance_calls`; a message whose body is
//!   `panic` or `loop` counts, then panics or never returns.
//! - `event-panics`: `check-event-for-spam` panics, the other callbacks allow.
//!
//! Registration answers `registration` (`allow`, `shadow-ban`, `deny`) when
//! the mode is `allow`, and misbehaves like the other callbacks otherwise.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use weft_plugin_sdk::{
    PluginConfig, PluginError, homeserver, http, kv, log,
    serde_json::{Value, json},
    spam::{Event, RegistrationVerdict, RequestInfo, SpamChecker, Verdict},
};

struct Misbehave {
    mode: String,
    url: String,
    path: String,
    registration: String,
    limit: u64,
}

impl SpamChecker for Misbehave {
    fn new(config: &PluginConfig) -> Result<Self, PluginError> {
        Ok(Self {
            mode: config.str("mode")?.unwrap_or("allow").to_owned(),
            url: config.str("url")?.unwrap_or("http://127.0.0.1:9/").to_owned(),
            path: config.str("path")?.unwrap_or("/etc/passwd").to_owned(),
            registration: config.str("registration")?.unwrap_or("allow").to_owned(),
            limit: config.u64("limit")?.unwrap_or(2),
        })
    }

    fn user_may_invite(&self, inviter: &str, invitee: &str, room: &str) -> Verdict {
        if self.mode != "homeserver" {
            return self.act();
        }
        fn answer<T: Into<Value>>(result: Result<T, homeserver::ViewError>) -> Value {
            match result {
                Ok(value) => json!({"ok": value.into()}),
                Err(error) => json!({"error": error.to_string()}),
            }
        }
        let user = |info: Option<homeserver::UserInfo>| {
            info.map_or(Value::Null, |i| json!({"created_ms": i.created_ms, "admin": i.admin, "deactivated": i.deactivated, "is_guest": i.is_guest}))
        };
        let profile = |p: Option<homeserver::Profile>| p.map_or(Value::Null, |p| json!({"displayname": p.displayname, "avatar_url": p.avatar_url}));
        Verdict::forbidden("misbehave looked")
            .with_field("inviter", answer(homeserver::user_info(inviter).map(user)))
            .with_field("invitee_profile", answer(homeserver::profile(invitee).map(profile)))
            .with_field("inviter_membership", answer(homeserver::membership(room, inviter)))
            .with_field("invitee_membership", answer(homeserver::membership(room, invitee)))
            .with_field("create", answer(homeserver::state_event(room, "m.room.create", "")))
            .with_field("members", answer(homeserver::joined_members(room)))
            .with_field("bad_id", answer(homeserver::user_info("not a user id").map(user)))
    }

    fn check_event_for_spam(&self, event: &Event) -> Verdict {
        if self.mode == "instance-calls" {
            return instance_calls(event.body());
        }
        if self.mode == "event-panics" {
            panic!("misbehave panics on events");
        }
        self.act()
    }

    fn check_login_for_spam(&self, _: &str, _: Option<&str>, _: Option<&str>, _: &[RequestInfo], _: Option<&str>) -> Verdict {
        self.act()
    }

    fn user_may_create_room(&self, _user: &str, _room_config: &Value) -> Verdict {
        self.act()
    }

    fn check_registration_for_spam(&self, _: Option<&str>, _: Option<&str>, _: &[RequestInfo], _: Option<&str>) -> RegistrationVerdict {
        if self.mode != "allow" {
            let _ = self.act();
        }
        match self.registration.as_str() {
            "shadow-ban" => RegistrationVerdict::ShadowBan,
            "deny" => RegistrationVerdict::Deny,
            _ => RegistrationVerdict::Allow,
        }
    }
}

impl Misbehave {
    fn act(&self) -> Verdict {
        match self.mode.as_str() {
            "allow" | "event-panics" | "homeserver" => Verdict::Allow,
            "reject" => Verdict::forbidden("misbehave says no").with_field("misbehave", json!({"mode": "reject"})),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("misbehave panics on purpose"),
            "http" => match http::send(&http::Request::get(&self.url)) {
                Ok(response) => Verdict::reject("M_FORBIDDEN", "reached the host").with_field("status", response.status.into()),
                Err(error) => panic!("the host refused the request: {error:?}"),
            },
            "file" => match std::fs::read(&self.path) {
                Ok(bytes) => Verdict::reject("M_FORBIDDEN", "read the file").with_field("bytes", bytes.len().into()),
                Err(error) => panic!("cannot open {}: {error}", self.path),
            },
            "garbage" => Verdict::reject("not an errcode! \u{1F4A9}", "garbage"),
            "huge" => Verdict::forbidden("x".repeat(1 << 20)),
            "log-flood" => {
                for i in 0..10_000 {
                    log::info(&format!("flood line {i} with some padding to fill the budget quickly"));
                }
                Verdict::Allow
            }
            "count" => {
                let count = kv::get("count").and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes) + 1;
                let _ = kv::set("count", &count.to_le_bytes());
                log::log(log::Level::Info, "counted", &[("count", &count.to_string())]);
                if count >= 3 { Verdict::forbidden("too many").with_field("count", count.into()) } else { Verdict::Allow }
            }
            "window" => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                let minute = now / 60_000;
                let key = format!("calls/{minute}");
                let count = kv::get(&key).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes) + 1;
                let _ = kv::set(&key, &count.to_le_bytes());
                if count > self.limit {
                    Verdict::forbidden("too many this minute")
                        .with_field("minute", minute.into())
                        .with_field("count", count.into())
                        .with_field("now_ms", weft_plugin_sdk::now_ms().into())
                } else {
                    Verdict::Allow
                }
            }
            "now" => Verdict::forbidden("time")
                .with_field("now_ms", weft_plugin_sdk::now_ms().into())
                .with_field("random", weft_plugin_sdk::random_bytes(4).into_iter().map(u64::from).collect::<Vec<_>>().into()),
            other => panic!("unknown mode {other}"),
        }
    }
}

/// Survives between calls only when the host reuses the instance.
static INSTANCE_CALLS: AtomicU64 = AtomicU64::new(0);

fn instance_calls(body: Option<&str>) -> Verdict {
    let calls = INSTANCE_CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    println!("instance call {calls}");
    match body {
        Some("panic") => panic!("misbehave panics on purpose"),
        Some("loop") => loop {
            std::hint::black_box(calls);
        },
        _ => Verdict::forbidden("counted").with_field("instance_calls", calls.into()),
    }
}

weft_plugin_sdk::export_spam_checker!(Misbehave);
