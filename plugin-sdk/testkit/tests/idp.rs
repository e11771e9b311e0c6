//! A real OpenID provider for the tests: node's `oidc-provider`
//! (`tests/idp/server.mjs`), started once per test process on a free port
//! and stopped when the process ends (it exits when its standard input, a
//! pipe this process holds, closes). `sign_in` drives its login form with
//! plain HTTP, as a browser would, up to the redirect back to Weft.
//!
//! The provider's packages are installed by tests/run.sh (`npm ci` from
//! `tests/idp/package-lock.json`) into `$WEFT_IDP_DIR`, by default
//! `node/idp` beside `$CARGO_TARGET_DIR`, or `~/.cache/weft/node/idp`.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, OnceLock},
};

use reqwest::{StatusCode, Url, header};

/// Where the provider sends the browser back to (Weft's callback; nothing
/// listens there, the tests read the redirect).
pub const REDIRECT_URI: &str = "https://weft.example.org/_synapse/client/oidc/callback";

pub struct Idp {
    /// `http://127.0.0.1:{port}`.
    pub issuer: String,
    /// The private key (PKCS#8 PEM, P-256) of the `weft-pkjwt` client.
    pub client_key_pem: String,
    /// Held until the process exits: closing it stops the provider.
    _process: Mutex<(Child, ChildStdin)>,
}

/// The provider of this test process.
pub fn idp() -> &'static Idp {
    static IDP: OnceLock<Idp> = OnceLock::new();
    IDP.get_or_init(start)
}

fn install_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEFT_IDP_DIR") {
        return dir.into();
    }
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).and_then(|target| target.parent().map(|parent| parent.to_owned())) {
        Some(parent) => parent.join("node/idp"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/weft/node/idp"),
    }
}

fn start() -> Idp {
    let modules = install_dir().join("node_modules");
    assert!(
        modules.join("oidc-provider").is_dir(),
        "the test OpenID provider is not installed in {}: run tests/run.sh (or `npm ci` there with tests/idp's package.json and package-lock.json)",
        modules.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/idp/server.mjs");
    let log = std::env::temp_dir().join(format!("weft-test-idp-{}.log", std::process::id()));
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
    // Started: its warnings (a development adapter, the Node.js version) are of no interest.
    let _ = std::fs::remove_file(&log);
    Idp {
        issuer: ready["issuer"].as_str().expect("issuer").to_owned(),
        client_key_pem: ready["client_key_pem"].as_str().expect("client key").to_owned(),
        _process: Mutex::new((child, stdin)),
    }
}

impl Idp {
    /// Signs `username` in at the authorization URL a plugin answered, as a
    /// browser would (the provider's redirects, its cookies, its login form),
    /// and returns the query of the redirect back to `REDIRECT_URI`.
    pub async fn sign_in(&self, authorization_url: &str, username: &str, password: &str) -> Vec<(String, String)> {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let mut cookies = BTreeMap::new();
        let mut url = Url::parse(authorization_url).expect("an absolute URL");
        // The authorization endpoint sends the browser to the login form.
        let form = self.follow(&mut cookies, client.get(url.clone()), StatusCode::SEE_OTHER).await;
        let page = self.follow(&mut cookies, client.get(form.clone()), StatusCode::OK).await;
        assert_eq!(page, form, "the login form is a page");
        let login = form.join(&format!("{}/login", form.path())).unwrap();
        let form_body =
            Url::parse_with_params("http://form.invalid/", [("username", username), ("password", password)]).unwrap().query().unwrap_or_default().to_owned();
        let post = client.post(login).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(form_body);
        let resume = self.follow(&mut cookies, post, StatusCode::SEE_OTHER).await;
        url = self.follow(&mut cookies, client.get(resume), StatusCode::SEE_OTHER).await;
        assert!(url.as_str().starts_with(REDIRECT_URI), "the provider sends the browser back to Weft: {url}");
        url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    /// Sends `request` with the cookies so far, keeps the ones it sets, and
    /// returns where it redirects to (its own URL when it answers a page).
    async fn follow(&self, cookies: &mut BTreeMap<String, String>, request: reqwest::RequestBuilder, status: StatusCode) -> Url {
        let jar: Vec<String> = cookies.iter().map(|(name, value)| format!("{name}={value}")).collect();
        let response = request.header(header::COOKIE, jar.join("; ")).send().await.expect("the provider answers");
        for set in response.headers().get_all(header::SET_COOKIE) {
            let pair = set.to_str().unwrap_or_default().split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                match value.is_empty() {
                    true => cookies.remove(name.trim()),
                    false => cookies.insert(name.trim().to_owned(), value.to_owned()),
                };
            }
        }
        let at = response.url().clone();
        let got = response.status();
        let location = response.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_owned);
        let body = response.text().await.unwrap_or_default();
        assert_eq!(got, status, "{at}: {body}");
        match location {
            Some(location) => Url::parse(&self.issuer).unwrap().join(&location).expect("a redirect URL"),
            None => {
                assert!(body.contains("<form"), "{at} answers a form: {body}");
                at
            }
        }
    }
}
