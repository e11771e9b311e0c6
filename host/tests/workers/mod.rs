//! A real deployment on one machine: `main`, two event persisters and two
//! generic workers as separate `weft` processes, on a fresh PostgreSQL
//! database and a Redis server of the test's own (so it can be restarted).

mod appservices;
mod deployment;
mod failover;
mod faults;
mod media;
mod push;
mod replication;
mod supervisor;
mod validation;

/// For tests elsewhere that need a real deployment (plugins pinned to a worker).
pub(crate) use deployment::{Deployment, Redis, SECRET};
