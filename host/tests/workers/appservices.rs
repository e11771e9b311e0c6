//! The appservice notifier pinned to a worker: `notify_appservices_from_worker
//! = "worker1"` in a deployment with two events persisters; events persisted
//! on both reach the appservice, and a SIGKILL of worker1 in the middle of a
//! transaction loses nothing.

use std::time::Duration;

use serde_json::{Value, json};

use super::Deployment;
use crate::{
    appservices::{
        AS_TOKEN,
        fake::{FakeAppservice, Mode},
        files, registration,
    },
    plugins::guest,
};

fn messages(appservice: &FakeAppservice) -> Vec<String> {
    let mut last = std::collections::BTreeMap::new();
    for (id, body) in appservice.transactions() {
        last.insert(id, body);
    }
    last.values()
        .flat_map(|body: &Value| body["events"].as_array().cloned().unwrap_or_default())
        .filter(|event| event["type"] == "m.room.message")
        .filter_map(|event| event["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_notifier_delivers_from_both_persisters_and_survives_a_sigkill() {
    let appservice = FakeAppservice::start(Mode::Accept).await;
    let (_dir, paths) = files(&[registration("bridge", Some(&appservice.url()), AS_TOKEN, "")]);
    let extra = format!(
        "notify_appservices_from_worker = \"worker1\"\napp_service_config_files = [{:?}]\n\
         [[plugins]]\nname = \"appservice-http\"\nrole = \"appservice-notifier\"\npath = {:?}\n",
        paths[0].display().to_string(),
        guest("appservice_http").display().to_string()
    );
    let mut deployment = Deployment::start_with(&extra).await;
    let (token, _) = deployment.register("main", "carol").await;
    let mut rooms = Vec::new();
    for index in 0..2 {
        let room_id = deployment.room_on_persister("main", &token, index, json!({"preset": "public_chat"})).await;
        let (status, body) = deployment.call("main", "POST", &format!("/_matrix/client/v3/join/{room_id}"), Some(AS_TOKEN), Some(json!({}))).await;
        assert_eq!(status, 200, "{body}");
        rooms.push(room_id);
    }
    for (index, room_id) in rooms.iter().enumerate() {
        let (status, _) = deployment.send("main", &token, room_id, &format!("p{index}"), &format!("from persister {}", index + 1)).await;
        assert_eq!(status, 200);
    }
    appservice
        .wait_for(30, "both persisters' messages", |_| {
            let got = messages(&appservice);
            got.contains(&"from persister 1".to_owned()) && got.contains(&"from persister 2".to_owned())
        })
        .await;
    assert!(!deployment.log("main").contains("appservice notifier"), "main does not run the notifier");

    // The appservice stops answering; worker1 dies in the middle of a transaction.
    appservice.set_mode(Mode::Hang);
    let asked = appservice.received().len();
    for n in 0..4 {
        let (status, _) = deployment.send("main", &token, &rooms[n % 2], &format!("k{n}"), &format!("around the kill {n}")).await;
        assert_eq!(status, 200);
    }
    appservice.wait_for(30, "a transaction in flight", |received| received.len() > asked).await;
    deployment.kill("worker1");
    appservice.set_mode(Mode::Accept);
    tokio::time::sleep(Duration::from_millis(200)).await;
    deployment.start_process("worker1").await;
    appservice
        .wait_for(60, "every message after the restart", |_| {
            let got = messages(&appservice);
            (0..4).all(|n| got.contains(&format!("around the kill {n}")))
        })
        .await;
    let got: Vec<String> = messages(&appservice).into_iter().filter(|m| m.starts_with("around the kill")).collect();
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(got.len(), 4, "each once: {got:?}");
    assert_eq!(unique.len(), 4, "{got:?}");
}
