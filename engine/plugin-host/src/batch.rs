//! Filters over whole listings: one fresh instance per plugin per request, called for
//! every instance of the listing. A listing of 500 instances then costs one
//! instantiation (~20–40 µs) plus 500 cheap calls (~1–2 µs each) per plugin instead of
//! 500 instantiations. Nothing survives the request (the Store is dropped at the end);
//! the deadline is re-armed before each item, so every item has its own budget.

use std::sync::Arc;

use crate::bindings::berth::plugin::types as wit;
use crate::convert;
use crate::error::PluginError;
use crate::host::PluginHost;
use crate::inspect::Capability;
use crate::plugin::{deadline_ticks, Entry};
use crate::types::InstanceView;

/// The views `entry` gets: trimmed to what it declared it reads, or whole.
fn views_for(entry: &Entry, views: &[PreparedView]) -> Vec<Arc<wit::InstanceView>> {
    match &entry.compiled.needs {
        Some(n) => views.iter().map(|v| Arc::new(n.trim(&v.0))).collect(),
        None => views.iter().map(|v| v.0.clone()).collect(),
    }
}

/// An instance view already in the form plugins receive. Listings can keep these
/// (e.g. per instance and model generation) so a repeated listing does not rebuild
/// and convert every view.
#[derive(Clone)]
pub struct PreparedView(Arc<wit::InstanceView>);

impl PluginHost {
    /// Converts a view once for [`PluginHost::visible_prepared`] and
    /// [`PluginHost::predicate_prepared`].
    pub fn prepare(view: &InstanceView) -> PreparedView {
        PreparedView(Arc::new(convert::instance(view)))
    }

    /// `visible` for every instance of a listing, in order. A failing plugin hides every
    /// instance (fail-closed) or is ignored (fail-open), as [`PluginHost::visible`] does.
    pub fn visible_batch(&self, instances: &[InstanceView]) -> Vec<bool> {
        let views: Vec<PreparedView> = instances.iter().map(Self::prepare).collect();
        self.visible_prepared(&views)
    }

    /// [`PluginHost::visible_batch`] on prepared views.
    pub fn visible_prepared(&self, views: &[PreparedView]) -> Vec<bool> {
        let mut out = vec![true; views.len()];
        if views.is_empty() {
            return out;
        }
        for entry in self.with_cap(Capability::Filter) {
            let ticks = deadline_ticks(entry.ctx.settings.limits.deadline);
            let views = views_for(&entry, views);
            let result = entry.call(&self.engine, |store, inst, c| {
                let g = c
                    .indices
                    .filter
                    .as_ref()
                    .ok_or_else(|| wasmtime::format_err!("plugin lost its filter export"))?
                    .load(&mut *store, inst)?;
                let mut answers = Vec::with_capacity(views.len());
                for v in &views {
                    store.set_epoch_deadline(ticks);
                    answers.push(g.call_visible(&mut *store, v)?);
                }
                Ok(answers)
            });
            match result {
                Ok(answers) => {
                    for (o, a) in out.iter_mut().zip(answers) {
                        *o &= a;
                    }
                }
                Err(_) if entry.fail_open() => {}
                Err(_) => return vec![false; views.len()],
            }
        }
        out
    }

    /// Predicate `name` with `value` for every instance of a listing, in order, from the
    /// first enabled plugin offering it (as [`PluginHost::predicate`]).
    pub fn predicate_batch(
        &self,
        name: &str,
        value: &str,
        instances: &[InstanceView],
    ) -> Result<Vec<bool>, PluginError> {
        let views: Vec<PreparedView> = instances.iter().map(Self::prepare).collect();
        self.predicate_prepared(name, value, &views)
    }

    /// [`PluginHost::predicate_batch`] on prepared views.
    pub fn predicate_prepared(
        &self,
        name: &str,
        value: &str,
        views: &[PreparedView],
    ) -> Result<Vec<bool>, PluginError> {
        let entry = self
            .with_cap(Capability::Filter)
            .into_iter()
            .find(|e| e.compiled.predicates.iter().any(|p| p == name))
            .ok_or_else(|| PluginError::UnknownPredicate {
                name: name.to_string(),
            })?;
        if views.is_empty() {
            return Ok(Vec::new());
        }
        let ticks = deadline_ticks(entry.ctx.settings.limits.deadline);
        let trimmed = views_for(&entry, views);
        let result = entry.call(&self.engine, |store, inst, c| {
            let g = c
                .indices
                .filter
                .as_ref()
                .ok_or_else(|| wasmtime::format_err!("plugin lost its filter export"))?
                .load(&mut *store, inst)?;
            let mut answers = Vec::with_capacity(views.len());
            for v in &trimmed {
                store.set_epoch_deadline(ticks);
                answers.push(g.call_predicate(&mut *store, name, value, v)?);
            }
            Ok(answers)
        });
        match result {
            Ok(answers) => answers
                .into_iter()
                .map(|a| {
                    a.map_err(|e| PluginError::Predicate {
                        plugin: entry.name().to_string(),
                        predicate: name.to_string(),
                        message: convert::error_text(e),
                    })
                })
                .collect(),
            Err(_) if entry.fail_open() => Ok(vec![true; views.len()]),
            Err(f) => Err(PluginError::Failed(Box::new(f))),
        }
    }
}
