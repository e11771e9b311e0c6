//! Application services: registrations in the configuration, the client
//! side of an appservice (`client`), and transaction delivery through the
//! reference notifier `appservice-http` (`delivery`; to-device messages,
//! device lists, key counts and presence: `encryption`; key claims and
//! queries asked of the appservice, MSC3983/MSC3984: `keys`, and by other
//! servers: `keys_federation`), against `fake`, an
//! appservice that answers as the test says. The real appservice
//! (mautrix-python) is `tests/appservice/bridge.py`, run by tests/run.sh.

mod client;
mod delivery;
mod encryption;
pub mod fake;
mod keys;
mod keys_federation;

use std::path::PathBuf;

use crate::{
    plugins::guest,
    support::{Backend, TestServer},
};

pub const AS_TOKEN: &str = "as-token-bridge";
pub const HS_TOKEN: &str = "hs-token-bridge";

/// A registration as bridges write it, for `@bridge_*` users and
/// `#bridge_*` aliases (exclusive), with `extra` YAML lines.
pub fn registration(id: &str, url: Option<&str>, as_token: &str, extra: &str) -> String {
    let url = url.map_or("null".to_owned(), |url| format!("\"{url}\""));
    format!(
        "id: {id}\nurl: {url}\nas_token: {as_token}\nhs_token: {HS_TOKEN}\nsender_localpart: {id}bot\n\
         namespaces:\n  users:\n  - regex: '@{id}_.*'\n    exclusive: true\n  aliases:\n  - regex: '#{id}_.*'\n    exclusive: true\n  rooms: []\n{extra}"
    )
}

/// Writes the registrations into a directory that lives as long as the test.
pub fn files(registrations: &[String]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let paths = registrations
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let path = dir.path().join(format!("registration{index}.yaml"));
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    (dir, paths)
}

/// A server with these registrations and the reference notifier, plus `extra` TOML.
pub async fn server(backend: Backend, registrations: &[String], extra: &str) -> (TestServer, tempfile::TempDir) {
    let (dir, config) = config(registrations, extra);
    (TestServer::builder(backend).config(&config).start().await, dir)
}

/// The configuration of `server`: the registrations' files (kept in the
/// directory) and the reference notifier, plus `extra` TOML.
pub fn config(registrations: &[String], extra: &str) -> (tempfile::TempDir, String) {
    let (dir, paths) = files(registrations);
    let list: Vec<String> = paths.iter().map(|path| format!("{:?}", path.display().to_string())).collect();
    let config = format!(
        "app_service_config_files = [{}]\n{extra}\n[[plugins]]\nname = \"appservice-http\"\nrole = \"appservice-notifier\"\npath = {:?}\n",
        list.join(", "),
        guest("appservice_http").display().to_string()
    );
    (dir, config)
}
