//! Generated bindings, one module per capability world. Each world is its own
//! `generate!` so that [`crate::export!`] can emit exactly the interfaces a
//! plugin implements: wit-component merges the per-world type sections, and a
//! world whose export macro is never invoked adds nothing.

#![allow(missing_docs)]

/// Shared types, host imports and the `describe` export.
pub mod base {
    wit_bindgen::generate!({
        world: "base",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "berth_sdk::bindings::base",
        runtime_path: "berth_sdk::wit_bindgen::rt",
        generate_all,
    });
}

/// World `instance-validator`.
pub mod instance_validator {
    wit_bindgen::generate!({
        world: "instance-validator",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "berth_sdk::bindings::instance_validator",
        runtime_path: "berth_sdk::wit_bindgen::rt",
        with: {
            "berth:plugin/types@0.1.0": berth_sdk::bindings::base::berth::plugin::types,
            "berth:plugin/host@0.1.0": berth_sdk::bindings::base::berth::plugin::host,
        },
    });
}

/// World `profile-validator`.
pub mod profile_validator {
    wit_bindgen::generate!({
        world: "profile-validator",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "berth_sdk::bindings::profile_validator",
        runtime_path: "berth_sdk::wit_bindgen::rt",
        with: {
            "berth:plugin/types@0.1.0": berth_sdk::bindings::base::berth::plugin::types,
            "berth:plugin/host@0.1.0": berth_sdk::bindings::base::berth::plugin::host,
        },
    });
}

/// World `project-validator`.
pub mod project_validator {
    wit_bindgen::generate!({
        world: "project-validator",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "berth_sdk::bindings::project_validator",
        runtime_path: "berth_sdk::wit_bindgen::rt",
        with: {
            "berth:plugin/types@0.1.0": berth_sdk::bindings::base::berth::plugin::types,
            "berth:plugin/host@0.1.0": berth_sdk::bindings::base::berth::plugin::host,
        },
    });
}

/// World `device-validator`.
pub mod device_validator {
    wit_bindgen::generate!({
        world: "device-validator",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "berth_sdk::bindings::device_validator",
        runtime_path: "berth_sdk::wit_bindgen::rt",
        with: {
            "berth:plugin/types@0.1.0": berth_sdk::bindings::base::berth::plugin::types,
            "berth:plugin/host@0.1.0": berth_sdk::bindings::base::berth::plugin::host,
        },
    });
}

/// World `instance-filter`.
pub mod instance_filter {
    wit_bindgen::generate!({
        world: "instance-filter",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "berth_sdk::bindings::instance_filter",
        runtime_path: "berth_sdk::wit_bindgen::rt",
        with: {
            "berth:plugin/types@0.1.0": berth_sdk::bindings::base::berth::plugin::types,
            "berth:plugin/host@0.1.0": berth_sdk::bindings::base::berth::plugin::host,
        },
    });
}

/// World `lifecycle-hooks`.
pub mod lifecycle_hooks {
    wit_bindgen::generate!({
        world: "lifecycle-hooks",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "berth_sdk::bindings::lifecycle_hooks",
        runtime_path: "berth_sdk::wit_bindgen::rt",
        with: {
            "berth:plugin/types@0.1.0": berth_sdk::bindings::base::berth::plugin::types,
            "berth:plugin/host@0.1.0": berth_sdk::bindings::base::berth::plugin::host,
        },
    });
}
