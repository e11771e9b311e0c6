//! A real OpenID provider for the SSO tests: node's `oidc-provider`
//! (`tests/idp/server.mjs`, as the testkit's oidc tests start it), once per
//! test process on a free port, stopped when the process ends (it exits when
//! its standard input, a pipe held here, closes). And `Browser`: an HTTP
//! client that keeps cookies per host, port and path and follows nothing by
//! itself, so a test sees every redirect of a login as a browser makes it.
//!
//! The provider's packages are installed by tests/run.sh (`npm ci`) into
//! `$WEFT_IDP_DIR`, by default `node/idp` beside `$CARGO_TARGET_DIR`, or
//! `~/.cache/weft/node/idp`.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, OnceLock},
};

use http::{StatusCode, header};
use reqwest::Url;

pub struct Idp {
    /// `http://127.0.0.1:{port}`.
    pub issuer: String,
    _process: Mutex<(Child, ChildStdin)>,
}

/// The provider of this test process.
pub fn idp() -> &'static Idp {
    static IDP: OnceLock<Idp> = OnceLock::new();
    IDP.get_or_init(start)
}

/// Where the provider's npm packages are.
pub fn idp_install_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEFT_IDP_DIR") {
        return dir.into();
    }
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).and_then(|target| target.parent().map(|parent| parent.to_owned())) {
        Some(parent) => parent.join("node/idp"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/weft/node/idp"),
    }
}

fn start() -> Idp {
    let modules = idp_install_dir().join("node_modules");
    assert!(
        modules.join("oidc-provider").is_dir(),
        "the test OpenID provider is not installed in {}: run tests/run.sh (or `npm ci` there with tests/idp's package.json and package-lock.json)",
        modules.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/idp/server.mjs");
    let log = std::env::temp_dir().join(format!("weft-host-test-idp-{}.log", std::process::id()));
    let mut child = Command::new("node")
        .arg(&script)
        .env("WEFT_IDP_NODE_MODULES", &modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).map(Stdio::from).unwrap_or_else(|_| Stdio::null()))
        .spawn()
        .expect("node runs (install Node.js 20.19 or later)");
    let stdin = child.stdin.take().expect("piped");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("the provider starts");
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("the provider did not start: {}", std::fs::read_to_string(&log).unwrap_or_default()));
    let _ = std::fs::remove_file(&log);
    Idp { issuer: ready["issuer"].as_str().expect("issuer").to_owned(), _process: Mutex::new((child, stdin)) }
}

/// One stored cookie.
#[derive(Debug, Clone)]
struct Cookie {
    origin: String,
    name: String,
    value: String,
    path: String,
}

/// A response as a browser sees it.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    /// The redirect target, absolute.
    pub location: Option<Url>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

/// An HTTP client with a cookie jar that follows no redirect by itself.
pub struct Browser {
    client: reqwest::Client,
    jar: Mutex<Vec<Cookie>>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self { client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap(), jar: Mutex::new(Vec::new()) }
    }

    fn origin(url: &Url) -> String {
        format!("{}:{}", url.host_str().unwrap_or_default(), url.port_or_known_default().unwrap_or_default())
    }

    /// The cookie header for `url`: the cookies of its host and port whose path prefixes its path.
    fn cookie_header(&self, url: &Url) -> String {
        let origin = Self::origin(url);
        let jar = self.jar.lock().unwrap();
        let pairs: Vec<String> = jar
            .iter()
            .filter(|c| c.origin == origin && url.path().starts_with(c.path.trim_end_matches('/')))
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        pairs.join("; ")
    }

    /// Sets a cookie by hand (a test's forgery or replay).
    pub fn set_cookie(&self, url: &str, name: &str, value: &str, path: &str) {
        let origin = Self::origin(&Url::parse(url).unwrap());
        let mut jar = self.jar.lock().unwrap();
        jar.retain(|c| !(c.origin == origin && c.name == name));
        jar.push(Cookie { origin, name: name.into(), value: value.into(), path: path.into() });
    }

    pub async fn get(&self, url: &str) -> Page {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let request = self.client.get(url.clone());
        self.send(url, request).await
    }

    pub async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Page {
        let url = Url::parse(url).unwrap();
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let request = self.client.post(url.clone()).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body);
        self.send(url, request).await
    }

    async fn send(&self, url: Url, request: reqwest::RequestBuilder) -> Page {
        let cookies = self.cookie_header(&url);
        let request = if cookies.is_empty() { request } else { request.header(header::COOKIE, cookies) };
        let response = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status();
        let set_cookies: Vec<String> = response.headers().get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok().map(str::to_owned)).collect();
        for set in &set_cookies {
            self.store(&url, set);
        }
        let location = response.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()).map(|l| url.join(l).expect("a redirect URL"));
        let body = response.text().await.unwrap_or_default();
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{url}: {body}");
        Page { status, location, set_cookies, body }
    }

    fn store(&self, url: &Url, set: &str) {
        let mut parts = set.split(';');
        let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else { return };
        let mut path = "/".to_owned();
        let mut expired = value.is_empty();
        for attribute in parts {
            let (key, val) = attribute.trim().split_once('=').unwrap_or((attribute.trim(), ""));
            match key.to_ascii_lowercase().as_str() {
                "path" => path = val.to_owned(),
                "max-age" if val.trim() == "0" => expired = true,
                _ => {}
            }
        }
        let origin = Self::origin(url);
        let mut jar = self.jar.lock().unwrap();
        jar.retain(|c| !(c.origin == origin && c.name == name.trim() && c.path == path));
        if !expired {
            jar.push(Cookie { origin, name: name.trim().to_owned(), value: value.to_owned(), path });
        }
    }

    /// Signs `username` in at the provider from its authorization URL, as a
    /// person at the login form would, and returns the provider's redirect
    /// back to Weft's callback (not followed).
    pub async fn sign_in(&self, authorization_url: &Url, username: &str, password: &str) -> Url {
        let to_form = self.get(authorization_url.as_str()).await;
        assert_eq!(to_form.status, StatusCode::SEE_OTHER, "the authorization endpoint sends to the login form: {}", to_form.body);
        let form_url = to_form.location.expect("the login form");
        let form = self.get(form_url.as_str()).await;
        assert!(form.status == StatusCode::OK && form.body.contains("<form"), "the login form: {}", form.body);
        let login = form_url.join(&format!("{}/login", form_url.path())).unwrap();
        let posted = self.post_form(login.as_str(), &[("username", username), ("password", password)]).await;
        assert_eq!(posted.status, StatusCode::SEE_OTHER, "signed in: {}", posted.body);
        let resumed = self.get(posted.location.expect("the resume URL").as_str()).await;
        assert_eq!(resumed.status, StatusCode::SEE_OTHER, "the provider redirects back: {}", resumed.body);
        resumed.location.expect("the callback URL")
    }
}
