//! Storage: pools, volumes and snapshots.
//!
//! The low layer is [`drivers`]: one [`drivers::Driver`] per pool, bound to its paths, knowing
//! nothing about the database or the API. Every call is synchronous; the daemon runs them in
//! `spawn_blocking`. The on-disk layout mirrors LXD so operators find things where they expect:
//! `<pool>/containers/<project>_<name>`, `<pool>/containers-snapshots/<name>/<snap>`,
//! `<pool>/images/<fingerprint>`, `<pool>/custom/<project>_<vol>` and so on.

pub mod drivers;
mod volume;
pub mod vm_volume;

pub use volume::{validate_name, VolumeType, Volume, DEFAULT_PROJECT};
