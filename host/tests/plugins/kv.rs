//! The plugins' key-value store in the database: one namespace per plugin,
//! shared by every instance on the database, the value and total limits, and
//! (with real processes) a plugin's state surviving a restart and seen by
//! each instance that runs it.

use serde_json::json;
use weft::plugins::{
    StorageKv,
    kv::{KvError, MAX_KV_VALUE_BYTES, PluginKv},
};

use super::guest;
use crate::{
    on_both_backends,
    support::{Backend, TestDb},
    workers::Deployment,
};

on_both_backends!(values_are_per_plugin_and_shared_by_instances_on_one_database, the_total_counts_replaced_and_deleted_entries_once,);

async fn values_are_per_plugin_and_shared_by_instances_on_one_database(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (main, worker) = (StorageKv(db.storage("main").await), StorageKv(db.storage("worker1").await));
    let (main, worker): (&dyn PluginKv, &dyn PluginKv) = (&main, &worker);
    main.set("a", "k", b"one".to_vec()).await.unwrap();
    assert_eq!(worker.get("a", "k").await.unwrap(), Some(b"one".to_vec()), "another instance sees it");
    assert_eq!(worker.get("b", "k").await.unwrap(), None, "another plugin does not");
    worker.set("a", "k", vec![0, 255, 0]).await.unwrap();
    assert_eq!(main.get("a", "k").await.unwrap(), Some(vec![0, 255, 0]), "bytes, not text");
    main.delete("a", "k").await.unwrap();
    main.delete("a", "never-set").await.unwrap();
    assert_eq!(worker.get("a", "k").await.unwrap(), None);

    let refused = |result: Result<(), KvError>| matches!(result, Err(KvError::Refused(_)));
    assert!(refused(main.set("a", "big", vec![0; MAX_KV_VALUE_BYTES + 1]).await));
    assert!(refused(main.set("a", "nul\0key", b"x".to_vec()).await));
    assert_eq!(main.get("a", "nul\0key").await.unwrap(), None);
    main.set("a", "largest", vec![7; MAX_KV_VALUE_BYTES]).await.unwrap();
}

async fn the_total_counts_replaced_and_deleted_entries_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let storage = db.storage("main").await;
    assert!(storage.plugin_kv_set("p", "a", &[1; 49], 100).await.unwrap(), "1 + 49 bytes");
    assert!(!storage.plugin_kv_set("p", "b", &[1; 50], 100).await.unwrap(), "50 + 51 is over 100");
    assert_eq!(storage.plugin_kv_get("p", "b").await.unwrap(), None, "nothing written");
    assert!(storage.plugin_kv_set("p", "a", &[2; 99], 100).await.unwrap(), "a replaced value counts once");
    assert!(storage.plugin_kv_set("q", "a", &[2; 99], 100).await.unwrap(), "another plugin has its own total");
    storage.plugin_kv_delete("p", "a").await.unwrap();
    assert!(storage.plugin_kv_set("p", "b", &[1; 99], 100).await.unwrap(), "a deleted entry frees its bytes");

    if backend == Backend::Postgres {
        // Two instances filling one store at once never pass the total.
        let other = db.storage("worker1").await;
        let writes = (0..40).map(|i| {
            let storage = if i % 2 == 0 { storage.clone() } else { other.clone() };
            tokio::spawn(async move { storage.plugin_kv_set("r", &format!("k{i:02}"), &[0; 97], 1000).await.unwrap() })
        });
        let mut stored = 0;
        for write in writes {
            stored += usize::from(write.await.unwrap());
        }
        assert_eq!(stored, 10, "ten entries of 100 bytes fit in 1000");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_state_survives_a_restart_and_is_shared_by_the_instances_running_it() {
    // `count` adds one to the stored `count` on every call and refuses from 3 on.
    let plugin = format!(
        "[[plugins]]\nname = \"counter\"\npath = {:?}\ninstances = [\"worker1\", \"worker2\"]\n[plugins.limits]\ntimeout_ms = 2000\n\
         [plugins.config]\nmode = \"count\"\n",
        guest("misbehave").display().to_string()
    );
    let mut d = Deployment::start_with(&plugin).await;
    // Registration (checked for main on worker1) and the room (on worker1) count 1 and 2.
    let (alice, _) = d.register("worker1", "alice").await;
    let (status, room) = d.call("worker1", "POST", "/_matrix/client/v3/createRoom", Some(&alice), Some(json!({}))).await;
    assert_eq!(status, 200, "{room}");
    let room = room["room_id"].as_str().unwrap().to_owned();

    let count = |reply: &serde_json::Value| reply["count"].as_u64();
    let (status, reply) = d.send("worker2", &alice, &room, "t1", "one").await;
    assert_eq!(status, 403, "worker2 counts on from worker1's calls: {reply}");
    let seen = count(&reply).expect("a count");
    assert!(seen >= 3, "{reply}");

    d.kill("worker1");
    d.start_process("worker1").await;
    let (status, reply) = d.send("worker1", &alice, &room, "t2", "two").await;
    assert_eq!((status, count(&reply)), (403, Some(seen + 1)), "worker1 restarted and counted on: {reply}");
}
