//! Host side of berth's WebAssembly plugins (wasmtime component model).
//!
//! The contract is `wit/` (package `berth:plugin@0.1.0`). A plugin exports
//! any subset of: instance/profile/project/device validation, filter
//! predicates and visibility, lifecycle hooks (plus `describe`). The host
//! finds out which at install and calls each plugin only for what it
//! implements.
//!
//! Guarantees:
//! * every call runs in a fresh `Store` instantiated from a pre-linked
//!   `InstancePre`: no state survives between calls (instances come from
//!   wasmtime's pooling allocator, whose slots are reset before reuse);
//! * each call is bounded in time (epoch interruption, default 50 ms), memory
//!   (default 32 MiB), tables and instances, and in what the host accepts
//!   back (log lines, violations, patch keys, stderr);
//! * a trap, timeout or exhausted memory is never "allow": fail-closed unless
//!   the plugin is configured fail-open, and failures (`Failure`) are a
//!   different type from denials (`Rejection::Denied`/`Refused`);
//! * no WASI filesystem, environment or clocks (and never network) unless
//!   the plugin's `Grants` say so; directories are read-only;
//! * compiled code is cached on disk, keyed by the engine's compatibility
//!   hash and the component's sha256;
//! * install/remove/settings swap an `Arc` snapshot: hot reload.
//!
//! The crate knows nothing about the daemon: the engine implements
//! [`HostQueries`] and maps [`PluginError`]/[`Rejection`] to HTTP.

mod batch;
mod bindings;
mod cache;
mod convert;
mod dispatch;
mod error;
mod host;
mod inspect;
mod needs;
mod pipe;
mod plugin;
mod pool;
mod settings;
mod state;
mod ticker;
mod types;
mod verdicts;
mod warm;

pub use batch::PreparedView;
pub use dispatch::{HookReport, InstanceOp, InstanceRequest, Outcome};
pub use error::{Failure, FailureKind, PluginError, Rejection};
pub use host::{PluginHost, PluginInfo};
pub use inspect::{Capability, API_VERSION};
pub use pool::DEFAULT_INSTANCES;
pub use settings::{DirGrant, FailurePolicy, Grants, Limits, PluginSettings};
pub use state::{LogRecord, LogSink};
pub use types::{
    ConfigMap, Devices, Hook, HostQueries, InstanceType, InstanceView, Level, Metadata, NoQueries,
    Patch, ProfileView, ProjectView, QueryError, Verdict, Violation,
};
