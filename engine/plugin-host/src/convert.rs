//! Domain types ⇄ generated WIT types. Values coming *from* a plugin are
//! bounded here: this is where "the host must bound what it accepts" is
//! enforced for verdicts.

use crate::bindings::berth::plugin::types as wit;
use crate::error::FailureKind;
use crate::settings::Limits;
use crate::types::{
    ConfigMap, Devices, Hook, InstanceType, InstanceView, Level, Metadata, Patch, ProfileView,
    ProjectView, QueryError, Verdict, Violation,
};

/// Longest field or message kept from a violation.
const MAX_VIOLATION_TEXT: usize = 1024;
/// Longest metadata string kept.
const MAX_METADATA_TEXT: usize = 256;

/// Cut `s` to at most `max` bytes on a char boundary, marking the cut.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str("…[truncated]");
    s
}

pub(crate) fn config(map: &ConfigMap) -> Vec<(String, String)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn devices(map: &Devices) -> Vec<wit::Device> {
    map.iter().map(|(name, cfg)| device(name, cfg)).collect()
}

pub(crate) fn device(name: &str, cfg: &ConfigMap) -> wit::Device {
    wit::Device {
        name: name.to_string(),
        config: config(cfg),
    }
}

pub(crate) fn instance(v: &InstanceView) -> wit::InstanceView {
    wit::InstanceView {
        name: v.name.clone(),
        project: v.project.clone(),
        type_: match v.instance_type {
            InstanceType::Container => wit::InstanceType::Container,
            InstanceType::VirtualMachine => wit::InstanceType::VirtualMachine,
        },
        status: v.status.clone(),
        config: config(&v.config),
        expanded_config: config(&v.expanded_config),
        devices: devices(&v.devices),
        expanded_devices: devices(&v.expanded_devices),
        profiles: v.profiles.clone(),
    }
}

pub(crate) fn profile(p: &ProfileView) -> wit::ProfileView {
    wit::ProfileView {
        name: p.name.clone(),
        project: p.project.clone(),
        description: p.description.clone(),
        config: config(&p.config),
        devices: devices(&p.devices),
    }
}

pub(crate) fn project(p: &ProjectView) -> wit::ProjectView {
    wit::ProjectView {
        name: p.name.clone(),
        description: p.description.clone(),
        config: config(&p.config),
    }
}

pub(crate) fn hook(h: Hook) -> wit::Hook {
    match h {
        Hook::PreCreate => wit::Hook::PreCreate,
        Hook::PreStart => wit::Hook::PreStart,
        Hook::OnStart => wit::Hook::Onstart,
        Hook::PreStop => wit::Hook::PreStop,
        Hook::OnStopNs => wit::Hook::Onstopns,
        Hook::OnStop => wit::Hook::Onstop,
        Hook::PreDelete => wit::Hook::PreDelete,
        Hook::OnSnapshot => wit::Hook::OnSnapshot,
        Hook::OnRestore => wit::Hook::OnRestore,
        Hook::OnRename => wit::Hook::OnRename,
        Hook::OnUpdate => wit::Hook::OnUpdate,
    }
}

pub(crate) fn level(l: wit::Level) -> Level {
    match l {
        wit::Level::Trace => Level::Trace,
        wit::Level::Debug => Level::Debug,
        wit::Level::Info => Level::Info,
        wit::Level::Warn => Level::Warn,
        wit::Level::Error => Level::Error,
    }
}

pub(crate) fn query_error(e: QueryError) -> wit::Error {
    match e {
        QueryError::NotFound(s) => wit::Error::NotFound(s),
        QueryError::InvalidArgument(s) => wit::Error::InvalidArgument(s),
        QueryError::Other(s) => wit::Error::Other(s),
    }
}

/// Text of a plugin-returned error (predicates).
pub(crate) fn error_text(e: wit::Error) -> String {
    let (kind, s) = match e {
        wit::Error::NotFound(s) => ("not found", s),
        wit::Error::InvalidArgument(s) => ("invalid argument", s),
        wit::Error::Other(s) => ("error", s),
    };
    format!("{kind}: {}", truncate(s, MAX_VIOLATION_TEXT))
}

pub(crate) fn metadata(m: wit::Metadata) -> Metadata {
    Metadata {
        name: truncate(m.name, MAX_METADATA_TEXT),
        version: truncate(m.version, MAX_METADATA_TEXT),
        api_version: truncate(m.api_version, MAX_METADATA_TEXT),
        description: truncate(m.description, MAX_METADATA_TEXT),
    }
}

/// A verdict from a plugin, refused as a failure when it is bigger than the
/// limits allow (a denial with 100,000 reasons is a broken plugin, not a
/// policy). An empty denial is treated as one generic violation so a deny
/// can never be mistaken for an allow.
pub(crate) fn verdict(v: wit::Verdict, limits: &Limits) -> Result<Verdict, FailureKind> {
    match v {
        wit::Verdict::Allow => Ok(Verdict::Allow),
        wit::Verdict::Deny(list) => {
            if list.len() > limits.max_violations {
                return Err(FailureKind::OutputTooLarge {
                    what: format!(
                        "{} violations (limit {})",
                        list.len(),
                        limits.max_violations
                    ),
                });
            }
            let mut out: Vec<Violation> = list
                .into_iter()
                .map(|v| Violation {
                    field: truncate(v.field, MAX_VIOLATION_TEXT),
                    message: truncate(v.message, MAX_VIOLATION_TEXT),
                })
                .collect();
            if out.is_empty() {
                out.push(Violation {
                    field: String::new(),
                    message: "denied without a reason".to_string(),
                });
            }
            Ok(Verdict::Deny(out))
        }
        wit::Verdict::Mutate(p) => {
            let keys = p.set.len() + p.unset.len();
            if keys > limits.max_patch_keys {
                return Err(FailureKind::OutputTooLarge {
                    what: format!("patch of {keys} keys (limit {})", limits.max_patch_keys),
                });
            }
            Ok(Verdict::Mutate(Patch {
                set: p.set.into_iter().collect(),
                unset: p.unset,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc".into(), 5), "abc");
        let t = truncate("ééé".into(), 3);
        assert!(t.starts_with('é') && t.ends_with("[truncated]"), "{t}");
    }

    #[test]
    fn oversized_and_empty_denials() {
        let limits = Limits {
            max_violations: 2,
            ..Limits::default()
        };
        let v = |n: usize| {
            wit::Verdict::Deny(
                (0..n)
                    .map(|i| wit::Violation {
                        field: i.to_string(),
                        message: "m".into(),
                    })
                    .collect(),
            )
        };
        assert!(matches!(
            verdict(v(3), &limits),
            Err(FailureKind::OutputTooLarge { .. })
        ));
        assert!(matches!(verdict(v(2), &limits), Ok(Verdict::Deny(l)) if l.len() == 2));
        assert!(matches!(verdict(v(0), &limits), Ok(Verdict::Deny(l)) if l.len() == 1));
    }

    #[test]
    fn instance_roundtrip_fields() {
        let mut view = InstanceView::new("p", "c1");
        view.config.insert("limits.cpu".into(), "2".into());
        view.devices.insert(
            "root".into(),
            [("type".to_string(), "disk".to_string())].into(),
        );
        let w = instance(&view);
        assert_eq!(w.name, "c1");
        assert_eq!(w.config, vec![("limits.cpu".to_string(), "2".to_string())]);
        assert_eq!(w.devices[0].name, "root");
        assert!(matches!(w.type_, wit::InstanceType::Container));
    }
}
