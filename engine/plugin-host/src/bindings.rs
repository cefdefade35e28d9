//! Generated host bindings for world `full` (every export). Which exports a
//! given component really has is probed at install (see `inspect`); the
//! per-interface `GuestIndices` are built only for those.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "full",
});
