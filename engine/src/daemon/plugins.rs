//! The daemon's WebAssembly plugins: the [`PluginHost`] it owns, their persistence
//! (component bytes in `<data-dir>/plugins/<name>.wasm`, settings in the `plugins` table),
//! and the points where the daemon asks them: validation, filters and visibility,
//! lifecycle hooks.
//!
//! Plugin calls are synchronous and CPU-bound (bounded by each plugin's deadline): they
//! run on blocking threads (the API calls the daemon through `spawn_blocking`) and never
//! while the calling thread holds a model guard, because plugins may query the model.

mod listing;
pub mod record;
mod views;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use berth_plugin_host::{
    Hook, InstanceOp, InstanceRequest, LogRecord, LogSink, PluginError, PluginHost, PluginInfo, Rejection,
};
use serde_json::json;

use super::{Daemon, Model};
use crate::db::tables;
use crate::error::{Error, Result};
use crate::events::EventHub;
use crate::model::{ConfigMap, InstanceRecord, Profile, Project};

pub use listing::PluginSelection;
pub use record::{PluginRecord, SettingsRecord};
pub use views::{instance_view, profile_view, project_view};

/// Largest component accepted by `POST /1.0/plugins`.
pub const MAX_PLUGIN_BYTES: usize = 32 << 20;

/// The plugin host and what the daemon knows about plugins beyond it.
pub struct Plugins {
    pub host: PluginHost,
    dir: PathBuf,
    /// Plugins recorded in the database that could not be loaded, with the reason.
    load_errors: Mutex<BTreeMap<String, String>>,
    /// Listing views by `project/name`, with the model generation and power state
    /// they were made at.
    views: Mutex<std::collections::HashMap<String, (u64, super::PowerState, berth_plugin_host::PreparedView)>>,
}

impl Plugins {
    /// A host whose compiled-code cache is `<data-dir>/plugins/cache`, whose queries read
    /// `model`, and whose plugin log lines become `logging` events.
    pub fn open(data_dir: &Path, model: Arc<RwLock<Model>>, events: EventHub) -> Result<Self> {
        let dir = data_dir.join("plugins");
        std::fs::create_dir_all(&dir).map_err(|e| Error::internal(format!("creating {}: {e}", dir.display())))?;
        let sink: LogSink = Arc::new(move |r: &LogRecord| {
            events.send(
                "logging",
                "default",
                json!({"message": r.message, "level": format!("{:?}", r.level).to_lowercase(),
                       "context": {"plugin": r.plugin}}),
            );
        });
        let host = PluginHost::with(&dir.join("cache"), Arc::new(views::ModelQueries { model }), Some(sink))
            .map_err(|e| Error::internal(format!("plugin host: {e}")))?;
        Ok(Plugins { host, dir, load_errors: Mutex::new(BTreeMap::new()), views: Mutex::default() })
    }

    fn wasm_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.wasm"))
    }

    /// Plugins that are recorded but not loaded, with the reason.
    pub fn load_errors(&self) -> BTreeMap<String, String> {
        self.load_errors.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_load_error(&self, name: &str, reason: Option<String>) {
        let mut errs = self.load_errors.lock().unwrap_or_else(PoisonError::into_inner);
        match reason {
            Some(r) => errs.insert(name.to_string(), r),
            None => errs.remove(name),
        };
    }
}

/// A plugin host error as an API error: the request's fault is a 400, a missing plugin a 404.
pub fn plugin_error(e: PluginError) -> Error {
    match &e {
        PluginError::NotFound { .. } => Error::not_found(e.to_string()),
        PluginError::Failed(f) => failure_error(f),
        _ if e.is_invalid_input() => Error::bad(e.to_string()),
        _ => Error::internal(e.to_string()),
    }
}

fn failure_error(f: &berth_plugin_host::Failure) -> Error {
    Error::Detailed {
        kind: crate::error::ErrorKind::NotOperational,
        message: f.to_string(),
        metadata: json!({"plugin": f.plugin, "failure": f.kind.to_string(),
                         "elapsed_ms": u64::try_from(f.elapsed.as_millis()).unwrap_or(u64::MAX)}),
    }
}

/// A rejection as an API error: a denial or refusal is a 400 whose metadata names the
/// plugin and its reasons; a fail-closed plugin failure is a 503 naming the failure.
pub fn rejection_error(r: Rejection) -> Error {
    match r {
        Rejection::Denied { plugin, violations } => Error::Detailed {
            kind: crate::error::ErrorKind::InvalidInput,
            message: Rejection::Denied { plugin: plugin.clone(), violations: violations.clone() }.to_string(),
            metadata: json!({
                "plugin": plugin,
                "violations": violations.iter().map(|v| json!({"field": v.field, "message": v.message})).collect::<Vec<_>>(),
            }),
        },
        Rejection::Refused { plugin, hook, reason } => Error::Detailed {
            kind: crate::error::ErrorKind::InvalidInput,
            message: format!("{hook} refused by plugin {plugin}: {reason}"),
            metadata: json!({"plugin": plugin, "hook": hook.name(), "reason": reason}),
        },
        Rejection::Failed(f) => failure_error(&f),
    }
}

impl Daemon {
    /// Loads every plugin recorded in the database (from the compiled-code cache when it
    /// is there). A plugin that fails to load is logged, sent as a `plugin-load-failed`
    /// event and listed with its error; it never stops the daemon.
    pub(super) fn load_plugins(&self) -> Result<()> {
        for (name, rec) in self.db.all(&tables::PLUGINS)? {
            let res = std::fs::read(self.plugins.wasm_path(&name))
                .map_err(|e| format!("reading {}: {e}", self.plugins.wasm_path(&name).display()))
                .and_then(|bytes| {
                    let settings = rec.settings.to_settings().map_err(|e| e.to_string())?;
                    self.plugins.host.install(&name, &bytes, settings).map_err(|e| e.to_string())
                });
            match res {
                Ok(info) => {
                    tracing::info!(plugin = %name, from_cache = info.from_cache, us = info.load_time.as_micros() as u64, "plugin loaded");
                    self.plugins.set_load_error(&name, None);
                }
                Err(reason) => {
                    tracing::error!(plugin = %name, %reason, "plugin failed to load");
                    self.events.lifecycle("default", "plugin-load-failed", &plugin_url(&name), json!({"plugin": name, "reason": reason}));
                    self.plugins.set_load_error(&name, Some(reason));
                }
            }
        }
        Ok(())
    }

    /// A plugin's stored record.
    pub fn plugin_record(&self, name: &str) -> Result<PluginRecord> {
        self.db.get(&tables::PLUGINS, name)?.ok_or_else(|| Error::not_found(format!("Plugin \"{name}\" not found")))
    }

    /// Every stored plugin record, by name.
    pub fn plugin_records(&self) -> Result<Vec<PluginRecord>> {
        Ok(self.db.all(&tables::PLUGINS)?.into_iter().map(|(_, r)| r).collect())
    }

    /// Installs plugin `name` from component bytes, or replaces its code keeping its
    /// settings (hot: the next call uses it). The contract is checked first: a component
    /// that is not a berth plugin is a 400 saying why, and nothing is stored.
    pub fn install_plugin(&self, name: &str, wasm: &[u8]) -> Result<PluginInfo> {
        let _w = self.txn();
        let previous: Option<PluginRecord> = self.db.get(&tables::PLUGINS, name)?;
        let settings = previous.as_ref().map(|r| r.settings.clone()).unwrap_or_default();
        let info = self.plugins.host.install(name, wasm, settings.to_settings()?).map_err(plugin_error)?;
        let undo = |e: Error| {
            let _ = self.plugins.host.remove(name);
            e
        };
        let path = self.plugins.wasm_path(name);
        let tmp = path.with_extension("wasm.tmp");
        std::fs::write(&tmp, wasm)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| undo(Error::internal(format!("writing {}: {e}", path.display()))))?;
        let rec = PluginRecord { name: name.to_string(), sha256: info.sha256.clone(), settings };
        self.db.write(|tx| tx.put(&tables::PLUGINS, name, &rec)).map_err(|e| undo(e.into()))?;
        self.plugins.set_load_error(name, None);
        let action = if previous.is_some() { "plugin-reloaded" } else { "plugin-installed" };
        self.events.lifecycle("default", action, &plugin_url(name), json!({"plugin": name, "sha256": info.sha256}));
        Ok(info)
    }

    /// Removes a plugin (its code, cache entry stays, and its record).
    pub fn remove_plugin(&self, name: &str) -> Result<()> {
        let _w = self.txn();
        let loaded = self.plugins.host.remove(name).is_ok();
        let recorded = self.db.get(&tables::PLUGINS, name)?.is_some();
        if !loaded && !recorded {
            return Err(Error::not_found(format!("Plugin \"{name}\" not found")));
        }
        self.db.write(|tx| tx.delete(&tables::PLUGINS, name))?;
        let _ = std::fs::remove_file(self.plugins.wasm_path(name));
        self.plugins.set_load_error(name, None);
        self.events.lifecycle("default", "plugin-removed", &plugin_url(name), json!({"plugin": name}));
        Ok(())
    }

    /// Replaces a plugin's settings; applies to the next call (no restart, no recompile).
    pub fn update_plugin(&self, name: &str, settings: SettingsRecord) -> Result<PluginRecord> {
        let _w = self.txn();
        let mut rec = self.plugin_record(name)?;
        let host_settings = settings.to_settings()?;
        if self.plugins.host.get(name).is_some() {
            self.plugins.host.update_settings(name, host_settings).map_err(plugin_error)?;
        }
        rec.settings = settings;
        self.db.write(|tx| tx.put(&tables::PLUGINS, name, &rec))?;
        self.events.lifecycle("default", "plugin-updated", &plugin_url(name), json!({"plugin": name}));
        Ok(rec)
    }

    /// Sends a `plugin-denied` event for a rejection and turns it into an API error.
    fn rejected(&self, project: &str, what: &str, source: &str, r: Rejection) -> Error {
        let (action, ctx) = match &r {
            Rejection::Denied { plugin, violations } => (
                "plugin-denied",
                json!({"plugin": plugin, "point": what,
                       "reasons": violations.iter().map(ToString::to_string).collect::<Vec<_>>()}),
            ),
            Rejection::Refused { plugin, hook, reason } => {
                ("plugin-denied", json!({"plugin": plugin, "point": what, "hook": hook.name(), "reasons": [reason]}))
            }
            Rejection::Failed(f) => {
                ("plugin-failed", json!({"plugin": f.plugin, "point": what, "failure": f.kind.to_string()}))
            }
        };
        self.events.lifecycle(project, action, source, ctx);
        rejection_error(r)
    }

    /// Runs the instance validators, then each device's validators in the context of the
    /// instance, on `inst` (create when `previous` is None). Returns the record with every
    /// plugin patch applied; the caller's built-in validation runs on that afterwards.
    /// Public for the in-process benchmark (`cargo bench -p berth-tests --bench plugins_validate`).
    pub fn plugin_validate_instance(&self, inst: InstanceRecord, previous: Option<&InstanceRecord>) -> Result<InstanceRecord> {
        if self.plugins.host.list().is_empty() {
            return Ok(inst);
        }
        let (view, prev) = {
            let m = self.model();
            (instance_view(&m, &inst), previous.map(|p| instance_view(&m, p)))
        };
        let source = Model::instance_url(&inst.project, &inst.name);
        let point = if previous.is_some() { "validate-update" } else { "validate-create" };
        let op = match prev {
            Some(p) => InstanceOp::Update { previous: Box::new(p) },
            None => InstanceOp::Create,
        };
        let out = self
            .plugins
            .host
            .validate_instance(&InstanceRequest { op, view })
            .map_err(|r| self.rejected(&inst.project, point, &source, r))?;
        let mut inst = inst;
        for (_, patch) in &out.patches {
            patch.apply(&mut inst.config);
        }
        let view = if out.mutated() { instance_view(&self.model(), &inst) } else { out.value };
        let names: Vec<String> = inst.devices.keys().cloned().collect();
        for dev in names {
            let Some(cfg) = inst.devices.get(&dev) else { continue };
            let o = self
                .plugins
                .host
                .validate_device(&view, &dev, cfg)
                .map_err(|r| self.rejected(&inst.project, "validate-device", &source, r))?;
            if o.mutated() {
                inst.devices.insert(dev, o.value);
            }
        }
        Ok(inst)
    }

    /// Runs the profile validators; returns the profile with patches applied.
    pub(super) fn plugin_validate_profile(&self, project: &str, p: Profile, previous: Option<&Profile>) -> Result<Profile> {
        if self.plugins.host.list().is_empty() {
            return Ok(p);
        }
        let prev = previous.map(|x| profile_view(project, x));
        let source = super::with_project(format!("/1.0/profiles/{}", p.name), project);
        let out = self
            .plugins
            .host
            .validate_profile(&profile_view(project, &p), prev.as_ref())
            .map_err(|r| self.rejected(project, "validate-profile", &source, r))?;
        Ok(Profile { config: out.value.config, ..p })
    }

    /// Runs the project validators; returns the project with patches applied.
    pub(super) fn plugin_validate_project(&self, p: Project, previous: Option<&Project>) -> Result<Project> {
        if self.plugins.host.list().is_empty() {
            return Ok(p);
        }
        let prev = previous.map(project_view);
        let source = format!("/1.0/projects/{}", p.name);
        let out = self
            .plugins
            .host
            .validate_project(&project_view(&p), prev.as_ref())
            .map_err(|r| self.rejected(&p.name, "validate-project", &source, r))?;
        Ok(Project { config: out.value.config, ..p })
    }

    /// Delivers lifecycle hook `hook` for `inst` to every enabled plugin subscribed to it,
    /// in priority order.
    ///
    /// For the state-transition code (container/VM drivers): call it with
    /// `Hook::PreStart` / `Hook::PreStop` *before* acting and give up with the returned
    /// error (a 400 naming the plugin and its reason, or a 503 when a fail-closed plugin
    /// broke); call `Hook::OnStart` / `Hook::OnStopNs` / `Hook::OnStop` after the fact
    /// (their errors are only logged, so the result is always `Ok`). `details` is free
    /// form (e.g. `{"reason": "user"}`). Call it from a blocking thread with no model
    /// guard held: plugins may query the model.
    pub fn plugin_hook(&self, hook: Hook, inst: &InstanceRecord, details: &ConfigMap) -> Result<()> {
        let subscribed = self.plugins.host.list().iter().any(|p| {
            p.settings.enabled
                && p.capabilities.contains(&berth_plugin_host::Capability::Lifecycle)
                && p.settings.wants(hook)
        });
        if !subscribed {
            return Ok(());
        }
        let view = instance_view(&self.model(), inst);
        let source = Model::instance_url(&inst.project, &inst.name);
        match self.plugins.host.hook(hook, &view, details) {
            Ok(report) => {
                for (plugin, err) in &report.errors {
                    tracing::warn!(%plugin, %hook, "hook error: {err}");
                }
                for f in &report.failures {
                    self.events.lifecycle(
                        &inst.project,
                        "plugin-failed",
                        &source,
                        json!({"plugin": f.plugin, "point": hook.name(), "failure": f.kind.to_string()}),
                    );
                }
                Ok(())
            }
            Err(r) => Err(self.rejected(&inst.project, hook.name(), &source, r)),
        }
    }
}

/// `/1.0/plugins/<name>`.
pub fn plugin_url(name: &str) -> String {
    format!("/1.0/plugins/{name}")
}
