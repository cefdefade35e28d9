//! The persisted form of a plugin's settings (the `plugins` table) and its JSON shape in
//! the REST API. The host's `PluginSettings` is plain Rust; this is its serde mirror.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use berth_plugin_host::{DirGrant, FailurePolicy, Grants, Hook, Limits, PluginSettings};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::ConfigMap;

/// Per-call limits, in API units (milliseconds and bytes). Absent fields keep defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsRecord {
    pub deadline_ms: u64,
    pub memory_bytes: usize,
    pub max_log_lines: usize,
    pub max_violations: usize,
}

impl Default for LimitsRecord {
    fn default() -> Self {
        let l = Limits::default();
        LimitsRecord {
            deadline_ms: u64::try_from(l.deadline.as_millis()).unwrap_or(50),
            memory_bytes: l.memory_bytes,
            max_log_lines: l.max_log_lines,
            max_violations: l.max_violations,
        }
    }
}

/// A read-only directory grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirRecord {
    pub host_path: String,
    pub guest_path: String,
}

/// WASI grants (default: none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrantsRecord {
    pub read_only_dirs: Vec<DirRecord>,
    pub env: BTreeMap<String, String>,
    pub clocks: bool,
}

/// Everything an administrator sets about a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettingsRecord {
    pub enabled: bool,
    pub priority: i32,
    /// `fail-closed` (default) or `fail-open`.
    pub failure_policy: String,
    pub config: ConfigMap,
    /// Hook names (`pre-create`, `onstart`, ...); `null` means every hook.
    pub hooks: Option<Vec<String>>,
    pub limits: LimitsRecord,
    pub grants: GrantsRecord,
}

impl Default for SettingsRecord {
    fn default() -> Self {
        SettingsRecord {
            enabled: true,
            priority: 0,
            failure_policy: "fail-closed".into(),
            config: ConfigMap::new(),
            hooks: None,
            limits: LimitsRecord::default(),
            grants: GrantsRecord::default(),
        }
    }
}

/// A row of the `plugins` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub name: String,
    /// sha256 of `<data-dir>/plugins/<name>.wasm`.
    pub sha256: String,
    pub settings: SettingsRecord,
}

/// A hook by its WIT name.
pub fn parse_hook(name: &str) -> Result<Hook> {
    Hook::ALL
        .into_iter()
        .find(|h| h.name() == name)
        .ok_or_else(|| {
            let known: Vec<&str> = Hook::ALL.iter().map(|h| h.name()).collect();
            Error::bad(format!("Unknown hook \"{name}\" (known: {})", known.join(", ")))
        })
}

impl SettingsRecord {
    /// The host's settings; a bad hook name or policy is a 400.
    pub fn to_settings(&self) -> Result<PluginSettings> {
        let failure_policy = match self.failure_policy.as_str() {
            "" | "fail-closed" => FailurePolicy::FailClosed,
            "fail-open" => FailurePolicy::FailOpen,
            other => {
                return Err(Error::bad(format!(
                    "Invalid failure_policy \"{other}\" (expected fail-closed or fail-open)"
                )))
            }
        };
        let hooks = match &self.hooks {
            None => None,
            Some(names) => Some(names.iter().map(|n| parse_hook(n)).collect::<Result<Vec<_>>>()?),
        };
        let limits = Limits {
            deadline: Duration::from_millis(self.limits.deadline_ms),
            memory_bytes: self.limits.memory_bytes,
            max_log_lines: self.limits.max_log_lines,
            max_violations: self.limits.max_violations,
            ..Limits::default()
        };
        let grants = Grants {
            read_only_dirs: self
                .grants
                .read_only_dirs
                .iter()
                .map(|d| DirGrant { host_path: PathBuf::from(&d.host_path), guest_path: d.guest_path.clone() })
                .collect(),
            env: self.grants.env.clone(),
            clocks: self.grants.clocks,
        };
        Ok(PluginSettings {
            enabled: self.enabled,
            priority: self.priority,
            failure_policy,
            config: self.config.clone(),
            hooks,
            limits,
            grants,
        })
    }

    /// Applies one `key=value` (the `berthd plugin set` form): `enabled`, `priority`,
    /// `failure_policy`, `hooks` (comma list, `all` for every hook), `deadline_ms`,
    /// `memory_bytes`, or `config.<key>` (empty value removes the key).
    pub fn set_key(&mut self, key: &str, value: &str) -> Result<()> {
        let num = |v: &str| v.parse::<u64>().map_err(|_| Error::bad(format!("Invalid {key} \"{v}\": not a number")));
        match key {
            "enabled" => self.enabled = crate::config::is_true(value),
            "priority" => {
                self.priority = value.parse().map_err(|_| Error::bad(format!("Invalid priority \"{value}\"")))?
            }
            "failure_policy" => self.failure_policy = value.to_string(),
            "hooks" if value == "all" => self.hooks = None,
            "hooks" => {
                self.hooks = Some(value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
            }
            "deadline_ms" => self.limits.deadline_ms = num(value)?,
            "memory_bytes" => {
                self.limits.memory_bytes = usize::try_from(num(value)?).map_err(|_| Error::bad("memory_bytes too large"))?
            }
            _ => match key.strip_prefix("config.") {
                Some(k) if value.is_empty() => {
                    self.config.remove(k);
                }
                Some(k) => {
                    self.config.insert(k.to_string(), value.to_string());
                }
                None => return Err(Error::bad(format!("Unknown plugin setting \"{key}\""))),
            },
        }
        self.to_settings().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_to_host_defaults() {
        let s = SettingsRecord::default().to_settings().unwrap();
        assert_eq!(s, PluginSettings::default());
    }

    #[test]
    fn bad_values_are_400() {
        let mut r = SettingsRecord { failure_policy: "maybe".into(), ..SettingsRecord::default() };
        assert_eq!(r.to_settings().unwrap_err().kind().status(), 400);
        r.failure_policy = "fail-open".into();
        r.hooks = Some(vec!["pre-launch".into()]);
        assert!(r.to_settings().unwrap_err().to_string().contains("pre-launch"));
    }

    #[test]
    fn set_keys() {
        let mut r = SettingsRecord::default();
        r.set_key("config.default.cpu", "2").unwrap();
        r.set_key("priority", "-3").unwrap();
        r.set_key("hooks", "pre-create,on-update").unwrap();
        let s = r.to_settings().unwrap();
        assert_eq!(s.config["default.cpu"], "2");
        assert_eq!(s.priority, -3);
        assert_eq!(s.hooks, Some(vec![Hook::PreCreate, Hook::OnUpdate]));
        r.set_key("config.default.cpu", "").unwrap();
        assert!(r.config.is_empty());
        assert!(r.set_key("bogus", "1").is_err());
        assert!(r.set_key("hooks", "nope").is_err());
    }
}
