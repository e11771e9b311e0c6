//! Weft, a Matrix homeserver. This crate is the `weft` binary and the library
//! behind it; the map:
//!
//! - [`cli`]: the `weft` command and its subcommands (the only user of `anyhow`).
//! - [`config`]: the TOML schema with Synapse's option names, merging several
//!   files, validation with every error at once, the zero-setup configuration.
//! - [`services`]: the shared state handlers receive, built from the configuration.
//! - [`server`]: binding listeners, serving, graceful shutdown, background jobs.
//! - [`api`]: HTTP endpoints (client, federation keys, admin, health, metrics),
//!   the ruma-typed request pipeline and the one place Matrix errors are built.
//! - [`storage`]: every SQL statement, for SQLite and PostgreSQL alike, with
//!   streams that carry their writer's instance name and stream id.
//! - [`crypto`]: password hashing, access tokens, the server signing key.
//! - [`http_client`]: how every outbound HTTP client is built (one TLS
//!   configuration, made once); the plugin runtime's, re-exported.
//! - [`endpoint_groups`]: the endpoint groups of Synapse's worker
//!   documentation, which configuration, the API and the router share.
//! - [`jobs`]: the rule every background consumer follows: an item that
//!   cannot be processed is logged, counted and skipped.
//! - [`lifecycle`]: long-running jobs: one manager starts them, restarts one
//!   that panics, and stops them in order so that shutdown drains.
//! - [`media`]: the media repository: uploads, the files under
//!   `media_store_path`, downloads and thumbnails.
//! - [`plugins`]: the WebAssembly plugin runtime (the `weft-plugin-runtime`
//!   crate in `runtime/`: wasmtime, limits, capabilities, the spam-checker
//!   chain call sites use), re-exported and wired to this server's
//!   configuration, storage and internal API.
//! - [`ratelimit`]: Synapse-style leaky buckets for the `rc_*` options.
//! - [`router`]: `weft router`, the reverse proxy that sends each endpoint
//!   group to the instances serving it, and its nginx equivalent.
//! - [`rooms`]: the event pipeline (build, authorise, sign, persist), room
//!   creation, membership, history visibility, supported room versions.
//! - [`supervisor`]: `weft supervise`, running a whole deployment on one
//!   machine and restarting processes that die.
//! - [`sync`]: `/sync` tokens, the notifier that wakes long-polls, and the
//!   assembly of sync responses.
//! - [`telemetry`]: logging and Prometheus metrics.
//! - [`user_directory`]: who `/user_directory/search` finds, and the
//!   background updater that keeps it from the events stream.
//!
//! Requests flow `server` → `api::ruma_route` (limits, auth, parsing) →
//! handler in `api::client` → `storage`. Lower layers never build HTTP
//! responses; each layer has its own error type.

pub mod api;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod endpoint_groups;
pub use weft_plugin_runtime::http_client;
#[cfg(test)]
mod input_properties;
pub mod jobs;
pub mod json;
pub mod lifecycle;
pub mod media;
pub mod plugins;
pub mod presence;
pub mod push;
pub mod ratelimit;
pub mod replication;
pub mod rooms;
pub mod router;
pub mod server;
pub mod services;
pub mod storage;
pub mod supervisor;
pub mod sync;
pub mod telemetry;
pub mod typing;
pub mod user_directory;
