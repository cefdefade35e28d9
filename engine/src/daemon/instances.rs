//! Instance records: create, update, patch, rename, delete, with validation, generated
//! names and the volatile rules.

use std::collections::HashSet;

use chrono::Utc;
use serde_json::json;

use berth_plugin_host::Hook;

use super::{Daemon, Model, PowerState};
use crate::config::{self, Devices, InstanceType};
use crate::db::tables;
use crate::error::{Error, Result};
use crate::model::{scoped_key, zero_time, ConfigMap, InstanceRecord};

/// What `POST /1.0/instances` asks for, already parsed.
#[derive(Debug, Clone)]
pub struct InstanceCreate {
    pub name: Option<String>,
    pub instance_type: InstanceType,
    pub architecture: Option<String>,
    pub config: ConfigMap,
    pub devices: Devices,
    /// `None` means `["default"]`.
    pub profiles: Option<Vec<String>>,
    pub ephemeral: bool,
    pub stateful: bool,
    pub description: String,
}

/// What `PUT /1.0/instances/N` replaces.
#[derive(Debug, Clone)]
pub struct InstanceUpdate {
    pub architecture: Option<String>,
    pub config: ConfigMap,
    pub devices: Devices,
    pub profiles: Vec<String>,
    pub ephemeral: bool,
    pub description: String,
}

/// The host architecture in LXD's spelling.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        other => other,
    }
}

const ADJECTIVES: &[&str] = &[
    "able", "brave", "calm", "eager", "fair", "fond", "glad", "keen", "kind", "lucky", "merry", "neat",
    "proud", "quick", "sharp", "smart", "swift", "tidy", "vivid", "warm", "wise", "bold", "crisp", "noble",
];
const NOUNS: &[&str] = &[
    "kite", "otter", "heron", "lynx", "maple", "pike", "raven", "shrew", "trout", "wren", "yak", "bison",
    "cedar", "dingo", "egret", "finch", "gecko", "ibis", "koala", "llama", "moose", "newt", "orca", "quail",
];

fn generate_name(taken: impl Fn(&str) -> bool) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    loop {
        let n = format!(
            "{}-{}",
            ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
            NOUNS[rng.random_range(0..NOUNS.len())]
        );
        if !taken(&n) {
            return n;
        }
    }
}

/// Maps LXD's `instance_type` (`cN-mM`: N CPUs, M GiB) to limits.
pub fn instance_type_limits(spec: &str) -> Result<ConfigMap> {
    let bad = || Error::bad(format!("Invalid instance type \"{spec}\": expected cN-mM (e.g. c2-m4)"));
    let (c, m) = spec.split_once('-').ok_or_else(bad)?;
    let cpus: u32 = c.strip_prefix('c').and_then(|v| v.parse().ok()).filter(|v| *v > 0).ok_or_else(bad)?;
    let mem: f64 = m.strip_prefix('m').and_then(|v| v.parse().ok()).filter(|v: &f64| *v > 0.0).ok_or_else(bad)?;
    let mut out = ConfigMap::new();
    out.insert("limits.cpu".into(), cpus.to_string());
    // Truncation is intended: the MiB value of a finite, positive, parsed float.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let mib = (mem * 1024.0) as u64;
    out.insert("limits.memory".into(), format!("{mib}MiB"));
    Ok(out)
}

impl Model {
    /// Every hwaddr in use by any instance (for DeviceNextInterfaceHWAddr).
    pub fn taken_hwaddrs(&self) -> HashSet<String> {
        let mut set = HashSet::new();
        for i in self.instances.values() {
            for (k, v) in &i.config {
                if k.starts_with("volatile.") && k.ends_with(".hwaddr") {
                    set.insert(v.to_ascii_lowercase());
                }
            }
            for d in i.devices.values() {
                if let Some(h) = d.get("hwaddr") {
                    set.insert(h.to_ascii_lowercase());
                }
            }
        }
        set
    }

    /// Fills `volatile.<nic>.hwaddr` for every expanded nic without an explicit hwaddr.
    fn fill_volatile(&self, inst: &mut InstanceRecord) -> Result<()> {
        let (_, devices) = self.expand(inst)?;
        let mut taken = self.taken_hwaddrs();
        for (name, dev) in &devices {
            let is_nic = matches!(dev.get("type").map(String::as_str), Some("nic" | "infiniband"));
            let key = format!("volatile.{name}.hwaddr");
            if is_nic && !dev.contains_key("hwaddr") && !inst.config.contains_key(&key) {
                let mac = config::next_interface_hwaddr(&taken);
                taken.insert(mac.clone());
                inst.config.insert(key, mac);
            }
        }
        Ok(())
    }
}

impl Daemon {
    /// Creates an instance record (the `none` source). Returns the name.
    pub fn create_instance(&self, project: &str, req: InstanceCreate) -> Result<String> {
        self.create_instance_from(project, req, &super::RootSource::Empty)
    }

    /// Creates an instance whose root volume comes from `source`. Returns the name.
    pub fn create_instance_from(&self, project: &str, mut req: InstanceCreate, source: &super::RootSource) -> Result<String> {
        self.prepare_copy(project, &mut req, source)?;
        if let super::RootSource::Image(fp) = source {
            req.config.insert("volatile.base_image".into(), fp.clone());
            self.prepare_image_volume(project, &req, fp)?;
        }
        if let Some(name) = &req.name {
            config::valid_instance_name(name)?;
        }
        if req.instance_type == InstanceType::Any {
            return Err(Error::bad("Invalid instance type"));
        }
        let profiles = req.profiles.unwrap_or_else(|| vec!["default".to_string()]);
        let mut seen = HashSet::new();
        for p in &profiles {
            if !seen.insert(p) {
                return Err(Error::bad(format!("Duplicate profile found in request: \"{p}\"")));
            }
        }
        let now = Utc::now();
        let mut tx = self.txn();
        let m = tx.model();
        if !m.projects.contains_key(project) {
            return Err(Error::not_found(format!("Project \"{project}\" not found")));
        }
        let name = match req.name {
            Some(n) => n,
            None => generate_name(|n| m.instance(project, n).is_some()),
        };
        if m.instance(project, &name).is_some() {
            return Err(Error::conflict(format!("Instance \"{name}\" already exists")));
        }
        let inst = InstanceRecord {
            name: name.clone(),
            project: project.to_string(),
            instance_type: req.instance_type,
            architecture: req.architecture.unwrap_or_else(|| host_architecture().to_string()),
            config: req.config,
            devices: req.devices,
            profiles,
            ephemeral: req.ephemeral,
            stateful: req.stateful,
            description: req.description,
            created_at: now,
            last_used_at: zero_time(),
        };
        // Plugins first (their patches apply), then the built-in validation on the result.
        drop(m);
        let mut inst = self.plugin_validate_instance(inst, None)?;
        let m = tx.model();
        m.validate_instance(&inst)?;
        inst.config.insert("volatile.uuid".into(), uuid::Uuid::new_v4().to_string());
        m.fill_volatile(&mut inst)?;
        // A copy that takes time (a dir pool, another pool) runs outside the write lock, on a
        // copy of the model; a concurrent create of the same name fails on the volume.
        let (guard, snaps) = if self.root_is_heavy(&m, &inst, source) {
            let view = m.clone();
            drop(m);
            drop(tx);
            let out = self.create_root(&view, &inst, source)?;
            tx = self.txn();
            if tx.model().instance(project, &name).is_some() {
                return Err(Error::conflict(format!("Instance \"{name}\" already exists")));
            }
            out
        } else {
            let out = self.create_root(&m, &inst, source)?;
            drop(m);
            out
        };
        self.plugin_hook(Hook::PreCreate, &inst, &ConfigMap::new())?;
        let key = scoped_key(project, &name);
        let snaps: Vec<super::SnapshotRecord> =
            snaps.into_iter().map(|s| super::SnapshotRecord { instance: name.clone(), ..s }).collect();
        tx.commit_instance_with_snapshots(&key, &inst, &snaps)?;
        guard.disarm();
        drop(tx);
        if let super::RootSource::Image(fp) = source {
            self.touch_image(project, fp);
        }
        self.events.lifecycle(project, "instance-created", &Model::instance_url(project, &name), json!({}));
        Ok(name)
    }

    /// Replaces an instance's writable fields. Volatile keys absent from the request are kept.
    pub fn update_instance(&self, project: &str, name: &str, upd: InstanceUpdate) -> Result<()> {
        self.materialize_backups(project, name)?;
        let mut tx = self.txn();
        let m = tx.model();
        let old = m
            .instance(project, name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("Instance \"{name}\" not found")))?;
        let mut inst = old.clone();
        let mut cfg = upd.config;
        for (k, v) in &old.config {
            if k.starts_with("volatile.") && !cfg.contains_key(k) {
                cfg.insert(k.clone(), v.clone());
            }
        }
        inst.config = cfg;
        inst.devices = upd.devices;
        inst.profiles = upd.profiles;
        inst.ephemeral = upd.ephemeral;
        inst.description = upd.description;
        if let Some(a) = upd.architecture.filter(|a| !a.is_empty()) {
            inst.architecture = a;
        }
        drop(m);
        let mut inst = self.plugin_validate_instance(inst, Some(&old))?;
        let m = tx.model();
        m.validate_instance(&inst)?;
        super::migrate::same_root_pool(&m, &old, &inst)?;
        if m.power(project, name) != PowerState::Stopped {
            for (k, v) in &inst.config {
                if old.config.get(k) != Some(v) && !config::is_live_updatable(k) {
                    return Err(Error::bad(format!("Key \"{k}\" cannot be changed on a running instance")));
                }
            }
        }
        m.fill_volatile(&mut inst)?;
        drop(m);
        let key = scoped_key(project, name);
        tx.commit(|db| db.put(&tables::INSTANCES, &key, &inst), |m| {
            m.instances.insert(key.clone(), inst.clone());
        })?;
        self.events.lifecycle(project, "instance-updated", &Model::instance_url(project, name), json!({}));
        self.plugin_hook(Hook::OnUpdate, &inst, &ConfigMap::new())?;
        Ok(())
    }

    /// Deletes a stopped instance.
    pub fn delete_instance(&self, project: &str, name: &str) -> Result<()> {
        let mut tx = self.txn();
        let m = tx.model();
        let inst = m.instance(project, name).ok_or_else(|| Error::not_found(format!("Instance \"{name}\" not found")))?;
        if m.power(project, name) != PowerState::Stopped {
            return Err(Error::bad("Instance is running"));
        }
        if inst.config.get("security.protection.delete").is_some_and(|v| config::is_true(v)) {
            return Err(Error::bad("Instance is protected"));
        }
        let inst = inst.clone();
        let pool = m.root_pool(&inst).ok();
        let (snap_keys, backup_keys) = Self::dependent_keys(&m, project, name);
        let captured: Vec<_> = backup_keys.iter().filter_map(|k| m.backups.get(k).and_then(|b| b.captured.clone())).collect();
        drop(m);
        self.plugin_hook(Hook::PreDelete, &inst, &ConfigMap::new())?;
        let key = scoped_key(project, name);
        tx.commit(
            |db| {
                db.delete(&tables::INSTANCES, &key)?;
                for k in &snap_keys {
                    db.delete(&tables::SNAPSHOTS, k)?;
                }
                for k in &backup_keys {
                    db.delete(&tables::BACKUPS, k)?;
                }
                Ok(())
            },
            |m| {
                m.instances.remove(&key);
                m.power.remove(&key);
                for k in &snap_keys {
                    m.snapshots.remove(k);
                }
                for k in &backup_keys {
                    m.backups.remove(k);
                }
            },
        )?;
        // The record is gone (acknowledged); a crash now leaves at most a stray volume.
        self.delete_root(pool.as_deref(), &inst);
        captured.iter().for_each(|c| self.drop_captured(Some(c)));
        self.events.lifecycle(project, "instance-deleted", &Model::instance_url(project, name), json!({}));
        Ok(())
    }

    /// Renames a stopped instance.
    pub fn rename_instance(&self, project: &str, name: &str, new: &str) -> Result<()> {
        config::valid_instance_name(new)?;
        self.materialize_backups(project, name)?;
        let mut tx = self.txn();
        let m = tx.model();
        let mut inst = m
            .instance(project, name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("Instance \"{name}\" not found")))?;
        if m.power(project, name) != PowerState::Stopped {
            return Err(Error::bad("Renaming of running instance not allowed"));
        }
        if m.instance(project, new).is_some() {
            return Err(Error::conflict(format!("Name \"{new}\" already in use")));
        }
        // A rename is an update of the name: validators see it (with the previous view).
        drop(m);
        let renamed = self.plugin_validate_instance(InstanceRecord { name: new.to_string(), ..inst.clone() }, Some(&inst))?;
        let m = tx.model();
        m.validate_instance(&renamed)?;
        (inst.config, inst.devices) = (renamed.config, renamed.devices);
        self.rename_root(&m, &inst, new)?;
        let old_inst = inst.clone();
        let (old_s, new_s, old_b, new_b) = Self::renamed_dependents(&m, project, name, new);
        drop(m);
        inst.name = new.to_string();
        let (old_key, new_key) = (scoped_key(project, name), scoped_key(project, new));
        let res = tx.commit(
            |db| {
                db.delete(&tables::INSTANCES, &old_key)?;
                for k in old_s.iter() {
                    db.delete(&tables::SNAPSHOTS, k)?;
                }
                for k in old_b.iter() {
                    db.delete(&tables::BACKUPS, k)?;
                }
                for s in &new_s {
                    db.put(&tables::SNAPSHOTS, &s.key(), s)?;
                }
                for b in &new_b {
                    db.put(&tables::BACKUPS, &b.key(), b)?;
                }
                db.put(&tables::INSTANCES, &new_key, &inst)
            },
            |m| {
                m.instances.remove(&old_key);
                m.instances.insert(new_key.clone(), inst.clone());
                for k in old_s.iter().chain(old_b.iter()) {
                    m.snapshots.remove(k);
                    m.backups.remove(k);
                }
                for s in &new_s {
                    m.snapshots.insert(s.key(), s.clone());
                }
                for b in &new_b {
                    m.backups.insert(b.key(), b.clone());
                }
            },
        );
        if let Err(e) = res {
            // Put the volume back under its old name: the record still has it.
            let m = tx.model();
            let _ = self.rename_root(&m, &inst, &old_inst.name);
            return Err(e);
        }
        self.events.lifecycle(project, "instance-renamed", &Model::instance_url(project, new), json!({"old_name": name}));
        self.plugin_hook(Hook::OnRename, &inst, &ConfigMap::from([("old-name".to_string(), name.to_string())]))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_types() {
        let m = instance_type_limits("c2-m4").unwrap();
        assert_eq!(m["limits.cpu"], "2");
        assert_eq!(m["limits.memory"], "4096MiB");
        assert!(instance_type_limits("t2.micro").is_err());
        assert!(instance_type_limits("c0-m1").is_err());
    }

    #[test]
    fn generated_names_are_valid_and_free() {
        let n = generate_name(|n| n == "able-kite");
        assert!(config::valid_instance_name(&n).is_ok());
        assert_ne!(n, "able-kite");
    }
}
