//! The media repository through a real server: uploads (direct and
//! asynchronous), authenticated and legacy downloads with their headers,
//! limits, thumbnails, and what is refused.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;

use crate::{
    on_both_backends,
    support::{Backend, TestServer, errcode},
};

on_both_backends!(
    an_upload_downloads_with_its_type_name_and_sandboxing_headers,
    downloads_refuse_strangers_unknown_ids_and_other_servers,
    uploads_over_the_limit_leave_nothing_behind,
    an_asynchronous_upload_wakes_the_download_waiting_for_it,
    asynchronous_uploads_belong_to_their_creator_and_are_limited,
    thumbnails_have_the_configured_sizes_and_types,
    legacy_downloads_serve_media_from_before_the_freeze,
    the_clean_up_forgets_expired_ids_and_stale_temporaries,
    admins_list_a_users_media_and_delete_it_with_its_thumbnails,
);

const UPLOAD: &str = "/_matrix/media/v3/upload";
const CREATE: &str = "/_matrix/media/v1/create";
const DOWNLOAD: &str = "/_matrix/client/v1/media/download";
const THUMBNAIL: &str = "/_matrix/client/v1/media/thumbnail";

/// A `width` x `height` image in `format`, a gradient so that it compresses like a picture.
fn image_bytes(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image).write_to(&mut out, format).expect("encode");
    out.into_inner()
}

async fn upload(server: &TestServer, token: &str, content_type: &str, filename: Option<&str>, bytes: Vec<u8>) -> (StatusCode, Value) {
    let path = match filename {
        Some(name) => format!("{UPLOAD}?filename={name}"),
        None => UPLOAD.to_owned(),
    };
    server.send(server.raw(Method::POST, &path).bearer_auth(token).header("content-type", content_type).body(bytes)).await
}

/// Uploads and returns the media id.
async fn upload_ok(server: &TestServer, token: &str, content_type: &str, filename: Option<&str>, bytes: Vec<u8>) -> String {
    let (status, body) = upload(server, token, content_type, filename, bytes).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uri = body["content_uri"].as_str().expect("content_uri");
    let prefix = format!("mxc://{}/", server.server_name);
    uri.strip_prefix(&prefix).unwrap_or_else(|| panic!("{uri} is not on {prefix}")).to_owned()
}

async fn fetch(server: &TestServer, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = server.raw(Method::GET, path);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request reaches the server")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("a Matrix error");
    (status, errcode(&body).to_owned())
}

/// Sends `chunks` chunks of `size` bytes with chunked transfer encoding (no
/// length announced) and returns the raw response.
async fn chunked_upload(server: &TestServer, token: &str, chunks: usize, size: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let head = format!("POST {UPLOAD} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..chunks {
        // The server may answer and close before the last chunks.
        if stream.write_all(format!("{size:x}\r\n").as_bytes()).await.is_err()
            || stream.write_all(&vec![7u8; size]).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// Starts a chunked PUT to `path` and never finishes its body; returns what
/// the server answers in the meantime.
async fn unfinished_upload(server: &TestServer, token: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let head = format!("PUT {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nmore\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 4096];
    let read = stream.read(&mut response).await.unwrap();
    String::from_utf8_lossy(&response[..read]).into_owned()
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

async fn an_upload_downloads_with_its_type_name_and_sandboxing_headers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = alice.access_token.as_str();
    let server = &server;
    let png = image_bytes(20, 10, image::ImageFormat::Png);
    let media_id = upload_ok(server, token, "image/png", Some("cat.png"), png.clone()).await;
    let url = format!("{DOWNLOAD}/{}/{media_id}", server.server_name);

    let response = fetch(server, &url, Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "image/png");
    assert_eq!(header(&response, "content-disposition"), "inline; filename=cat.png");
    assert!(header(&response, "content-security-policy").starts_with("sandbox;"), "sandboxed");
    assert_eq!(header(&response, "cross-origin-resource-policy"), "cross-origin");
    assert_eq!(response.bytes().await.unwrap().to_vec(), png, "the same bytes");

    // The name in the path wins over the uploaded one.
    let response = fetch(server, &format!("{url}/other%20name.png"), Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-disposition"), "inline; filename*=utf-8''other%20name.png");

    // A type a browser could run is an attachment, text gets a charset.
    let html = upload_ok(server, token, "text/html", Some("page.html"), b"<script>alert(1)</script>".to_vec()).await;
    let response = fetch(server, &format!("{DOWNLOAD}/{}/{html}", server.server_name), Some(token)).await;
    assert_eq!(header(&response, "content-type"), "text/html; charset=UTF-8");
    assert_eq!(header(&response, "content-disposition"), "attachment; filename=page.html");

    // No type and no name: served as bytes, as an attachment.
    let bare = server.send(server.raw(Method::POST, UPLOAD).bearer_auth(token).body(vec![1u8, 2, 3])).await;
    assert_eq!(bare.0, StatusCode::OK, "{}", bare.1);
    let bare_id = bare.1["content_uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let response = fetch(server, &format!("{DOWNLOAD}/{}/{bare_id}", server.server_name), Some(token)).await;
    assert_eq!(header(&response, "content-type"), "application/octet-stream");
    assert_eq!(header(&response, "content-disposition"), "attachment");
    assert_eq!(response.bytes().await.unwrap().to_vec(), vec![1u8, 2, 3]);

    // Larger than any JSON body limit: uploads stream to disk.
    let large: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let large_id = upload_ok(server, token, "application/octet-stream", Some("large.bin"), large.clone()).await;
    let response = fetch(server, &format!("{DOWNLOAD}/{}/{large_id}", server.server_name), Some(token)).await;
    assert_eq!(header(&response, "content-length"), large.len().to_string());
    assert!(response.bytes().await.unwrap().to_vec() == large, "the same 3 MiB back");

    // The row says what the upload was.
    let stored = server.state.storage.local_media(&media_id).await.unwrap().expect("row");
    let content = stored.content.expect("uploaded");
    assert_eq!((content.length, content.media_type.as_deref(), content.upload_name.as_deref()), (png.len() as i64, Some("image/png"), Some("cat.png")));

    let (status, body) = server.get("/_matrix/client/v1/media/config", Some(token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["m.upload.size"], 50 * 1024 * 1024, "Synapse's default limit");
}

async fn downloads_refuse_strangers_unknown_ids_and_other_servers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = alice.access_token.as_str();
    let media_id = upload_ok(&server, token, "text/plain", None, b"hello".to_vec()).await;
    let name = server.server_name.clone();

    // Authenticated media needs a token; uploading too.
    assert_eq!(error_of(fetch(&server, &format!("{DOWNLOAD}/{name}/{media_id}"), None).await).await, (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN".into()));
    let (status, body) = server.send(server.raw(Method::POST, UPLOAD).header("content-type", "text/plain").body("x")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"));
    // Media uploaded under `enable_authenticated_media` (the default) is not on the unauthenticated endpoints.
    let legacy = fetch(&server, &format!("/_matrix/media/v3/download/{name}/{media_id}"), None).await;
    assert_eq!(error_of(legacy).await, (StatusCode::NOT_FOUND, "M_NOT_FOUND".into()));
    let legacy = fetch(&server, &format!("/_matrix/media/v3/thumbnail/{name}/{media_id}?width=32&height=32"), None).await;
    assert_eq!(error_of(legacy).await, (StatusCode::NOT_FOUND, "M_NOT_FOUND".into()));
    // ...but content still on its way is reported as such there too, as Synapse does.
    let (_, created) = server.post(CREATE, Some(token), serde_json::json!({})).await;
    let pending = created["content_uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let legacy = fetch(&server, &format!("/_matrix/media/v3/download/{name}/{pending}?timeout_ms=50"), None).await;
    assert_eq!(error_of(legacy).await, (StatusCode::GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED".into()));

    for path in
        [format!("{DOWNLOAD}/{name}/AAAAAAAAAAAAAAAAAAAAAAAA"), format!("{DOWNLOAD}/{name}/..%2F..%2F..%2Fetc%2Fpasswd"), format!("{DOWNLOAD}/{name}/ab")]
    {
        assert_eq!(error_of(fetch(&server, &path, Some(token)).await).await, (StatusCode::NOT_FOUND, "M_NOT_FOUND".into()), "{path}");
    }
    // Another server's media is asked of it, here at an address the
    // address policy refuses: the gateway failed, as Synapse answers.
    for path in [format!("{DOWNLOAD}/10.0.0.1/{media_id}"), format!("{THUMBNAIL}/10.0.0.1/{media_id}?width=32&height=32")] {
        assert_eq!(error_of(fetch(&server, &path, Some(token)).await).await, (StatusCode::BAD_GATEWAY, "M_UNKNOWN".into()), "{path}");
    }
    for config in ["/_matrix/client/v1/media/config", "/_matrix/media/v3/config"] {
        assert_eq!(error_of(fetch(&server, config, None).await).await, (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN".into()), "{config}");
    }
    // URL previews are off (Synapse's default): the endpoint is unknown.
    let (status, body) = server.get("/_matrix/client/v1/media/preview_url?url=https://example.org", Some(token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_UNRECOGNIZED"));
}

async fn uploads_over_the_limit_leave_nothing_behind(backend: Backend) {
    let server = TestServer::builder(backend).config("max_upload_size = \"1K\"").start().await;
    let alice = server.register("alice", "pw").await;
    let token = alice.access_token.as_str();
    let (status, body) = server.get("/_matrix/media/v3/config", Some(token)).await;
    assert_eq!((status, body["m.upload.size"].as_u64()), (StatusCode::OK, Some(1024)));

    let (status, body) = upload(&server, token, "application/octet-stream", None, vec![7u8; 1025]).await;
    assert_eq!((status, errcode(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE"), "{body}");
    // A body without a length is cut off as it streams in.
    let response = chunked_upload(&server, token, 8, 300).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("M_TOO_LARGE"), "{response}");
    let store = server.db.dir().join("media_store");
    assert_eq!(files_in(&store.join("tmp")), 0, "no partial upload is left");
    assert_eq!(files_in(&store.join("local_content")), 0, "nothing was kept");

    let media_id = upload_ok(&server, token, "application/octet-stream", None, vec![7u8; 1024]).await;
    assert_eq!(server.state.storage.local_media(&media_id).await.unwrap().unwrap().content.unwrap().length, 1024, "the limit itself is allowed");
}

async fn an_asynchronous_upload_wakes_the_download_waiting_for_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = alice.access_token.clone();
    let (status, body) = server.post(CREATE, Some(&token), serde_json::json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uri = body["content_uri"].as_str().unwrap().to_owned();
    let media_id = uri.rsplit('/').next().unwrap().to_owned();
    let expires = body["unused_expires_at"].as_i64().expect("unused_expires_at");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(expires > now + 23 * 3600 * 1000, "a day to upload, by default");

    let url = format!("{DOWNLOAD}/{}/{media_id}", server.server_name);
    let early = fetch(&server, &format!("{url}?timeout_ms=100"), Some(&token)).await;
    assert_eq!(error_of(early).await, (StatusCode::GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED".into()));

    let waiting = {
        let request = server.raw(Method::GET, &format!("{url}?timeout_ms=10000")).bearer_auth(&token);
        tokio::spawn(async move { request.send().await.expect("download") })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let put = format!("/_matrix/media/v3/upload/{}/{media_id}?filename=late.txt", server.server_name);
    let (status, body) = server.send(server.raw(Method::PUT, &put).bearer_auth(&token).header("content-type", "text/plain").body("at last")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken, not timed out").unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-disposition"), "inline; filename=late.txt");
    assert_eq!(response.text().await.unwrap(), "at last");

    let (status, body) = server.send(server.raw(Method::PUT, &put).bearer_auth(&token).header("content-type", "text/plain").body("again")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::CONFLICT, "M_CANNOT_OVERWRITE_MEDIA"));
    // Checked before the body is read: the answer comes while the body is still on its way.
    let response = tokio::time::timeout(Duration::from_secs(5), unfinished_upload(&server, &token, &put)).await.expect("answered before the body ended");
    assert!(response.starts_with("HTTP/1.1 409") && response.contains("M_CANNOT_OVERWRITE_MEDIA"), "{response}");
    let again = fetch(&server, &url, Some(&token)).await;
    assert_eq!(again.text().await.unwrap(), "at last", "the first upload stands");
}

async fn asynchronous_uploads_belong_to_their_creator_and_are_limited(backend: Backend) {
    let server = TestServer::builder(backend).config("max_pending_media_uploads = 2\n[rc_media_create]\nper_second = 0.001\nburst_count = 4").start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let create = |token: String| {
        let server = &server;
        async move { server.post(CREATE, Some(&token), serde_json::json!({})).await }
    };
    let (_, first) = create(alice.access_token.clone()).await;
    let media_id = first["content_uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let (status, _) = create(alice.access_token.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = create(alice.access_token.clone()).await;
    assert_eq!((status, errcode(&body)), (StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"), "a third id waiting is too many");
    let (status, _) = create(bob.access_token.clone()).await;
    assert_eq!(status, StatusCode::OK, "the limit is per user");

    let put = |server_name: &str, id: &str| format!("/_matrix/media/v3/upload/{server_name}/{id}");
    let name = server.server_name.clone();
    let (status, body) = server.send(server.raw(Method::PUT, &put(&name, &media_id)).bearer_auth(&bob.access_token).body("mine now")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "only the creator uploads");
    let (status, body) = server.send(server.raw(Method::PUT, &put(&name, "AAAAAAAAAAAAAAAAAAAAAAAA")).bearer_auth(&bob.access_token).body("x")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    let (status, body) = server.send(server.raw(Method::PUT, &put("elsewhere.example", &media_id)).bearer_auth(&alice.access_token).body("x")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    assert!(server.state.storage.local_media(&media_id).await.unwrap().unwrap().content.is_none(), "still waiting for its creator");

    // Once uploaded, an id no longer counts as waiting.
    let (status, _) = server.send(server.raw(Method::PUT, &put(&name, &media_id)).bearer_auth(&alice.access_token).body("done")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = create(alice.access_token.clone()).await;
    assert_eq!(status, StatusCode::OK);
    // `rc_media_create` (four requests a user here, the refused one included), then a rate limit.
    let (status, body) = create(alice.access_token.clone()).await;
    assert_eq!((status, errcode(&body)), (StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"), "{body}");
    assert_eq!(body["error"], "Too many requests", "the rate limit, not the pending limit: {body}");
    assert!(body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 100_000), "{body}");
}

async fn thumbnails_have_the_configured_sizes_and_types(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = alice.access_token.as_str();
    let name = server.server_name.clone();
    let png = upload_ok(&server, token, "image/png", None, image_bytes(400, 200, image::ImageFormat::Png)).await;
    let jpeg = upload_ok(&server, token, "image/jpeg", None, image_bytes(400, 200, image::ImageFormat::Jpeg)).await;

    let thumbnail = |id: String, query: &'static str| {
        let server = &server;
        let name = name.clone();
        async move {
            let response = fetch(server, &format!("{THUMBNAIL}/{name}/{id}?{query}"), Some(token)).await;
            assert_eq!(response.status(), StatusCode::OK, "{query}");
            let content_type = header(&response, "content-type").to_owned();
            let bytes = response.bytes().await.unwrap().to_vec();
            let image = image::load_from_memory(&bytes).expect("an image");
            (content_type, (image.width(), image.height()), bytes)
        }
    };
    let (kind, size, first) = thumbnail(png.clone(), "width=32&height=32&method=crop").await;
    assert_eq!((kind.as_str(), size), ("image/png", (32, 32)));
    // 320x240 would give this 2:1 image 320x160, shorter than asked: a larger box gives it whole.
    let (kind, size, _) = thumbnail(png.clone(), "width=300&height=200&method=scale").await;
    assert_eq!((kind.as_str(), size), ("image/png", (400, 200)));
    let (_, size, _) = thumbnail(png.clone(), "width=100&height=100&method=scale").await;
    assert_eq!(size, (320, 160), "the smallest box that reaches the request");
    // Never enlarged: a crop of a small image is cut to the box's shape only.
    let small = upload_ok(&server, token, "image/png", None, image_bytes(20, 10, image::ImageFormat::Png)).await;
    let (_, size, _) = thumbnail(small, "width=32&height=32&method=crop").await;
    assert_eq!(size, (10, 10));
    // Scale is the default method, and never enlarges.
    let (_, size, _) = thumbnail(png.clone(), "width=800&height=600").await;
    assert_eq!(size, (400, 200));
    let (kind, size, _) = thumbnail(jpeg, "width=96&height=96&method=crop").await;
    assert_eq!((kind.as_str(), size), ("image/jpeg", (96, 96)));
    let (_, _, again) = thumbnail(png.clone(), "width=32&height=32&method=crop").await;
    assert_eq!(again, first, "kept and served again");

    for (query, expected) in [
        ("height=32", (StatusCode::BAD_REQUEST, "M_MISSING_PARAM")),
        ("width=0&height=32", (StatusCode::BAD_REQUEST, "M_INVALID_PARAM")),
        ("width=32&height=32&method=stretch", (StatusCode::BAD_REQUEST, "M_INVALID_PARAM")),
    ] {
        let response = fetch(&server, &format!("{THUMBNAIL}/{name}/{png}?{query}"), Some(token)).await;
        assert_eq!(error_of(response).await, (expected.0, expected.1.to_owned()), "{query}");
    }
    // Content that is not an image the server thumbnails.
    let text = upload_ok(&server, token, "text/plain", None, b"not a picture".to_vec()).await;
    let response = fetch(&server, &format!("{THUMBNAIL}/{name}/{text}?width=32&height=32"), Some(token)).await;
    assert_eq!(error_of(response).await.0, StatusCode::BAD_REQUEST);
    let lying = upload_ok(&server, token, "image/png", None, b"not a picture either".to_vec()).await;
    let response = fetch(&server, &format!("{THUMBNAIL}/{name}/{lying}?width=32&height=32"), Some(token)).await;
    assert_eq!(error_of(response).await.0, StatusCode::BAD_REQUEST);
}

async fn legacy_downloads_serve_media_from_before_the_freeze(backend: Backend) {
    let server = TestServer::builder(backend).config("enable_authenticated_media = false").start().await;
    let alice = server.register("alice", "pw").await;
    let media_id = upload_ok(&server, &alice.access_token, "text/plain", Some("a.txt"), b"old clients".to_vec()).await;
    for path in
        [format!("/_matrix/media/v3/download/{}/{media_id}", server.server_name), format!("/_matrix/media/r0/download/{}/{media_id}/b.txt", server.server_name)]
    {
        let response = fetch(&server, &path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(header(&response, "content-disposition").starts_with("inline; filename="));
        assert_eq!(response.text().await.unwrap(), "old clients");
    }
    let thumbnail_of = upload_ok(&server, &alice.access_token, "image/png", None, image_bytes(64, 64, image::ImageFormat::Png)).await;
    let response = fetch(&server, &format!("/_matrix/media/v3/thumbnail/{}/{thumbnail_of}?width=32&height=32&method=crop", server.server_name), None).await;
    assert_eq!(response.status(), StatusCode::OK);

    // The freeze applies to what is uploaded once it is on; older media stays served.
    let server = server.restart_with("enable_authenticated_media = false", "enable_authenticated_media = true").await;
    let alice = server.login("alice", "pw").await;
    let frozen = upload_ok(&server, &alice.access_token, "text/plain", None, b"new".to_vec()).await;
    let old = fetch(&server, &format!("/_matrix/media/v3/download/{}/{media_id}", server.server_name), None).await;
    assert_eq!(old.status(), StatusCode::OK, "uploaded before the freeze");
    let new = fetch(&server, &format!("/_matrix/media/v3/download/{}/{frozen}", server.server_name), None).await;
    assert_eq!(error_of(new).await, (StatusCode::NOT_FOUND, "M_NOT_FOUND".into()));
    let authenticated = fetch(&server, &format!("{DOWNLOAD}/{}/{frozen}", server.server_name), Some(&alice.access_token)).await;
    assert_eq!(authenticated.status(), StatusCode::OK);
}

async fn the_clean_up_forgets_expired_ids_and_stale_temporaries(backend: Backend) {
    let server = TestServer::builder(backend).config("unused_expiration_time = 50").start().await;
    let alice = server.register("alice", "pw").await;
    let (status, body) = server.post(CREATE, Some(&alice.access_token), serde_json::json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expired = body["content_uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let put = format!("/_matrix/media/v3/upload/{}/{expired}", server.server_name);
    let (status, body) = server.send(server.raw(Method::PUT, &put).bearer_auth(&alice.access_token).body("too late")).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "an expired id takes no upload");
    let kept = upload_ok(&server, &alice.access_token, "text/plain", None, b"kept".to_vec()).await;

    let tmp = server.db.dir().join("media_store").join("tmp");
    let stale = tmp.join("left-by-a-crash");
    std::fs::write(&stale, b"partial").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(two_hours_ago).unwrap();
    let fresh = tmp.join("in-progress");
    std::fs::write(&fresh, b"arriving").unwrap();

    let media = server.state.media.as_ref().expect("main runs the media repository");
    assert_eq!(media.clean_up(&server.state.storage).await.unwrap(), (1, 1));
    assert!(server.state.storage.local_media(&expired).await.unwrap().is_none(), "the expired id is forgotten");
    assert!(server.state.storage.local_media(&kept).await.unwrap().is_some(), "uploaded media stays");
    assert!(!stale.exists() && fresh.exists(), "only the stale temporary is removed");
}

async fn admins_list_a_users_media_and_delete_it_with_its_thumbnails(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = crate::spaces::register_admin(&server, "root").await;
    let alice = server.register("alice", "pw").await;
    let first = upload_ok(&server, &alice.access_token, "image/png", Some("a.png"), image_bytes(64, 64, image::ImageFormat::Png)).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = upload_ok(&server, &alice.access_token, "text/plain", Some("b.txt"), b"second".to_vec()).await;
    let name = server.server_name.clone();
    let thumbnail = fetch(&server, &format!("{THUMBNAIL}/{name}/{first}?width=32&height=32&method=crop"), Some(&alice.access_token)).await;
    assert_eq!(thumbnail.status(), StatusCode::OK);

    let list = format!("/_synapse/admin/v1/users/{}/media", alice.user_id);
    let (status, body) = server.get(&list, Some(&alice.access_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "admins only");
    let (status, body) = server.get(&format!("{list}?limit=1"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["total"].as_i64(), body["next_token"].as_u64()), (Some(2), Some(1)));
    assert_eq!(body["media"][0]["media_id"], second.as_str(), "newest first");
    assert_eq!((body["media"][0]["upload_name"].as_str(), body["media"][0]["media_length"].as_i64()), (Some("b.txt"), Some(6)));

    let delete = format!("/_synapse/admin/v1/media/{name}/{first}");
    let (status, body) = server.delete(&delete, Some(&admin), serde_json::json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, serde_json::json!({"deleted_media": [first.clone()], "total": 1}));
    let gone = fetch(&server, &format!("{DOWNLOAD}/{name}/{first}"), Some(&alice.access_token)).await;
    assert_eq!(error_of(gone).await, (StatusCode::NOT_FOUND, "M_NOT_FOUND".into()));
    let store = server.db.dir().join("media_store");
    let remaining = |dir: &str| walk(&store.join(dir));
    assert_eq!(remaining("local_content"), 1, "only the second file is left");
    assert_eq!(remaining("local_thumbnails"), 0, "the thumbnails went with it");
    let (status, body) = server.delete(&delete, Some(&admin), serde_json::json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    let (status, _) = server.delete(&format!("/_synapse/admin/v1/media/elsewhere.example/{second}"), Some(&admin), serde_json::json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "only local media");
}

/// Files below `dir`, at any depth.
fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.filter_map(Result::ok).map(|entry| if entry.path().is_dir() { walk(&entry.path()) } else { 1 }).sum())
}
