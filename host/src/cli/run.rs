//! `weft run`: load the configuration (or prepare the zero-setup one), build
//! the services, bind, and serve until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;

use crate::{
    config::{self, zero_setup},
    server::Server,
    services::Services,
    telemetry,
};

pub async fn run(files: Vec<PathBuf>, data_dir: PathBuf, port: Option<u16>) -> anyhow::Result<()> {
    let zero_setup = files.is_empty();
    let files = if zero_setup {
        let (path, created) = zero_setup::prepare(&data_dir, port.unwrap_or(zero_setup::DEFAULT_PORT))
            .with_context(|| format!("cannot prepare the data directory {}", data_dir.display()))?;
        if created {
            println!("Wrote a configuration for a first look at Weft to {}", path.display());
        }
        vec![path]
    } else {
        files
    };
    let mut config = config::load_files(&files).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    if zero_setup && let (Some(port), Some(listener)) = (port, config.listeners.first_mut()) {
        listener.port = Some(port);
    }

    telemetry::init_logging(&config.logging);
    telemetry::metrics_handle();
    for line in config::describe(&config).lines() {
        tracing::info!("{line}");
    }
    for warning in config::warnings(&config) {
        tracing::warn!("{warning}");
    }

    let registration_open = config.enable_registration;
    let state = Services::build(config).await.context("cannot start")?;
    let server = Server::bind(state.clone()).await?;
    let urls: Vec<String> = server
        .client_addresses()
        .into_iter()
        .map(|address| {
            let host = if address.ip().is_loopback() { "localhost".to_owned() } else { address.ip().to_string() };
            format!("http://{host}:{}/", address.port())
        })
        .collect();
    for url in &urls {
        println!("Weft is listening on {url}");
    }
    if registration_open {
        let homeserver = state.config.public_baseurl.clone().or_else(|| urls.first().cloned()).unwrap_or_else(|| "this server".into());
        println!("Registration is open: sign up from any Matrix client with homeserver {homeserver}");
    }
    server.run(super::shutdown_signal()).await;
    Ok(())
}
