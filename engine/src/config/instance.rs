//! Instance/profile/expanded config validation: per-key checks from the table, then the
//! cross-key rules of LXD's `ValidConfig`.

use std::collections::BTreeMap;

use super::instance_keys::lookup;
use super::validators::is_true;
use super::{idmap, raw_lxc, ConfigError, ConfigLevel, InstanceType};

/// Host policy knobs that change what validation accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// `BERTH_UNPRIVILEGED_ONLY`: refuse privileged containers and root mappings.
    pub unprivileged_only: bool,
}

impl Policy {
    /// The policy from the environment (`BERTH_UNPRIVILEGED_ONLY`).
    pub fn from_env() -> Policy {
        Policy { unprivileged_only: idmap::unprivileged_only() }
    }
}

/// Legacy `security.syscalls` names and their current equivalents (each pair exclusive).
const SYSCALL_ALIASES: &[(&str, &str)] = &[
    ("security.syscalls.whitelist", "security.syscalls.allow"),
    ("security.syscalls.blacklist", "security.syscalls.deny"),
    ("security.syscalls.blacklist_default", "security.syscalls.deny_default"),
    ("security.syscalls.blacklist_compat", "security.syscalls.deny_compat"),
];

/// Whether the host architecture has a compat syscall table LXD can filter.
fn host_has_compat_syscalls() -> bool {
    matches!(std::env::consts::ARCH, "x86_64" | "aarch64" | "powerpc64")
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue { key: key.to_string(), reason: reason.into() }
}

/// [`super::validate_instance_config`] with an explicit [`Policy`].
pub fn validate_instance_config_with(
    config: &BTreeMap<String, String>,
    ty: InstanceType,
    level: ConfigLevel,
    policy: Policy,
) -> Result<(), ConfigError> {
    let ty = match level {
        ConfigLevel::Instance => ty,
        ConfigLevel::Expanded | ConfigLevel::Profile => InstanceType::Any,
    };
    for (key, value) in config {
        if level == ConfigLevel::Profile {
            if key.starts_with("volatile.") {
                return Err(ConfigError::Other("Volatile keys can only be set on instances".into()));
            }
            if key.starts_with("image.") {
                return Err(ConfigError::Other("Image keys can only be set on instances".into()));
            }
        }
        let spec = lookup(key).ok_or_else(|| ConfigError::UnknownKey(key.clone()))?;
        // A key of the other instance type is "unknown" for that type, as in LXD.
        if !spec.scope.allows(ty) {
            return Err(ConfigError::UnknownKey(key.clone()));
        }
        spec.validator.check(value).map_err(|r| invalid(key, r))?;
        check_key_policy(key, value, policy)?;
    }
    check_exclusions(config)
}

/// Per-key rules that depend on the host or the policy.
fn check_key_policy(key: &str, value: &str, policy: Policy) -> Result<(), ConfigError> {
    match key {
        "raw.lxc" => raw_lxc::validate_raw_lxc(value, policy.unprivileged_only).map_err(|e| invalid(key, e.reason())),
        "raw.idmap" if policy.unprivileged_only => {
            idmap::allowed_unprivileged_only_map(value).map_err(|e| invalid(key, e.reason()))
        }
        "security.privileged" if policy.unprivileged_only && is_true(value) => Err(invalid(
            key,
            "berth was configured to only allow unprivileged containers (BERTH_UNPRIVILEGED_ONLY)",
        )),
        "security.syscalls.deny_compat" | "security.syscalls.blacklist_compat"
            if !value.is_empty() && !host_has_compat_syscalls() =>
        {
            Err(invalid(key, format!("{key} isn't supported on this architecture")))
        }
        _ => Ok(()),
    }
}

/// The mutual exclusions of LXD `ValidConfig` (presence of a non-empty value counts).
fn check_exclusions(config: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let set = |k: &str| config.get(k).is_some_and(|v| !v.is_empty());
    for (legacy, current) in SYSCALL_ALIASES {
        if set(legacy) && set(current) {
            return Err(ConfigError::Other(format!("{legacy} is mutually exclusive with {current} (its legacy alias)")));
        }
    }
    let allow = set("security.syscalls.allow") || set("security.syscalls.whitelist");
    let deny_keys = [
        "security.syscalls.deny",
        "security.syscalls.deny_default",
        "security.syscalls.deny_compat",
        "security.syscalls.blacklist",
        "security.syscalls.blacklist_default",
        "security.syscalls.blacklist_compat",
    ];
    let deny = deny_keys.iter().any(|k| set(k));
    // As in LXD only the allow/deny families conflict; intercepts combine with raw.seccomp.
    if set("raw.seccomp") && (allow || deny) {
        return Err(ConfigError::Other("raw.seccomp is mutually exclusive with security.syscalls*".into()));
    }
    if allow && deny {
        return Err(ConfigError::Other(
            "security.syscalls.allow is mutually exclusive with security.syscalls.deny*".into(),
        ));
    }
    let yes = |k: &str| config.get(k).is_some_and(|v| is_true(v));
    if yes("security.syscalls.intercept.mount") {
        check_mount_intercept(config)?;
    }
    if yes("security.privileged") && yes("nvidia.runtime") {
        return Err(ConfigError::Other("nvidia.runtime is incompatible with privileged containers".into()));
    }
    Ok(())
}

/// LXD `SyscallInterceptMountFilter`: `.fuse` entries are `fs=fuse-binary`, and no
/// filesystem is both in `.allowed` and redirected to FUSE.
fn check_mount_intercept(config: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let list = |k: &str| -> Vec<String> {
        config
            .get(k)
            .map(|v| v.split(',').map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect())
            .unwrap_or_default()
    };
    let allowed = list("security.syscalls.intercept.mount.allowed");
    for ent in list("security.syscalls.intercept.mount.fuse") {
        let Some((fs, binary)) = ent.split_once('=') else {
            return Err(invalid(
                "security.syscalls.intercept.mount.fuse",
                format!("not of the form 'filesystem=fuse-binary': {ent}"),
            ));
        };
        if fs.is_empty() || binary.is_empty() {
            return Err(invalid(
                "security.syscalls.intercept.mount.fuse",
                format!("not of the form 'filesystem=fuse-binary': {ent}"),
            ));
        }
        if allowed.iter().any(|a| a == fs) {
            return Err(ConfigError::Other(format!(
                "security.syscalls.intercept.mount.fuse and security.syscalls.intercept.mount.allowed specify same filesystem {fs}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "instance_tests.rs"]
mod tests;
