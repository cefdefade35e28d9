//! Running instances: the loaded driver objects, start/stop/freeze with the volatile
//! keys and power state kept in step, a watcher per running instance that notices stops
//! from inside, and adoption of instances left running by an earlier daemon.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::hooks::Dispatch;
use super::{Daemon, Model, PowerState};
use crate::config::{self, InstanceType};
use crate::db::tables;
use crate::error::{Error, Result};
use crate::instance::{self, Hook, Instance, LoadArgs, State, Status};
use crate::model::{scoped_key, InstanceRecord};
use crate::storage::{Volume, VolumeType};

/// The daemon's view of running instances.
#[derive(Default)]
pub struct Runtime {
    loaded: Mutex<HashMap<String, Arc<dyn Instance>>>,
    /// Serialises lifecycle actions per instance.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Bumped by every start and daemon-initiated stop, so a watcher knows whether an
    /// exit is its business.
    epochs: Mutex<HashMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Runtime {
    fn action_lock(&self, key: &str) -> Arc<Mutex<()>> {
        lock(&self.locks).entry(key.to_string()).or_default().clone()
    }

    fn bump(&self, key: &str) -> u64 {
        let mut e = lock(&self.epochs);
        let v = e.entry(key.to_string()).or_insert(0);
        *v += 1;
        *v
    }

    fn epoch(&self, key: &str) -> u64 {
        lock(&self.epochs).get(key).copied().unwrap_or(0)
    }
}

/// Maps a driver error onto the API's error kinds.
pub fn instance_error(e: instance::Error) -> Error {
    use instance::Error as E;
    match e {
        E::NotRunning => Error::bad("The instance isn't running"),
        E::AlreadyRunning => Error::bad("The instance is already running"),
        E::Frozen => Error::bad("The instance is frozen"),
        E::NotOperational { .. } => Error::NotOperational(e.to_string()),
        E::Invalid(m) => Error::bad(m),
        E::NotFound(m) => Error::not_found(m),
        E::Failed { .. } => Error::internal(e.to_string()),
    }
}

/// `timeout` of a state PUT: −1 (or absent) means forever.
pub fn timeout_of(t: i64) -> Option<Duration> {
    u64::try_from(t).ok().map(Duration::from_secs)
}

impl Daemon {
    fn record(&self, project: &str, name: &str) -> Result<InstanceRecord> {
        self.model().instance(project, name).cloned().ok_or_else(|| Error::not_found("Instance not found"))
    }

    /// What a driver needs to load `inst`: expanded config and devices (custom volume
    /// disks resolved to their host path), paths, and the other instances' id maps.
    fn load_args(&self, inst: &InstanceRecord) -> Result<LoadArgs> {
        let m = self.model();
        let (config, mut devices) = m.expand(inst)?;
        let other_maps = m
            .instances
            .values()
            .filter(|o| !(o.project == inst.project && o.name == inst.name))
            .filter_map(|o| o.config.get("volatile.idmap.current").cloned())
            .collect();
        drop(m);
        for d in devices.values_mut() {
            let is_volume_disk = d.get("type").map(String::as_str) == Some("disk")
                && d.get("path").is_some_and(|p| p != "/")
                && d.get("source").is_some_and(|s| !s.starts_with('/'));
            if let (true, Some(pool), Some(src)) = (is_volume_disk, d.get("pool").cloned(), d.get("source").cloned()) {
                let vol = Volume::in_project(VolumeType::Custom, &inst.project, &src);
                let path = self.pool_driver(&pool)?.volume_path(&vol);
                d.insert("source".into(), path.to_string_lossy().into_owned());
                // Like LXD, a custom volume appears owned by the container's ids.
                d.entry("shift".into()).or_insert_with(|| "true".into());
            }
        }
        let key = format!("{}_{}", inst.project, inst.name);
        let kind = if inst.instance_type == InstanceType::VirtualMachine { "vms" } else { "containers" };
        Ok(LoadArgs {
            project: inst.project.clone(),
            name: inst.name.clone(),
            config,
            devices,
            volume_path: self.instance_path(&inst.project, &inst.name)?,
            runtime_dir: self.data_dir.join(kind).join(&key),
            log_dir: self.instance_log_dir(&inst.project, &inst.name),
            other_maps,
        })
    }

    /// Per-instance log directory (console log, exec output records).
    pub fn instance_log_dir(&self, project: &str, name: &str) -> std::path::PathBuf {
        self.data_dir.join("logs").join(format!("{project}_{name}"))
    }

    fn load_instance(&self, inst: &InstanceRecord) -> Result<Arc<dyn Instance>> {
        let driver = instance::driver_for(inst.instance_type).map_err(instance_error)?;
        let loaded: Arc<dyn Instance> = Arc::from(driver.load(self.load_args(inst)?).map_err(instance_error)?);
        lock(&self.runtime.loaded).insert(scoped_key(&inst.project, &inst.name), loaded.clone());
        Ok(loaded)
    }

    /// The driver object of an instance (loaded on first use).
    pub fn instance_runtime(&self, project: &str, name: &str) -> Result<Arc<dyn Instance>> {
        if let Some(i) = lock(&self.runtime.loaded).get(&scoped_key(project, name)) {
            return Ok(i.clone());
        }
        let rec = self.record(project, name)?;
        self.load_instance(&rec)
    }

    /// Forgets the driver object (after delete or rename) and removes its runtime files.
    pub fn forget_instance(&self, project: &str, name: &str) {
        if let Some(i) = lock(&self.runtime.loaded).remove(&scoped_key(project, name)) {
            let _ = i.on_delete();
        }
    }

    fn set_power(&self, key: &str, p: PowerState) {
        let mut m = self.model.write().unwrap_or_else(|e| e.into_inner());
        if p == PowerState::Stopped {
            m.power.remove(key);
        } else {
            m.power.insert(key.to_string(), p);
        }
    }

    /// Writes volatile keys (an empty value removes one) and optionally `last_used_at`.
    fn record_volatile(&self, project: &str, name: &str, kv: BTreeMap<String, String>, used: bool) -> Result<()> {
        let mut tx = self.txn();
        let Some(mut inst) = tx.model().instance(project, name).cloned() else { return Ok(()) };
        for (k, v) in kv {
            if v.is_empty() {
                inst.config.remove(&k);
            } else {
                inst.config.insert(k, v);
            }
        }
        if used {
            inst.last_used_at = Utc::now();
        }
        let key = scoped_key(project, name);
        tx.commit(|db| db.put(&tables::INSTANCES, &key, &inst), |m| {
            m.instances.insert(key.clone(), inst.clone());
        })
    }

    fn lifecycle(&self, project: &str, name: &str, action: &str) {
        self.events.lifecycle(project, action, &Model::instance_url(project, name), json!({}));
    }

    /// Starts an instance.
    /// Runs `f` while no lifecycle action (start, stop, ...) of the instance runs.
    pub(super) fn with_action_lock<R>(&self, project: &str, name: &str, f: impl FnOnce() -> R) -> R {
        let l = self.runtime.action_lock(&scoped_key(project, name));
        let _g = lock(&l);
        f()
    }

    pub fn start_instance(self: &Arc<Self>, project: &str, name: &str) -> Result<()> {
        let key = scoped_key(project, name);
        let l = self.runtime.action_lock(&key);
        let _g = lock(&l);
        self.start_locked(project, name)
    }

    fn start_locked(self: &Arc<Self>, project: &str, name: &str) -> Result<()> {
        let key = scoped_key(project, name);
        let rec = self.record(project, name)?;
        if self.instance_runtime(project, name)?.is_running() {
            return Err(Error::bad("The instance is already running"));
        }
        self.materialize_backups(project, name)?;
        self.lifecycle_hook(Hook::PreStart, &rec)?;
        // Reload: the config may have changed since the last start.
        let inst = self.load_instance(&rec)?;
        let epoch = self.runtime.bump(&key);
        let out = inst.start(&Dispatch { daemon: self, inst: rec.clone() }).map_err(instance_error)?;
        self.set_power(&key, PowerState::Running);
        self.record_volatile(project, name, out.volatile, true)?;
        self.lifecycle(project, name, "instance-started");
        self.watch(&rec, inst, epoch);
        Ok(())
    }

    /// Stops an instance: `force` (or a zero timeout) kills it, otherwise a clean
    /// shutdown waits `timeout` (None = forever) and kills afterwards.
    pub fn stop_instance(self: &Arc<Self>, project: &str, name: &str, force: bool, timeout: Option<Duration>) -> Result<()> {
        let key = scoped_key(project, name);
        let l = self.runtime.action_lock(&key);
        let g = lock(&l);
        self.stop_locked(project, name, force, timeout, false)?;
        drop(g);
        let rec = self.record(project, name)?;
        if rec.ephemeral {
            self.delete_instance(project, name)?;
            self.forget_instance(project, name);
        }
        Ok(())
    }

    fn stop_locked(&self, project: &str, name: &str, force: bool, timeout: Option<Duration>, restart: bool) -> Result<()> {
        let key = scoped_key(project, name);
        let rec = self.record(project, name)?;
        let inst = self.instance_runtime(project, name)?;
        if !inst.is_running() {
            return Err(Error::bad("The instance is already stopped"));
        }
        self.lifecycle_hook(Hook::PreStop, &rec)?;
        self.runtime.bump(&key);
        let hooks = Dispatch { daemon: self, inst: rec.clone() };
        let kill = force || timeout.is_some_and(|t| t.is_zero());
        if kill {
            inst.kill(&hooks).map_err(instance_error)?;
        } else {
            inst.shutdown(timeout, &hooks).map_err(instance_error)?;
        }
        self.after_stop(project, name, if restart { None } else if kill { Some("instance-stopped") } else { Some("instance-shutdown") });
        Ok(())
    }

    fn after_stop(&self, project: &str, name: &str, event: Option<&str>) {
        let key = scoped_key(project, name);
        self.set_power(&key, PowerState::Stopped);
        let mut kv = BTreeMap::new();
        kv.insert("volatile.last_state.power".to_string(), "STOPPED".to_string());
        if let Ok(rec) = self.record(project, name) {
            for k in rec.config.keys().filter(|k| k.ends_with(".host_name") && k.starts_with("volatile.")) {
                kv.insert(k.clone(), String::new());
            }
        }
        if let Err(e) = self.record_volatile(project, name, kv, false) {
            tracing::warn!(instance = name, error = %e, "recording stop");
        }
        if let Some(ev) = event {
            self.lifecycle(project, name, ev);
        }
    }

    /// `berthd shutdown` (as `lxd shutdown`): stops every running instance at once, each
    /// with a clean shutdown that waits `boot.host_shutdown_timeout` seconds (default 30)
    /// and then kills. Their `volatile.last_state.power` stays RUNNING, so the next start
    /// brings them back unless `boot.autostart` is false; ephemeral ones are deleted.
    pub fn shutdown_instances(self: &Arc<Self>) {
        let running: Vec<(String, String, bool, Duration)> = {
            let m = self.model();
            m.instances
                .values()
                .filter(|r| m.power(&r.project, &r.name) != PowerState::Stopped)
                .map(|r| {
                    let (ec, _) = m.expand(r).unwrap_or_default();
                    let secs = ec.get("boot.host_shutdown_timeout").and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(30);
                    (r.project.clone(), r.name.clone(), r.ephemeral, Duration::from_secs(secs))
                })
                .collect()
        };
        std::thread::scope(|s| {
            for (project, name, ephemeral, timeout) in &running {
                s.spawn(move || {
                    let res = if *ephemeral {
                        self.stop_instance(project, name, false, Some(*timeout))
                    } else {
                        let l = self.runtime.action_lock(&scoped_key(project, name));
                        let _g = lock(&l);
                        self.stop_locked(project, name, false, Some(*timeout), false).and_then(|()| {
                            let kv = BTreeMap::from([("volatile.last_state.power".to_string(), "RUNNING".to_string())]);
                            self.record_volatile(project, name, kv, false)
                        })
                    };
                    if let Err(e) = res {
                        tracing::warn!(instance = %name, error = %e, "stopping for the daemon shutdown");
                    }
                });
            }
        });
    }

    /// Restarts (a zero timeout or `force` kills instead of shutting down).
    pub fn restart_instance(self: &Arc<Self>, project: &str, name: &str, force: bool, timeout: Option<Duration>) -> Result<()> {
        let key = scoped_key(project, name);
        let l = self.runtime.action_lock(&key);
        let _g = lock(&l);
        if self.instance_runtime(project, name)?.is_running() {
            self.stop_locked(project, name, force, timeout, true)?;
        }
        self.start_locked(project, name)?;
        self.lifecycle(project, name, "instance-restarted");
        Ok(())
    }

    /// Freezes (`true`) or thaws every process of a running instance.
    pub fn freeze_instance(&self, project: &str, name: &str, freeze: bool) -> Result<()> {
        let key = scoped_key(project, name);
        let l = self.runtime.action_lock(&key);
        let _g = lock(&l);
        let inst = self.instance_runtime(project, name)?;
        if freeze {
            inst.freeze().map_err(instance_error)?;
            self.set_power(&key, PowerState::Frozen);
            self.lifecycle(project, name, "instance-paused");
        } else {
            inst.unfreeze().map_err(instance_error)?;
            self.set_power(&key, PowerState::Running);
            self.lifecycle(project, name, "instance-resumed");
        }
        Ok(())
    }

    /// The live state of an instance (None when stopped).
    pub fn instance_state(&self, project: &str, name: &str) -> Result<Option<State>> {
        if self.model().power(project, name) == PowerState::Stopped {
            return Ok(None);
        }
        let st = self.instance_runtime(project, name)?.state().map_err(instance_error)?;
        Ok((st.status != Status::Stopped).then_some(st))
    }

    /// Applies an updated record to a running instance (limits, device hotplug).
    pub fn apply_instance_update(&self, project: &str, name: &str) -> Result<()> {
        let key = scoped_key(project, name);
        if self.model().power(project, name) == PowerState::Stopped {
            return Ok(());
        }
        let l = self.runtime.action_lock(&key);
        let _g = lock(&l);
        let rec = self.record(project, name)?;
        let args = self.load_args(&rec)?;
        let inst = self.instance_runtime(project, name)?;
        let out = inst.update(&args.config, &args.devices).map_err(instance_error)?;
        if !out.volatile.is_empty() {
            self.record_volatile(project, name, out.volatile, false)?;
        }
        Ok(())
    }

    /// A thread per running instance that notices when it stops by itself (poweroff,
    /// reboot, init crash): cleans up, records the stop, restarts on reboot and deletes
    /// an ephemeral instance.
    fn watch(self: &Arc<Self>, rec: &InstanceRecord, inst: Arc<dyn Instance>, epoch: u64) {
        let d = self.clone();
        let (project, name) = (rec.project.clone(), rec.name.clone());
        let spawned = std::thread::Builder::new().name(format!("watch-{name}")).stack_size(256 * 1024).spawn(move || {
            inst.wait_exit(None);
            let key = scoped_key(&project, &name);
            let l = d.runtime.action_lock(&key);
            let g = lock(&l);
            if d.runtime.epoch(&key) != epoch {
                return;
            }
            d.runtime.bump(&key);
            let Ok(rec) = d.record(&project, &name) else { return };
            let reboot = inst.cleanup(&Dispatch { daemon: &d, inst: rec.clone() }).unwrap_or(false);
            d.after_stop(&project, &name, Some(if reboot { "instance-restarted" } else { "instance-shutdown" }));
            if reboot {
                if let Err(e) = d.start_locked(&project, &name) {
                    tracing::error!(instance = %name, error = %e, "restart after reboot");
                }
                return;
            }
            drop(g);
            if rec.ephemeral {
                let _ = d.delete_instance(&project, &name);
                d.forget_instance(&project, &name);
            }
        });
        if let Err(e) = spawned {
            tracing::error!(instance = %rec.name, error = %e, "cannot watch instance");
        }
    }

    /// On daemon start: removes orphaned backup volumes, adopts instances left running,
    /// cleans up those that died while the daemon was away, and starts `boot.autostart`
    /// ones.
    pub fn start_runtime(self: &Arc<Self>) {
        self.sweep_backup_volumes();
        let recs: Vec<InstanceRecord> = self.model().instances.values().cloned().collect();
        for rec in recs {
            let key = scoped_key(&rec.project, &rec.name);
            let inst = match self.load_instance(&rec) {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(instance = %rec.name, error = %e, "cannot load instance");
                    continue;
                }
            };
            if inst.is_running() {
                let frozen = inst.state().map(|s| s.status == Status::Frozen).unwrap_or(false);
                self.set_power(&key, if frozen { PowerState::Frozen } else { PowerState::Running });
                let epoch = self.runtime.bump(&key);
                self.watch(&rec, inst, epoch);
                continue;
            }
            let _ = inst.cleanup(&crate::instance::NoHooks);
            let (ec, _) = self.model().expand(&rec).unwrap_or_default();
            let autostart = match ec.get("boot.autostart") {
                Some(v) => config::is_true(v),
                None => rec.config.get("volatile.last_state.power").map(String::as_str) == Some("RUNNING"),
            };
            if autostart {
                if let Err(e) = self.start_instance(&rec.project, &rec.name) {
                    tracing::error!(instance = %rec.name, error = %e, "autostart failed");
                }
            } else if rec.config.get("volatile.last_state.power").map(String::as_str) == Some("RUNNING") {
                self.after_stop(&rec.project, &rec.name, None);
            }
        }
    }
}
