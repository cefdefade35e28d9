//! berth engine: an LXD-compatible instance manager.
//!
//! Module map:
//! - `config`: the validation catalogue (key tables, device rules, names, cpusets, idmaps).
//! - `filter`: LXD's `?filter=` language.

pub mod backup;
pub mod config;
pub mod filter;
pub mod image;
pub mod snapshot_rules;
pub mod storage;
pub mod testsupport;
