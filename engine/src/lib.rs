//! berth engine: an LXD-compatible instance manager.
//!
//! Module map:
//! - `config`: the validation catalogue (key tables, device rules, names, cpusets, idmaps).
//! - `filter`: LXD's `?filter=` language.
//! - `sys`: syscall wrappers nix lacks (openat2, idmapped mounts, pidfds).
//! - `idmap`: id map allocation and rendering for unprivileged containers.
//! - `cgroup`: instance cgroups (v1 and v2 backends).
//! - `container`: the native container runtime.

pub mod cgroup;
pub mod config;
pub mod container;
pub mod filter;
pub mod idmap;
pub mod sys;
pub mod testsupport;
