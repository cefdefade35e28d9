//! Refuses privileged containers: `security.privileged`, `security.nesting`
//! and a `raw.idmap` entry that maps host root (uid/gid 0) into the
//! instance. Plugin config `projects` (comma list, default all) selects where
//! the rule applies; `allow-nesting=true` lets nesting through.

use berth_sdk::prelude::*;

struct DenyPrivileged;

impl Plugin for DenyPrivileged {
    const NAME: &'static str = "deny-privileged";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "denies privileged containers";
    const CONFIG_KEYS: Option<&'static [&'static str]> =
        Some(&["security.privileged", "security.nesting", "raw.idmap"]);
    /// Verdicts depend only on the declared keys and the plugin's config
    /// (per-project settings read the project): reusable across names.
    const REUSE: Option<Reuse> = Some(Reuse { project: true, ..Reuse::NONE });
    const DEVICES: bool = false;
}

/// Whether one `raw.idmap` line ("both 0 1000", "uid 0-10 5000-5010") maps
/// host id 0; the host side is the second field.
fn maps_host_root(line: &str) -> bool {
    let mut fields = line.split_whitespace();
    let (Some(_kind), Some(host)) = (fields.next(), fields.next()) else {
        return false;
    };
    match host.split_once('-') {
        Some((lo, _)) => lo.trim() == "0",
        None => host == "0",
    }
}

fn check(config: &[(String, String)], project: &str) -> Verdict {
    let settings = plugin_config();
    let applies = settings
        .value("projects")
        .is_none_or(|list| list.split(',').any(|p| p.trim() == project));
    if !applies {
        return Verdict::Allow;
    }
    let mut violations = Vec::new();
    if config.is_true("security.privileged") {
        violations.push(Violation::new(
            "security.privileged",
            "privileged containers are not allowed",
        ));
    }
    if config.is_true("security.nesting") && !settings.is_true("allow-nesting") {
        violations.push(Violation::new("security.nesting", "nesting is not allowed"));
    }
    if let Some(idmap) = config.value("raw.idmap") {
        if idmap.lines().any(maps_host_root) {
            violations.push(Violation::new(
                "raw.idmap",
                "mapping host root is not allowed",
            ));
        }
    }
    Verdict::from_violations(violations)
}

impl InstanceValidator for DenyPrivileged {
    fn validate_create(instance: &InstanceView) -> Verdict {
        check(&instance.expanded_config, &instance.project)
    }
    fn validate_update(instance: &InstanceView, _previous: &InstanceView) -> Verdict {
        check(&instance.expanded_config, &instance.project)
    }
}

impl ProfileValidator for DenyPrivileged {
    fn validate_profile(profile: &ProfileView, _previous: Option<&ProfileView>) -> Verdict {
        check(&profile.config, &profile.project)
    }
}

impl ProjectValidator for DenyPrivileged {
    /// A project must not lift LXD's privilege restriction.
    fn validate_project(project: &ProjectView, _previous: Option<&ProjectView>) -> Verdict {
        match project.config.value("restricted.containers.privilege") {
            Some("allow") => Verdict::deny(
                "restricted.containers.privilege",
                "projects may not allow privileged containers",
            ),
            _ => Verdict::Allow,
        }
    }
}

impl DeviceValidator for DenyPrivileged {
    /// No host root filesystem or raw unix devices; with plugin config
    /// `force-readonly-disks=true`, host-path disks are made read-only.
    fn validate_device(instance: &InstanceView, device: &Device) -> Verdict {
        let settings = plugin_config();
        let applies = settings
            .value("projects")
            .is_none_or(|list| list.split(',').any(|p| p.trim() == instance.project));
        if !applies {
            return Verdict::Allow;
        }
        let field = |key: &str| format!("devices.{}.{key}", device.name);
        match device.config.value("type") {
            Some("unix-char") | Some("unix-block") => {
                Verdict::deny(field("type"), "raw unix devices are not allowed")
            }
            Some("disk") => match device.config.value("source") {
                Some("/") => Verdict::deny(
                    field("source"),
                    "the host root filesystem cannot be attached",
                ),
                Some(src)
                    if src.starts_with('/')
                        && settings.is_true("force-readonly-disks")
                        && !device.config.is_true("readonly") =>
                {
                    Patch::new().set("readonly", "true").into_verdict()
                }
                _ => Verdict::Allow,
            },
            _ => Verdict::Allow,
        }
    }
}

export!(DenyPrivileged: InstanceValidator, ProfileValidator, ProjectValidator, DeviceValidator);
