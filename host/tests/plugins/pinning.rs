//! Plugins pinned to some instances, with real processes
//! (`workers::Deployment`): a check made on worker1 runs on an instance that
//! hosts the plugin, through the internal API, trying the hosts in order;
//! when none answers within the deadline, worker1 applies the plugin's
//! `on_error`, logs it and counts it. The internal endpoint itself needs the
//! replication secret and refuses what is not a call to a plugin it runs.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{guest, message};
use crate::workers::{Deployment, SECRET};

/// A `spam-rules` plugin refusing bodies matching `pattern` with `errcode`.
fn plugin(name: &str, instances: &[&str], on_error: &str, pattern: &str, errcode: &str) -> String {
    format!(
        "[[plugins]]\nname = \"{name}\"\npath = {path:?}\ninstances = {instances:?}\non_error = \"{on_error}\"\n\
         [plugins.limits]\ntimeout_ms = 1000\n[plugins.config]\nbody_patterns = [{pattern:?}]\nerrcode = \"{errcode}\"\n",
        path = guest("spam_rules").display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_pinned_to_one_worker_judges_messages_sent_through_another_and_on_error_applies_when_it_is_down() {
    let plugins = plugin("pin-open", &["worker2"], "fail-open", "(?i)buy now", "W_PIN_OPEN")
        + &plugin("pin-closed", &["worker2", "persister2"], "fail-closed", "(?i)free bitcoin", "W_PIN_CLOSED");
    let mut d = Deployment::start_with(&plugins).await;
    let (alice, _) = d.register("worker1", "alice").await;
    // A room of persister1, which stays up.
    let room = d.room_on_persister("worker1", &alice, 0, json!({})).await;

    let (status, reply) = d.send("worker1", &alice, &room, "t1", "BUY NOW, cheap").await;
    assert_eq!((status, reply["errcode"].as_str()), (403, Some("W_PIN_OPEN")), "{reply}");
    let (status, reply) = d.send("worker1", &alice, &room, "t2", "free bitcoin for all").await;
    assert_eq!((status, reply["errcode"].as_str()), (403, Some("W_PIN_CLOSED")), "{reply}");
    let (status, reply) = d.send("worker1", &alice, &room, "t3", "hello").await;
    assert_eq!(status, 200, "{reply}");
    let ran = |instance| d.metric(instance, "weft_plugin_calls_total", &["plugin=\"pin-open\"", "call=\"check-event-for-spam\""]);
    assert_eq!(ran("worker2").await, Some(3.0), "the plugin ran on worker2");
    assert_eq!(ran("worker1").await, Some(3.0), "worker1 counts the checks it sent");

    // Its only host gone, `pin-open` allows; `pin-closed` fails over to persister2.
    d.kill("worker2");
    let started = Instant::now();
    let (status, reply) = d.send("worker1", &alice, &room, "t4", "buy now, still cheap").await;
    assert_eq!(status, 200, "fail-open lets it through: {reply}");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded by the deadline: {:?}", started.elapsed());
    let (status, reply) = d.send("worker1", &alice, &room, "t5", "free bitcoin again").await;
    assert_eq!((status, reply["errcode"].as_str()), (403, Some("W_PIN_CLOSED")), "persister2 answered: {reply}");
    let unreachable = ["plugin=\"pin-open\"", "reason=\"unreachable\""];
    assert_eq!(d.metric("worker1", "weft_plugin_failures_total", &unreachable).await, Some(2.0), "one per message since");
    let log = d.log("worker1");
    let line = log.lines().find(|line| line.contains("pin-open") && line.contains("unreachable"));
    assert!(line.is_some_and(|line| line.contains("WARN") && line.contains("fail-open") && line.contains("worker2")), "{log}");

    // Both hosts of `pin-closed` gone: every message is refused, with a reason.
    d.kill("persister2");
    let (status, reply) = d.send("worker1", &alice, &room, "t6", "an ordinary message").await;
    assert_eq!((status, reply["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{reply}");
    assert!(reply["error"].as_str().is_some_and(|e| e.contains("spam checker is unavailable")), "{reply}");
    let unreachable = ["plugin=\"pin-closed\"", "reason=\"unreachable\""];
    assert_eq!(d.metric("worker1", "weft_plugin_failures_total", &unreachable).await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_endpoint_needs_the_secret_runs_only_plugins_hosted_there_and_refuses_malformed_calls() {
    let d = Deployment::start_with(&plugin("pin", &["worker2"], "fail-closed", "(?i)buy now", "W_PIN")).await;
    // One route for every role: the callback names the call.
    let post = |instance: &str, plugin: &str, txn: &str, secret: Option<&str>, body: String| {
        let url = format!("{}/_weft/replication/v1/plugins/{plugin}/check-event-for-spam/{txn}", d.replication_url(instance));
        let mut request = d.http.post(url).header("content-type", "application/json").body(body);
        if let Some(secret) = secret {
            request = request.bearer_auth(secret);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let spam = serde_json::to_string(&message("buy now")).unwrap();
    let ham = serde_json::to_string(&message("hello")).unwrap();
    let checks = || d.metric("worker2", "weft_plugin_calls_total", &["plugin=\"pin\"", "call=\"check-event-for-spam\""]);

    for (secret, errcode) in [(None, "M_MISSING_TOKEN"), (Some("wrong"), "M_UNKNOWN_TOKEN")] {
        let (status, reply) = post("worker2", "pin", "a1", secret, spam.clone()).await;
        assert_eq!((status, reply["errcode"].as_str()), (401, Some(errcode)), "{reply}");
    }
    assert_eq!(checks().await, None, "nothing ran without the secret");

    let refused = [
        ("worker2", "pin", "not json".to_owned(), 400, "M_NOT_JSON"),
        ("worker2", "pin", json!({"callback": "no-such-callback"}).to_string(), 400, "M_BAD_JSON"),
        ("worker2", "pin", json!({"callback": "check-event-for-spam"}).to_string(), 400, "M_BAD_JSON"),
        (
            "worker2",
            "pin",
            serde_json::to_string(&weft::plugins::spam::SpamCall::UserMayJoinRoom {
                user: "@a:example.org".try_into().unwrap(),
                room: "!r:example.org".try_into().unwrap(),
                is_invited: false,
            })
            .unwrap(),
            400,
            "M_BAD_JSON",
        ),
        ("worker2", "nope", spam.clone(), 404, "M_NOT_FOUND"),
        ("worker1", "pin", spam.clone(), 404, "M_NOT_FOUND"),
    ];
    for (instance, plugin, body, expected_status, expected_code) in refused {
        let (status, reply) = post(instance, plugin, "a2", Some(SECRET), body.clone()).await;
        assert_eq!((status, reply["errcode"].as_str()), (expected_status, Some(expected_code)), "{instance} {plugin} {body}: {reply}");
        assert!(reply["error"].is_string(), "{reply}");
    }

    let (status, reply) = post("worker2", "pin", "a3", Some(SECRET), spam).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!((reply["answer"]["verdict"].as_str(), reply["answer"]["errcode"].as_str()), (Some("reject"), Some("W_PIN")), "{reply}");
    let (status, reply) = post("worker2", "pin", "a4", Some(SECRET), ham).await;
    assert_eq!((status, &reply), (200, &json!({"answer": {"verdict": "allow"}})));
    assert_eq!(checks().await, Some(2.0));
}
