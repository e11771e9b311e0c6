//! Weft's integration tests, in one binary: the configuration loader, every
//! storage function on SQLite and on a fresh PostgreSQL database, every
//! endpoint through a real server on port 0, and the `weft` binary itself.
//!
//! PostgreSQL comes from `WEFT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432`); each test creates its own database
//! and drops it afterwards.

mod support;

mod accounts;
mod appservices;
mod backup;
mod bad_input;
mod client_address;
mod concurrent_writes;
mod config;
mod conformance;
mod devices;
mod directory;
mod e2e_keys;
mod errors;
mod event_content;
mod federation;
mod filters;
mod ignoring;
mod join_rules;
mod keys;
mod login;
mod media;
mod plugins;
mod process;
mod profile;
mod push_delivery;
mod push_rules;
mod pushers;
mod refusals;
mod register;
mod relations;
mod request_limits;
mod room_versions;
mod rooms;
mod router;
mod search;
mod shutdown;
mod slow_clients;
mod spaces;
mod sso;
mod sso_browser;
mod sso_instances;
mod storage;
mod sync;
mod sync_fanout;
mod upgrades;
mod user_directory;
mod user_streams;
mod workers;
