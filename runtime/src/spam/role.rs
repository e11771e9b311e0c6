//! The spam-checker role as the runtime sees it (`Role`): the
//! `spam-checker` world's bindings, how each `SpamCall` runs its export, and
//! the checks on the guest's answer. Fail-closed by default.

use wasmtime::{Store, component::InstancePre};

use super::{RegistrationVerdict, Rejection, RequestInfo, SpamAnswer, SpamCall, SpamVerdict};
use crate::{
    bindings::types,
    config::{OnError, PluginRole},
    host_services::BoxFuture,
    limits::Limits,
    role::{Role, is_errcode},
    state::CallState,
};

mod bindings {
    wasmtime::component::bindgen!({
        world: "weft:plugin/spam-checker@0.1.4",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "weft:plugin/types": crate::bindings::types,
            "weft:plugin/host": crate::bindings::host,
            "weft:plugin/homeserver": crate::bindings::homeserver,
        },
    });
}

use bindings::{SpamChecker, SpamCheckerPre};

/// The spam-checker role.
pub struct Spam;

/// The raw answer of the guest, before it is checked.
pub enum Raw {
    Verdict(types::Verdict),
    Flag(bool),
    Registration(types::RegistrationVerdict),
}

impl Role for Spam {
    const ROLE: PluginRole = PluginRole::SpamChecker;
    const DEFAULT_ON_ERROR: OnError = OnError::FailClosed;

    type Pre = SpamCheckerPre<CallState>;
    type Guest = SpamChecker;
    type Call = SpamCall;
    type Answer = SpamAnswer;
    type Raw = Raw;

    fn pre(pre: InstancePre<CallState>) -> wasmtime::Result<Self::Pre> {
        SpamCheckerPre::new(pre)
    }

    fn instantiate<'a>(pre: &'a Self::Pre, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<Self::Guest>> {
        Box::pin(pre.instantiate_async(store))
    }

    fn describe<'a>(guest: &'a Self::Guest, store: &'a mut Store<CallState>) -> BoxFuture<'a, wasmtime::Result<types::PluginInfo>> {
        Box::pin(guest.weft_plugin_plugin().call_describe(store))
    }

    fn call_name(call: &SpamCall) -> &'static str {
        call.name()
    }

    fn input_size(call: &SpamCall) -> usize {
        call.input_size()
    }

    fn invoke<'a>(guest: &'a SpamChecker, store: &'a mut Store<CallState>, call: &SpamCall) -> BoxFuture<'a, wasmtime::Result<Raw>> {
        invoke(guest, store, call)
    }

    fn check(_call: &SpamCall, raw: Raw, limits: &Limits) -> Result<SpamAnswer, String> {
        Ok(match raw {
            Raw::Verdict(verdict) => SpamAnswer::Verdict(check_verdict(verdict, limits.max_output_bytes)?),
            Raw::Flag(flag) => SpamAnswer::Flag(flag),
            Raw::Registration(types::RegistrationVerdict::Allow) => SpamAnswer::Registration(RegistrationVerdict::Allow),
            Raw::Registration(types::RegistrationVerdict::ShadowBan) => SpamAnswer::Registration(RegistrationVerdict::ShadowBan),
            Raw::Registration(types::RegistrationVerdict::Deny) => SpamAnswer::Registration(RegistrationVerdict::Deny),
        })
    }

    fn answers(call: &SpamCall, answer: &SpamAnswer) -> bool {
        call.answered_by(answer)
    }

    fn failure_answer(call: &SpamCall, policy: OnError) -> SpamAnswer {
        match policy {
            // `retry` is no spam checker's policy (`verify` refuses it): it refuses.
            OnError::FailClosed | OnError::Retry => call.refusing_answer(),
            OnError::FailOpen => call.allowing_answer(),
        }
    }
}

fn invoke<'a>(guest: &'a SpamChecker, store: &'a mut Store<CallState>, call: &SpamCall) -> BoxFuture<'a, wasmtime::Result<Raw>> {
    let s = |id: &dyn ToString| id.to_string();
    let info = |infos: &[RequestInfo]| -> Vec<types::RequestInfo> {
        infos.iter().map(|i| types::RequestInfo { user_agent: i.user_agent.clone(), ip: i.ip.clone() }).collect()
    };
    let g = guest.weft_plugin_spam_checks();
    macro_rules! run {
        ($wrap:path, $body:expr) => {
            Box::pin(async move { $body.await.map($wrap) })
        };
    }
    match call {
        SpamCall::CheckEventForSpam { event } => {
            let event = event.to_wit();
            run!(Raw::Verdict, g.call_check_event_for_spam(store, &event))
        }
        SpamCall::ShouldDropFederatedEvent { event } => {
            let event = event.to_wit();
            run!(Raw::Flag, g.call_should_drop_federated_event(store, &event))
        }
        SpamCall::UserMayJoinRoom { user, room, is_invited } => {
            let (user, room, is_invited) = (s(user), s(room), *is_invited);
            run!(Raw::Verdict, g.call_user_may_join_room(store, &user, &room, is_invited))
        }
        SpamCall::UserMayInvite { inviter, invitee, room } => {
            let (inviter, invitee, room) = (s(inviter), s(invitee), s(room));
            run!(Raw::Verdict, g.call_user_may_invite(store, &inviter, &invitee, &room))
        }
        SpamCall::FederatedUserMayInvite { event } => {
            let event = event.to_wit();
            run!(Raw::Verdict, g.call_federated_user_may_invite(store, &event))
        }
        SpamCall::UserMaySend3pidInvite { inviter, medium, address, room } => {
            let (inviter, medium, address, room) = (s(inviter), medium.clone(), address.clone(), s(room));
            run!(Raw::Verdict, g.call_user_may_send_3pid_invite(store, &inviter, &medium, &address, &room))
        }
        SpamCall::UserMayCreateRoom { user, room_config } => {
            let (user, room_config) = (s(user), room_config.to_string());
            run!(Raw::Verdict, g.call_user_may_create_room(store, &user, &room_config))
        }
        SpamCall::UserMayCreateRoomAlias { user, alias } => {
            let (user, alias) = (s(user), s(alias));
            run!(Raw::Verdict, g.call_user_may_create_room_alias(store, &user, &alias))
        }
        SpamCall::UserMayPublishRoom { user, room } => {
            let (user, room) = (s(user), s(room));
            run!(Raw::Verdict, g.call_user_may_publish_room(store, &user, &room))
        }
        SpamCall::UserMaySendStateEvent { user, room, event_type, state_key, content } => {
            let (user, room, event_type, state_key, content) = (s(user), s(room), event_type.clone(), state_key.clone(), content.to_string());
            run!(Raw::Verdict, g.call_user_may_send_state_event(store, &user, &room, &event_type, &state_key, &content))
        }
        SpamCall::CheckUsernameForSpam { profile, requester } => {
            let profile =
                types::UserProfile { user_id: s(&profile.user_id), display_name: profile.display_name.clone(), avatar_url: profile.avatar_url.clone() };
            let requester = s(requester);
            run!(Raw::Flag, g.call_check_username_for_spam(store, &profile, &requester))
        }
        SpamCall::CheckRegistrationForSpam { email, username, request_info, auth_provider_id } => {
            let (email, username, request_info, provider) = (email.clone(), username.clone(), info(request_info), auth_provider_id.clone());
            run!(Raw::Registration, g.call_check_registration_for_spam(store, email.as_deref(), username.as_deref(), &request_info, provider.as_deref()))
        }
        SpamCall::CheckMediaFileForSpam { file } => {
            let file = types::MediaInfo {
                origin: file.origin.clone(),
                uploader: file.uploader.as_ref().map(ToString::to_string),
                content_type: file.content_type.clone(),
                filename: file.filename.clone(),
                length: file.length,
                head: file.head.clone(),
            };
            run!(Raw::Verdict, g.call_check_media_file_for_spam(store, &file))
        }
        SpamCall::CheckLoginForSpam { user, device_id, initial_display_name, request_info, auth_provider_id } => {
            let (user, device_id, display_name, request_info, provider) =
                (s(user), device_id.clone(), initial_display_name.clone(), info(request_info), auth_provider_id.clone());
            run!(Raw::Verdict, g.call_check_login_for_spam(store, &user, device_id.as_deref(), display_name.as_deref(), &request_info, provider.as_deref()))
        }
    }
}

/// Checks a guest's verdict: a plausible errcode, JSON fields that do not
/// overwrite `errcode` or `error`, and the whole within `max_output_bytes`.
fn check_verdict(verdict: types::Verdict, max_output: u64) -> Result<SpamVerdict, String> {
    let rejection = match verdict {
        types::Verdict::Allow => return Ok(SpamVerdict::Allow),
        types::Verdict::Reject(rejection) => rejection,
    };
    let size = rejection.errcode.len()
        + rejection.message.as_ref().map_or(0, String::len)
        + rejection.fields.iter().map(|f| f.key.len() + f.json_value.len()).sum::<usize>();
    if size as u64 > max_output {
        return Err(format!("the rejection is {size} bytes, more than max_output_bytes ({max_output})"));
    }
    let code = &rejection.errcode;
    if !is_errcode(code) {
        return Err(format!("`{}` is not an errcode (such as M_FORBIDDEN)", code.escape_debug()));
    }
    let mut fields = serde_json::Map::new();
    for field in rejection.fields {
        if field.key == "errcode" || field.key == "error" || field.key.is_empty() {
            return Err(format!("the extra field `{}` is not allowed", field.key.escape_debug()));
        }
        let value = serde_json::from_str(&field.json_value).map_err(|_| format!("the extra field `{}` is not JSON", field.key.escape_debug()))?;
        fields.insert(field.key, value);
    }
    Ok(SpamVerdict::Reject(Rejection { errcode: rejection.errcode, message: rejection.message, fields }))
}
