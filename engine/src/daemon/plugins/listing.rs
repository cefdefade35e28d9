//! Filters and visibility for listings: one batch call per plugin and per distinct
//! `plugin.<name> eq <value>` clause for the whole listing (not one call per instance),
//! so a request costs a handful of fresh plugin instances however many instances match.

use std::collections::HashMap;

use berth_plugin_host::{Capability, InstanceView, PluginHost, PreparedView};

use super::plugin_error;
use crate::daemon::{Daemon, Model};
use crate::error::{Error, Result};
use crate::filter::{Filter, PredicateResolver};
use crate::model::{scoped_key, InstanceRecord};

/// What the plugins decided about a list of instances, by `project/name`.
#[derive(Debug, Default)]
pub struct PluginSelection {
    /// Position of each instance (by `project/name`) in the vectors below.
    index: HashMap<String, usize>,
    /// `None`: every instance is visible (no filter plugin).
    visible: Option<Vec<bool>>,
    /// Results of each `(predicate, value)` clause.
    predicates: HashMap<(String, String), Vec<bool>>,
}

impl PluginSelection {
    /// Whether instance `project/name` may be shown at all. An instance the plugins were
    /// not asked about (created since) is hidden when filter plugins exist.
    pub fn visible(&self, project: &str, name: &str) -> bool {
        match &self.visible {
            None => true,
            Some(v) => self.position(project, name).and_then(|i| v.get(i).copied()).unwrap_or(false),
        }
    }

    fn position(&self, project: &str, name: &str) -> Option<usize> {
        self.index.get(&scoped_key(project, name)).copied()
    }

    /// A resolver answering the `plugin.*` clauses for instance `project/name`.
    pub fn resolver(&self, project: &str, name: &str) -> impl PredicateResolver + '_ {
        At { sel: self, i: self.position(project, name) }
    }
}

struct At<'a> {
    sel: &'a PluginSelection,
    i: Option<usize>,
}

impl PredicateResolver for At<'_> {
    fn predicate(&self, name: &str, value: &str, _obj: &serde_json::Value) -> Option<bool> {
        let i = self.i?;
        self.sel.predicates.get(&(name.to_string(), value.to_string())).and_then(|v| v.get(i).copied())
    }
}

/// The `(predicate, value)` pairs a filter asks plugins about.
fn predicate_clauses(filter: &Filter) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for c in filter.clauses() {
        if let Some(p) = c.predicate() {
            let pair = (p.to_string(), c.value().to_string());
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
    }
    out
}

impl Daemon {
    /// Checks that every `plugin.<name>` in `filter` is offered by an enabled plugin
    /// (400 otherwise), before any instance is looked at.
    pub fn check_plugin_predicates(&self, filter: &Filter) -> Result<()> {
        let names = filter.predicates();
        if names.is_empty() {
            return Ok(());
        }
        let offered: Vec<String> = self
            .plugins
            .host
            .list()
            .into_iter()
            .filter(|p| p.settings.enabled && p.capabilities.contains(&Capability::Filter))
            .flat_map(|p| p.predicates)
            .collect();
        for n in names {
            if !offered.iter().any(|o| o == n) {
                return Err(Error::bad(format!(
                    "Invalid filter: unknown predicate \"plugin.{n}\" (offered: {})",
                    if offered.is_empty() { "none".to_string() } else { offered.join(", ") }
                )));
            }
        }
        Ok(())
    }

    /// Whether any enabled plugin can hide instances or answer predicates.
    pub fn has_filter_plugins(&self) -> bool {
        self.plugins.host.list().iter().any(|p| p.settings.enabled && p.capabilities.contains(&Capability::Filter))
    }

    /// The plugin views of the instances `wanted` picks, as `(project/name, view)`,
    /// reused from earlier listings while the model generation and the instance's power
    /// state are unchanged (building and converting 500 views costs more than asking
    /// the plugins about them).
    pub fn listing_views(&self, m: &Model, wanted: impl Fn(&InstanceRecord) -> bool) -> Vec<(String, PreparedView)> {
        let mut cache = self.plugins.views.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() > 100_000 {
            cache.clear();
        }
        let mut out = Vec::new();
        for (key, i) in m.instances.iter().filter(|(_, i)| wanted(i)) {
            let power = m.power(&i.project, &i.name);
            let view = match cache.get(key) {
                Some((g, p, v)) if *g == m.generation && *p == power => v.clone(),
                _ => {
                    let v = PluginHost::prepare(&super::instance_view(m, i));
                    cache.insert(key.clone(), (m.generation, power, v.clone()));
                    v
                }
            };
            out.push((key.clone(), view));
        }
        out
    }

    /// Asks the filter plugins about `views` (visibility, and every predicate clause of
    /// `filter`). Run on a blocking thread with no model guard held.
    pub fn plugin_select(&self, views: &[(String, PreparedView)], filter: Option<&Filter>) -> Result<PluginSelection> {
        let mut sel = PluginSelection::default();
        if !self.has_filter_plugins() {
            if let Some(f) = filter {
                self.check_plugin_predicates(f)?;
            }
            return Ok(sel);
        }
        sel.index = views.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect();
        let views: Vec<PreparedView> = views.iter().map(|(_, v)| v.clone()).collect();
        sel.visible = Some(self.plugins.host.visible_prepared(&views));
        if let Some(f) = filter {
            self.check_plugin_predicates(f)?;
            for (name, value) in predicate_clauses(f) {
                let r = self.plugins.host.predicate_prepared(&name, &value, &views).map_err(plugin_error)?;
                sel.predicates.insert((name, value), r);
            }
        }
        Ok(sel)
    }

    /// Whether one instance is visible to listings and GETs.
    pub fn plugin_visible(&self, view: &InstanceView) -> bool {
        !self.has_filter_plugins() || self.plugins.host.visible(view)
    }
}
