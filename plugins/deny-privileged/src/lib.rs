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
        violations.push(Violation::new("security.privileged", "privileged containers are not allowed"));
    }
    if config.is_true("security.nesting") && !settings.is_true("allow-nesting") {
        violations.push(Violation::new("security.nesting", "nesting is not allowed"));
    }
    if let Some(idmap) = config.value("raw.idmap") {
        if idmap.lines().any(maps_host_root) {
            violations.push(Violation::new("raw.idmap", "mapping host root is not allowed"));
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

export!(DenyPrivileged: InstanceValidator, ProfileValidator);
