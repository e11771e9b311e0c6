//! The SSO pages: plain HTML rendered from templates named as Synapse names
//! its `sso` templates, built in (`templates/`) or replaced by an operator's
//! file of the same name in `templates.custom_template_directory`. Values are
//! HTML-escaped (MiniJinja's auto-escaping of `.html` templates).
//!
//! May call: `weft_core::config` (the template directory).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use minijinja::Environment;
use serde::Serialize;

use weft_services::services::Services;

/// The built-in templates, by Synapse's names.
const BUILT_IN: &[(&str, &str)] = &[
    ("sso_error.html", include_str!("templates/sso_error.html")),
    ("sso_redirect_confirm.html", include_str!("templates/sso_redirect_confirm.html")),
    ("sso_login_idp_picker.html", include_str!("templates/sso_login_idp_picker.html")),
    ("sso_auth_account_details.html", include_str!("templates/sso_auth_account_details.html")),
    ("sso_auth_confirm.html", include_str!("templates/sso_auth_confirm.html")),
    ("sso_auth_success.html", include_str!("templates/sso_auth_success.html")),
    ("sso_auth_bad_user.html", include_str!("templates/sso_auth_bad_user.html")),
    ("sso_account_deactivated.html", include_str!("templates/sso_account_deactivated.html")),
];

/// An HTML page with `status`, never cached, never framed.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("content-security-policy", HeaderValue::from_static("frame-ancestors 'none'"));
    response
}

/// Renders template `name` with `context` (plus `server_name`). A custom
/// template that fails to render falls back to the built-in one, logged.
pub fn render(services: &Services, name: &str, context: impl Serialize) -> String {
    let mut context = serde_json::to_value(context).unwrap_or_default();
    if let Some(object) = context.as_object_mut() {
        object.insert("server_name".into(), services.server_name.as_str().into());
    }
    let built_in = BUILT_IN.iter().find(|(n, _)| *n == name).map_or("", |(_, source)| source);
    if let Some(dir) = &services.config.templates.custom_template_directory {
        let path = dir.join(name);
        if let Ok(source) = std::fs::read_to_string(&path) {
            match render_source(name, source, &context) {
                Ok(page) => return page,
                Err(error) => tracing::error!(template = %path.display(), %error, "a custom SSO template does not render: the built-in one is used"),
            }
        }
    }
    render_source(name, built_in.to_owned(), &context).unwrap_or_else(|error| {
        tracing::error!(template = name, %error, "a built-in SSO template does not render");
        "<!doctype html><title>Error</title><p>This page cannot be shown.</p>".to_owned()
    })
}

fn render_source(name: &str, source: String, context: &serde_json::Value) -> Result<String, minijinja::Error> {
    let mut env = Environment::new();
    env.add_template_owned(name.to_owned(), source)?;
    env.get_template(name)?.render(context)
}

/// The error page: `error` a short code (Synapse's), `description` for people.
pub fn error(services: &Services, status: StatusCode, error: &str, description: &str) -> Response {
    html(status, render(services, "sso_error.html", serde_json::json!({"error": error, "error_description": description})))
}
