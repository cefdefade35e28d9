//! Per-plugin settings: what the administrator controls about a plugin.
//! Everything has a safe default: enabled, fail-closed, 50 ms, 32 MiB, no
//! WASI capabilities.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::types::{ConfigMap, Hook};

/// What happens when a plugin breaks (trap, timeout, memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Treat the failure as a refusal (and as "not visible" for listings).
    #[default]
    FailClosed,
    /// Log the failure and carry on as if the plugin had allowed.
    FailOpen,
}

/// Resource limits for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call, enforced by epoch interruption.
    pub deadline: Duration,
    /// Total linear memory of the plugin instance, in bytes.
    pub memory_bytes: usize,
    /// Elements per table.
    pub table_elements: usize,
    /// Core instances per component instance.
    pub instances: usize,
    /// Tables per component instance.
    pub tables: usize,
    /// Linear memories per component instance.
    pub memories: usize,
    /// Log lines accepted per call; the rest are dropped (and counted).
    pub max_log_lines: usize,
    /// Bytes per log line; longer lines are cut.
    pub max_log_bytes: usize,
    /// Violations accepted per verdict; more is a failure (`OutputTooLarge`).
    pub max_violations: usize,
    /// Keys per patch; more is a failure.
    pub max_patch_keys: usize,
    /// Bytes of stdout/stderr kept per call; the rest is dropped.
    pub max_stdio_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(50),
            memory_bytes: 32 << 20,
            table_elements: 20_000,
            instances: 16,
            tables: 16,
            memories: 4,
            max_log_lines: 64,
            max_log_bytes: 4096,
            max_violations: 256,
            max_patch_keys: 256,
            max_stdio_bytes: 64 << 10,
        }
    }
}

impl Limits {
    /// Reject limits that would make every call fail or defeat the sandbox.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.deadline < Duration::from_millis(1) || self.deadline > Duration::from_secs(60) {
            return Err(format!("deadline {:?} outside 1ms..=60s", self.deadline));
        }
        // A Rust guest needs its 1 MiB shadow stack plus data.
        if self.memory_bytes < (2 << 20) || self.memory_bytes > (4 << 30) {
            return Err(format!(
                "memory limit {} outside 2 MiB..=4 GiB",
                self.memory_bytes
            ));
        }
        if self.instances == 0 || self.tables == 0 || self.memories == 0 {
            return Err("instance, table and memory counts must be at least 1".to_string());
        }
        Ok(())
    }
}

/// A host directory shown read-only to the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// Absolute host path.
    pub host_path: PathBuf,
    /// Path the guest sees (e.g. "/data").
    pub guest_path: String,
}

/// WASI capabilities granted to a plugin. Default: none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants {
    /// Directories preopened read-only (cap-std through wasmtime-wasi).
    pub read_only_dirs: Vec<DirGrant>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Real wall and monotonic clocks; without this both read zero, which
    /// keeps decisions reproducible.
    pub clocks: bool,
}

impl Grants {
    /// No directory, variable or clock granted.
    pub(crate) fn is_empty(&self) -> bool {
        self.read_only_dirs.is_empty() && self.env.is_empty() && !self.clocks
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        for dir in &self.read_only_dirs {
            if !dir.host_path.is_absolute() {
                return Err(format!(
                    "granted directory {} is not absolute",
                    dir.host_path.display()
                ));
            }
            if !dir.host_path.is_dir() {
                return Err(format!(
                    "granted directory {} does not exist",
                    dir.host_path.display()
                ));
            }
            if dir.guest_path.is_empty() {
                return Err("granted directory has an empty guest path".to_string());
            }
        }
        if self.env.keys().any(|k| k.is_empty() || k.contains('=')) {
            return Err(
                "environment variable names must be non-empty and contain no '='".to_string(),
            );
        }
        Ok(())
    }
}

/// Administrator-controlled settings of one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSettings {
    /// Disabled plugins stay installed but are never called.
    pub enabled: bool,
    /// Call order: lower runs first; ties by name.
    pub priority: i32,
    /// What a plugin failure means.
    pub failure_policy: FailurePolicy,
    /// The plugin's own configuration (`host.plugin-config`).
    pub config: ConfigMap,
    /// Lifecycle hooks delivered to the plugin; `None` means all.
    pub hooks: Option<Vec<Hook>>,
    /// Per-call resource limits.
    pub limits: Limits,
    /// WASI capabilities.
    pub grants: Grants,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            enabled: true,
            priority: 0,
            failure_policy: FailurePolicy::FailClosed,
            config: ConfigMap::new(),
            hooks: None,
            limits: Limits::default(),
            grants: Grants::default(),
        }
    }
}

impl PluginSettings {
    /// Validate before accepting them.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.limits.check()?;
        self.grants.check()
    }

    /// Whether `hook` is delivered to this plugin.
    pub fn wants(&self, hook: Hook) -> bool {
        self.hooks.as_ref().is_none_or(|h| h.contains(&hook))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_closed() {
        let s = PluginSettings::default();
        assert!(s.check().is_ok());
        assert_eq!(s.failure_policy, FailurePolicy::FailClosed);
        assert_eq!(s.limits.deadline, Duration::from_millis(50));
        assert_eq!(s.limits.memory_bytes, 32 << 20);
        assert!(s.grants.read_only_dirs.is_empty() && s.grants.env.is_empty() && !s.grants.clocks);
    }

    #[test]
    fn bad_limits_and_grants_are_refused() {
        let mut s = PluginSettings::default();
        s.limits.deadline = Duration::ZERO;
        assert!(s.check().is_err());
        let mut s = PluginSettings::default();
        s.limits.memory_bytes = 1024;
        assert!(s.check().is_err());
        let mut s = PluginSettings::default();
        s.grants.read_only_dirs.push(DirGrant {
            host_path: "relative".into(),
            guest_path: "/x".into(),
        });
        assert!(s.check().is_err());
        let mut s = PluginSettings::default();
        s.grants.env.insert("A=B".into(), "x".into());
        assert!(s.check().is_err());
    }

    #[test]
    fn hook_selection() {
        let mut s = PluginSettings::default();
        assert!(s.wants(Hook::OnStop));
        s.hooks = Some(vec![Hook::PreStart]);
        assert!(s.wants(Hook::PreStart));
        assert!(!s.wants(Hook::OnStop));
    }
}
