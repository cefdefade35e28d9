//! Calls into plugins, in priority order, with the fail-closed / fail-open
//! policy applied. Each call gets a fresh Store (see `plugin::run`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::time::Instant;

use crate::bindings::berth::plugin::types as wit;

use crate::convert;
use crate::error::{Failure, PluginError, Rejection};
use crate::host::PluginHost;
use crate::inspect::Capability;
use crate::plugin::Entry;
use crate::types::{ConfigMap, Hook, InstanceView, Patch, ProfileView, ProjectView, Verdict};

/// Create or update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceOp {
    /// A new instance.
    Create,
    /// A change; `previous` is the instance before it.
    Update {
        /// State before the change.
        previous: Box<InstanceView>,
    },
}

/// A validation request for an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRequest {
    /// Create or update.
    pub op: InstanceOp,
    /// The instance as it would be.
    pub view: InstanceView,
}

/// Result of a successful validation round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<T> {
    /// The object with every plugin's patch applied. The caller must run its
    /// own validation again on it when `patches` is not empty.
    pub value: T,
    /// Patches applied, in order, with the plugin that asked.
    pub patches: Vec<(String, Patch)>,
    /// Failures of fail-open plugins that were skipped.
    pub failures: Vec<Failure>,
}

impl<T> Outcome<T> {
    fn new(value: T) -> Self {
        Outcome {
            value,
            patches: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Whether some plugin changed the object.
    pub fn mutated(&self) -> bool {
        !self.patches.is_empty()
    }
}

/// What happened during a lifecycle hook that was not refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookReport {
    /// Plugins called, in order.
    pub called: Vec<String>,
    /// Errors returned by notification hooks (logged, not acted on).
    pub errors: Vec<(String, String)>,
    /// Plugin failures that did not stop the action (notification hooks and
    /// fail-open plugins).
    pub failures: Vec<Failure>,
}

impl PluginHost {
    pub(crate) fn with_cap(&self, cap: Capability) -> Vec<Entry> {
        self.snapshot()
            .plugins
            .iter()
            .filter(|e| e.has(cap))
            .cloned()
            .collect()
    }

    /// Run `call` for each plugin with `cap`; apply mutations to `value`
    /// through `apply`, stop at the first denial or fail-closed failure.
    fn validate<T>(
        &self,
        cap: Capability,
        mut value: T,
        apply: impl Fn(&mut T, &Patch),
        call: impl Fn(&PluginHost, &Entry, &T) -> Result<Verdict, Failure>,
    ) -> Result<Outcome<T>, Rejection> {
        let mut out = Outcome::new(());
        for entry in self.with_cap(cap) {
            match call(self, &entry, &value) {
                Ok(Verdict::Allow) => {}
                Ok(Verdict::Deny(violations)) => {
                    return Err(Rejection::Denied {
                        plugin: entry.name().to_string(),
                        violations,
                    });
                }
                Ok(Verdict::Mutate(patch)) => {
                    apply(&mut value, &patch);
                    out.patches.push((entry.name().to_string(), patch));
                }
                Err(f) if entry.fail_open() => out.failures.push(f),
                Err(f) => return Err(Rejection::Failed(Box::new(f))),
            }
        }
        Ok(Outcome {
            value,
            patches: out.patches,
            failures: out.failures,
        })
    }

    /// Validate an instance create or update. Later plugins see earlier
    /// plugins' patches; a patch sets/unsets keys of the local config and
    /// mirrors them in the expanded config (the caller recomputes the
    /// expanded config when it validates the result again).
    pub fn validate_instance(
        &self,
        req: &InstanceRequest,
    ) -> Result<Outcome<InstanceView>, Rejection> {
        // Converted once for all plugins, and again only after a patch.
        let converted = RefCell::new(None::<wit::InstanceView>);
        let previous = match &req.op {
            InstanceOp::Update { previous } => Some(convert::instance(previous)),
            InstanceOp::Create => None,
        };
        let apply = |v: &mut InstanceView, p: &Patch| {
            p.apply(&mut v.config);
            p.apply(&mut v.expanded_config);
            converted.replace(None);
        };
        self.validate(
            Capability::InstanceValidator,
            req.view.clone(),
            apply,
            |host, e, v| {
                let mut slot = converted.borrow_mut();
                let whole = slot.get_or_insert_with(|| convert::instance(v));
                let view = for_validation(e, whole);
                let prev = previous.as_ref().map(|p| for_validation(e, p));
                validation_call(host, e, &[&"validate-instance", &view, &prev], |store, instance, c| {
                    let g = c
                        .indices
                        .validate_instance
                        .as_ref()
                        .ok_or_else(missing)?
                        .load(&mut *store, instance)?;
                    match &prev {
                        None => g.call_validate_create(&mut *store, &view),
                        Some(prev) => g.call_validate_update(&mut *store, &view, prev),
                    }
                })
            },
        )
    }

    /// Validate a profile create (`previous` = None) or update.
    pub fn validate_profile(
        &self,
        profile: &ProfileView,
        previous: Option<&ProfileView>,
    ) -> Result<Outcome<ProfileView>, Rejection> {
        let prev = previous.map(convert::profile);
        self.validate(
            Capability::ProfileValidator,
            profile.clone(),
            |p, patch| patch.apply(&mut p.config),
            |host, e, p| {
                let view = convert::profile(p);
                validation_call(host, e, &[&"validate-profile", &view, &prev], |store, instance, c| {
                    let g = c
                        .indices
                        .validate_profile
                        .as_ref()
                        .ok_or_else(missing)?
                        .load(&mut *store, instance)?;
                    g.call_validate_profile(&mut *store, &view, prev.as_ref())
                })
            },
        )
    }

    /// Validate a project create (`previous` = None) or update.
    pub fn validate_project(
        &self,
        project: &ProjectView,
        previous: Option<&ProjectView>,
    ) -> Result<Outcome<ProjectView>, Rejection> {
        let prev = previous.map(convert::project);
        self.validate(
            Capability::ProjectValidator,
            project.clone(),
            |p, patch| patch.apply(&mut p.config),
            |host, e, p| {
                let view = convert::project(p);
                validation_call(host, e, &[&"validate-project", &view, &prev], |store, instance, c| {
                    let g = c
                        .indices
                        .validate_project
                        .as_ref()
                        .ok_or_else(missing)?
                        .load(&mut *store, instance)?;
                    g.call_validate_project(&mut *store, &view, prev.as_ref())
                })
            },
        )
    }

    /// Validate device `name` (its config) in the context of `instance`;
    /// patches apply to the device config.
    pub fn validate_device(
        &self,
        instance: &InstanceView,
        name: &str,
        config: &ConfigMap,
    ) -> Result<Outcome<ConfigMap>, Rejection> {
        let view = convert::instance(instance);
        self.validate(
            Capability::DeviceValidator,
            config.clone(),
            |c, p| p.apply(c),
            |host, e, cfg| {
                let (view, device) = (for_validation(e, &view), convert::device(name, cfg));
                validation_call(host, e, &[&"validate-device", &view, &device], |store, inst, c| {
                    let g = c
                        .indices
                        .validate_device
                        .as_ref()
                        .ok_or_else(missing)?
                        .load(&mut *store, inst)?;
                    g.call_validate_device(&mut *store, &view, &device)
                })
            },
        )
    }

    /// Evaluate the filter clause `plugin.<name> eq <value>` for one
    /// instance. The first enabled plugin (in priority order) offering the
    /// predicate answers. A failing fail-open plugin answers `true` (the
    /// clause does not filter the instance out).
    pub fn predicate(
        &self,
        name: &str,
        value: &str,
        instance: &InstanceView,
    ) -> Result<bool, PluginError> {
        let entry = self
            .with_cap(Capability::Filter)
            .into_iter()
            .find(|e| e.compiled.predicates.iter().any(|p| p == name))
            .ok_or_else(|| PluginError::UnknownPredicate {
                name: name.to_string(),
            })?;
        let whole = convert::instance(instance);
        let view = shaped(&entry, &whole);
        let result = entry.call(&self.engine, |store, inst, c| {
            let g = c
                .indices
                .filter
                .as_ref()
                .ok_or_else(missing)?
                .load(&mut *store, inst)?;
            g.call_predicate(&mut *store, name, value, &view)
        });
        match result {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(PluginError::Predicate {
                plugin: entry.name().to_string(),
                predicate: name.to_string(),
                message: convert::error_text(e),
            }),
            Err(_) if entry.fail_open() => Ok(true),
            Err(f) => Err(PluginError::Failed(Box::new(f))),
        }
    }

    /// Whether every enabled filter plugin lets the instance appear in
    /// listings. A failing plugin hides it, unless it is fail-open.
    pub fn visible(&self, instance: &InstanceView) -> bool {
        let plugins = self.with_cap(Capability::Filter);
        if plugins.is_empty() {
            return true;
        }
        let whole = convert::instance(instance);
        plugins.iter().all(|entry| {
            let view = shaped(entry, &whole);
            let result = entry.call(&self.engine, |store, inst, c| {
                let g = c
                    .indices
                    .filter
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut *store, inst)?;
                g.call_visible(&mut *store, &view)
            });
            match result {
                Ok(b) => b,
                Err(_) => entry.fail_open(),
            }
        })
    }

    /// Deliver a lifecycle hook to every enabled plugin that subscribed to
    /// it, in priority order. `pre-*` hooks stop at the first refusal or
    /// fail-closed failure; notifications always reach every plugin.
    pub fn hook(
        &self,
        hook: Hook,
        instance: &InstanceView,
        details: &ConfigMap,
    ) -> Result<HookReport, Rejection> {
        let plugins: Vec<Entry> = self
            .with_cap(Capability::Lifecycle)
            .into_iter()
            .filter(|e| e.ctx.settings.wants(hook))
            .collect();
        let mut report = HookReport::default();
        if plugins.is_empty() {
            return Ok(report);
        }
        let view = convert::instance(instance);
        let details = convert::config(details);
        let wit_hook = convert::hook(hook);
        for entry in plugins {
            report.called.push(entry.name().to_string());
            let view = shaped(&entry, &view);
            let result = entry.call(&self.engine, |store, inst, c| {
                let g = c
                    .indices
                    .lifecycle
                    .as_ref()
                    .ok_or_else(missing)?
                    .load(&mut *store, inst)?;
                g.call_on_hook(&mut *store, wit_hook, &view, &details)
            });
            match result {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    let reason = convert::truncate(reason, entry.ctx.settings.limits.max_log_bytes);
                    if hook.can_refuse() {
                        return Err(Rejection::Refused {
                            plugin: entry.name().to_string(),
                            hook,
                            reason,
                        });
                    }
                    tracing::warn!(plugin = entry.name(), %hook, "hook returned an error: {reason}");
                    report.errors.push((entry.name().to_string(), reason));
                }
                Err(f) if hook.can_refuse() && !entry.fail_open() => {
                    return Err(Rejection::Failed(Box::new(f)))
                }
                Err(f) => report.failures.push(f),
            }
        }
        Ok(report)
    }
}

/// Convert a raw WIT verdict under the plugin's output limits.
fn bounded(
    e: &Entry,
    raw: crate::bindings::berth::plugin::types::Verdict,
    start: Instant,
) -> Result<Verdict, Failure> {
    convert::verdict(raw, &e.ctx.settings.limits).map_err(|kind| e.fail(kind, start.elapsed()))
}

/// One validation call of `e`: `call` runs in a plugin instance (or the verdict
/// is reused, see `reusable`) and its verdict is bounded by the plugin's limits.
fn validation_call(
    host: &PluginHost,
    e: &Entry,
    parts: &[&dyn std::fmt::Debug],
    call: impl FnOnce(&mut wasmtime::Store<crate::state::CallState>, &wasmtime::component::Instance, &crate::plugin::Compiled)
        -> wasmtime::Result<crate::bindings::berth::plugin::types::Verdict>,
) -> Result<Verdict, Failure> {
    let start = Instant::now();
    reusable(e, parts, || {
        let raw = e.call(&host.engine, call)?;
        bounded(e, raw, start)
    })
}

/// `call`, or the verdict `e` gave before for an equal input (`parts`) when
/// its verdicts are reused (see `verdicts`). Failures are not kept.
fn reusable(
    e: &Entry,
    parts: &[&dyn std::fmt::Debug],
    call: impl FnOnce() -> Result<Verdict, Failure>,
) -> Result<Verdict, Failure> {
    let Some(cache) = &e.ctx.verdicts else {
        return call();
    };
    let Some(key) = crate::verdicts::key(parts) else {
        return call();
    };
    if let Some(v) = cache.get(&key) {
        e.stats.reused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(v);
    }
    let v = call()?;
    cache.put(key, v.clone());
    Ok(v)
}

/// `whole` as `entry` gets it: trimmed to what it declared it reads (see `needs`).
pub(crate) fn shaped<'a>(entry: &Entry, whole: &'a wit::InstanceView) -> Cow<'a, wit::InstanceView> {
    match &entry.compiled.needs {
        Some(n) => Cow::Owned(n.trim(whole)),
        None => Cow::Borrowed(whole),
    }
}

/// `whole` as `entry` gets it in a validation call: shaped, and for a plugin
/// whose verdicts are reused, with the identity fields it did not declare
/// emptied (so the reuse key is exactly what it sees).
fn for_validation<'a>(entry: &Entry, whole: &'a wit::InstanceView) -> Cow<'a, wit::InstanceView> {
    let view = shaped(entry, whole);
    match &entry.ctx.verdicts {
        Some(v) => {
            let mut view = view.into_owned();
            v.identity.apply(&mut view);
            Cow::Owned(view)
        }
        None => view,
    }
}

/// Only reachable if the registry and the indices disagree.
fn missing() -> wasmtime::Error {
    wasmtime::format_err!("plugin lost an export it had at install")
}
