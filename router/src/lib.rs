//! `weft router`: the reverse proxy in front of a Weft deployment, and the
//! nginx configuration that does the same job (`weft gen-proxy-config`).
//!
//! Both come from one table derived from the shared configuration
//! (`table`): each endpoint group of the worker document is served by the
//! instances whose `instance_map` entry lists it in `serves`, or by `main`.
//! Requests are classified by the route table the server's routes are
//! checked against (`classify`, over `weft_core::routes`), so nobody writes
//! regular expressions of the Matrix API by hand.
//!
//! - `table`: group to instances, from the configuration.
//! - `classify`: request to group, and what it sticks by.
//! - `balance`: rendezvous hashing, round robin, instances marked down.
//! - `users`: access token to user, through `weft_core::access_token::
//!   TokenOwners` (the database, `weft_storage`, handed in by the binary),
//!   cached briefly.
//! - `connect`, `proxy`: the streaming HTTP proxy with failover.
//! - `nginx`: the equivalent nginx configuration.
//!
//! May call: `weft_core` (configuration, routes, endpoint groups, streams,
//! access tokens), `weft_http` (the connection loop it shares with the
//! server's listeners). Must not: depend on the API, the services or storage
//! (`weft-router` is built without them), serve any endpoint itself (except
//! `/health`), or write to the database (it only reads access tokens).

mod balance;
mod classify;
mod connect;
pub mod nginx;
mod proxy;
mod table;
mod users;

use std::{future::Future, sync::Arc, time::Duration};

use axum::{Router, body::Body, routing::get, serve::ListenerExt};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio::net::TcpListener;

pub use balance::{Health, rendezvous, score};
pub use classify::{Classified, Classifier, ClassifyError, Sticky};
pub use table::{Address, Instance, RoutingTable, TableError};

use connect::Connector;
use users::UserLookup;

use weft_core::access_token::TokenOwners;
use weft_core::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Classify(#[from] ClassifyError),
}

/// Everything a request needs, shared by all connections.
pub struct RouterState {
    table: RoutingTable,
    classifier: Classifier,
    users: UserLookup,
    health: Health,
    /// Pools connections per instance; see `connect`.
    client: Client<Connector, Body>,
}

impl RouterState {
    /// The router for `config`. `tokens` (the database: `weft_storage::Storage`)
    /// resolves access tokens for sticky `/sync`; without it `/sync` is
    /// balanced like any other group.
    pub fn new(config: &Config, tokens: Option<impl TokenOwners + 'static>) -> Result<Self, RouterError> {
        let settings = config.router.clone().unwrap_or_default();
        let table = RoutingTable::from_config(config)?;
        let classifier = Classifier::new(&weft_core::routes::all_routes(), settings.initial_sync_separately)?;
        let addresses = table.instances().iter().map(|instance| instance.address.clone()).collect();
        let connector = Connector::new(addresses, Duration::from_millis(settings.connect_timeout_ms));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            health: Health::new(table.instances().len(), Duration::from_millis(settings.down_for_ms)),
            users: UserLookup::new(tokens.map(|tokens| Arc::new(tokens) as Arc<dyn TokenOwners>), Duration::from_millis(settings.token_cache_ms)),
            table,
            classifier,
            client,
        })
    }

    pub fn table(&self) -> &RoutingTable {
        &self.table
    }
}

/// The router's HTTP service: `/health`, and everything else forwarded.
pub fn app(state: Arc<RouterState>) -> Router {
    Router::new().route("/health", get(|| async { "OK" })).fallback(proxy::forward).with_state(state)
}

/// Serves on every listener until `shutdown` completes, then gives requests
/// in flight (long-polls included) the shutdown grace period to finish.
pub async fn serve(
    listeners: Vec<TcpListener>,
    tls_listeners: Vec<weft_http::tls::TlsListener>,
    state: Arc<RouterState>,
    limits: weft_http::ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    weft_http::raise_file_limit();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop_signal = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        tasks.spawn(weft_http::serve(listener.tap_io(weft_http::no_delay), app(state.clone()), limits, stop_signal()));
    }
    for listener in tls_listeners {
        tasks.spawn(weft_http::serve(listener, app(state.clone()), limits, stop_signal()));
    }
    shutdown.await;
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}
