//! The plugin host wired into berthd, through the real REST API and the `lxc` client,
//! with real compiled plugins (`berth_tests::wasm::*`, built by tests/build.rs).

mod faults;
mod manage;
mod policy;
mod support;
