//! Weft, a Matrix homeserver. This crate is the `weft` binary (`cli`,
//! `supervisor`) and the library behind it, which re-exports the modules of
//! the layers below under the names they had when they were one crate, so
//! that `weft::config`, `weft::storage`, `weft::api`, ... resolve for the
//! integration tests and for anyone embedding Weft. The map, bottom up:
//!
//! - `weft-core` ([`config`], [`streams`], [`endpoint_groups`], [`routes`],
//!   [`access_token`], [`crypto`], [`json`], [`ratelimit`], [`telemetry`],
//!   [`lifecycle`]): what every layer shares. [`config`] here adds
//!   `zero_setup` and the loading that runs the plugin runtime's checks.
//! - `weft-plugin-runtime` ([`plugins`], [`http_client`]): the WebAssembly
//!   plugin runtime, wired to this server in `weft-services`.
//! - `weft-storage` ([`storage`]): every SQL statement, for SQLite and
//!   PostgreSQL alike, and the migrations.
//! - `weft-services` ([`services`], [`rooms`], [`sync`], [`push`],
//!   [`presence`], [`typing`], [`replication`], [`media`],
//!   [`user_directory`], [`jobs`], [`plugins`]): the homeserver.
//! - `weft-http` (`server::connections`): the connection loop every listener
//!   and the router serve with.
//! - `weft-api` ([`api`], [`server`]): the HTTP endpoints, the request
//!   pipeline, the listeners and shutdown.
//! - `weft-router` ([`router`]): `weft router` and its nginx equivalent.
//! - this crate: [`cli`], the `weft` command (the only user of `anyhow`),
//!   and [`supervisor`], `weft supervise`.
//!
//! Requests flow `server` → `api::ruma_route` (limits, auth, parsing) →
//! handler in `api::client` → services → `storage`. Lower layers never build
//! HTTP responses; each layer has its own error type.

pub mod cli;
pub mod config;
pub mod supervisor;

pub use weft_api::{self as api, server};
pub use weft_core::{access_token, crypto, endpoint_groups, json, lifecycle, ratelimit, routes, streams, telemetry};
pub use weft_federation as federation;
pub use weft_plugin_runtime::http_client;
pub use weft_router as router;
pub use weft_services::{jobs, media, plugins, presence, push, replication, rooms, services, sync, typing, user_directory};
pub use weft_storage as storage;
