//! `/pushrules/`: reading the user's push rules (all, or one rule, its
//! `enabled` or its `actions`), adding or replacing a user rule (with
//! `before`/`after`), deleting one, and enabling, disabling or changing the
//! actions of any rule, server-default rules included (how clients mute).
//! Only the `global` scope exists, as in the spec and Synapse. Rules are
//! shown as `push::client_format` writes them (every kind listed).
//!
//! Errors as Synapse gives them, except that its `M_UNKNOWN` is made precise
//! where the cause is a bad parameter: an unknown kind, a rule id starting
//! with `.` or holding a slash, an unknown action, or placing a rule relative
//! to a server-default rule are 400 `M_INVALID_PARAM`. A `before`/`after`
//! naming no rule is 400 `M_UNKNOWN` (the spec's example and Synapse); a rule
//! not found, including deleting a server-default rule, is 404 `M_NOT_FOUND`.

use ruma::{
    api::client::push::{
        PushRule, RuleKind, delete_pushrule, get_pushrule, get_pushrule_actions, get_pushrule_enabled, get_pushrules_all, get_pushrules_global_scope,
        set_pushrule, set_pushrule_actions, set_pushrule_enabled,
    },
    push::{Action, InsertPushRuleError, NewPushRule, RemovePushRuleError, Ruleset},
    serde::JsonObject,
};
use serde_json::{Value, json};

use weft_services::push::client_format;
use weft_services::services::AppState;
use weft_storage::Stream;

use super::listed::{Reshaped, json_body};
use crate::{
    error::{ApiError, ApiResult},
    ruma_route::Ruma,
};

pub async fn all(state: AppState, request: Ruma<Reshaped<get_pushrules_all::v3::Request>>) -> ApiResult<json_body::Response> {
    let sender = request.sender()?;
    let ruleset = state.storage.push_ruleset(&sender.user_id).await?;
    Ok(json_body::Response::new(object(json!({"global": client_format::global(&ruleset)}))))
}

pub async fn global(state: AppState, request: Ruma<Reshaped<get_pushrules_global_scope::v3::Request>>) -> ApiResult<json_body::Response> {
    let sender = request.sender()?;
    let ruleset = state.storage.push_ruleset(&sender.user_id).await?;
    Ok(json_body::Response::new(object(client_format::global(&ruleset))))
}

pub async fn get(state: AppState, request: Ruma<Reshaped<get_pushrule::v3::Request>>) -> ApiResult<json_body::Response> {
    let rule = find(&state, &request, &request.body.0.kind, &request.body.0.rule_id).await?;
    Ok(json_body::Response::new(object(client_format::rule(&rule))))
}

pub async fn get_enabled(state: AppState, request: Ruma<get_pushrule_enabled::v3::Request>) -> ApiResult<get_pushrule_enabled::v3::Response> {
    let rule = find(&state, &request, &request.body.kind, &request.body.rule_id).await?;
    Ok(get_pushrule_enabled::v3::Response::new(rule.enabled))
}

pub async fn get_actions(state: AppState, request: Ruma<Reshaped<get_pushrule_actions::v3::Request>>) -> ApiResult<json_body::Response> {
    let rule = find(&state, &request, &request.body.0.kind, &request.body.0.rule_id).await?;
    Ok(json_body::Response::new(object(json!({"actions": client_format::rule(&rule)["actions"]}))))
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(object) => object,
        _ => JsonObject::new(),
    }
}

pub async fn set(state: AppState, request: Ruma<set_pushrule::v3::Request>) -> ApiResult<set_pushrule::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    let rule_id = body.rule.rule_id();
    if rule_id.starts_with('.') {
        return Err(ApiError::invalid_param("Rule ids starting with '.' are reserved for server-default rules"));
    }
    if rule_id.contains(['/', '\\']) {
        return Err(ApiError::invalid_param("Rule ids may not contain slashes"));
    }
    check_actions(rule_actions(&body.rule))?;
    // An empty `before` or `after` is no constraint, as in Synapse.
    let before = body.before.as_deref().filter(|id| !id.is_empty());
    let after = body.after.as_deref().filter(|id| !id.is_empty());
    state.storage.change_push_ruleset(&sender.user_id, |rules| insert(rules, &body.rule, after, before)).await?.map_err(|error| match error {
        InsertPushRuleError::UnknownRuleId => ApiError::unknown(http::StatusCode::BAD_REQUEST, "before/after rule not found"),
        other => ApiError::invalid_param(other.to_string()),
    })?;
    state.stream_advanced(Stream::PushRules);
    Ok(set_pushrule::v3::Response::new())
}

pub async fn delete(state: AppState, request: Ruma<delete_pushrule::v3::Request>) -> ApiResult<delete_pushrule::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    known_kind(&body.kind)?;
    state
        .storage
        .change_push_ruleset(&sender.user_id, |rules| rules.remove(body.kind.clone(), &body.rule_id))
        .await?
        // Server-default rules are not the user's to delete: Synapse does not find them either.
        .map_err(|_: RemovePushRuleError| not_found())?;
    state.stream_advanced(Stream::PushRules);
    Ok(delete_pushrule::v3::Response::new())
}

pub async fn set_enabled(state: AppState, request: Ruma<set_pushrule_enabled::v3::Request>) -> ApiResult<set_pushrule_enabled::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    known_kind(&body.kind)?;
    state
        .storage
        .change_push_ruleset(&sender.user_id, |rules| rules.set_enabled(body.kind.clone(), &body.rule_id, body.enabled))
        .await?
        .map_err(|_| not_found())?;
    state.stream_advanced(Stream::PushRules);
    Ok(set_pushrule_enabled::v3::Response::new())
}

pub async fn set_actions(state: AppState, request: Ruma<set_pushrule_actions::v3::Request>) -> ApiResult<set_pushrule_actions::v3::Response> {
    let sender = request.sender()?;
    let body = &request.body;
    known_kind(&body.kind)?;
    check_actions(&body.actions)?;
    state
        .storage
        .change_push_ruleset(&sender.user_id, |rules| rules.set_actions(body.kind.clone(), &body.rule_id, body.actions.clone()))
        .await?
        .map_err(|_| not_found())?;
    state.stream_advanced(Stream::PushRules);
    Ok(set_pushrule_actions::v3::Response::new())
}

/// `Ruleset::insert`, except that a rule already there and given a new place
/// is taken out first: ruma moves an existing rule one place too far forward
/// (and panics past the end). The rule keeps its enabled state either way.
fn insert(rules: &mut Ruleset, rule: &NewPushRule, after: Option<&str>, before: Option<&str>) -> Result<(), InsertPushRuleError> {
    let (kind, rule_id) = (rule.kind(), rule.rule_id());
    let moved = after.is_some() || before.is_some();
    let was_enabled = rules.get(kind.clone(), rule_id).map(|existing| existing.enabled());
    if moved && was_enabled.is_some() {
        // Cannot fail: the rule exists and is not a server-default one (its id has no dot).
        let _ = rules.remove(kind.clone(), rule_id);
    }
    rules.insert(rule.clone(), after, before)?;
    if was_enabled == Some(false) {
        let _ = rules.set_enabled(kind, rule_id, false);
    }
    Ok(())
}

/// One of the user's rules, as the client API shows it.
async fn find<R>(state: &AppState, request: &Ruma<R>, kind: &RuleKind, rule_id: &str) -> ApiResult<PushRule> {
    let sender = request.sender()?;
    known_kind(kind)?;
    let rules: Ruleset = state.storage.push_ruleset(&sender.user_id).await?;
    rules.get(kind.clone(), rule_id).map(PushRule::from).ok_or_else(not_found)
}

/// The five kinds of the spec; ruma parses any other string as a custom kind.
fn known_kind(kind: &RuleKind) -> ApiResult<()> {
    match kind {
        RuleKind::Override | RuleKind::Underride | RuleKind::Sender | RuleKind::Room | RuleKind::Content => Ok(()),
        other => Err(ApiError::invalid_param(format!("Unknown rule kind `{other}`"))),
    }
}

fn rule_actions(rule: &NewPushRule) -> &[Action] {
    match rule {
        NewPushRule::Override(rule) | NewPushRule::Underride(rule) => &rule.actions,
        NewPushRule::Content(rule) => &rule.actions,
        NewPushRule::Room(rule) => &rule.actions,
        NewPushRule::Sender(rule) => &rule.actions,
        _ => &[],
    }
}

/// Synapse's check: `notify`, a `set_tweak` object, or the legacy
/// `dont_notify` and `coalesce` (accepted and ignored).
fn check_actions(actions: &[Action]) -> ApiResult<()> {
    for action in actions {
        let known = match serde_json::to_value(action) {
            Ok(serde_json::Value::String(name)) => matches!(name.as_str(), "notify" | "dont_notify" | "coalesce"),
            Ok(serde_json::Value::Object(object)) => object.contains_key("set_tweak"),
            _ => false,
        };
        if !known {
            return Err(ApiError::invalid_param(format!("Unrecognised action {}", serde_json::to_string(action).unwrap_or_default())));
        }
    }
    Ok(())
}

fn not_found() -> ApiError {
    ApiError::not_found("The push rule was not found")
}
