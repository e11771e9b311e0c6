//! `outbound_federation_restricted_to`: in a worker deployment where only
//! `worker2` may connect to other servers, the others (whose own address
//! policy refuses every loopback address, where Synapse listens) federate
//! with Synapse through it: joins both ways, messages, typing, receipts,
//! key fetches and remote media. Their metrics show that none of their
//! requests went out directly and that worker2 made them. The internal
//! route itself: worker2 answers with the remote server's answer, or with
//! its own address policy's refusal; an instance left out refuses; no
//! secret, no request.

use http::StatusCode;

use super::media::{DOWNLOAD, THUMBNAIL, png, read, upload_to_synapse};
use super::workers::share_rooms_with_synapse;
use crate::{
    support::synapse::Synapse,
    workers::{Deployment, SECRET},
};

/// The instances that may not connect out.
const RESTRICTED: [&str; 4] = ["main", "persister1", "persister2", "worker1"];

#[tokio::test(flavor = "multi_thread")]
async fn workers_left_out_of_outbound_federation_restricted_to_federate_through_the_listed_one() {
    // Were one of them to connect to Synapse itself, its own policy would refuse 127.0.0.1.
    let own: Vec<(&str, &str)> = RESTRICTED.iter().map(|name| (*name, "ip_range_whitelist = []")).collect();
    let mut deployment = Deployment::start_federating_configured("outbound_federation_restricted_to = [\"worker2\"]\n", &own, false).await;
    deployment.start_router().await;
    let deployment = share_rooms_with_synapse(deployment).await;

    // Remote media, downloaded by main (the media instance) through worker2.
    let synapse = Synapse::start().await;
    let uploader = synapse.register("uploader").await;
    let picture = png(40, 30);
    let id = upload_to_synapse(&synapse, &uploader, "far.png", picture.clone()).await;
    let (token, _) = deployment.register("router", "viewer").await;
    let get = |path: String| deployment.http.get(format!("{}{path}", deployment.client_url("router"))).bearer_auth(&token).send();
    let (status, content_type, body) = read(get(format!("{DOWNLOAD}/{}/{id}", synapse.server_name)).await.unwrap(), "content-type").await;
    assert_eq!((status, content_type.as_str(), body == picture), (StatusCode::OK, "image/png", true), "{}", deployment.log("main"));
    let thumbnail = format!("{THUMBNAIL}/{}/{id}?width=32&height=32&method=scale", synapse.server_name);
    let (status, _, body) = read(get(thumbnail).await.unwrap(), "content-type").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));

    let count = |instance, via: &'static str| {
        let label = format!("via=\"{via}\"");
        let deployment = &deployment;
        async move { deployment.metric(instance, "weft_federation_outbound_requests_total", &[label.as_str()]).await.unwrap_or(0.0) }
    };
    for instance in RESTRICTED {
        assert_eq!(count(instance, "direct").await, 0.0, "{instance} connected out itself");
    }
    assert!(count("main", "worker2").await > 0.0, "main's transactions, key fetches and downloads went through worker2");
    assert!(count("persister1", "worker2").await + count("persister2", "worker2").await > 0.0, "the persisters' joins went through worker2");
    let proxied = deployment.metric("worker2", "weft_federation_proxied_requests_total", &[]).await.unwrap_or(0.0);
    assert!(proxied > 0.0, "worker2 made the others' requests");
    assert!(count("worker2", "direct").await >= proxied, "worker2 connects out itself");

    // The route itself, as the restricted instances call it.
    let outbound = |destination: &str| {
        format!(
            "{{\"destination\":\"{destination}\",\"method\":\"GET\",\"target\":{{\"path\":\"/_matrix/federation/v1/version\"}},\"sign\":true,\"limit\":65536}}\n"
        )
    };
    let call = |instance: &str, body: String, secret: Option<&str>| {
        let mut request = deployment.http.post(format!("{}/_weft/replication/v1/federation/outbound", deployment.replication_url(instance))).body(body);
        if let Some(secret) = secret {
            request = request.bearer_auth(secret);
        }
        request.send()
    };
    let answered = call("worker2", outbound(&synapse.server_name), Some(SECRET)).await.unwrap();
    assert_eq!(answered.headers().get("x-weft-remote-status").map(|v| v.to_str().unwrap().to_owned()).as_deref(), Some("200"));
    let version: serde_json::Value = answered.json().await.unwrap();
    assert_eq!(version["server"]["name"], "Synapse", "{version}");
    let refused = call("worker2", outbound("10.255.255.1:8448"), Some(SECRET)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
    let refused: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(refused["weft_egress_error"]["kind"], "blocked", "worker2's address policy refuses 10/8: {refused}");
    let left_out = call("worker1", outbound(&synapse.server_name), Some(SECRET)).await.unwrap();
    assert_eq!(left_out.status(), StatusCode::FORBIDDEN, "worker1 may not connect out for others");
    let anonymous = call("worker2", outbound(&synapse.server_name), None).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}
