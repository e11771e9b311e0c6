//! The body of `POST /_matrix/push/v1/notify`, field for field as Synapse's
//! HTTP pusher sends it:
//!
//! - full format: `id` (the deprecated copy of the event id), `event_id`,
//!   `room_id`, `type`, `sender`, `prio`, `counts`, `devices` (with
//!   `tweaks`); for a member state event `membership` and `user_is_target`;
//!   `content` when the server sent it and it is not empty;
//!   `sender_display_name` and `room_name` when known and not empty (no
//!   `room_alias`: Synapse folds it into `room_name`);
//! - `event_id_only`: `event_id`, `room_id`, `prio`, `counts`, `devices`
//!   (without `tweaks`);
//! - a badge update: `{"id": "", "type": null, "sender": "", "counts":
//!   {...}, "devices": [...]}`, no `prio`, no `tweaks`.
//!
//! `devices` is the one pusher: `app_id`, `pushkey`, `pushkey_ts` in
//! seconds, and `data` without `url`. `counts` holds what the server sent
//! (`unread`, `missed_calls`), and is left out when it sent neither.

use weft_plugin_sdk::{
    pusher::{Notification, Subject},
    serde_json::{Map, Value, json},
};

pub fn request(n: &Notification) -> Value {
    let pusher = &n.pusher;
    let mut data = pusher.data.clone();
    data.remove("url");
    let mut device = json!({"app_id": pusher.app_id, "pushkey": pusher.pushkey, "pushkey_ts": pusher.pushkey_ts_secs(), "data": data});
    let mut counts = Map::new();
    if let Some(unread) = n.counts.unread {
        counts.insert("unread".into(), unread.into());
    }
    if let Some(missed_calls) = n.counts.missed_calls {
        counts.insert("missed_calls".into(), missed_calls.into());
    }
    let mut notification = match &n.subject {
        Subject::Badge => json!({"id": "", "type": null, "sender": ""}),
        Subject::EventIdOnly { event_id, room_id } => json!({"event_id": event_id, "room_id": room_id, "prio": n.priority.as_str()}),
        Subject::Event(event) => {
            device["tweaks"] = Value::Object(n.tweaks.clone());
            let mut fields = json!({
                "id": event.event_id, "event_id": event.event_id, "room_id": event.room_id,
                "type": event.event_type, "sender": event.sender, "prio": n.priority.as_str(),
            });
            if let Some(membership) = &event.membership {
                fields["membership"] = membership.as_str().into();
                fields["user_is_target"] = event.user_is_target.unwrap_or(false).into();
            }
            if let Some(content) = event.content.as_ref().filter(|c| c.as_object().is_none_or(|o| !o.is_empty())) {
                fields["content"] = content.clone();
            }
            if let Some(name) = event.sender_display_name.as_deref().filter(|n| !n.is_empty()) {
                fields["sender_display_name"] = name.into();
            }
            if let Some(name) = event.room_name.as_deref().filter(|n| !n.is_empty()) {
                fields["room_name"] = name.into();
            }
            fields
        }
    };
    if !counts.is_empty() {
        notification["counts"] = Value::Object(counts);
    }
    notification["devices"] = json!([device]);
    json!({"notification": notification})
}
