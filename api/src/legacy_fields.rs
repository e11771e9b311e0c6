//! Request fields from before r0.4 that Synapse still accepts and ruma's
//! types no longer read: a user-interactive password stage that names its
//! user with a top-level `user` instead of an `identifier`.

use bytes::Bytes;
use serde_json::{Value, json};

/// `body` with a legacy `auth.user` turned into `auth.identifier`, or
/// `body` unchanged when it has none.
pub fn upgrade_auth_user(body: Bytes) -> Bytes {
    if !contains(&body, b"\"auth\"") || !contains(&body, b"\"user\"") {
        return body;
    }
    let Ok(mut request) = serde_json::from_slice::<Value>(&body) else { return body };
    let Some(auth) = request.get_mut("auth").and_then(Value::as_object_mut) else { return body };
    if auth.contains_key("identifier") || auth.get("type").and_then(Value::as_str) != Some("m.login.password") {
        return body;
    }
    let Some(user) = auth.remove("user").filter(Value::is_string) else { return body };
    auth.insert("identifier".into(), json!({"type": "m.id.user", "user": user}));
    serde_json::to_vec(&request).map(Bytes::from).unwrap_or(body)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgraded(body: Value) -> Value {
        serde_json::from_slice(&upgrade_auth_user(Bytes::from(body.to_string()))).unwrap()
    }

    #[test]
    fn a_legacy_user_becomes_an_identifier() {
        let body = json!({"auth": {"type": "m.login.password", "user": "alice", "password": "pw", "session": "s"}});
        assert_eq!(
            upgraded(body),
            json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw", "session": "s"}})
        );
    }

    #[test]
    fn other_bodies_are_left_alone() {
        let current = json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "a"}, "user": "b"}});
        assert_eq!(upgraded(current.clone()), current);
        let dummy = json!({"auth": {"type": "m.login.dummy", "user": "a"}});
        assert_eq!(upgraded(dummy.clone()), dummy);
    }
}
