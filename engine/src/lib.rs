//! berth engine: an LXD-compatible instance manager.
//!
//! Module map:
//! - `api`: the LXD REST API over hyper (one file per resource), listeners, envelopes.
//! - `daemon`: shared state, the in-memory model and the high-level record operations.
//! - `db`: redb tables, schema version and migrations.
//! - `model`: stored records and config expansion.
//! - `operations`, `events`: background operations and the `/1.0/events` hub.
//! - `config`: the validation catalogue (key tables, device rules, names, cpusets, idmaps).
//! - `filter`: LXD's `?filter=` language.
//! - `client`: a minimal HTTP client over the unix socket (CLI subcommands, tests).
//! - `error`: the daemon error and its HTTP status mapping.

pub mod api;
pub mod client;
pub mod config;
pub mod daemon;
pub mod db;
pub mod error;
pub mod events;
pub mod filter;
pub mod model;
pub mod operations;
pub mod testsupport;
