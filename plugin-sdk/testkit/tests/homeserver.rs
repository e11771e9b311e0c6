//! The `homeserver` view in the testkit: `spam-rules`' `min_age_secs` over
//! a seeded fake (account age against the testkit's clock), and the grants:
//! `misbehave` in its `homeserver` mode answers every view call it made.

use std::time::Duration;

use serde_json::{Value, json};
use weft_plugin_testkit::{
    FakeHomeserver, HomeserverScope, Profile, TestPlugin, Testkit, UserInfo,
    spam::{SpamAnswer, SpamCall, SpamVerdict},
};

use super::{START_MS, misbehave, spam_rules::spam_rules};

const ROOM: &str = "!r:example.org";

fn invite(inviter: &str, invitee: &str) -> SpamCall {
    SpamCall::UserMayInvite { inviter: inviter.try_into().unwrap(), invitee: invitee.try_into().unwrap(), room: ROOM.try_into().unwrap() }
}

fn rejection(answer: SpamAnswer) -> Option<(Option<String>, serde_json::Map<String, Value>)> {
    match answer {
        SpamAnswer::Verdict(SpamVerdict::Reject(r)) => Some((r.message, r.fields)),
        _ => None,
    }
}

fn view() -> FakeHomeserver {
    let view = FakeHomeserver::default();
    view.add_user("@new:example.org", UserInfo { created_ms: START_MS - 60_000, ..UserInfo::default() });
    view.add_user("@old:example.org", UserInfo { created_ms: START_MS - 7_200_000, admin: true, ..UserInfo::default() });
    view
}

async fn min_age(view: &FakeHomeserver, grant: &[HomeserverScope]) -> TestPlugin {
    Testkit::new(spam_rules()).name("min-age").config(json!({"min_age_secs": 3600})).homeserver(view.clone()).grant_homeserver(grant).load().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_age_refuses_accounts_younger_than_it_until_the_clock_moves_on() {
    let view = view();
    let plugin = min_age(&view, &[HomeserverScope::Users]).await;
    let (message, fields) = rejection(plugin.call(invite("@new:example.org", "@b:example.org")).await.unwrap()).expect("a minute-old account");
    assert_eq!(message.as_deref(), Some("Your account is too new to invite users"));
    assert_eq!(fields["retry_after_ms"], json!(3_540_000));
    assert!(plugin.call(invite("@old:example.org", "@b:example.org")).await.unwrap().allows(), "two hours old");
    assert!(plugin.call(invite("@remote:elsewhere.example", "@b:example.org")).await.unwrap().allows(), "no local account: age unknown");
    let create = SpamCall::UserMayCreateRoom { user: "@new:example.org".try_into().unwrap(), room_config: json!({}) };
    assert!(!plugin.call(create.clone()).await.unwrap().allows());

    plugin.clock().advance(Duration::from_secs(3540));
    assert!(plugin.call(invite("@new:example.org", "@b:example.org")).await.unwrap().allows(), "an hour old now");
    assert!(plugin.call(create).await.unwrap().allows());

    // A view that cannot answer fails the call (the server applies on_error).
    view.set_unavailable(Some("database down"));
    let failure = plugin.call(invite("@old:example.org", "@b:example.org")).await.unwrap_err();
    assert!(failure.to_string().contains("database down"), "{failure}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_age_without_the_grant_fails_calls_and_its_configuration_check() {
    let plugin = min_age(&view(), &[]).await;
    let failure = plugin.call(invite("@new:example.org", "@b:example.org")).await.unwrap_err();
    assert!(failure.to_string().contains("not granted"), "{failure}");
    let granted = min_age(&view(), &[HomeserverScope::Users]).await;
    assert_eq!(granted.validate_config().await.unwrap(), weft_plugin_testkit::ConfigCheck::Valid);
    match plugin.validate_config().await.unwrap() {
        weft_plugin_testkit::ConfigCheck::Invalid(errors) => assert!(errors.iter().any(|e| e.contains("capabilities.homeserver")), "{errors:?}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_plugin_reads_the_seeded_view_and_one_without_rooms_is_refused_them() {
    let view = view();
    view.add_user("@b:example.org", UserInfo::default())
        .set_profile("@b:example.org", Profile { displayname: Some("Bee".into()), avatar_url: Some("mxc://x/y".into()) });
    view.set_state(ROOM, "@old:example.org", "m.room.create", "", json!({"room_version": "11"}))
        .set_membership(ROOM, "@old:example.org", "join")
        .set_membership(ROOM, "@b:example.org", "invite");
    let probe = |grant: &[HomeserverScope]| {
        Testkit::new(misbehave()).name("probe").config(json!({"mode": "homeserver"})).homeserver(view.clone()).grant_homeserver(grant).load()
    };

    let both = probe(&[HomeserverScope::Users, HomeserverScope::Rooms]).await.unwrap();
    let (_, fields) = rejection(both.call(invite("@old:example.org", "@b:example.org")).await.unwrap()).expect("the probe rejects");
    assert_eq!(fields["inviter"]["ok"], json!({"created_ms": START_MS - 7_200_000, "admin": true, "deactivated": false, "is_guest": false}));
    assert_eq!(fields["invitee_profile"]["ok"], json!({"displayname": "Bee", "avatar_url": "mxc://x/y"}));
    assert_eq!((&fields["inviter_membership"]["ok"], &fields["invitee_membership"]["ok"]), (&json!("join"), &json!("invite")));
    assert_eq!(fields["create"]["ok"]["content"], json!({"room_version": "11"}));
    assert_eq!(fields["create"]["ok"]["sender"], json!("@old:example.org"));
    assert_eq!(fields["members"]["ok"], json!(["@old:example.org"]));
    assert!(fields["bad_id"]["error"].as_str().unwrap().starts_with("invalid argument"), "{fields:?}");

    let users_only = probe(&[HomeserverScope::Users]).await.unwrap();
    let (_, fields) = rejection(users_only.call(invite("@old:example.org", "@b:example.org")).await.unwrap()).unwrap();
    assert!(fields["inviter"]["ok"].is_object(), "{fields:?}");
    for key in ["inviter_membership", "invitee_membership", "create", "members"] {
        let error = fields[key]["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("not granted") && error.contains("capabilities.homeserver = [\"rooms\"]"), "{key}: {fields:?}");
    }
}
