//! The reference appservice-notifier plugin: the Matrix Application Service
//! API as Synapse 1.163 speaks it, to each registration's `url`, with its
//! `hs_token` as `Authorization: Bearer` (never in the query string).
//!
//! ```toml
//! [[plugins]]
//! name = "appservice-http"
//! role = "appservice-notifier"
//! path = "plugins/appservice_http.wasm"
//! [plugins.capabilities]
//! allowed_outbound_hosts = ["http://127.0.0.1:29317"]   # every registration's url (weft's zero-setup config lists them)
//! allow_private_addresses = true                        # bridges usually run beside the server
//! ```
//!
//! Besides the Application Service API's endpoints it makes the MSC3983
//! and MSC3984 requests (`POST /_matrix/app/unstable/org.matrix.msc3983/keys/claim`
//! and `.../org.matrix.msc3984/keys/query`, the optional `appservice-keys`
//! export of WIT 0.1.4), when the server asks.
//!
//! Every export sends one request and answers the status and body as they
//! came (the server decides what they mean); a request that could not be
//! sent, or got no answer, is a `NoReply`. Path segments (user ids,
//! aliases, protocols, transaction ids) are percent-encoded.

use weft_plugin_sdk::{
    PluginConfig, PluginError,
    appservice::{AppserviceNotifier, NoReply, Outcome, Registration, Reply, ThirdpartyKind},
    http,
};

const PREFIX: &str = "/_matrix/app/v1";
/// Where the MSC3983/MSC3984 endpoints are, as Synapse calls them.
const UNSTABLE: &str = "/_matrix/app/unstable";

struct AppserviceHttp;

impl AppserviceNotifier for AppserviceHttp {
    fn new(_config: &PluginConfig) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn push_transaction(&self, registration: &Registration, txn_id: &str, body: &str) -> Outcome {
        let url = format!("{}{PREFIX}/transactions/{}", registration.url, encode(txn_id));
        let request = http::Request { method: "PUT".into(), url, headers: Vec::new(), body: body.as_bytes().to_vec() };
        send(registration, request.header("content-type", "application/json"))
    }

    fn query_user(&self, registration: &Registration, user_id: &str) -> Outcome {
        send(registration, http::Request::get(format!("{}{PREFIX}/users/{}", registration.url, encode(user_id))))
    }

    fn query_alias(&self, registration: &Registration, alias: &str) -> Outcome {
        send(registration, http::Request::get(format!("{}{PREFIX}/rooms/{}", registration.url, encode(alias))))
    }

    fn get_protocol(&self, registration: &Registration, protocol: &str) -> Outcome {
        send(registration, http::Request::get(format!("{}{PREFIX}/thirdparty/protocol/{}", registration.url, encode(protocol))))
    }

    fn query_thirdparty(&self, registration: &Registration, kind: ThirdpartyKind, protocol: &str, fields: &[(String, String)]) -> Outcome {
        let mut url = format!("{}{PREFIX}/thirdparty/{}", registration.url, kind.as_str());
        if !protocol.is_empty() {
            url.push('/');
            url.push_str(&encode(protocol));
        }
        let query: Vec<String> = fields.iter().map(|(key, value)| format!("{}={}", encode(key), encode(value))).collect();
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        send(registration, http::Request::get(url))
    }

    fn ping(&self, registration: &Registration, txn_id: Option<&str>) -> Outcome {
        let body = match txn_id {
            Some(txn_id) => weft_plugin_sdk::serde_json::json!({ "transaction_id": txn_id }),
            None => weft_plugin_sdk::serde_json::json!({}),
        };
        let request = http::Request::post(format!("{}{PREFIX}/ping", registration.url), body.to_string());
        send(registration, request.header("content-type", "application/json"))
    }

    fn claim_keys(&self, registration: &Registration, body: &str) -> Outcome {
        post_json(registration, format!("{}{UNSTABLE}/org.matrix.msc3983/keys/claim", registration.url), body)
    }

    fn query_keys(&self, registration: &Registration, body: &str) -> Outcome {
        post_json(registration, format!("{}{UNSTABLE}/org.matrix.msc3984/keys/query", registration.url), body)
    }
}

fn post_json(registration: &Registration, url: String, body: &str) -> Outcome {
    send(registration, http::Request::post(url, body.to_owned()).header("content-type", "application/json"))
}

fn send(registration: &Registration, request: http::Request) -> Outcome {
    let request = request
        .header("authorization", format!("Bearer {}", registration.hs_token))
        .header("user-agent", concat!("weft-appservice-http/", env!("CARGO_PKG_VERSION")));
    match http::send(&request) {
        Ok(response) => Ok(Reply { status: response.status, body: String::from_utf8_lossy(&response.body).into_owned() }),
        Err(http::Error::Timeout) => Err(NoReply::Timeout),
        Err(http::Error::Denied(reason)) => Err(NoReply::Unreachable(format!("the appservice may not be reached: {reason}"))),
        Err(http::Error::Unreachable(reason)) => Err(NoReply::Unreachable(reason)),
        Err(http::Error::InvalidRequest(reason)) => Err(NoReply::Unreachable(format!("the request was refused: {reason}"))),
        Err(http::Error::TooLarge) => Err(NoReply::Unreachable("the appservice's answer is too large".into())),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, as
/// Python's `urllib.parse.quote(s, safe="")`.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

weft_plugin_sdk::export_appservice_notifier!(AppserviceHttp);

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(super::encode("@irc_bob:example.org"), "%40irc_bob%3Aexample.org");
        assert_eq!(super::encode("#chan/x:example.org"), "%23chan%2Fx%3Aexample.org");
        assert_eq!(super::encode("42"), "42");
    }
}
