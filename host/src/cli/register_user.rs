//! `weft register-user`: Synapse's `register_new_matrix_user` for Weft. Asks
//! the server for a nonce, signs the registration with the shared secret and
//! posts it. The secret comes from `-k` or from the configuration files.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
};

use anyhow::{Context, bail};

use crate::{api::admin::compute_mac, config};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration files to read the shared secret and server address from.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Vec<PathBuf>,
    /// The local part of the new user; asked for when not given.
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// The new user's password; asked for (hidden) when not given.
    #[arg(short = 'p', long = "password")]
    password: Option<String>,
    /// Make the user a server admin.
    #[arg(short = 'a', long = "admin", conflicts_with = "no_admin")]
    admin: bool,
    /// Make the user an ordinary user (the default).
    #[arg(long = "no-admin")]
    no_admin: bool,
    /// The shared secret, instead of reading it from the configuration.
    #[arg(short = 'k', long = "shared-secret")]
    shared_secret: Option<String>,
    /// The user type, such as `bot` or `support`.
    #[arg(short = 't', long = "user-type")]
    user_type: Option<String>,
    /// The server's client URL; defaults to `public_baseurl` or the first client listener.
    server_url: Option<String>,
}

pub async fn register_user(args: Args) -> anyhow::Result<()> {
    let loaded = if args.config.is_empty() { None } else { Some(config::load_files(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?) };
    let secret = match (&args.shared_secret, &loaded) {
        (Some(secret), _) => secret.clone(),
        (None, Some(config)) => match (&config.registration_shared_secret, &config.registration_shared_secret_path) {
            (Some(secret), _) => secret.clone(),
            (None, Some(path)) => std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?.trim().to_owned(),
            (None, None) => bail!("the configuration has no registration_shared_secret"),
        },
        (None, None) => bail!("give the shared secret with -k or a configuration with -c"),
    };
    let base = match (&args.server_url, &loaded) {
        (Some(url), _) => url.clone(),
        (None, Some(config)) => default_url(config),
        (None, None) => "http://localhost:8008".to_owned(),
    };
    let base = base.trim_end_matches('/');
    let user = match args.user {
        Some(user) => user,
        None => prompt("New user localpart: ")?,
    };
    let password = match args.password {
        Some(password) => password,
        None => {
            if !std::io::stdin().is_terminal() {
                bail!("no password given: use -p when not running in a terminal");
            }
            let password = rpassword::prompt_password("Password: ")?;
            if password != rpassword::prompt_password("Confirm password: ")? {
                bail!("the passwords do not match");
            }
            password
        }
    };
    if password.is_empty() {
        bail!("the password must not be empty");
    }

    let client = crate::http_client::builder().build()?;
    let endpoint = format!("{base}/_synapse/admin/v1/register");
    let nonce: serde_json::Value = client.get(&endpoint).send().await.with_context(|| format!("cannot reach {endpoint}"))?.json().await?;
    let Some(nonce) = nonce.get("nonce").and_then(|n| n.as_str()) else {
        bail!("the server did not hand out a nonce: {nonce}");
    };
    let mac = compute_mac(&secret, nonce, &user, &password, args.admin, args.user_type.as_deref());
    let mut body = serde_json::json!({
        "nonce": nonce,
        "username": user,
        "password": password,
        "admin": args.admin,
        "mac": hex::encode(hmac::Mac::finalize(mac).into_bytes()),
    });
    if let Some(user_type) = &args.user_type {
        body["user_type"] = user_type.clone().into();
    }
    let response = client.post(&endpoint).json(&body).send().await?;
    let status = response.status();
    let reply: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("registration failed ({status}): {}", reply.get("error").and_then(|e| e.as_str()).unwrap_or("no reason given"));
    }
    println!("Registered {}", reply.get("user_id").and_then(|u| u.as_str()).unwrap_or("the user"));
    Ok(())
}

fn default_url(config: &config::Config) -> String {
    if let Some(url) = &config.public_baseurl {
        return url.clone();
    }
    let port = config.own_listeners().iter().find(|listener| listener.serves(config::Resource::Client)).and_then(|listener| listener.port).unwrap_or(8008);
    format!("http://localhost:{port}")
}

fn prompt(question: &str) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no user given: use -u when not running in a terminal");
    }
    print!("{question}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let line = line.trim().to_owned();
    if line.is_empty() {
        bail!("no user given");
    }
    Ok(line)
}
