//! Integration test harness: paths of the plugins built by `build.rs`.

/// `.wasm` files of every crate in `plugins/`, built for wasm32-wasip2.
pub mod wasm {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}
