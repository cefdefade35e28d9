//! Errors. Three different things go wrong and callers must tell them apart:
//! managing plugins (`PluginError`, mostly bad input at install), a plugin
//! saying no (`Rejection::Denied`/`Refused`, a policy decision) and a plugin
//! breaking (`Failure`: trap, timeout, memory; never treated as "allow"
//! unless that plugin is configured fail-open).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::types::{Hook, Violation};

/// Errors from managing plugins.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The cache directory cannot be created or used.
    #[error("plugin cache directory {path}: {source}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The wasmtime engine could not be set up.
    #[error("plugin engine setup failed: {reason}")]
    Engine {
        /// Why.
        reason: String,
    },
    /// Plugin names are used in paths, logs and filter clauses.
    #[error("invalid plugin name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The bytes are not a (valid) WebAssembly component.
    #[error("plugin {name}: not a valid WebAssembly component: {reason}")]
    NotAComponent {
        /// Plugin name.
        name: String,
        /// Compiler message.
        reason: String,
    },
    /// The component targets a `berth:plugin` version this host lacks.
    #[error("plugin {name}: uses {found}, but this host implements berth:plugin@{supported}")]
    IncompatibleVersion {
        /// Plugin name.
        name: String,
        /// The offending import or export, e.g. `berth:plugin/host@0.2.0`.
        found: String,
        /// What the host speaks.
        supported: &'static str,
    },
    /// The component exports nothing the host could call.
    #[error("plugin {name}: exports none of the berth:plugin@{supported} interfaces (it exports: {exports})")]
    NoKnownExport {
        /// Plugin name.
        name: String,
        /// What it does export, comma separated.
        exports: String,
        /// What the host speaks.
        supported: &'static str,
    },
    /// The component's imports cannot be satisfied (e.g. an unknown host
    /// interface) or its exports have the wrong types.
    #[error("plugin {name}: cannot be linked: {reason}")]
    Link {
        /// Plugin name.
        name: String,
        /// wasmtime's explanation.
        reason: String,
    },
    /// Calling `describe` or `predicates` at install failed.
    #[error("plugin {name}: failed during install: {failure}")]
    InstallCall {
        /// Plugin name.
        name: String,
        /// What happened.
        failure: Box<Failure>,
    },
    /// No plugin of that name.
    #[error("plugin {name} not found")]
    NotFound {
        /// Plugin name.
        name: String,
    },
    /// Settings out of range or naming something unusable.
    #[error("plugin {name}: invalid settings: {reason}")]
    InvalidSettings {
        /// Plugin name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A `plugin.<name>` filter clause names a predicate no enabled plugin offers.
    #[error("no enabled plugin provides filter predicate {name:?}")]
    UnknownPredicate {
        /// Predicate name.
        name: String,
    },
    /// A predicate refused its value (for example an unknown owner format):
    /// the filter clause is invalid.
    #[error("plugin {plugin}: predicate {predicate}: {message}")]
    Predicate {
        /// Plugin name.
        plugin: String,
        /// Predicate name.
        predicate: String,
        /// The plugin's error.
        message: String,
    },
    /// A plugin failed while evaluating a predicate (fail-closed).
    #[error(transparent)]
    Failed(Box<Failure>),
}

impl PluginError {
    /// Whether the caller sent something unusable (HTTP 400) as opposed to
    /// a server-side problem.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            PluginError::InvalidName { .. }
                | PluginError::NotAComponent { .. }
                | PluginError::IncompatibleVersion { .. }
                | PluginError::NoKnownExport { .. }
                | PluginError::Link { .. }
                | PluginError::InstallCall { .. }
                | PluginError::InvalidSettings { .. }
                | PluginError::UnknownPredicate { .. }
                | PluginError::Predicate { .. }
        )
    }
}

/// Why a plugin call broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The call ran past its deadline and was interrupted.
    Timeout {
        /// The configured deadline.
        deadline: Duration,
    },
    /// The plugin tried to use more memory than allowed.
    OutOfMemory {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The plugin exhausted its stack (wasm stack overflow or the guest's
    /// shadow stack running out of linear memory).
    StackExhausted,
    /// The plugin panicked; the message comes from the SDK's panic hook.
    Panic {
        /// Panic message.
        message: String,
    },
    /// Any other trap.
    Trap {
        /// wasmtime's message.
        message: String,
    },
    /// The plugin answered with more data than the host accepts.
    OutputTooLarge {
        /// What was too big.
        what: String,
    },
    /// The plugin could not be instantiated for the call.
    Instantiate {
        /// wasmtime's message.
        message: String,
    },
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Timeout { deadline } => write!(f, "deadline of {deadline:?} exceeded"),
            FailureKind::OutOfMemory { limit } => {
                write!(f, "memory limit of {limit} bytes exceeded")
            }
            FailureKind::StackExhausted => f.write_str("stack exhausted"),
            FailureKind::Panic { message } => write!(f, "panicked: {message}"),
            FailureKind::Trap { message } => write!(f, "trapped: {message}"),
            FailureKind::OutputTooLarge { what } => write!(f, "output too large: {what}"),
            FailureKind::Instantiate { message } => write!(f, "cannot instantiate: {message}"),
        }
    }
}

/// A plugin broke during a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin {plugin} failed after {elapsed:?}: {kind}")]
pub struct Failure {
    /// Plugin name.
    pub plugin: String,
    /// What broke.
    pub kind: FailureKind,
    /// Time spent in the call.
    pub elapsed: Duration,
}

/// Why a request was not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A validator denied the request (policy decision, HTTP 400/403).
    #[error("denied by plugin {plugin}: {}", join(violations))]
    Denied {
        /// Plugin name.
        plugin: String,
        /// Reasons (bounded in number and length by the host).
        violations: Vec<Violation>,
    },
    /// A `pre-*` hook refused the action.
    #[error("{hook} refused by plugin {plugin}: {reason}")]
    Refused {
        /// Plugin name.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// The plugin's reason.
        reason: String,
    },
    /// A fail-closed plugin broke (HTTP 500/503).
    #[error(transparent)]
    Failed(Box<Failure>),
}

impl Rejection {
    /// The plugin responsible.
    pub fn plugin(&self) -> &str {
        match self {
            Rejection::Denied { plugin, .. } | Rejection::Refused { plugin, .. } => plugin,
            Rejection::Failed(f) => &f.plugin,
        }
    }
}

fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}
