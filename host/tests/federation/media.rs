//! Media across servers: a Weft client downloads and thumbnails Synapse's
//! media, a Synapse client Weft's (through Weft's federation media
//! endpoints); what Weft downloads is kept and served again without the
//! other server; concurrent requests make one download; a `Location` is
//! followed; a server without the federation endpoint is asked on the
//! legacy one; files over `max_upload_size` are refused; Weft serves its
//! media and thumbnails to another Weft as `multipart/mixed`.

use http::{Method, StatusCode};
use ruma::api::federation::authenticated_media::{FileOrLocation, get_content, get_content_thumbnail};
use serde_json::Value;

use super::fake_remote::{FakeRemote, content_of};
use crate::{
    on_both_backends,
    support::{Backend, Session, TestServer, errcode, synapse::Synapse},
};

on_both_backends!(remote_media_is_downloaded_once_kept_and_limited, weft_serves_its_media_to_other_servers);

pub(super) const DOWNLOAD: &str = "/_matrix/client/v1/media/download";
pub(super) const THUMBNAIL: &str = "/_matrix/client/v1/media/thumbnail";

pub(super) fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 200]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image).write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Status, a header's value and the body of a download.
pub(super) async fn read(response: reqwest::Response, header: &str) -> (StatusCode, String, Vec<u8>) {
    let status = response.status();
    let value = response.headers().get(header).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (status, value, response.bytes().await.unwrap().to_vec())
}

async fn weft_get(server: &TestServer, session: &Session, path: &str) -> reqwest::Response {
    server.raw(Method::GET, path).bearer_auth(&session.access_token).send().await.unwrap()
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body).map(|value| errcode(&value).to_owned()).unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned())
}

/// The media id of an `mxc://` URI of `server`.
pub(super) fn media_id(body: &Value, server: &str) -> String {
    let uri = body["content_uri"].as_str().unwrap_or_else(|| panic!("no content_uri: {body}"));
    uri.strip_prefix(&format!("mxc://{server}/")).unwrap_or_else(|| panic!("{uri} is not of {server}")).to_owned()
}

/// Uploads a PNG image to Synapse as `session`; returns its media id.
pub(super) async fn upload_to_synapse(synapse: &Synapse, session: &Session, file_name: &str, image: Vec<u8>) -> String {
    let upload = synapse
        .raw(Method::POST, &format!("/_matrix/media/v3/upload?filename={file_name}"))
        .bearer_auth(&session.access_token)
        .header("content-type", "image/png")
        .body(image)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::OK);
    media_id(&upload.json().await.unwrap(), &synapse.server_name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_and_synapse_download_each_others_media() {
    let synapse = Synapse::start().await;
    let weft = TestServer::builder(Backend::Sqlite).federation().start().await;
    let on_weft = weft.register("viewer", "password-of-viewer").await;
    let on_synapse = synapse.register("viewer").await;
    let picture = png(64, 48);

    // Uploaded on Synapse, downloaded and thumbnailed through Weft.
    let on_synapse_id = upload_to_synapse(&synapse, &on_synapse, "syn.png", picture.clone()).await;
    let path = format!("{DOWNLOAD}/{}/{on_synapse_id}", synapse.server_name);
    let (status, content_type, body) = read(weft_get(&weft, &on_weft, &path).await, "content-type").await;
    assert_eq!(status, StatusCode::OK, "{}\n{}", String::from_utf8_lossy(&body), synapse.logs());
    assert_eq!((content_type.as_str(), body == picture), ("image/png", true));
    let (_, disposition, _) = read(weft_get(&weft, &on_weft, &path).await, "content-disposition").await;
    assert!(disposition.contains("syn.png"), "{disposition}");
    let thumbnail = format!("{THUMBNAIL}/{}/{on_synapse_id}?width=32&height=32&method=scale", synapse.server_name);
    let (status, content_type, body) = read(weft_get(&weft, &on_weft, &thumbnail).await, "content-type").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/png"), "{}", String::from_utf8_lossy(&body));
    let made = image::load_from_memory(&body).expect("a thumbnail");
    assert!(made.width() <= 64 && made.width() >= 32, "{}x{}", made.width(), made.height());
    let kept = weft.state.storage.remote_media(&synapse.server_name, &on_synapse_id).await.unwrap().expect("kept");
    assert_eq!((kept.media_length, kept.media_type.as_deref(), kept.authenticated), (picture.len() as i64, Some("image/png"), true));
    // Not on the unauthenticated endpoints (Synapse's freeze), and unknown media is unknown.
    let legacy = weft.raw(Method::GET, &format!("/_matrix/media/v3/download/{}/{on_synapse_id}", synapse.server_name)).send().await.unwrap();
    assert_eq!(legacy.status(), StatusCode::NOT_FOUND);
    let (status, _, body) = read(weft_get(&weft, &on_weft, &format!("{DOWNLOAD}/{}/NoSuchMediaHere", synapse.server_name)).await, "").await;
    assert_eq!((status, error_code(&body).as_str()), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));

    // Uploaded on Weft, downloaded and thumbnailed by Synapse over Weft's federation media endpoints.
    let upload = weft
        .raw(Method::POST, "/_matrix/media/v3/upload?filename=weft.png")
        .bearer_auth(&on_weft.access_token)
        .header("content-type", "image/png")
        .body(picture.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::OK);
    let on_weft_id = media_id(&upload.json().await.unwrap(), &weft.server_name);
    let response =
        synapse.raw(Method::GET, &format!("{DOWNLOAD}/{}/{on_weft_id}", weft.server_name)).bearer_auth(&on_synapse.access_token).send().await.unwrap();
    let (status, content_type, body) = read(response, "content-type").await;
    assert_eq!(status, StatusCode::OK, "{}\n{}", String::from_utf8_lossy(&body), synapse.logs());
    assert_eq!((content_type.as_str(), body == picture), ("image/png", true));
    let response = synapse
        .raw(Method::GET, &format!("{THUMBNAIL}/{}/{on_weft_id}?width=32&height=32&method=crop", weft.server_name))
        .bearer_auth(&on_synapse.access_token)
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(response, "content-type").await;
    assert_eq!(status, StatusCode::OK, "{}\n{}", String::from_utf8_lossy(&body), synapse.logs());
    image::load_from_memory(&body).expect("Synapse's thumbnail of Weft's image");

    // With Synapse gone, Weft still serves what it kept.
    drop(synapse);
    let (status, _, body) = read(weft_get(&weft, &on_weft, &path).await, "content-type").await;
    assert_eq!((status, body == picture), (StatusCode::OK, true));
    let (status, _, _) = read(weft_get(&weft, &on_weft, &thumbnail.replace("width=32", "width=40")).await, "").await;
    assert_eq!(status, StatusCode::OK);
}

async fn remote_media_is_downloaded_once_kept_and_limited(backend: Backend) {
    let remote = FakeRemote::start().await;
    let weft = TestServer::builder(backend).federation().config("max_upload_size = \"20K\"").start().await;
    let viewer = weft.register("viewer", "password-of-viewer").await;
    let name = remote.server_name.clone();
    let download = |id: &str| format!("{DOWNLOAD}/{name}/{id}");

    // A file in the multipart answer; the request was X-Matrix signed.
    let (status, content_type, body) = read(weft_get(&weft, &viewer, &download("inline1")).await, "content-type").await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, content_of("inline1").as_slice()), "{}", String::from_utf8_lossy(&body));
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let asked = remote.seen("/media/download/inline1");
    assert_eq!(asked.len(), 1);
    assert!(asked[0].signed, "{asked:?}");
    let (_, disposition, _) = read(weft_get(&weft, &viewer, &download("inline1/other.txt")).await, "content-disposition").await;
    assert!(disposition.contains("other.txt"), "the name in the path wins: {disposition}");
    let (_, disposition, _) = read(weft_get(&weft, &viewer, &download("inline1")).await, "content-disposition").await;
    assert!(disposition.contains("inline1.file"), "the remote's name is kept: {disposition}");
    assert_eq!(remote.seen("/media/download/inline1").len(), 1, "served from the store afterwards");

    // Concurrent requests for the same media make one download.
    let slow = download("slow1");
    let asks = (0..6).map(|_| weft_get(&weft, &viewer, &slow));
    for response in futures_util::future::join_all(asks).await {
        let (status, _, body) = read(response, "").await;
        assert_eq!((status, body), (StatusCode::OK, content_of("slow1")));
    }
    assert_eq!(remote.seen("/media/download/slow1").len(), 1, "{:?}", remote.seen("slow1"));

    // A `Location` part is followed.
    let (status, _, body) = read(weft_get(&weft, &viewer, &download("located1")).await, "").await;
    assert_eq!((status, body), (StatusCode::OK, content_of("located1")));
    assert_eq!(remote.seen("/files/located1").len(), 1);

    // A server without the federation endpoint is asked on the legacy one.
    let (status, _, body) = read(weft_get(&weft, &viewer, &download("legacy1")).await, "").await;
    assert_eq!((status, body), (StatusCode::OK, content_of("legacy1")));
    let legacy = remote.seen("/_matrix/media/v3/download/");
    assert_eq!(legacy.len(), 1);
    assert!(legacy[0].path.contains("allow_remote=false"), "{legacy:?}");
    let kept = weft.state.storage.remote_media(&name, "legacy1").await.unwrap().expect("kept");
    assert_eq!(kept.upload_name.as_deref(), Some("legacy1.old"));

    // Larger than max_upload_size: refused, nothing kept.
    let (status, _, body) = read(weft_get(&weft, &viewer, &download("big1")).await, "").await;
    assert_eq!((status, error_code(&body).as_str()), (StatusCode::BAD_GATEWAY, "M_TOO_LARGE"));
    assert!(weft.state.storage.remote_media(&name, "big1").await.unwrap().is_none());
    // Unknown there, unknown here.
    let (status, _, body) = read(weft_get(&weft, &viewer, &download("gone1")).await, "").await;
    assert_eq!((status, error_code(&body).as_str()), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));

    // Thumbnails are made here from the downloaded image.
    let (status, content_type, body) = read(weft_get(&weft, &viewer, &format!("{THUMBNAIL}/{name}/png1?width=32&height=32")).await, "content-type").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/png"), "{}", String::from_utf8_lossy(&body));
    image::load_from_memory(&body).expect("a thumbnail");
    assert_eq!(remote.seen("thumbnail").len(), 0, "the remote is never asked for a thumbnail");
    // Without a token, nothing.
    let anonymous = weft.raw(Method::GET, &download("inline1")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Under enable_authenticated_media the deprecated endpoints neither serve
    // what was kept nor download (Synapse's freeze)...
    let legacy = |id: &str| format!("/_matrix/media/v3/download/{name}/{id}");
    for id in ["inline1", "inline9"] {
        let response = weft.raw(Method::GET, &legacy(id)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{id}");
    }
    assert!(remote.seen("inline9").is_empty(), "{:?}", remote.seen("inline9"));
    // ...and without it they download over the legacy endpoint only.
    let open = TestServer::builder(backend).federation().config("enable_authenticated_media = false").start().await;
    let (status, _, body) = read(open.raw(Method::GET, &legacy("legacy2")).send().await.unwrap(), "").await;
    assert_eq!((status, body), (StatusCode::OK, content_of("legacy2")));
    assert!(remote.seen("/media/download/legacy2").is_empty(), "the federation endpoint is not asked");
    let kept = open.state.storage.remote_media(&name, "legacy2").await.unwrap().expect("kept");
    assert!(!kept.authenticated);
}

async fn weft_serves_its_media_to_other_servers(backend: Backend) {
    let home = TestServer::builder(backend).federation().start().await;
    let other = TestServer::builder(backend).federation().start().await;
    let owner = home.register("owner", "password-of-owner").await;
    let picture = png(64, 64);
    let upload = home
        .raw(Method::POST, "/_matrix/media/v3/upload?filename=a.png")
        .bearer_auth(&owner.access_token)
        .header("content-type", "image/png")
        .body(picture.clone());
    let (status, body) = home.send(upload).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = media_id(&body, &home.server_name);
    let home_name = ruma::ServerName::parse(&home.server_name).unwrap();
    let client = &other.state.federation.client;

    let answer = client.send_request(&home_name, get_content::v1::Request::new(id.clone())).await.expect("the file");
    let FileOrLocation::File(file) = answer.content else { panic!("a file, not a location") };
    assert_eq!((file.file == picture, file.content_type.as_deref()), (true, Some("image/png")));
    assert_eq!(file.content_disposition.and_then(|d| d.filename).as_deref(), Some("a.png"));
    let request = get_content_thumbnail::v1::Request::new(id.clone(), 32u32.into(), 32u32.into());
    let answer = client.send_request(&home_name, request).await.expect("a thumbnail");
    let FileOrLocation::File(thumbnail) = answer.content else { panic!("a file, not a location") };
    assert_eq!(thumbnail.content_type.as_deref(), Some("image/png"));
    let made = image::load_from_memory(&thumbnail.file).expect("an image");
    assert!(made.width() <= 64 && made.width() >= 32, "{}", made.width());
    let missing = client.send_request(&home_name, get_content::v1::Request::new("NoSuchMediaAtAll".into())).await.expect_err("unknown");
    assert_eq!((missing.status(), missing.errcode()), (Some(StatusCode::NOT_FOUND), Some("M_NOT_FOUND")), "{missing}");

    // Unsigned, refused.
    let https = crate::support::synapse::https_client();
    let response = https.get(format!("{}/_matrix/federation/v1/media/download/{id}", home.federation_base())).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED"), "{body}");

    // And end to end: a user of the other server downloads it.
    let viewer = other.register("viewer", "password-of-viewer").await;
    let (status, content_type, body) = read(weft_get(&other, &viewer, &format!("{DOWNLOAD}/{}/{id}", home.server_name)).await, "content-type").await;
    assert_eq!((status, content_type.as_str(), body == picture), (StatusCode::OK, "image/png", true));
}
