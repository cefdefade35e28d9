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
//! - `storage`: pool drivers (dir, btrfs) behind one `Driver` trait and a static registry.
//! - `image`: image upload/fingerprint, safe unpacking into image volumes, export, publish.
//! - `backup`: instance/volume backup tarballs (streamed export, safe import, btrfs send).
//! - `snapshot_rules`: refresh comparison, snapshot names, expiry and schedules (pure).
//! - `sys`: syscall wrappers nix lacks (openat2, idmapped mounts, pidfds).
//! - `idmap`: id map allocation and rendering for unprivileged containers.
//! - `cgroup`: instance cgroups (v1 and v2 backends).
//! - `container`: the native container runtime.
//! - `vm`: the QEMU driver (argv builder, QMP, accelerator probe, guest agent client).
//! - `client`: a minimal HTTP client over the unix socket (CLI subcommands, tests).
//! - `error`: the daemon error and its HTTP status mapping.
//! - `testsupport`: test tiers and the skip-or-fail rule.

pub mod api;
pub mod backup;
pub mod cgroup;
pub mod client;
pub mod config;
pub mod container;
pub mod daemon;
pub mod db;
pub mod error;
pub mod events;
pub mod filter;
pub mod idmap;
pub mod image;
pub mod instance;
pub mod model;
pub mod operations;
pub mod snapshot_rules;
pub mod storage;
pub mod sys;
pub mod testsupport;
pub mod vm;
