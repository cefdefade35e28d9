//! Integration tests: real compiled plugins (built by build.rs) loaded into
//! `PluginHost`.

mod faults;
mod filters;
mod hooks;
mod manage;
mod support;
mod validate;

/// Every plugin and fixture built from plugins/ is exercised somewhere in
/// these tests (wasmtime test-programs style): a new fixture without a test
/// fails here.
#[test]
fn every_plugin_and_fixture_is_used() {
    let sources = [
        include_str!("faults.rs"),
        include_str!("filters.rs"),
        include_str!("hooks.rs"),
        include_str!("manage.rs"),
        include_str!("validate.rs"),
    ]
    .concat();
    for (konst, path) in berth_tests::wasm::ALL {
        assert!(std::path::Path::new(path).exists(), "{path} missing");
        assert!(
            sources.contains(&format!("wasm::{konst}")),
            "plugin const {konst} is not used by any test"
        );
    }
}
