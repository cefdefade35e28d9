//! Instance names must match a regex: plugin config `project.<name>` for a
//! project, else `default`. No pattern configured means no rule. The pattern
//! is anchored (`^(?:...)$`) so a partial match is not enough. Patterns are
//! `regex-lite` syntax: the `regex` crate's, without Unicode classes (`\p{..}`;
//! `\w`, `\d` are ASCII), which instance names (ASCII) do not need.

use berth_sdk::prelude::*;
use regex_lite::Regex;

mod simple;

struct NamePolicy;

impl Plugin for NamePolicy {
    const NAME: &'static str = "name-policy";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "instance names must match a per-project regex";
    // Only the name (and project) matter.
    const CONFIG_KEYS: Option<&'static [&'static str]> = Some(&[]);
    /// Verdicts depend only on the name, the project and the plugin's config.
    const REUSE: Option<Reuse> = Some(Reuse { name: true, project: true, ..Reuse::NONE });
    const DEVICES: bool = false;
}

fn check(instance: &InstanceView) -> Verdict {
    let config = plugin_config();
    let key = format!("project.{}", instance.project);
    let Some(pattern) = config.value(&key).or_else(|| config.value("default")) else {
        return Verdict::Allow;
    };
    // Common patterns (classes, literals, counts) are matched without building a
    // regex, which would otherwise be compiled on every call.
    if let Some(simple) = simple::Simple::parse(pattern) {
        return if simple.is_match(&instance.name) {
            Verdict::Allow
        } else {
            Verdict::deny("name", format!("name {:?} does not match {pattern:?}", instance.name))
        };
    }
    match Regex::new(&format!("^(?:{pattern})$")) {
        Ok(re) if re.is_match(&instance.name) => Verdict::Allow,
        Ok(_) => Verdict::deny(
            "name",
            format!("name {:?} does not match {pattern:?}", instance.name),
        ),
        // A broken pattern is the administrator's mistake: refuse rather than
        // silently letting every name through.
        Err(e) => Verdict::deny("name", format!("name policy pattern is invalid: {e}")),
    }
}

impl InstanceValidator for NamePolicy {
    fn validate_create(instance: &InstanceView) -> Verdict {
        check(instance)
    }
    fn validate_update(instance: &InstanceView, previous: &InstanceView) -> Verdict {
        if instance.name == previous.name {
            Verdict::Allow
        } else {
            check(instance)
        }
    }
}

export!(NamePolicy: InstanceValidator);
