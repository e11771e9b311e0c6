//! Listening and shutting down: binds every listener of this instance, serves
//! each with its router, starts the background jobs this instance runs
//! through a `weft_core::lifecycle::Manager`, and on shutdown stops accepting, lets
//! requests in flight finish (within `http_timeouts.shutdown_grace`), then
//! stops the jobs in order (the last one records the final stream positions)
//! and closes the database pool. Jobs are stopped only after the requests,
//! so that the positions they record include every acknowledged write.
//!
//! Binding is separate from serving so that callers (tests, the CLI) learn
//! the bound addresses before traffic starts; tests bind port 0.

mod background;

/// The connection loop every listener serves with (the `weft-http` crate,
/// which `weft router` shares).
pub use weft_http as connections;
pub use weft_http::no_delay;

use std::{future::Future, io, net::SocketAddr, path::PathBuf};

use axum::serve::ListenerExt;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

use weft_core::config::ListenerConfig;
use weft_services::services::AppState;

/// Where a listener ended up listening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

enum Socket {
    Tcp(TcpListener),
    Tls(connections::tls::TlsListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

/// An instance with its sockets bound, ready to serve.
pub struct Server {
    state: AppState,
    sockets: Vec<(Socket, axum::Router)>,
    /// Per socket: whether it serves the client API, for printing URLs.
    serves_client: Vec<bool>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}: {source}")]
pub struct BindError {
    pub address: String,
    #[source]
    pub source: io::Error,
}

impl Server {
    pub async fn bind(state: AppState) -> Result<Self, BindError> {
        // Counters recorded before the recorder exists would be lost.
        weft_core::telemetry::metrics_handle();
        connections::raise_file_limit();
        let mut sockets = Vec::new();
        let mut serves_client = Vec::new();
        for listener in state.config.own_listeners() {
            let acceptor = match listener.tls {
                true => Some(connections::tls::acceptor(&state.config).map_err(|message| BindError {
                    address: format!("port {}", listener.port.unwrap_or(0)),
                    source: io::Error::new(io::ErrorKind::InvalidInput, message),
                })?),
                false => None,
            };
            for socket in bind_listener(listener).await? {
                let socket = match (socket, &acceptor) {
                    (Socket::Tcp(tcp), Some(acceptor)) => {
                        let address = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
                        Socket::Tls(connections::tls::TlsListener::new(tcp, acceptor.clone()).map_err(|source| BindError { address, source })?)
                    }
                    (socket, _) => socket,
                };
                sockets.push((socket, crate::router(state.clone(), listener)));
                serves_client.push(listener.serves(weft_core::config::Resource::Client));
            }
        }
        Ok(Self { state, sockets, serves_client })
    }

    /// The TCP addresses that serve the client API.
    pub fn client_addresses(&self) -> Vec<SocketAddr> {
        self.addresses()
            .into_iter()
            .zip(&self.serves_client)
            .filter_map(|(address, serves)| match (address, serves) {
                (BoundAddress::Tcp(address), true) => Some(address),
                _ => None,
            })
            .collect()
    }

    pub fn addresses(&self) -> Vec<BoundAddress> {
        self.sockets
            .iter()
            .filter_map(|(socket, _)| match socket {
                Socket::Tcp(listener) => listener.local_addr().ok().map(BoundAddress::Tcp),
                Socket::Tls(listener) => axum::serve::Listener::local_addr(listener).ok().map(BoundAddress::Tcp),
                Socket::Unix(_, path) => Some(BoundAddress::Unix(path.clone())),
            })
            .collect()
    }

    /// Serves until `shutdown` completes, then drains and closes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop, stopped) = watch::channel(false);
        let limits = connections::ConnectionLimits::from_config(&self.state.config);
        let mut tasks = JoinSet::new();
        for (socket, router) in self.sockets {
            let mut stopped = stopped.clone();
            let signal = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            match socket {
                Socket::Tcp(listener) => {
                    tasks.spawn(connections::serve(listener.tap_io(no_delay), router, limits, signal));
                }
                Socket::Tls(listener) => {
                    tasks.spawn(connections::serve(listener, router, limits, signal));
                }
                Socket::Unix(listener, _) => {
                    tasks.spawn(connections::serve(listener, router, limits, signal));
                }
            }
        }
        let jobs = weft_core::lifecycle::Manager::start(background::jobs(&self.state), weft_core::lifecycle::Backoff::default());

        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        let _ = stop.send(true);
        while let Some(result) = tasks.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "a listener task panicked");
            }
        }
        tracing::info!("requests finished; stopping the jobs");
        jobs.stop().await;
        self.state.replication.shutdown();
        self.state.storage.close().await;
        tracing::info!("stopped");
    }
}

/// The names of the background jobs this instance runs, in start order (as
/// logged at start-up).
pub fn job_names(state: &AppState) -> Vec<&'static str> {
    background::jobs(state).iter().map(|job| job.name()).collect()
}

async fn bind_listener(listener: &ListenerConfig) -> Result<Vec<Socket>, BindError> {
    if let Some(path) = &listener.path {
        let _ = std::fs::remove_file(path);
        let socket = tokio::net::UnixListener::bind(path).map_err(|source| BindError { address: path.display().to_string(), source })?;
        return Ok(vec![Socket::Unix(socket, path.clone())]);
    }
    let port = listener.port.unwrap_or(0);
    let mut sockets = Vec::new();
    let mut dual_stack_on = None;
    for address in &listener.bind_addresses {
        let target = SocketAddr::new(*address, port);
        match TcpListener::bind(target).await {
            Ok(socket) => {
                if address.is_unspecified() && address.is_ipv6() {
                    dual_stack_on = socket.local_addr().ok().map(|a| a.port());
                }
                sockets.push(Socket::Tcp(socket));
            }
            // `::` usually accepts IPv4 too, so `0.0.0.0` on the same port is
            // already covered (Synapse ignores this error the same way).
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && address.is_unspecified() && dual_stack_on == Some(port) => {}
            Err(source) => return Err(BindError { address: target.to_string(), source }),
        }
    }
    Ok(sockets)
}
