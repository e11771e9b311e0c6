//! What the gateway's answer means for the notification:
//!
//! - 2xx with a JSON object: delivered, or `rejected` when its `rejected`
//!   list names pushkeys (the server deletes the pusher when its own is
//!   there);
//! - 2xx with a body that is not a JSON object: retried, as Synapse does
//!   (the specification's answer always has `rejected`);
//! - any other status: retried (the specification: "If the endpoint returns
//!   an HTTP error code, the homeserver SHOULD retry for a reasonable amount
//!   of time using exponential backoff"), not before its `Retry-After`
//!   seconds when it sends one;
//! - no answer (timeout, refused connection, an address the server's policy
//!   refuses): retried.

use weft_plugin_sdk::{http, pusher::Delivery, serde_json::Value};

pub fn read(response: Result<http::Response, http::Error>) -> Delivery {
    let response = match response {
        Ok(response) => response,
        Err(http::Error::Timeout) => return Delivery::retry("the push gateway did not answer in time"),
        Err(http::Error::Denied(reason)) => return Delivery::retry(format!("the push gateway may not be reached: {reason}")),
        Err(http::Error::Unreachable(reason)) => return Delivery::retry(format!("the push gateway cannot be reached: {reason}")),
        Err(http::Error::InvalidRequest(reason)) => return Delivery::retry(format!("the request was refused: {reason}")),
        Err(http::Error::TooLarge) => return Delivery::retry("the push gateway's answer is too large"),
    };
    let status = response.status;
    if !(200..300).contains(&status) {
        let after_ms = response
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, value)| value.trim().parse::<u64>().ok())
            .map(|secs| secs.saturating_mul(1000));
        let excerpt: String = String::from_utf8_lossy(&response.body).chars().take(200).collect();
        return Delivery::Retry { after_ms, reason: format!("the push gateway answered {status}: {excerpt}") };
    }
    match weft_plugin_sdk::serde_json::from_slice::<Value>(&response.body) {
        Ok(Value::Object(answer)) => {
            let rejected: Vec<String> =
                answer.get("rejected").and_then(Value::as_array).into_iter().flatten().filter_map(|k| k.as_str().map(str::to_owned)).collect();
            if rejected.is_empty() { Delivery::Delivered } else { Delivery::Rejected(rejected) }
        }
        _ => Delivery::retry(format!("the push gateway answered {status} without a JSON object")),
    }
}
