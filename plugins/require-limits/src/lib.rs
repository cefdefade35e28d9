//! Every instance must carry `limits.cpu` and `limits.memory` (after
//! profiles). Plugin config `default.cpu` / `default.memory` fill a missing
//! key by mutation instead of denying; `projects` (comma list) limits the
//! rule to those projects.

use berth_sdk::prelude::*;

struct RequireLimits;

impl Plugin for RequireLimits {
    const NAME: &'static str = "require-limits";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "requires limits.cpu and limits.memory";
    const CONFIG_KEYS: Option<&'static [&'static str]> = Some(&["limits.cpu", "limits.memory"]);
    /// Verdicts depend only on the declared keys and the plugin's config
    /// (per-project settings read the project): reusable across names.
    const REUSE: Option<Reuse> = Some(Reuse { project: true, ..Reuse::NONE });
    const DEVICES: bool = false;
}

fn applies(config: &[(String, String)], project: &str) -> bool {
    config
        .value("projects")
        .is_none_or(|list| list.split(',').any(|p| p.trim() == project))
}

fn check(instance: &InstanceView) -> Verdict {
    let config = plugin_config();
    if !applies(&config, &instance.project) {
        return Verdict::Allow;
    }
    let mut patch = Patch::new();
    let mut violations = Vec::new();
    for (key, default_key) in [
        ("limits.cpu", "default.cpu"),
        ("limits.memory", "default.memory"),
    ] {
        match instance.expanded_config.value(key) {
            Some(v) if !v.is_empty() => {
                if key == "limits.memory" && !v.ends_with('%') && parse_size(v).is_err() {
                    violations.push(Violation::new(key, format!("{v:?} is not a size")));
                }
            }
            _ => match config.value(default_key) {
                Some(default) => patch = patch.set(key, default),
                None => violations.push(Violation::new(key, format!("{key} must be set"))),
            },
        }
    }
    if violations.is_empty() {
        patch.into_verdict()
    } else {
        Verdict::Deny(violations)
    }
}

impl InstanceValidator for RequireLimits {
    fn validate_create(instance: &InstanceView) -> Verdict {
        check(instance)
    }
    fn validate_update(instance: &InstanceView, _previous: &InstanceView) -> Verdict {
        check(instance)
    }
}

export!(RequireLimits: InstanceValidator);
