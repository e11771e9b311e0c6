//! Push rules as the client API shows them (`/pushrules/`, `m.push_rules`
//! account data, in `/sync` too), as Synapse shows them: every kind is
//! listed, empty or not, and a user rule's highlight tweak keeps
//! `"value": true`.
//!
//! Rules are stored as ruma's `Ruleset`, which forgets whether a highlight
//! tweak's `true` was written out: user rules always show it (Synapse echoes
//! what the client sent, and clients send it), server-default rules never
//! (as Synapse's base rules). Either form means the same.

use ruma::push::Ruleset;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// The spec's kinds, in Synapse's order.
const KINDS: [&str; 5] = ["override", "content", "room", "sender", "underride"];

/// The `global` scope: an object with every kind.
pub fn global(ruleset: &Ruleset) -> Value {
    let mut scope = match serde_json::to_value(ruleset) {
        Ok(Value::Object(scope)) => scope,
        _ => Map::new(),
    };
    for kind in KINDS {
        let rules = scope.entry(kind).or_insert_with(|| json!([]));
        if let Some(rules) = rules.as_array_mut() {
            rules.iter_mut().for_each(explicit_highlight);
        }
    }
    Value::Object(scope)
}

/// One rule, as `GET /pushrules/global/{kind}/{ruleId}` shows it.
pub fn rule(rule: &impl Serialize) -> Value {
    let mut value = serde_json::to_value(rule).unwrap_or_default();
    explicit_highlight(&mut value);
    value
}

/// Writes out a user rule's `"value": true` of its highlight tweak.
fn explicit_highlight(rule: &mut Value) {
    if rule["rule_id"].as_str().is_none_or(|id| id.starts_with('.')) {
        return;
    }
    let Some(actions) = rule.get_mut("actions").and_then(Value::as_array_mut) else { return };
    for action in actions {
        if let Some(tweak) = action.as_object_mut()
            && tweak.get("set_tweak").and_then(Value::as_str) == Some("highlight")
        {
            tweak.entry("value").or_insert(Value::Bool(true));
        }
    }
}

#[cfg(test)]
mod tests {
    use ruma::{
        push::{Action, HighlightTweakValue, NewPushRule, NewSimplePushRule, Tweak},
        user_id,
    };

    use super::*;

    #[test]
    fn every_kind_is_listed_and_user_rules_keep_their_highlight_value() {
        let mut ruleset = Ruleset::server_default(user_id!("@alice:example.org"));
        let actions = vec![Action::Notify, Action::SetTweak(Tweak::Highlight(HighlightTweakValue::Yes))];
        let rule = NewPushRule::Sender(NewSimplePushRule::new(ruma::owned_user_id!("@bob:example.org"), actions));
        ruleset.insert(rule, None, None).expect("inserted");
        ruleset.content.clear();
        let global = global(&ruleset);
        for kind in KINDS {
            assert!(global[kind].is_array(), "{kind} listed");
        }
        assert_eq!(global["content"], json!([]));
        assert_eq!(global["sender"][0]["actions"][1], json!({"set_tweak": "highlight", "value": true}));
        let default_highlight = global["override"].as_array().unwrap().iter().find(|r| r["rule_id"] == ".m.rule.is_user_mention").unwrap();
        let tweak = default_highlight["actions"].as_array().unwrap().iter().find(|action| action["set_tweak"] == "highlight").unwrap();
        assert_eq!(tweak, &json!({"set_tweak": "highlight"}), "server-default rules as Synapse's");
    }
}
