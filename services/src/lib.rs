//! Weft's homeserver services (`weft-services`): everything between the
//! HTTP API and storage. The map:
//!
//! - [`services`]: the state every request handler shares (`Services`,
//!   `AppState`), built once at start-up from the configuration.
//! - [`rooms`]: the event pipeline (build, authorise, sign, persist), room
//!   creation, membership, history visibility, supported room versions.
//! - [`sync`]: `/sync` tokens, the notifier that wakes long-polls, and the
//!   assembly of sync responses.
//! - [`federation`]: rooms across servers: PDUs received and checked,
//!   this server as a resident server, joining and inviting across
//!   servers, and the outbound transaction sender.
//! - [`push`]: push rules and the notifications they make.
//! - [`presence`], [`typing`]: the in-memory streams and their handlers.
//! - [`replication`]: who writes what, the bus between processes, and calls
//!   to the writer of a stream.
//! - [`media`]: the media repository: uploads, the files under
//!   `media_store_path`, downloads and thumbnails.
//! - [`user_directory`]: who `/user_directory/search` finds, and the
//!   background updater that keeps it from the events stream.
//! - [`appservices`]: what the server asks application services (ping,
//!   user and alias queries, third-party lookups) through the
//!   appservice-notifier plugin.
//! - [`jobs`]: the rule every background consumer follows.
//! - [`plugins`]: the plugin runtime (`weft-plugin-runtime`) re-exported and
//!   wired to this server's configuration, storage and internal API.
//! - [`token_owners`]: who owns each access token in use, kept between
//!   requests until a device is deleted.
//! - [`sso`]: the `sso-provider` plugins and the identity providers they
//!   stand for, as the API's SSO endpoints use them.
//!
//! May call: `weft_core`, `weft_storage`, `weft_federation`, `weft_plugin_runtime`. Must not:
//! build HTTP responses (that is `weft-api`, above). The modules reach one
//! another through the one `Services` struct; they live in one crate
//! because of it (see docs/development.md).

pub mod appservices;
pub mod federation;
#[cfg(test)]
mod input_properties;
pub mod jobs;
pub mod media;
pub mod plugins;
pub mod presence;
pub mod push;
pub mod replication;
pub mod rooms;
pub mod services;
pub mod sso;
pub mod sync;
pub mod token_owners;
pub mod typing;
pub mod user_directory;
