//! `app_service_config_files`: reading the YAML registration files that
//! bridges write, and checking them as Synapse's `load_appservices` does
//! (required keys and their types, a `sender_localpart` that needs no
//! escaping, unique `id` and `as_token`), plus regexes that compile. Every
//! problem names the registration file and the key in it.
//!
//! Weft is stricter than Synapse in three places: a flag that is not a
//! boolean is refused (Synapse takes a non-boolean `rate_limited` as true),
//! `url` must be an absolute http(s) URL when it is not null, and a regex
//! must be one the `regex` crate accepts (no look-around or backreferences).

use std::{collections::BTreeMap, path::PathBuf};

use serde_json::{Map, Value};

use super::ConfigError;
use crate::appservice::{AppService, Namespace, Namespaces};

/// Reads and checks every file; the registrations that are valid, and every
/// problem found.
pub(super) fn load(paths: &[PathBuf], server_name: &str) -> (Vec<AppService>, Vec<ConfigError>) {
    let mut services: Vec<AppService> = Vec::new();
    let mut errors = Vec::new();
    let mut ids: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut tokens: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in paths {
        let error = |key: &str, message: String| ConfigError { file: Some(path.clone()), key: key.to_owned(), message };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                errors.push(error("", format!("cannot read the appservice registration: {e}")));
                continue;
            }
        };
        let parsed = match parse(path, &text, server_name) {
            Ok(parsed) => parsed,
            Err(found) => {
                errors.extend(found);
                continue;
            }
        };
        if let Some(first) = ids.get(&parsed.id) {
            errors.push(error("id", format!("`{}` is also the id of the registration in {}: ids must be unique", parsed.id, first.display())));
            continue;
        }
        if let Some(first) = tokens.get(&parsed.as_token) {
            errors.push(error("as_token", format!("is also the as_token of the registration in {}: tokens must be unique", first.display())));
            continue;
        }
        ids.insert(parsed.id.clone(), path.clone());
        tokens.insert(parsed.as_token.clone(), path.clone());
        services.push(parsed);
    }
    (services, errors)
}

/// What an appservice notifier plugin is given, when its entry does not
/// say otherwise: the registrations' `url`s as its only outbound hosts,
/// private addresses allowed (bridges usually run beside the server; the
/// list holds nothing else), and the instance `notify_appservices_from_worker`
/// names (main when unset) as the one that runs it.
pub(super) fn grant_notifier(config: &mut super::Config) {
    let origins: Vec<String> = config
        .app_services
        .all()
        .iter()
        .filter_map(|service| service.url.as_deref())
        .filter_map(|url| url.parse::<http::Uri>().ok())
        .filter_map(|uri| Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?)))
        .collect();
    let notifier = config.notify_appservices_from_worker.clone().unwrap_or_else(|| super::MAIN_INSTANCE.to_owned());
    for plugin in config.plugins.iter_mut().filter(|plugin| plugin.role == super::PluginRole::AppserviceNotifier) {
        let capabilities = &mut plugin.capabilities;
        if capabilities.allowed_outbound_hosts.is_empty() {
            capabilities.allowed_outbound_hosts = origins.clone();
            capabilities.allow_private_addresses = true;
        }
        if plugin.instances.is_empty() {
            plugin.instances = vec![notifier.clone()];
        }
    }
}

/// One registration from its YAML text.
pub(crate) fn parse(path: &std::path::Path, text: &str, server_name: &str) -> Result<AppService, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut fail = |key: &str, message: String| errors.push(ConfigError { file: Some(path.to_owned()), key: key.to_owned(), message });
    let root: Value = match serde_yaml_ng::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            fail("", format!("not a valid YAML registration: {e}"));
            return Err(errors);
        }
    };
    let Value::Object(root) = root else {
        fail("", "an appservice registration is a YAML mapping of `id`, `url`, `as_token`, ...".into());
        return Err(errors);
    };

    let id = required_string(&root, "id", &mut fail);
    let as_token = required_string(&root, "as_token", &mut fail);
    let hs_token = required_string(&root, "hs_token", &mut fail);
    let sender_localpart = required_string(&root, "sender_localpart", &mut fail);
    let url = match root.get("url") {
        None => {
            fail("url", "required: the appservice's base URL, or `null` for an appservice that receives nothing".into());
            None
        }
        Some(Value::Null) => None,
        Some(Value::String(url)) => {
            let valid = url.parse::<http::Uri>().ok().filter(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some());
            if valid.is_none() {
                fail("url", format!("`{url}` is not an absolute http or https URL"));
            }
            Some(url.trim_end_matches('/').to_owned())
        }
        Some(_) => {
            fail("url", "must be a string or null".into());
            None
        }
    };
    let sender = sender_localpart.as_deref().and_then(|localpart| {
        if !localpart.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '~' | '/')) {
            fail("sender_localpart", format!("`{localpart}` needs characters that must be URL-encoded"));
            return None;
        }
        match ruma::UserId::parse_with_server_name(localpart, <&ruma::ServerName>::try_from(server_name).ok()?) {
            Ok(user_id) => Some(user_id),
            Err(e) => {
                fail("sender_localpart", format!("`{localpart}` does not make a valid user id: {e}"));
                None
            }
        }
    });
    let namespaces = namespaces(root.get("namespaces"), &mut fail);
    let rate_limited = flag(&root, "rate_limited", &mut fail).unwrap_or(true);
    // Every name is checked (each bad one is reported), then any set one counts.
    let ephemeral_flags: Vec<bool> =
        ["receive_ephemeral", "de.sorunome.msc2409.push_ephemeral", "push_ephemeral"].into_iter().filter_map(|key| flag(&root, key, &mut fail)).collect();
    let receive_ephemeral = ephemeral_flags.contains(&true);
    let msc3202 = flag(&root, "org.matrix.msc3202", &mut fail).unwrap_or(false);
    let msc4190 = flag(&root, "io.element.msc4190", &mut fail).unwrap_or(false);
    let protocols = string_list(&root, "protocols", &mut fail);
    let ip_range_whitelist = string_list(&root, "ip_range_whitelist", &mut fail)
        .into_iter()
        .enumerate()
        .filter_map(|(index, range)| {
            let parsed = range.parse::<ipnet::IpNet>().or_else(|_| range.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            parsed.map_err(|_| fail(&format!("ip_range_whitelist[{index}]"), format!("`{range}` is not an address or CIDR range"))).ok()
        })
        .collect();

    match (id, as_token, hs_token, sender, namespaces, errors.is_empty()) {
        (Some(id), Some(as_token), Some(hs_token), Some(sender), Some(namespaces), true) => Ok(AppService {
            file: path.to_owned(),
            id,
            url,
            as_token,
            hs_token,
            sender,
            namespaces,
            rate_limited,
            protocols,
            receive_ephemeral,
            msc3202,
            msc4190,
            ip_range_whitelist,
        }),
        _ => Err(errors),
    }
}

type Fail<'a> = dyn FnMut(&str, String) + 'a;

fn required_string(root: &Map<String, Value>, key: &str, fail: &mut Fail<'_>) -> Option<String> {
    match root.get(key) {
        Some(Value::String(value)) if !value.is_empty() => Some(value.clone()),
        Some(Value::String(_)) => {
            fail(key, "must not be empty".into());
            None
        }
        None | Some(Value::Null) => {
            fail(key, "required: a string".into());
            None
        }
        Some(_) => {
            fail(key, "must be a string".into());
            None
        }
    }
}

fn flag(root: &Map<String, Value>, key: &str, fail: &mut Fail<'_>) -> Option<bool> {
    match root.get(key)? {
        Value::Bool(set) => Some(*set),
        Value::Null => None,
        _ => {
            fail(key, "must be true or false".into());
            None
        }
    }
}

fn string_list(root: &Map<String, Value>, key: &str, fail: &mut Fail<'_>) -> Vec<String> {
    match root.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| match item {
                Value::String(value) => Some(value.clone()),
                _ => {
                    fail(&format!("{key}[{index}]"), "must be a string".into());
                    None
                }
            })
            .collect(),
        Some(_) => {
            fail(key, "must be a list of strings".into());
            Vec::new()
        }
    }
}

fn namespaces(value: Option<&Value>, fail: &mut Fail<'_>) -> Option<Namespaces> {
    let map = match value {
        Some(Value::Object(map)) => map,
        None | Some(Value::Null) => {
            fail("namespaces", "required: a mapping with `users`, `aliases` and `rooms` lists (each may be empty)".into());
            return None;
        }
        Some(_) => {
            fail("namespaces", "must be a mapping with `users`, `aliases` and `rooms` lists".into());
            return None;
        }
    };
    let mut namespaces = Namespaces::default();
    for (kind, target) in [("users", &mut namespaces.users), ("aliases", &mut namespaces.aliases), ("rooms", &mut namespaces.rooms)] {
        let at = format!("namespaces.{kind}");
        let entries = match map.get(kind) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(entries)) => entries,
            Some(_) => {
                fail(&at, "must be a list of `{regex, exclusive}` mappings".into());
                continue;
            }
        };
        for (index, entry) in entries.iter().enumerate() {
            let at = format!("{at}[{index}]");
            let Value::Object(entry) = entry else {
                fail(&at, "must be a mapping with `regex` and `exclusive`".into());
                continue;
            };
            let exclusive = match entry.get("exclusive") {
                Some(Value::Bool(exclusive)) => Some(*exclusive),
                _ => {
                    fail(&format!("{at}.exclusive"), "required: true or false".into());
                    None
                }
            };
            let pattern = match entry.get("regex") {
                Some(Value::String(pattern)) => Some(pattern),
                _ => {
                    fail(&format!("{at}.regex"), "required: a regular expression as a string".into());
                    None
                }
            };
            if let (Some(exclusive), Some(pattern)) = (exclusive, pattern) {
                match Namespace::new(pattern, exclusive) {
                    Ok(namespace) => target.push(namespace),
                    Err(e) => fail(&format!("{at}.regex"), format!("`{pattern}` is not a valid regular expression: {e}")),
                }
            }
        }
    }
    Some(namespaces)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAUTRIX: &str = r##"
id: telegram
url: http://localhost:29317
as_token: "as_secret"
hs_token: "hs_secret"
sender_localpart: telegrambot
namespaces:
    users:
    - regex: "@telegram_.*:example\\.org"
      exclusive: true
    - regex: "@telegrambot:example\\.org"
      exclusive: true
    aliases:
    - regex: "#telegram_.*:example\\.org"
      exclusive: true
rate_limited: false
de.sorunome.msc2409.push_ephemeral: true
receive_ephemeral: true
org.matrix.msc3202: true
protocols: ["telegram"]
"##;

    fn keys(errors: &[ConfigError]) -> Vec<&str> {
        errors.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn a_bridge_registration_is_read() {
        let service = parse("telegram.yaml".as_ref(), MAUTRIX, "example.org").unwrap();
        assert_eq!(service.id, "telegram");
        assert_eq!(service.url.as_deref(), Some("http://localhost:29317"));
        assert_eq!(service.sender.as_str(), "@telegrambot:example.org");
        assert_eq!(service.namespaces.users.len(), 2);
        assert!(service.is_exclusive_alias("#telegram_chat:example.org"));
        assert!(!service.rate_limited && service.receive_ephemeral && service.msc3202 && !service.msc4190);
        assert_eq!(service.protocols, ["telegram"]);
    }

    #[test]
    fn a_null_url_is_allowed_but_a_missing_one_is_not() {
        let null = MAUTRIX.replace("url: http://localhost:29317", "url: null");
        assert_eq!(parse("t.yaml".as_ref(), &null, "example.org").unwrap().url, None);
        let missing = MAUTRIX.replace("url: http://localhost:29317\n", "");
        let errors = parse("t.yaml".as_ref(), &missing, "example.org").unwrap_err();
        assert_eq!(keys(&errors), ["url"]);
        assert_eq!(errors[0].file.as_deref(), Some("t.yaml".as_ref()));
    }

    #[test]
    fn every_problem_is_named_with_its_key() {
        let bad = r##"
id: 5
url: "ftp://x"
hs_token: h
sender_localpart: "bot bot"
rate_limited: "no"
namespaces:
  users:
  - regex: "@(unclosed"
    exclusive: true
  - regex: "@ok_.*"
  aliases: "#x"
"##;
        let errors = parse("bad.yaml".as_ref(), bad, "example.org").unwrap_err();
        let mut found = keys(&errors);
        found.sort();
        assert_eq!(
            found,
            ["as_token", "id", "namespaces.aliases", "namespaces.users[0].regex", "namespaces.users[1].exclusive", "rate_limited", "sender_localpart", "url"]
        );
    }

    #[test]
    fn ids_and_as_tokens_are_unique_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let first = write("a.yaml", MAUTRIX);
        let same_id = write("b.yaml", &MAUTRIX.replace("as_secret", "other"));
        let same_token = write("c.yaml", &MAUTRIX.replace("id: telegram", "id: other"));
        let (services, errors) = load(&[first, same_id.clone(), same_token.clone()], "example.org");
        assert_eq!(services.len(), 1);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!((errors[0].file.as_deref(), errors[0].key.as_str()), (Some(same_id.as_path()), "id"));
        assert_eq!((errors[1].file.as_deref(), errors[1].key.as_str()), (Some(same_token.as_path()), "as_token"));
    }

    #[test]
    fn the_notifier_may_reach_exactly_the_registrations_urls_from_the_notifier_instance() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("a.yaml");
        std::fs::write(&first, MAUTRIX.replace("localhost:29317", "127.0.0.1:9000/base")).unwrap();
        let second = dir.path().join("b.yaml");
        std::fs::write(&second, MAUTRIX.replace("id: telegram", "id: b").replace("as_secret", "b").replace("http://localhost:29317", "null")).unwrap();
        let text = format!(
            "server_name = \"example.org\"\napp_service_config_files = [{:?}, {:?}]\n[[plugins]]\nname = \"n\"\nrole = \"appservice-notifier\"\npath = \"n.wasm\"\n",
            first.display().to_string(),
            second.display().to_string()
        );
        let config = super::super::load_str_with("weft.toml", &text, &|_, _| {}).unwrap();
        assert_eq!(config.app_services.all().len(), 2);
        let plugin = &config.plugins[0];
        assert_eq!(plugin.capabilities.allowed_outbound_hosts, ["http://127.0.0.1:9000"]);
        assert!(plugin.capabilities.allow_private_addresses);
        assert_eq!(plugin.instances, ["main"]);

        let broken =
            text.replace(&format!("{:?}, ", first.display().to_string()), &format!("{:?}, {:?}, ", first.display().to_string(), first.display().to_string()));
        let errors = super::super::load_str_with("weft.toml", &broken, &|_, _| {}).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!((errors.0[0].file.as_deref(), errors.0[0].key.as_str()), (Some(first.as_path()), "id"), "{errors}");
    }
}
