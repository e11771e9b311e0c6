//! The reference plugin `plugins/spam-rules`, every rule, through the
//! testkit (the real runtime with production limits).

use std::path::PathBuf;

use serde_json::{Value, json};
use weft_plugin_testkit::{
    PluginLimitsConfig, TestPlugin, Testkit,
    spam::{MediaFile, RegistrationVerdict, SpamAnswer, SpamCall, SpamEvent, SpamVerdict, UserProfile, ids::OwnedUserId},
};

pub(crate) fn spam_rules() -> PathBuf {
    super::built("spam-rules", "spam_rules.wasm")
}

async fn rules(config: Value) -> TestPlugin {
    Testkit::new(spam_rules()).name("spam-rules").config(config).load().await.expect("spam-rules loads")
}

fn event(sender: &str, body: &str) -> SpamEvent {
    SpamEvent::from_json(json!({
        "room_id": "!r:example.org", "sender": sender, "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": body},
    }))
    .unwrap()
}

fn uid(id: &str) -> OwnedUserId {
    id.try_into().unwrap()
}

fn rejected(answer: SpamAnswer) -> Option<(String, Option<String>, serde_json::Map<String, Value>)> {
    match answer {
        SpamAnswer::Verdict(SpamVerdict::Reject(r)) => Some((r.errcode, r.message, r.fields)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_patterns_reject_messages_with_the_pattern_as_a_field() {
    let plugin = rules(json!({"body_patterns": ["(?i)buy now", "bit\\.ly/"], "errcode": "M_FORBIDDEN"})).await;
    let call = |body: &str| SpamCall::CheckEventForSpam { event: event("@a:example.org", body) };
    let (errcode, message, fields) = rejected(plugin.call(call("BUY NOW cheap")).await.unwrap()).expect("rejected");
    assert_eq!(errcode, "M_FORBIDDEN");
    assert_eq!(message.as_deref(), Some("This message matches a blocked pattern"));
    assert_eq!(fields["pattern"], json!("(?i)buy now"));
    assert!(plugin.logs().iter().any(|l| l.message == "message refused"));
    assert_eq!(plugin.call(call("hello there")).await.unwrap(), SpamAnswer::Verdict(SpamVerdict::Allow));
    let stats = plugin.last_stats().unwrap();
    assert!(stats.elapsed.as_millis() < 500 && stats.peak_memory_bytes < 16 << 20, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_instance_compiles_its_patterns_once_and_answers_the_same() {
    let config = json!({"body_patterns": ["(?i)free (crypto|bitcoin)", "bit\\.ly/", "(unclosed"]});
    let call = |body: &str| SpamCall::CheckEventForSpam { event: event("@a:example.org", body) };
    let bodies = ["FREE Bitcoin here", "see bit.ly/x", "hello", "free crypto", "nothing"];
    let invalid_warnings = |plugin: &TestPlugin| plugin.logs().iter().filter(|l| l.message.starts_with("invalid pattern `(unclosed`")).count();

    let fresh = rules(config.clone()).await;
    let warm = Testkit::new(spam_rules())
        .name("spam-rules-warm")
        .config(config)
        .limits(PluginLimitsConfig { max_calls_per_instance: 100, ..PluginLimitsConfig::default() })
        .load()
        .await
        .unwrap();
    for body in bodies {
        let expected = fresh.call(call(body)).await.unwrap();
        assert_eq!(warm.call(call(body)).await.unwrap(), expected, "{body}");
    }
    assert!(rejected(warm.call(call("free crypto")).await.unwrap()).is_some());
    assert!(warm.call(call("hello")).await.unwrap().allows());
    // The invalid pattern is reported when the patterns are compiled: by every
    // call's fresh instance, but once by the warm instance.
    assert_eq!(invalid_warnings(&fresh), bodies.len());
    assert_eq!(invalid_warnings(&warm), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_users_and_servers() {
    let plugin = rules(json!({"blocked_users": ["@spammer:example.org"], "blocked_servers": ["evil.example"]})).await;
    for sender in ["@spammer:example.org", "@anyone:evil.example"] {
        assert!(rejected(plugin.call(SpamCall::CheckEventForSpam { event: event(sender, "hi") }).await.unwrap()).is_some(), "{sender}");
        let login =
            SpamCall::CheckLoginForSpam { user: uid(sender), device_id: None, initial_display_name: None, request_info: vec![], auth_provider_id: None };
        assert!(rejected(plugin.call(login).await.unwrap()).is_some());
    }
    let drop = |sender: &str| SpamCall::ShouldDropFederatedEvent { event: event(sender, "hi") };
    assert_eq!(plugin.call(drop("@x:evil.example")).await.unwrap(), SpamAnswer::Flag(true));
    assert_eq!(plugin.call(drop("@x:good.example")).await.unwrap(), SpamAnswer::Flag(false));
    assert!(plugin.call(SpamCall::CheckEventForSpam { event: event("@ok:example.org", "hi") }).await.unwrap().allows());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_policies() {
    let invite =
        |inviter: &str, invitee: &str| SpamCall::UserMayInvite { inviter: uid(inviter), invitee: uid(invitee), room: "!r:example.org".try_into().unwrap() };
    let same = rules(json!({"invites": "same-server"})).await;
    assert!(same.call(invite("@a:example.org", "@b:example.org")).await.unwrap().allows());
    assert!(!same.call(invite("@a:example.org", "@b:other.example")).await.unwrap().allows());
    let nobody = rules(json!({"invites": "nobody"})).await;
    assert!(!nobody.call(invite("@a:example.org", "@b:example.org")).await.unwrap().allows());
    let anyone = rules(json!({})).await;
    assert!(anyone.call(invite("@a:example.org", "@b:other.example")).await.unwrap().allows());
    // A bad setting fails the call (the server applies on_error).
    let bad = rules(json!({"invites": "sometimes"})).await;
    let failure = bad.call(invite("@a:example.org", "@b:example.org")).await.unwrap_err();
    assert_eq!(failure.reason(), "trap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_registration_and_the_directory() {
    let plugin = rules(json!({"username_patterns": ["^admin", "(?i)viagra"], "registration_action": "shadow-ban"})).await;
    let register = |name: &str| SpamCall::CheckRegistrationForSpam { email: None, username: Some(name.into()), request_info: vec![], auth_provider_id: None };
    assert_eq!(plugin.call(register("admin2")).await.unwrap(), SpamAnswer::Registration(RegistrationVerdict::ShadowBan));
    assert_eq!(plugin.call(register("alice")).await.unwrap(), SpamAnswer::Registration(RegistrationVerdict::Allow));
    let profile = |id: &str, name: Option<&str>| SpamCall::CheckUsernameForSpam {
        profile: UserProfile { user_id: uid(id), display_name: name.map(Into::into), avatar_url: None },
        requester: uid("@r:example.org"),
    };
    assert_eq!(plugin.call(profile("@adminbot:example.org", None)).await.unwrap(), SpamAnswer::Flag(true));
    assert_eq!(plugin.call(profile("@bob:example.org", Some("Cheap VIAGRA"))).await.unwrap(), SpamAnswer::Flag(true));
    assert_eq!(plugin.call(profile("@bob:example.org", Some("Bob"))).await.unwrap(), SpamAnswer::Flag(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_create_and_publish_rooms() {
    let plugin = rules(json!({"room_creators": ["@boss:example.org", "*:staff.example"], "room_publishers": ["@boss:example.org"]})).await;
    let create = |user: &str| SpamCall::UserMayCreateRoom { user: uid(user), room_config: json!({"preset": "private_chat"}) };
    assert!(plugin.call(create("@boss:example.org")).await.unwrap().allows());
    assert!(plugin.call(create("@anyone:staff.example")).await.unwrap().allows());
    assert!(!plugin.call(create("@random:example.org")).await.unwrap().allows());
    let publish = |user: &str| SpamCall::UserMayPublishRoom { user: uid(user), room: "!r:example.org".try_into().unwrap() };
    assert!(plugin.call(publish("@boss:example.org")).await.unwrap().allows());
    assert!(!plugin.call(publish("@anyone:staff.example")).await.unwrap().allows());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_size_and_type_limits() {
    let plugin = rules(json!({"media_max_bytes": 1000, "media_allowed_types": ["image/*", "video/mp4"]})).await;
    let media = |length: u64, content_type: &str| SpamCall::CheckMediaFileForSpam {
        file: MediaFile { origin: "local".into(), uploader: None, content_type: Some(content_type.into()), filename: None, length, head: vec![] },
    };
    assert!(plugin.call(media(10, "image/png")).await.unwrap().allows());
    assert!(plugin.call(media(10, "video/mp4")).await.unwrap().allows());
    let (errcode, _, fields) = rejected(plugin.call(media(5000, "image/png")).await.unwrap()).unwrap();
    assert_eq!(errcode, "M_TOO_LARGE");
    assert_eq!(fields["max_bytes"], json!(1000));
    assert!(!plugin.call(media(10, "application/x-msdownload")).await.unwrap().allows());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_callback_is_reachable_and_allows_without_rules() {
    let plugin = rules(json!({})).await;
    let room: weft_plugin_testkit::spam::SpamCall = serde_json::from_value(json!({
        "callback": "user-may-send-state-event", "user": "@a:example.org", "room": "!r:example.org",
        "event_type": "m.room.topic", "state_key": "", "content": {"topic": "hi"}
    }))
    .expect("fixtures deserialize");
    assert!(plugin.call(room).await.unwrap().allows());
    let room_id = || "!r:example.org".try_into().unwrap();
    let join = SpamCall::UserMayJoinRoom { user: uid("@a:example.org"), room: room_id(), is_invited: true };
    assert!(plugin.call(join).await.unwrap().allows());
    let third_party =
        SpamCall::UserMaySend3pidInvite { inviter: uid("@a:example.org"), medium: "email".into(), address: "b@example.org".into(), room: room_id() };
    assert!(plugin.call(third_party).await.unwrap().allows());
    let invite = SpamEvent::from_json(json!({"room_id": "!r:example.org", "sender": "@a:remote.example", "type": "m.room.member", "state_key": "@b:example.org", "content": {"membership": "invite"}})).unwrap();
    assert!(plugin.call(SpamCall::FederatedUserMayInvite { event: invite.clone() }).await.unwrap().allows());
    let strict = rules(json!({"invites": "same-server", "blocked_servers": ["remote.example"]})).await;
    assert!(!strict.call(SpamCall::FederatedUserMayInvite { event: invite }).await.unwrap().allows());
    let nobody = rules(json!({"invites": "nobody"})).await;
    let third_party =
        SpamCall::UserMaySend3pidInvite { inviter: uid("@a:example.org"), medium: "email".into(), address: "b@example.org".into(), room: room_id() };
    assert!(!nobody.call(third_party).await.unwrap().allows());
    let alias = SpamCall::UserMayCreateRoomAlias { user: uid("@a:example.org"), alias: "#a:example.org".try_into().unwrap() };
    assert!(plugin.call(alias).await.unwrap().allows());
}
