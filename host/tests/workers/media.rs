//! Media repository workers: two workers serve media from one shared store
//! while main, with `enable_media_repo = false`, does not; a download on one
//! worker waits for content another worker receives.

use std::time::{Duration, Instant};

use super::deployment::Deployment;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_workers_share_a_store_and_main_serves_none() {
    let store = tempfile::tempdir().unwrap();
    let shared = format!("media_store_path = {:?}", store.path().join("media").display().to_string());
    let own = [("main", "enable_media_repo = false"), ("worker1", "enable_media_repo = true"), ("worker2", "enable_media_repo = true")];
    let d = Deployment::start_configured(&shared, &own).await;
    let (alice, _) = d.register("worker1", "alice").await;
    let server_name = d.server_name.clone();

    let (status, body) = d.call("worker1", "POST", "/_matrix/media/v1/create", Some(&alice), None).await;
    assert_eq!(status, 200, "{body}");
    let media_id = body["content_uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();

    // A download waiting on worker2 while the content arrives on worker1.
    let url = format!("{}/_matrix/client/v1/media/download/{server_name}/{media_id}?timeout_ms=15000", d.client_url("worker2"));
    let waiting = tokio::spawn(d.http.get(url).bearer_auth(&alice).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let put = format!("{}/_matrix/media/v3/upload/{server_name}/{media_id}", d.client_url("worker1"));
    let response = d.http.put(put).bearer_auth(&alice).header("content-type", "text/plain").body("shared bytes").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let uploaded = Instant::now();
    let response = waiting.await.unwrap().unwrap();
    assert!(uploaded.elapsed() < Duration::from_secs(2), "seen by polling within its period");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "shared bytes");

    // main does not run the media repository: media paths are unknown there.
    let (status, body) = d.call("main", "GET", "/_matrix/client/v1/media/config", Some(&alice), None).await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_UNRECOGNIZED")), "{body}");
    assert!(!store.path().join("media").join("tmp").read_dir().unwrap().any(|entry| entry.is_ok_and(|e| e.file_type().is_ok_and(|t| t.is_file()))));
}
