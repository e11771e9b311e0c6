//! The reference pusher plugin: the Matrix Push Gateway API
//! (`POST <data.url>` with `{"notification": ...}`), as Synapse 1.163 sends
//! it, for pushers of kind `http`.
//!
//! ```toml
//! [[plugins]]
//! name = "http-pusher"
//! role = "pusher"
//! path = "plugins/http_pusher.wasm"
//! [plugins.config]
//! app_ids = ["*"]                        # the app ids it delivers for (default: every app)
//! [plugins.capabilities]
//! allowed_outbound_hosts = ["*:*"]       # gateways are user-chosen: any host, under the server's address policy
//! ```
//!
//! `check-pusher` (at `/pushers/set`): `data.url` must be an absolute `http`
//! or `https` URL whose path is `/_matrix/push/v1/notify` (400
//! `M_MISSING_PARAM` otherwise, as Synapse), and the server's address policy
//! must let it be reached (400 `M_INVALID_PARAM`: a loopback or private
//! gateway is refused when the pusher is set, not at every push).
//!
//! `notify`: the body is built by `body`; the gateway's answer is read by
//! `answer` (2xx with `rejected` pushkeys, anything else retried).

mod answer;
mod body;

use weft_plugin_sdk::{
    PluginConfig, PluginError, http, log,
    pusher::{Delivery, Notification, Pusher, PusherError, PusherInfo, Served},
};

/// The one path a push gateway URL may have (Synapse checks it too).
const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

struct HttpPusher {
    app_ids: Vec<String>,
}

impl Pusher for HttpPusher {
    fn new(config: &PluginConfig) -> Result<Self, PluginError> {
        let app_ids = config.strings("app_ids")?;
        Ok(Self { app_ids: if app_ids.is_empty() { vec!["*".into()] } else { app_ids } })
    }

    fn serves(&self) -> Served {
        Served { kinds: vec!["http".into()], app_ids: self.app_ids.clone() }
    }

    fn check_pusher(&self, pusher: &PusherInfo) -> Result<(), PusherError> {
        let url = gateway_url(pusher).map_err(PusherError::missing_param)?;
        match http::check(url) {
            Err(http::Error::Denied(reason)) => {
                Err(PusherError::invalid_param(format!("This server may not send pushes to {url}: {reason} (ask its administrator to allow it)")))
            }
            Err(http::Error::InvalidRequest(reason)) => Err(PusherError::missing_param(format!("'url' is not a valid URL: {reason}"))),
            // A gateway that cannot be resolved right now may be later.
            Err(other) => {
                log::log(log::Level::Info, "the push gateway's address cannot be checked now", &[("url", url), ("error", &format!("{other:?}"))]);
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    fn notify(&self, notification: &Notification) -> Delivery {
        let url = match gateway_url(&notification.pusher) {
            Ok(url) => url,
            Err(problem) => return Delivery::retry(format!("the pusher's data.url is not a push gateway URL: {problem}")),
        };
        let request = http::Request::post(url, body::request(notification).to_string())
            .header("content-type", "application/json")
            .header("user-agent", concat!("weft-http-pusher/", env!("CARGO_PKG_VERSION")));
        answer::read(http::send(&request))
    }
}

/// `data.url` when it is a push gateway URL; else what is wrong with it, in
/// Synapse's words where Synapse checks the same thing.
fn gateway_url(pusher: &PusherInfo) -> Result<&str, String> {
    let url = match pusher.data.get("url") {
        None => return Err("'url' required in data for HTTP pusher".into()),
        Some(url) => url.as_str().ok_or("'url' must be a string")?,
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("'url' must be an absolute http or https URL, not `{url}`"))?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("'url' must be an http or https URL, not {scheme}"));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if authority_end == 0 {
        return Err(format!("'url' has no host: `{url}`"));
    }
    let after = &rest[authority_end..];
    let path = &after[..after.find(['?', '#']).unwrap_or(after.len())];
    if path != NOTIFY_PATH {
        return Err(format!("'url' must have a path of '{NOTIFY_PATH}'"));
    }
    Ok(url)
}

weft_plugin_sdk::export_pusher!(HttpPusher);
