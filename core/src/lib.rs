//! Weft's core: what every other Weft crate shares and nothing server-side
//! (no database, HTTP server, Redis, image or WebAssembly code). The map:
//!
//! - [`config`]: the TOML schema with Synapse's option names, merging several
//!   files, validation with every error at once (plus the checks a caller
//!   adds, such as the plugin runtime's).
//! - [`appservice`]: application service registrations and their namespaces
//!   (read from `app_service_config_files` by `config`).
//! - [`streams`]: the streams' names, who writes each, and which events
//!   persister owns a room.
//! - [`endpoint_groups`]: the endpoint groups of Synapse's worker
//!   documentation, which configuration, the API and the router share.
//! - [`routes`]: every route of the HTTP API with its group, as data, for
//!   the router.
//! - [`access_token`]: where a request carries its access token, and the
//!   lookup of a token's owner (implemented by storage).
//! - [`crypto`]: password hashing, access tokens, the server signing key.
//! - [`json`]: conversions between `serde_json` values and ruma's raw JSON.
//! - [`ratelimit`]: Synapse-style leaky buckets for the `rc_*` options.
//! - [`telemetry`]: logging and Prometheus metrics.
//! - [`lifecycle`]: long-running jobs: one manager starts them, restarts one
//!   that panics, and stops them in order so that shutdown drains.
//!
//! Above it: `weft-storage` (SQL), `weft-services` (the homeserver),
//! `weft-api` (HTTP), `weft-router`, and the `weft` binary.

/// The outbound address policy (`ip_range_blacklist`, `ip_range_whitelist`),
/// shared by plugins and federation.
pub use weft_plugin_config::address_policy;

pub mod access_token;
pub mod appservice;
pub mod config;
pub mod crypto;
pub mod endpoint_groups;
#[cfg(test)]
mod input_properties;
#[cfg(any(test, feature = "input-strategies"))]
pub mod input_strategies;
pub mod json;
pub mod lifecycle;
pub mod ratelimit;
pub mod routes;
pub mod streams;
pub mod telemetry;
