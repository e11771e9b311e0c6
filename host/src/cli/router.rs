//! `weft router`: load the shared configuration, connect to its database
//! (read-only use: access tokens for sticky `/sync`), bind `[router]`'s
//! addresses (and its TLS port) and proxy until SIGINT or SIGTERM.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{config, router, server::connections::tls, storage::Storage, telemetry};

pub async fn run(files: Vec<PathBuf>) -> anyhow::Result<()> {
    let config = config::load_files(&files).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    telemetry::init_logging(&config.logging);
    let storage = Storage::connect(&config.database, "router").await.context("cannot connect to the database to look up access tokens")?;
    let state = Arc::new(router::RouterState::new(&config, Some(storage))?);
    for instance in state.table().instances() {
        tracing::info!(instance = %instance.name, address = %instance.address, "routing to");
    }

    let settings = config.router.clone().unwrap_or_default();
    let mut listeners = Vec::new();
    let mut tls_listeners = Vec::new();
    let acceptor = match settings.tls_port {
        Some(_) => Some(tls::acceptor(&config).map_err(|message| anyhow::anyhow!("router.tls_port: {message}"))?),
        None => None,
    };
    for address in &settings.bind_addresses {
        let address = SocketAddr::new(*address, settings.port);
        let listener = TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}"))?;
        let bound = listener.local_addr()?;
        println!("Weft router is listening on http://{bound}/");
        listeners.push(listener);
        if let (Some(port), Some(acceptor)) = (settings.tls_port, &acceptor) {
            let address = SocketAddr::new(address.ip(), port);
            let listener = TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}"))?;
            println!("Weft router is listening on https://{}/", listener.local_addr()?);
            tls_listeners.push(tls::TlsListener::new(listener, acceptor.clone())?);
        }
    }
    let limits = crate::server::connections::ConnectionLimits::from_config(&config);
    router::serve(listeners, tls_listeners, state, limits, super::shutdown_signal()).await?;
    Ok(())
}
