//! From the user's claims to what the host registers, as Synapse's default
//! mapping provider does: Jinja templates over `user` (the claims) for the
//! subject, localpart, display name, email and picture, the localpart made
//! a valid Matrix localpart (`map_username_to_mxid_localpart`'s rules), and
//! `attribute_requirements`.
//!
//! Templates are MiniJinja with Python's string methods (`.split('@')[0]`,
//! `.lower()`), Jinja's filters (`| lower`) and Synapse's own
//! `localpart_from_email`; a missing claim renders as nothing, as Synapse's
//! `finalize` makes `None` do.

use minijinja::{Environment, Value as Template};
use serde_json::{Map, Value};
use weft_plugin_sdk::sso::{Refusal, RefusalKind, UserAttributes};

use crate::config::{AttributeRequirement, Config, MappingConfig};

/// The templates of one mapping, compiled.
pub struct Mapping {
    env: Environment<'static>,
    confirm_localpart: bool,
}

/// The templates' names in the environment.
const SUBJECT: &str = "subject";
const LOCALPART: &str = "localpart";
const DISPLAY_NAME: &str = "display_name";
const EMAIL: &str = "email";
const PICTURE: &str = "picture";

impl Mapping {
    /// Compiles the configured templates; `Err` names the one that is not valid.
    pub fn new(config: &MappingConfig) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("localpart_from_email", |email: String| email.rsplit_once('@').map_or(email.clone(), |(local, _)| local.to_owned()));
        env.set_formatter(|out, state, value| if value.is_none() || value.is_undefined() { Ok(()) } else { minijinja::escape_formatter(out, state, value) });
        let subject = match (&config.subject_template, &config.subject_claim) {
            (Some(template), _) => template.clone(),
            (None, Some(claim)) => format!("{{{{ user[{}] }}}}", serde_json::Value::String(claim.clone())),
            (None, None) => "{{ user.sub }}".into(),
        };
        let templates = [
            (SUBJECT, Some(subject)),
            (LOCALPART, config.localpart_template.clone()),
            (DISPLAY_NAME, config.display_name_template.clone()),
            (EMAIL, config.email_template.clone()),
            (PICTURE, Some(config.picture_template.clone().unwrap_or_else(|| "{{ user.picture }}".into()))),
        ];
        for (name, source) in templates {
            if let Some(source) = source {
                env.add_template_owned(name, source).map_err(|e| format!("user_mapping_provider.config.{name}_template is not a valid template: {e}"))?;
            }
        }
        Ok(Self { env, confirm_localpart: config.confirm_localpart })
    }

    /// The user's attributes from `claims`.
    pub fn map(&self, claims: &Map<String, Value>) -> Result<UserAttributes, Refusal> {
        let user = Template::from_serialize(claims);
        let subject = self.render(SUBJECT, &user)?.unwrap_or_default();
        if subject.is_empty() {
            return Err(Refusal::new(RefusalKind::InvalidClaims, "The identity provider did not say who the user is (the subject is empty)"));
        }
        let localpart = self.render(LOCALPART, &user)?.map(|name| mxid_localpart(&name)).filter(|name| !name.is_empty());
        Ok(UserAttributes {
            subject,
            localpart,
            confirm_localpart: self.confirm_localpart,
            display_name: self.render(DISPLAY_NAME, &user)?,
            emails: self.render(EMAIL, &user)?.into_iter().collect(),
            picture: self.render(PICTURE, &user)?,
        })
    }

    /// A template's output, trimmed; `None` when it is not configured or
    /// renders nothing.
    fn render(&self, name: &str, user: &Template) -> Result<Option<String>, Refusal> {
        let Ok(template) = self.env.get_template(name) else { return Ok(None) };
        let text = template.render(minijinja::context! { user => user }).map_err(|e| {
            Refusal::new(RefusalKind::InvalidClaims, format!("The {} template cannot be rendered from the user's claims: {e}", name.replace('_', " ")))
        })?;
        let text = text.trim();
        Ok((!text.is_empty()).then(|| text.to_owned()))
    }
}

/// A valid Matrix localpart from any name, by Synapse's rules
/// (`map_username_to_mxid_localpart`): ASCII lowercased; every byte other
/// than `a-z 0-9 _ - . / +` written `=xx` (hex); a leading `_` as `=5f`.
pub fn mxid_localpart(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes().map(|b| b.to_ascii_lowercase()) {
        if byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"_-./+".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("={byte:02x}"));
        }
    }
    match out.strip_prefix('_') {
        Some(rest) => format!("=5f{rest}"),
        None => out,
    }
}

/// Whether `claims` meet every requirement: the claim is present and, when
/// values are given, equals one (a list claim: contains one).
pub fn meets(claims: &Map<String, Value>, requirements: &[AttributeRequirement]) -> bool {
    requirements.iter().all(|requirement| {
        let Some(claim) = claims.get(&requirement.attribute) else { return false };
        let allowed: Vec<&str> = match (&requirement.value, &requirement.one_of) {
            (Some(value), _) => vec![value.as_str()],
            (None, Some(values)) => values.iter().map(String::as_str).collect(),
            (None, None) => return !claim.is_null(),
        };
        let matches = |value: &Value| match value {
            Value::String(text) => allowed.contains(&text.as_str()),
            Value::Number(_) | Value::Bool(_) => allowed.contains(&value.to_string().as_str()),
            _ => false,
        };
        match claim {
            Value::Array(items) => items.iter().any(matches),
            single => matches(single),
        }
    })
}

/// The mapping of a configuration, or why its templates are not valid.
pub fn from_config(config: &Config) -> Result<Mapping, String> {
    Mapping::new(&config.user_mapping_provider.config)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims() -> Map<String, Value> {
        json!({"sub": "alice-0001", "preferred_username": "Alice.Liddell", "name": "Alice Liddell", "email": "alice@wonderland.example",
               "given_name": "Alice", "groups": ["staff", "readers"], "level": 3, "admin": null})
        .as_object()
        .unwrap()
        .clone()
    }

    fn mapping(config: Value) -> Mapping {
        Mapping::new(&serde_json::from_value(config).unwrap()).unwrap()
    }

    #[test]
    fn synapse_templates_render_from_the_claims() {
        let user = mapping(json!({
            "localpart_template": "{{ user.preferred_username | lower }}",
            "display_name_template": "{{ user.given_name }} ({{ user.email.split('@')[1] }})",
            "email_template": "{{ user.email }}",
        }))
        .map(&claims())
        .unwrap();
        assert_eq!(user.subject, "alice-0001");
        assert_eq!(user.localpart.as_deref(), Some("alice.liddell"));
        assert_eq!(user.display_name.as_deref(), Some("Alice (wonderland.example)"));
        assert_eq!(user.emails, ["alice@wonderland.example"]);
        assert_eq!(user.picture, None, "no picture claim renders nothing, not `none`");

        let user = mapping(json!({"localpart_template": "{{ user.email | localpart_from_email }}", "subject_claim": "email", "confirm_localpart": true}))
            .map(&claims())
            .unwrap();
        assert_eq!((user.subject.as_str(), user.localpart.as_deref(), user.confirm_localpart), ("alice@wonderland.example", Some("alice"), true));

        let no_localpart = mapping(json!({"localpart_template": "{{ user.nickname }}"})).map(&claims()).unwrap();
        assert_eq!(no_localpart.localpart, None, "a missing claim leaves the choice to the user");
        let refused = mapping(json!({"subject_template": "{{ user.admin }}"})).map(&claims()).unwrap_err();
        assert_eq!(refused.kind, RefusalKind::InvalidClaims);
        assert!(Mapping::new(&serde_json::from_value(json!({"localpart_template": "{{ user.x "})).unwrap()).is_err());
    }

    #[test]
    fn localparts_follow_synapses_mapping() {
        assert_eq!(mxid_localpart("Alice.Liddell"), "alice.liddell");
        assert_eq!(mxid_localpart("jo smith=1"), "jo=20smith=3d1");
        assert_eq!(mxid_localpart("_bot"), "=5fbot");
        assert_eq!(mxid_localpart("zoë"), "zo=c3=ab");
    }

    #[test]
    fn attribute_requirements_need_the_claim_and_a_value() {
        let req = |json: Value| -> Vec<AttributeRequirement> { serde_json::from_value(json).unwrap() };
        assert!(meets(&claims(), &req(json!([{"attribute": "groups", "value": "staff"}]))));
        assert!(meets(&claims(), &req(json!([{"attribute": "groups", "one_of": ["admins", "readers"]}, {"attribute": "given_name", "value": "Alice"}]))));
        assert!(meets(&claims(), &req(json!([{"attribute": "level", "one_of": ["2", "3"]}]))));
        assert!(!meets(&claims(), &req(json!([{"attribute": "groups", "value": "admins"}]))));
        assert!(!meets(&claims(), &req(json!([{"attribute": "department", "value": "x"}]))));
        assert!(!meets(&claims(), &req(json!([{"attribute": "admin"}]))));
        assert!(meets(&claims(), &req(json!([{"attribute": "email"}]))));
    }
}
