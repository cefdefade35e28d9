//! berth engine: an LXD-compatible instance manager.
//!
//! Module map:
//! - `config`: the validation catalogue (key tables, device rules, names, cpusets, idmaps).
//! - `filter`: LXD's `?filter=` language.
//! - `vm`: QEMU virtual machines (argv, QMP, accelerator probe, guest agent client).

pub mod config;
pub mod filter;
pub mod testsupport;
pub mod vm;
