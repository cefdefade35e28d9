//! berth engine: an LXD-compatible instance manager.
//!
//! Module map:
//! - `config`: the validation catalogue (key tables, device rules, names, cpusets, idmaps).
//! - `filter`: LXD's `?filter=` language.
//! - `storage`: pool drivers (dir, btrfs) behind one `Driver` trait and a static registry.
//! - `image`: image upload/fingerprint, safe unpacking into image volumes, export, publish.
//! - `backup`: instance/volume backup tarballs (streamed export, safe import, btrfs send).
//! - `snapshot_rules`: refresh comparison, snapshot names, expiry and schedules (pure).

pub mod backup;
pub mod config;
pub mod filter;
pub mod image;
pub mod snapshot_rules;
pub mod storage;
pub mod testsupport;
