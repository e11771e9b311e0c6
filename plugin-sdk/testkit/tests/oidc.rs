//! The reference SSO plugin `plugins/oidc` against a real OpenID provider
//! (`idp`), over real HTTP through the runtime's `http-send`: the whole
//! login with each client authentication and signing algorithm, discovery
//! cached (in the store for fresh instances, in a warm instance itself, which
//! keeps nothing of one login for the next), templates and requirements,
//! and each kind of refusal (on warm instances, as a server runs them): a tampered
//! or expired ID token, a wrong nonce or verifier, a provider error. Then
//! the fail-closed answer of a plugin that traps, and a provider that never
//! answers, refused within the call's deadline.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use weft_plugin_testkit::{
    CallFailure, PluginBackend, PluginCapabilities, PluginLimitsConfig, PluginRole, Sso, TestPlugin, Testkit,
    sso::{Authorization, LoginAttempt, Refusal, RefusalKind, SsoAnswer, SsoCall, SsoProviders, UserAttributes},
};

use super::idp::{Idp, REDIRECT_URI, idp};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A Synapse `oidc_providers` entry for the provider's `client_id`, with
/// `extra` merged over it.
fn entry(idp: &Idp, client_id: &str, extra: Value) -> Value {
    let mut entry = json!({
        "idp_id": "test",
        "idp_name": "Test IdP",
        "idp_icon": "mxc://example.org/icon",
        "idp_brand": "test",
        "issuer": idp.issuer,
        "skip_verification": true,
        "client_id": client_id,
        "client_secret": format!("{client_id}-secret"),
        "scopes": ["openid", "profile", "email", "groups"],
        "user_mapping_provider": {"config": {
            "localpart_template": "{{ user.preferred_username | lower }}",
            "display_name_template": "{{ user.name }}",
            "email_template": "{{ user.email }}",
        }},
    });
    entry.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    entry
}

/// The plugin with `config`, allowed to reach the provider, its clock now,
/// with the role's limits (warm instances, as a server runs it).
async fn plugin(idp: &Idp, config: Value) -> TestPlugin<Sso> {
    plugin_with(idp, config, PluginLimitsConfig::for_role(PluginRole::SsoProvider)).await
}

/// `plugin` with a fresh instance per call.
async fn fresh_plugin(idp: &Idp, config: Value) -> TestPlugin<Sso> {
    plugin_with(idp, config, PluginLimitsConfig { max_calls_per_instance: 1, ..PluginLimitsConfig::for_role(PluginRole::SsoProvider) }).await
}

async fn plugin_with(idp: &Idp, config: Value, limits: PluginLimitsConfig) -> TestPlugin<Sso> {
    static LOADED: AtomicUsize = AtomicUsize::new(0);
    Testkit::new(super::built("oidc", "oidc.wasm"))
        .name(&format!("oidc-{}", LOADED.fetch_add(1, Ordering::Relaxed)))
        .config(config)
        .capabilities(PluginCapabilities { allowed_outbound_hosts: vec![idp.issuer.clone()], allow_private_addresses: true, ..PluginCapabilities::default() })
        .limits(limits)
        .live_http()
        .clock_ms(now_ms())
        .load_as::<Sso>()
        .await
        .expect("the oidc plugin loads")
}

async fn authorize(plugin: &TestPlugin<Sso>, attempt: &LoginAttempt) -> Authorization {
    match plugin.call(SsoCall::Authorize { attempt: attempt.clone() }).await.expect("authorize answers") {
        SsoAnswer::Authorization(authorization) => authorization,
        other => panic!("an authorization URL, not {other:?}"),
    }
}

async fn complete(plugin: &TestPlugin<Sso>, attempt: &LoginAttempt, context: &str, params: &[(String, String)]) -> Result<UserAttributes, Refusal> {
    let call = SsoCall::Complete { attempt: attempt.clone(), context: context.to_owned(), params: params.to_vec() };
    match plugin.call(call).await.expect("complete answers") {
        SsoAnswer::User(user) => Ok(user),
        SsoAnswer::Refused(refusal) => Err(refusal),
        other => panic!("a user or a refusal, not {other:?}"),
    }
}

/// A login up to the provider's redirect back: the attempt, its context and the callback.
async fn sign_in(plugin: &TestPlugin<Sso>, username: &str, password: &str) -> (LoginAttempt, String, Vec<(String, String)>) {
    let attempt = LoginAttempt::new(REDIRECT_URI);
    let authorization = authorize(plugin, &attempt).await;
    let params = idp().sign_in(&authorization.url, username, password).await;
    (attempt, authorization.context, params)
}

fn alice() -> UserAttributes {
    UserAttributes {
        subject: "alice-0001".into(),
        localpart: Some("alice.liddell".into()),
        confirm_localpart: false,
        display_name: Some("Alice Liddell".into()),
        emails: vec!["alice@wonderland.example".into()],
        picture: None,
    }
}

fn token_request(plugin: &TestPlugin<Sso>) -> weft_plugin_testkit::HttpRequest {
    plugin.http_calls().into_iter().map(|call| call.request).find(|r| r.url.ends_with("/token")).expect("the code was exchanged")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_logs_in_with_client_secret_basic_and_post() {
    let idp = idp();
    for client in ["weft-basic", "weft-post"] {
        let extra = if client == "weft-post" { json!({"client_auth_method": "client_secret_post"}) } else { json!({}) };
        let plugin = plugin(idp, entry(idp, client, extra)).await;
        // As the host uses it: the provider first, then a login through it.
        let backend: Arc<dyn PluginBackend<Sso>> = plugin.plugin.clone();
        let providers = SsoProviders::new(vec![backend]).identity_providers().await;
        let [provider] = providers.as_slice() else { panic!("one provider: {providers:?}") };
        assert_eq!((provider.info.id.as_str(), provider.info.name.as_str()), ("oidc-test", "Test IdP"));
        assert_eq!(
            (provider.info.icon.as_deref(), provider.info.brand.as_deref(), provider.info.allow_existing_users),
            (Some("mxc://example.org/icon"), Some("test"), false)
        );

        let attempt = LoginAttempt::new(REDIRECT_URI);
        let authorization = provider.authorize(&attempt).await.expect("an authorization URL");
        let url = reqwest::Url::parse(&authorization.url).unwrap();
        let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(format!("{}{}", url.origin().ascii_serialization(), url.path()), format!("{}/auth", idp.issuer));
        for (key, value) in [
            ("response_type", "code"),
            ("client_id", client),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid profile email groups"),
            ("state", &attempt.state),
            ("nonce", &attempt.nonce),
            ("code_challenge", &attempt.code_challenge()),
            ("code_challenge_method", "S256"),
        ] {
            assert_eq!(query.get(key).map(String::as_str), Some(value), "{key} in {url}");
        }
        let params = idp.sign_in(&authorization.url, "alice", "wonderland").await;
        assert!(params.iter().any(|(k, v)| k == "state" && *v == attempt.state), "the provider returns the state: {params:?}");
        let user = provider.complete(&attempt, &authorization.context, &params).await.expect("alice logs in");
        assert_eq!(user, alice(), "{client}");

        let token = token_request(&plugin);
        let body = String::from_utf8(token.body.clone()).unwrap();
        let basic = token.headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("authorization"));
        match client {
            "weft-basic" => assert!(basic.is_some_and(|(_, v)| v.starts_with("Basic ")) && !body.contains("client_secret"), "{body}"),
            _ => assert!(basic.is_none() && body.contains("client_secret=weft-post-secret"), "{body}"),
        }
        assert!(body.contains(&format!("code_verifier={}", attempt.code_verifier)), "PKCE: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_and_eddsa_id_tokens_and_private_key_jwt_clients_log_in() {
    let idp = idp();
    let key = json!({"client_auth_method": "private_key_jwt",
                     "client_secret_jwt_key": {"key": idp.client_key_pem, "jwt_header": {"alg": "ES256", "kid": "client-1"}}});
    for (client, extra) in [("weft-es256", json!({})), ("weft-eddsa", json!({})), ("weft-pkjwt", key)] {
        let mut config = entry(idp, client, extra);
        if client == "weft-pkjwt" {
            config.as_object_mut().unwrap().remove("client_secret");
        }
        let plugin = plugin(idp, config).await;
        let (attempt, context, params) = sign_in(&plugin, "alice", "wonderland").await;
        assert_eq!(complete(&plugin, &attempt, &context, &params).await, Ok(alice()), "{client}");
        if client == "weft-pkjwt" {
            let body = String::from_utf8(token_request(&plugin).body).unwrap();
            assert!(body.contains("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"), "{body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_is_cached_in_the_key_value_store_until_it_expires() {
    let idp = idp();
    // Fresh instances: what one call fetched, the next reads from the store.
    let plugin = fresh_plugin(idp, entry(idp, "weft-basic", json!({"metadata_cache_secs": 600}))).await;
    let discovery = format!("{}/.well-known/openid-configuration", idp.issuer);
    let fetches = || plugin.http_calls().iter().filter(|call| call.request.url == discovery).count();
    for _ in 0..3 {
        authorize(&plugin, &LoginAttempt::new(REDIRECT_URI)).await;
    }
    assert_eq!(fetches(), 1, "fetched once, then from the store");
    let stored: Value = serde_json::from_slice(&plugin.kv_get(&format!("metadata:{discovery}")).expect("cached")).unwrap();
    assert_eq!(stored["value"]["token_endpoint"], json!(format!("{}/token", idp.issuer)));
    plugin.clock().set_ms(now_ms() + 601_000);
    authorize(&plugin, &LoginAttempt::new(REDIRECT_URI)).await;
    assert_eq!(fetches(), 2, "fetched again once the cache expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_instance_keeps_the_providers_metadata_and_keys_and_nothing_of_a_login() {
    let idp = idp();
    let plugin = plugin(idp, entry(idp, "weft-basic", json!({"metadata_cache_secs": 600}))).await;
    let fetches = |path: &str| plugin.http_calls().iter().filter(|call| call.request.url.ends_with(path)).count();
    let log_in = |user: &'static str, password: &'static str| {
        let plugin = &plugin;
        async move {
            let (attempt, context, params) = sign_in(plugin, user, password).await;
            complete(plugin, &attempt, &context, &params).await
        }
    };
    assert_eq!(log_in("alice", "wonderland").await, Ok(alice()));
    assert_eq!((fetches("/openid-configuration"), fetches("/jwks")), (1, 1));
    // The store's copies spoilt: only the instance's own can serve the next logins.
    for key in plugin.kv_entries().into_keys() {
        plugin.kv_set(&key, b"not json".to_vec()).unwrap();
    }
    for (user, password, subject) in [("bob", "builder", "bob-0002"), ("alice", "wonderland", "alice-0001"), ("bob", "builder", "bob-0002")] {
        let answered = log_in(user, password).await.expect(user);
        assert_eq!(answered.subject, subject, "each login answers its own user, nothing of the one before");
    }
    assert_eq!((fetches("/openid-configuration"), fetches("/jwks")), (1, 1), "metadata and keys from the instance");
    // Every check still runs on a warm instance: another attempt's nonce is refused, and the next login goes through.
    let (attempt, context, params) = sign_in(&plugin, "alice", "wonderland").await;
    let other_nonce = LoginAttempt { nonce: "another-attempts-nonce".into(), ..attempt.clone() };
    assert_eq!(complete(&plugin, &other_nonce, &context, &params).await.unwrap_err().kind, RefusalKind::WrongNonce);
    assert_eq!(log_in("alice", "wonderland").await, Ok(alice()));
    // The instance's copies expire as the store's do.
    plugin.clock().set_ms(now_ms() + 601_000);
    assert_eq!(log_in("alice", "wonderland").await, Ok(alice()));
    assert_eq!((fetches("/openid-configuration"), fetches("/jwks")), (2, 2), "fetched again once expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_id_token_is_refused_with_what_is_wrong() {
    let idp = idp();
    for (client, kind) in [
        ("weft-tamper-aud", RefusalKind::WrongAudience),
        ("weft-tamper-iss", RefusalKind::WrongIssuer),
        ("weft-tamper-key", RefusalKind::BadSignature),
        ("weft-tamper-none", RefusalKind::BadSignature),
    ] {
        let plugin = plugin(idp, entry(idp, client, json!({}))).await;
        let (attempt, context, params) = sign_in(&plugin, "alice", "wonderland").await;
        let refusal = complete(&plugin, &attempt, &context, &params).await.expect_err(client);
        assert_eq!(refusal.kind, kind, "{client}: {}", refusal.message);
        assert!(plugin.logs().iter().any(|line| line.message == "login refused"), "{client}");
    }
    // The provider's own keys are refetched once for an unknown key: not on every call.
    let plugin = plugin(idp, entry(idp, "weft-tamper-key", json!({}))).await;
    let (attempt, context, params) = sign_in(&plugin, "alice", "wonderland").await;
    assert_eq!(complete(&plugin, &attempt, &context, &params).await.unwrap_err().kind, RefusalKind::BadSignature);
    let jwks = plugin.http_calls().iter().filter(|call| call.request.url.ends_with("/jwks")).count();
    assert_eq!(jwks, 1, "the key named by kid is in the set: no refetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_nonce_an_expired_token_a_wrong_verifier_and_a_reused_code_are_refused() {
    let idp = idp();
    let plugin = plugin(idp, entry(idp, "weft-basic", json!({}))).await;

    let (attempt, context, params) = sign_in(&plugin, "alice", "wonderland").await;
    let other_nonce = LoginAttempt { nonce: "another-attempts-nonce".into(), ..attempt.clone() };
    assert_eq!(complete(&plugin, &other_nonce, &context, &params).await.unwrap_err().kind, RefusalKind::WrongNonce);
    assert_eq!(complete(&plugin, &attempt, &context, &params).await.unwrap_err().kind, RefusalKind::TokenRefused, "a code is used once");

    let (attempt, context, params) = sign_in(&plugin, "alice", "wonderland").await;
    let other_verifier = LoginAttempt { code_verifier: LoginAttempt::new(REDIRECT_URI).code_verifier, ..attempt.clone() };
    let refusal = complete(&plugin, &other_verifier, &context, &params).await.unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::TokenRefused, "{}", refusal.message);
    assert!(refusal.message.contains("invalid_grant"), "{}", refusal.message);

    // The provider's tokens live ten minutes; the host's clock is two hours on.
    let (attempt, context, params) = sign_in(&plugin, "alice", "wonderland").await;
    plugin.clock().set_ms(now_ms() + 2 * 3600 * 1000);
    assert_eq!(complete(&plugin, &attempt, &context, &params).await.unwrap_err().kind, RefusalKind::Expired);
    // And a token from the host's future: issued two hours from "now".
    let (attempt, context, params) = {
        plugin.clock().set_ms(now_ms());
        sign_in(&plugin, "alice", "wonderland").await
    };
    plugin.clock().set_ms(now_ms() - 2 * 3600 * 1000);
    assert_eq!(complete(&plugin, &attempt, &context, &params).await.unwrap_err().kind, RefusalKind::Expired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_templates_and_attribute_requirements() {
    let idp = idp();
    let config = entry(
        idp,
        "weft-basic",
        json!({
            "user_profile_method": "userinfo_endpoint",
            "attribute_requirements": [{"attribute": "groups", "one_of": ["staff", "admins"]}],
            "user_mapping_provider": {"config": {
                "subject_template": "{{ user.sub }}",
                "localpart_template": "{{ user.email | localpart_from_email }}",
                "display_name_template": "{{ user.given_name }} {{ user.family_name | upper }} ({{ user.email.split('@')[1] }})",
                "confirm_localpart": true,
            }},
        }),
    );
    let plugin = plugin(idp, config).await;
    let (attempt, context, params) = sign_in(&plugin, "alice", "wonderland").await;
    let user = complete(&plugin, &attempt, &context, &params).await.expect("alice is staff");
    assert_eq!(user.localpart.as_deref(), Some("alice"));
    assert_eq!(user.display_name.as_deref(), Some("Alice LIDDELL (wonderland.example)"));
    assert!(user.confirm_localpart && user.emails.is_empty(), "{user:?}");
    assert!(plugin.http_calls().iter().any(|call| call.request.url.ends_with("/me")), "the claims came from userinfo");

    let (attempt, context, params) = sign_in(&plugin, "bob", "builder").await;
    let refusal = complete(&plugin, &attempt, &context, &params).await.expect_err("bob is a guest");
    assert_eq!((refusal.kind, refusal.message.as_str()), (RefusalKind::NotAllowed, "You are not authorised to log in here."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_and_unusable_callbacks_are_refused() {
    let idp = idp();
    let plugin = plugin(idp, entry(idp, "weft-basic", json!({}))).await;
    let attempt = LoginAttempt::new(REDIRECT_URI);
    let context = authorize(&plugin, &attempt).await.context;
    let p = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>();
    let declined = p(&[("error", "access_denied"), ("error_description", "The user declined"), ("state", &attempt.state)]);
    let refusal = complete(&plugin, &attempt, &context, &declined).await.unwrap_err();
    assert_eq!((refusal.kind, refusal.message.as_str()), (RefusalKind::ProviderError, "The identity provider answered access_denied: The user declined"));
    assert_eq!(complete(&plugin, &attempt, &context, &p(&[("state", &attempt.state)])).await.unwrap_err().kind, RefusalKind::InvalidCallback);
    let mixed_up = p(&[("code", "x"), ("state", &attempt.state), ("iss", "https://evil.example")]);
    assert_eq!(complete(&plugin, &attempt, &context, &mixed_up).await.unwrap_err().kind, RefusalKind::InvalidCallback);
    let forged = p(&[("code", "not-a-code"), ("state", &attempt.state)]);
    assert_eq!(complete(&plugin, &attempt, &context, &forged).await.unwrap_err().kind, RefusalKind::TokenRefused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_traps_fails_closed_and_a_silent_provider_is_refused_in_time() {
    let idp = idp();
    // A configuration the plugin refuses: every call traps.
    let mut broken = entry(idp, "weft-basic", json!({}));
    broken.as_object_mut().unwrap().remove("client_id");
    let plugin = plugin(idp, broken).await;
    let attempt = LoginAttempt::new(REDIRECT_URI);
    let call = SsoCall::Authorize { attempt: attempt.clone() };
    assert!(matches!(plugin.call(call.clone()).await, Err(CallFailure::Trap(reason)) if reason.contains("client_id")));
    assert_eq!(plugin.plugin.answer(&call).await, SsoAnswer::Refused(Refusal::plugin_failed()));
    let backend: Arc<dyn PluginBackend<Sso>> = plugin.plugin.clone();
    assert!(SsoProviders::new(vec![backend.clone()]).identity_providers().await.is_empty(), "a provider that cannot describe itself is not offered");
    let provider = weft_plugin_testkit::sso::SsoProvider::new(
        weft_plugin_testkit::sso::IdentityProvider { id: "oidc-test".into(), name: "Test".into(), icon: None, brand: None, allow_existing_users: false },
        backend,
    );
    let refusal = provider.authorize(&attempt).await.unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::PluginFailed, "{}", refusal.message);

    // A provider that accepts the connection and never answers: the request
    // gets the call's deadline but a reserve, in which the plugin refuses.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", silent.local_addr().unwrap());
    let config = json!({"idp_id": "silent", "idp_name": "Silent", "issuer": issuer, "skip_verification": true, "client_id": "c", "client_secret": "s"});
    let plugin = Testkit::new(super::built("oidc", "oidc.wasm"))
        .name("oidc-silent")
        .config(config)
        .capabilities(PluginCapabilities { allowed_outbound_hosts: vec![issuer], allow_private_addresses: true, ..PluginCapabilities::default() })
        .limits(PluginLimitsConfig { timeout_ms: 300, ..PluginLimitsConfig::default() })
        .live_http()
        .load_as::<Sso>()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let answer = plugin.call(call.clone()).await;
    assert!(
        matches!(&answer, Ok(SsoAnswer::Refused(r)) if r.kind == RefusalKind::ProviderUnavailable && r.message.contains("no answer in time")),
        "{answer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "bounded by the deadline: {:?}", started.elapsed());
    drop(silent);
}

#[test]
fn check_config_accepts_the_oidc_component_as_an_sso_provider_that_fails_closed() {
    use weft_plugin_runtime::{
        config::{Deployment, OnError, PluginConfig, PluginRole},
        verify,
    };
    let path = super::built("oidc", "oidc.wasm");
    let deployment = Deployment { instance: "main".into(), known_instances: vec!["main".into()], cache_dir: None };
    let good = json!({"idp_id": "test", "idp_name": "Test", "issuer": "https://idp.example", "client_id": "c", "client_secret": "s"});
    let problems = |role, on_error, config: &Value| {
        let config = serde_json::from_value(config.clone()).unwrap();
        let plugin = PluginConfig { name: "sso".into(), role, path: path.clone(), on_error, config, ..PluginConfig::default() };
        let mut problems = Vec::new();
        verify::check(&[plugin], &deployment, &mut |key, message| problems.push(format!("{key}: {message}")));
        problems
    };
    assert_eq!(problems(PluginRole::SsoProvider, None, &good), Vec::<String>::new());
    let as_spam_checker = problems(PluginRole::SpamChecker, None, &good);
    assert!(as_spam_checker.iter().any(|p| p.starts_with("plugins[0].path") && p.contains("`spam-checker` world")), "{as_spam_checker:?}");
    let fail_open = problems(PluginRole::SsoProvider, Some(OnError::FailOpen), &good);
    assert!(
        fail_open.iter().any(|p| p.starts_with("plugins[0].on_error") && p.contains("`fail-open` is not a policy of the sso-provider role")),
        "{fail_open:?}"
    );
    // The plugin checks its own configuration (`validate-config`), before any login.
    let mut no_client = good.clone();
    no_client.as_object_mut().unwrap().remove("client_id");
    let refused = problems(PluginRole::SsoProvider, None, &no_client);
    assert!(refused.iter().any(|p| p.starts_with("plugins[0].config: plugin `sso`") && p.contains("client_id")), "{refused:?}");
}
