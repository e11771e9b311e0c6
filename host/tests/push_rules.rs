//! `/pushrules/`: the server-default rules, user rules of every kind with
//! `before`/`after`, enabling, actions, deleting, every error, and the
//! `push_rules` stream behind them.

use http::StatusCode;
use serde_json::{Value, json};
use weft::storage::Stream;

use crate::{
    on_both_backends,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(
    default_rules_are_served,
    user_rules_are_ordered_with_before_and_after,
    enabling_and_actions_work_on_every_rule,
    deleting_rules,
    bad_requests_are_refused_and_write_nothing,
    changes_advance_the_push_rules_stream,
);

const RULES: &str = "/_matrix/client/v3/pushrules/global";

/// The rule ids of one kind, in priority order.
async fn ids(server: &TestServer, token: &str, kind: &str) -> Vec<String> {
    let (status, body) = server.get("/_matrix/client/v3/pushrules/", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["global"][kind].as_array().map(|rules| rules.iter().map(|rule| rule["rule_id"].as_str().unwrap().to_owned()).collect()).unwrap_or_default()
}

fn user_ids(all: &[String]) -> Vec<&str> {
    all.iter().map(String::as_str).filter(|id| !id.starts_with('.')).collect()
}

async fn put_rule(server: &TestServer, token: &str, path: &str, body: Value) {
    let (status, reply) = server.put(&format!("{RULES}/{path}"), Some(token), body).await;
    assert_eq!(status, StatusCode::OK, "PUT {path}: {reply}");
}

async fn default_rules_are_served(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());

    let (status, all) = server.get("/_matrix/client/v3/pushrules/", token).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let (status, global) = server.get("/_matrix/client/v3/pushrules/global/", token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(global, all["global"], "the global scope is the ruleset itself");
    let overrides = ids(&server, &alice.access_token, "override").await;
    assert_eq!(overrides[0], ".m.rule.master", "master comes first");
    for id in [".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event", ".m.rule.is_user_mention", ".m.rule.is_room_mention"] {
        assert!(overrides.iter().any(|rule| rule == id), "{id} in {overrides:?}");
    }
    let underrides = ids(&server, &alice.access_token, "underride").await;
    for id in [".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"] {
        assert!(underrides.iter().any(|rule| rule == id), "{id} in {underrides:?}");
    }

    let (status, master) = server.get(&format!("{RULES}/override/.m.rule.master"), token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((master["default"].clone(), master["enabled"].clone(), master["actions"].clone()), (json!(true), json!(false), json!([])));
    let (status, mention) = server.get(&format!("{RULES}/override/.m.rule.is_user_mention"), token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mention["conditions"][0]["kind"], "event_property_contains");
    assert_eq!(mention["conditions"][0]["value"], json!(alice.user_id), "the rule names its user");
    let (status, body) = server.get(&format!("{RULES}/underride/.m.rule.encrypted/enabled"), token).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"enabled": true})));
    let (status, body) = server.get(&format!("{RULES}/underride/.m.rule.encrypted/actions"), token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["actions"], json!(["notify"]));

    for path in ["override/.m.rule.nope", "content/nope", "underride/.m.rule.master", "override/.m.rule.nope/enabled", "room/nope/actions"] {
        let (status, body) = server.get(&format!("{RULES}/{path}"), token).await;
        assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{path}");
    }
    for path in ["bogus/.m.rule.master", "bogus/x/enabled", "postcontent/x/actions"] {
        let (status, body) = server.get(&format!("{RULES}/{path}"), token).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{path}");
    }
    let (status, body) = server.get("/_matrix/client/v3/pushrules/", None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"));
    assert!(!server.state.storage.push_rules_changed_since(&server.uid("alice"), 0).await.unwrap(), "reading writes nothing");
}

async fn user_rules_are_ordered_with_before_and_after(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = alice.access_token.as_str();
    let room = format!("!room:{}", server.server_name);
    let bob = server.user_id("bob");

    put_rule(&server, token, "content/cake", json!({"pattern": "cake*lie", "actions": ["notify"]})).await;
    put_rule(&server, token, "content/pie", json!({"pattern": "pie", "actions": []})).await;
    assert_eq!(user_ids(&ids(&server, token, "content").await), ["pie", "cake"], "a new rule is the most important of its kind");
    put_rule(&server, token, "content/tart?after=cake", json!({"pattern": "tart", "actions": []})).await;
    put_rule(&server, token, "content/scone?before=cake", json!({"pattern": "scone", "actions": []})).await;
    assert_eq!(user_ids(&ids(&server, token, "content").await), ["pie", "scone", "cake", "tart"]);
    put_rule(&server, token, "content/pie?after=scone", json!({"pattern": "pie", "actions": []})).await;
    assert_eq!(user_ids(&ids(&server, token, "content").await), ["scone", "pie", "cake", "tart"], "moving an existing rule");
    put_rule(&server, token, "content/pie?after=tart", json!({"pattern": "pie", "actions": []})).await;
    assert_eq!(user_ids(&ids(&server, token, "content").await), ["scone", "cake", "tart", "pie"], "to the end");
    put_rule(&server, token, "content/crumble?after=scone&before=cake", json!({"pattern": "x", "actions": []})).await;
    assert_eq!(user_ids(&ids(&server, token, "content").await), ["scone", "crumble", "cake", "tart", "pie"]);

    let (status, cake) = server.get(&format!("{RULES}/content/cake"), Some(token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cake, json!({"rule_id": "cake", "pattern": "cake*lie", "actions": ["notify"], "default": false, "enabled": true}));

    let conditions = json!([{"kind": "event_match", "key": "content.msgtype", "pattern": "m.notice"}]);
    put_rule(&server, token, "override/first", json!({"conditions": conditions, "actions": []})).await;
    put_rule(&server, token, "override/second", json!({"conditions": [], "actions": ["notify"]})).await;
    let overrides = ids(&server, token, "override").await;
    assert_eq!(&overrides[..3], [".m.rule.master", "second", "first"], "user overrides follow master and precede the other defaults");
    put_rule(&server, token, "underride/low", json!({"conditions": conditions, "actions": ["notify", {"set_tweak": "sound", "value": "default"}]})).await;
    assert_eq!(ids(&server, token, "underride").await[0], "low", "user underrides precede the default ones");
    let (status, low) = server.get(&format!("{RULES}/underride/low"), Some(token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(low["conditions"], conditions);
    assert_eq!(low["actions"], json!(["notify", {"set_tweak": "sound", "value": "default"}]));

    put_rule(&server, token, &format!("room/{room}"), json!({"actions": []})).await;
    put_rule(&server, token, &format!("sender/{bob}"), json!({"actions": ["notify"]})).await;
    assert_eq!(ids(&server, token, "room").await, [room]);
    assert_eq!(ids(&server, token, "sender").await, [bob.as_str()]);
    let (status, rule) = server.get(&format!("{RULES}/sender/{bob}"), Some(token)).await;
    assert_eq!((status, rule["actions"].clone()), (StatusCode::OK, json!(["notify"])));

    // Replacing a disabled rule keeps it disabled and in place.
    let (status, _) = server.put(&format!("{RULES}/content/cake/enabled"), Some(token), json!({"enabled": false})).await;
    assert_eq!(status, StatusCode::OK);
    put_rule(&server, token, "content/cake", json!({"pattern": "cake", "actions": []})).await;
    let (_, cake) = server.get(&format!("{RULES}/content/cake"), Some(token)).await;
    assert_eq!((cake["enabled"].clone(), cake["pattern"].clone()), (json!(false), json!("cake")));
    assert_eq!(user_ids(&ids(&server, token, "content").await), ["scone", "crumble", "cake", "tart", "pie"]);

    // Each user has their own rules.
    let bob_session = server.register("bob", "pw").await;
    assert!(user_ids(&ids(&server, &bob_session.access_token, "content").await).is_empty());
}

async fn enabling_and_actions_work_on_every_rule(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());

    // Muting everything is enabling the master rule.
    let (status, _) = server.put(&format!("{RULES}/override/.m.rule.master/enabled"), token, json!({"enabled": true})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.get(&format!("{RULES}/override/.m.rule.master/enabled"), token).await.1, json!({"enabled": true}));
    let (status, _) = server.put(&format!("{RULES}/underride/.m.rule.message/actions"), token, json!({"actions": []})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.get(&format!("{RULES}/underride/.m.rule.message/actions"), token).await.1, json!({"actions": []}));
    let (_, message) = server.get(&format!("{RULES}/underride/.m.rule.message"), token).await;
    assert_eq!(message["default"], true, "still the server's rule");
    let stored = server.state.storage.push_ruleset(&server.uid("alice")).await.unwrap();
    assert!(stored.override_.get(".m.rule.master").unwrap().enabled);

    put_rule(&server, &alice.access_token, "content/cake", json!({"pattern": "cake", "actions": ["notify"]})).await;
    let (status, _) = server.put(&format!("{RULES}/content/cake/enabled"), token, json!({"enabled": false})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.get(&format!("{RULES}/content/cake/enabled"), token).await.1, json!({"enabled": false}));
    let actions = json!(["notify", {"set_tweak": "highlight"}, {"set_tweak": "sound", "value": "bing"}, "dont_notify"]);
    let (status, _) = server.put(&format!("{RULES}/content/cake/actions"), token, json!({"actions": actions})).await;
    assert_eq!(status, StatusCode::OK);
    // A user rule's highlight shows its `true` (push::client_format).
    let shown = json!(["notify", {"set_tweak": "highlight", "value": true}, {"set_tweak": "sound", "value": "bing"}, "dont_notify"]);
    assert_eq!(server.get(&format!("{RULES}/content/cake/actions"), token).await.1["actions"], shown);

    // Unknown rules, and malformed bodies, change nothing.
    let before = server.get("/_matrix/client/v3/pushrules/", token).await.1;
    for path in ["override/.m.rule.nope", "content/nope", "underride/cake"] {
        for (attr, body) in [("enabled", json!({"enabled": true})), ("actions", json!({"actions": ["notify"]}))] {
            let (status, reply) = server.put(&format!("{RULES}/{path}/{attr}"), token, body).await;
            assert_eq!((status, errcode(&reply)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{path}/{attr}");
        }
    }
    let bad = [
        ("content/cake/enabled", json!({"enabled": "yes"}), "M_BAD_JSON"),
        ("content/cake/enabled", json!({}), "M_MISSING_PARAM"),
        ("content/cake/actions", json!({"actions": "notify"}), "M_BAD_JSON"),
        ("content/cake/actions", json!({"actions": ["bogus"]}), "M_INVALID_PARAM"),
        ("content/cake/actions", json!({"actions": [{"no_tweak": 1}]}), "M_INVALID_PARAM"),
        ("content/cake/actions", json!({"actions": [{"set_tweak": "highlight", "value": "very"}]}), "M_BAD_JSON"),
        ("bogus/cake/enabled", json!({"enabled": true}), "M_INVALID_PARAM"),
        ("bogus/cake/actions", json!({"actions": []}), "M_INVALID_PARAM"),
    ];
    for (path, body, code) in bad {
        let (status, reply) = server.put(&format!("{RULES}/{path}"), token, body.clone()).await;
        assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, code), "{path} {body}");
    }
    assert_eq!(server.get("/_matrix/client/v3/pushrules/", token).await.1, before);
}

async fn deleting_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());
    put_rule(&server, &alice.access_token, "content/cake", json!({"pattern": "cake", "actions": []})).await;
    put_rule(&server, &alice.access_token, "override/quiet", json!({"conditions": [], "actions": []})).await;

    let (status, body) = server.delete(&format!("{RULES}/content/cake"), token, json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (status, body) = server.get(&format!("{RULES}/content/cake"), token).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    let (status, body) = server.delete(&format!("{RULES}/content/cake"), token, json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "already gone");
    let (status, body) = server.delete(&format!("{RULES}/underride/quiet"), token, json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "rules are per kind");

    // Server-default rules can be disabled, not deleted (Synapse: not found).
    let (status, body) = server.delete(&format!("{RULES}/override/.m.rule.master"), token, json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    assert_eq!(server.get(&format!("{RULES}/override/.m.rule.master"), token).await.0, StatusCode::OK);
    let (status, body) = server.delete(&format!("{RULES}/bogus/quiet"), token, json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"));

    let (status, _) = server.delete(&format!("{RULES}/override/quiet"), token, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(user_ids(&ids(&server, &alice.access_token, "override").await).is_empty());
}

async fn bad_requests_are_refused_and_write_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = Some(alice.access_token.as_str());
    put_rule(&server, &alice.access_token, "content/cake", json!({"pattern": "cake", "actions": []})).await;
    put_rule(&server, &alice.access_token, "content/pie", json!({"pattern": "pie", "actions": []})).await;
    let rules = server.get("/_matrix/client/v3/pushrules/", token).await.1;
    let position = server.state.notifier.position(Stream::PushRules);

    let content = json!({"pattern": "x", "actions": []});
    let conditional = json!({"conditions": [], "actions": []});
    let cases = [
        ("content/.m.rule.mine", content.clone(), StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        ("override/.m.rule.master", conditional.clone(), StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        ("content/a%2Fb", content.clone(), StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        ("content/a%5Cb", content.clone(), StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        ("bogus/x", content.clone(), StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        ("content/x?before=nope", content.clone(), StatusCode::BAD_REQUEST, "M_UNKNOWN"),
        ("content/x?after=nope", content.clone(), StatusCode::BAD_REQUEST, "M_UNKNOWN"),
        ("override/x?after=.m.rule.master", conditional.clone(), StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        ("content/x?before=pie&after=cake", content.clone(), StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        ("content/x", json!({"pattern": "x"}), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        ("content/x", json!({"actions": []}), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        ("override/x", json!({"actions": []}), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        ("content/x", json!({"pattern": "x", "actions": "notify"}), StatusCode::BAD_REQUEST, "M_BAD_JSON"),
        ("content/x", json!({"pattern": "x", "actions": ["bogus"]}), StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        // The request pipeline reports any missing field, nested ones included, as a missing parameter.
        ("override/x", json!({"conditions": [{"key": "type", "pattern": "m.x"}], "actions": []}), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        ("override/x", json!({"conditions": {}, "actions": []}), StatusCode::BAD_REQUEST, "M_BAD_JSON"),
        ("sender/not-a-user", json!({"actions": []}), StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        ("room/not-a-room", json!({"actions": []}), StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
    ];
    for (path, body, status, code) in cases {
        let (got, reply) = server.put(&format!("{RULES}/{path}"), token, body.clone()).await;
        assert_eq!((got, errcode(&reply)), (status, code), "PUT {path} {body}: {reply}");
    }
    let (status, reply) = server.send(server.raw(http::Method::PUT, &format!("{RULES}/content/x")).bearer_auth(&alice.access_token).body("{")).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_NOT_JSON"));
    let (status, reply) = server.put(&format!("{RULES}/content/x"), None, content.clone()).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"));
    // Only the `global` scope exists.
    let (status, reply) = server.put("/_matrix/client/v3/pushrules/device/content/x", token, content.clone()).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::NOT_FOUND, "M_UNRECOGNIZED"));
    let (status, reply) = server.get("/_matrix/client/v3/pushrules/device/content/cake", token).await;
    assert_eq!((status, errcode(&reply)), (StatusCode::NOT_FOUND, "M_UNRECOGNIZED"));

    assert_eq!(server.get("/_matrix/client/v3/pushrules/", token).await.1, rules, "nothing changed");
    assert!(!server.state.storage.push_rules_changed_since(&server.uid("alice"), position).await.unwrap(), "nothing written");
}

async fn changes_advance_the_push_rules_stream(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    server.register("bob", "pw").await;
    let (alice_id, bob_id) = (server.uid("alice"), server.uid("bob"));
    let storage = &server.state.storage;
    assert!(!storage.push_rules_changed_since(&alice_id, 0).await.unwrap());
    let default = storage.push_ruleset(&alice_id).await.unwrap();
    assert!(default.override_.get(".m.rule.master").is_some_and(|rule| !rule.enabled));

    let start = server.state.notifier.position(Stream::PushRules);
    put_rule(&server, &alice.access_token, "content/cake", json!({"pattern": "cake", "actions": []})).await;
    let first = server.state.notifier.position(Stream::PushRules);
    assert!(first > start, "the handler tells the notifier");
    assert!(storage.push_rules_changed_since(&alice_id, start).await.unwrap());
    assert!(!storage.push_rules_changed_since(&alice_id, first).await.unwrap());
    assert!(!storage.push_rules_changed_since(&bob_id, 0).await.unwrap(), "only alice's rules changed");

    let (status, _) = server.put(&format!("{RULES}/override/.m.rule.master/enabled"), Some(&alice.access_token), json!({"enabled": true})).await;
    assert_eq!(status, StatusCode::OK);
    let second = server.state.notifier.position(Stream::PushRules);
    assert!(second > first);
    assert!(storage.push_rules_changed_since(&alice_id, first).await.unwrap());
    for path in ["content/cake/actions", "content/cake"] {
        let position = server.state.notifier.position(Stream::PushRules);
        let (status, _) = if path.ends_with("actions") {
            server.put(&format!("{RULES}/{path}"), Some(&alice.access_token), json!({"actions": ["notify"]})).await
        } else {
            server.delete(&format!("{RULES}/{path}"), Some(&alice.access_token), json!({})).await
        };
        assert_eq!(status, StatusCode::OK);
        assert!(storage.push_rules_changed_since(&alice_id, position).await.unwrap(), "{path} moves the stream");
    }
    let rules = server.get("/_matrix/client/v3/pushrules/", Some(&alice.access_token)).await.1;

    // Everything survives a restart, and ids keep increasing after it.
    let last = server.state.notifier.position(Stream::PushRules);
    let server = server.restart().await;
    let alice = server.login("alice", "pw").await;
    assert_eq!(server.get("/_matrix/client/v3/pushrules/", Some(&alice.access_token)).await.1, rules);
    assert_eq!(server.state.notifier.position(Stream::PushRules), last);
    put_rule(&server, &alice.access_token, "content/tart", json!({"pattern": "tart", "actions": []})).await;
    assert!(server.state.storage.push_rules_changed_since(&alice_id, last).await.unwrap());

    // Concurrent changes of one user's rules are all kept.
    let puts: Vec<_> = (0..8)
        .map(|n| {
            let request = server.raw(http::Method::PUT, &format!("{RULES}/content/c{n}")).bearer_auth(&alice.access_token);
            tokio::spawn(request.body(json!({"pattern": "x", "actions": []}).to_string()).send())
        })
        .collect();
    for put in puts {
        assert_eq!(put.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    let content = ids(&server, &alice.access_token, "content").await;
    assert_eq!(content.len(), 9, "{content:?}");
}
