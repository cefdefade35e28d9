//! Storage pools as the daemon sees them: records in the database, one loaded driver per
//! pool, the `default` dir pool of the first run, and instance root volumes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Daemon, Model};
use crate::config::{self, InstanceType};
use crate::db::tables;
use crate::error::{Error, Result};
use crate::model::{scoped_key, ConfigMap, InstanceRecord};
use crate::storage::drivers::{self, Driver, PoolSpec};
use crate::storage::{Volume, VolumeType};

/// A storage pool record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolRecord {
    pub name: String,
    pub driver: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: ConfigMap,
}

/// A loaded pool: its driver, or why it could not be loaded.
#[derive(Clone)]
pub enum LoadedPool {
    Ready(Arc<dyn Driver>),
    Unavailable(String),
}

impl From<drivers::Error> for Error {
    fn from(e: drivers::Error) -> Self {
        use drivers::Error as E;
        match &e {
            E::InvalidName { .. } | E::InvalidConfig { .. } | E::UnknownDriver(_) => Error::bad(e.to_string()),
            E::NotFound { .. } => Error::not_found(e.to_string()),
            E::AlreadyExists { .. } | E::Busy { .. } => Error::conflict(e.to_string()),
            E::NotOperational { .. } => Error::NotOperational(e.to_string()),
            E::Unsupported { .. } => Error::bad(e.to_string()),
            _ => Error::internal(format!("{e}: {}", chain(&e))),
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut src = e.source();
    while let Some(s) = src {
        out.push(s.to_string());
        src = s.source();
    }
    out.join(": ")
}

/// The volume type holding an instance's root filesystem.
pub fn instance_volume(inst: &InstanceRecord) -> Volume {
    let vtype = match inst.instance_type {
        InstanceType::VirtualMachine => VolumeType::VirtualMachine,
        _ => VolumeType::Container,
    };
    Volume::in_project(vtype, &inst.project, &inst.name)
}

impl Model {
    /// The pool of an instance's root disk (from its expanded devices).
    pub fn root_pool(&self, inst: &InstanceRecord) -> Result<String> {
        let (_, devices) = self.expand(inst)?;
        devices
            .values()
            .find(|d| config::is_root_disk(d))
            .and_then(|d| d.get("pool").cloned())
            .ok_or_else(|| Error::bad("Failed detecting root disk device: No root device could be found"))
    }
}

impl Daemon {
    /// Loads (and mounts) every pool; a pool that fails stays listed as unavailable.
    pub(super) fn load_pools(&self) -> Result<()> {
        let records: Vec<(String, PoolRecord)> = self.db.all(&tables::POOLS)?;
        let mut loaded = BTreeMap::new();
        for (_, rec) in records {
            let spec = PoolSpec { name: rec.name.clone(), config: rec.config.clone(), data_dir: self.data_dir.clone() };
            let lp = match drivers::load(&rec.driver, spec).and_then(|d| d.mount().map(|_| d)) {
                Ok(d) => LoadedPool::Ready(Arc::from(d)),
                Err(e) => {
                    tracing::warn!(pool = %rec.name, error = %e, "storage pool not available");
                    LoadedPool::Unavailable(e.to_string())
                }
            };
            loaded.insert(rec.name.clone(), (rec, lp));
        }
        *self.pools.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(())
    }

    /// On the very first run: a `dir` pool named `default` and a root disk in the default
    /// profile, so `lxc init`/`launch` work with no set-up.
    pub(super) fn ensure_default_pool(&self) -> Result<()> {
        if self.db.get(&tables::META, "default_pool_created")?.is_some() {
            return Ok(());
        }
        let spec = PoolSpec::new("default", &self.data_dir, &[]);
        let driver = drivers::load("dir", spec)?;
        let extra = if driver.spec().mount_path().exists() { driver.spec().config.clone() } else { driver.create_pool()? };
        let rec = PoolRecord {
            name: "default".into(),
            driver: "dir".into(),
            description: String::new(),
            config: extra,
        };
        let mut tx = self.txn();
        let mut profile = tx.model().profiles.get("default/default").cloned().unwrap_or_else(crate::model::Profile::default_profile);
        let has_root = profile.devices.values().any(config::is_root_disk);
        if !has_root {
            profile.devices.insert(
                "root".into(),
                [("type", "disk"), ("path", "/"), ("pool", "default")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            );
        }
        tx.commit(
            |db| {
                db.put(&tables::POOLS, "default", &rec)?;
                db.put(&tables::PROFILES, "default/default", &profile)?;
                db.put(&tables::META, "default_pool_created", &1u64)
            },
            |m| {
                m.profiles.insert("default/default".into(), profile.clone());
            },
        )?;
        Ok(())
    }

    /// The driver of a pool, or why it is unavailable.
    pub fn pool_driver(&self, name: &str) -> Result<Arc<dyn Driver>> {
        match self.pools.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            Some((_, LoadedPool::Ready(d))) => Ok(d.clone()),
            Some((_, LoadedPool::Unavailable(why))) => {
                Err(Error::NotOperational(format!("Storage pool \"{name}\" is unavailable: {why}")))
            }
            None => Err(Error::not_found(format!("Storage pool \"{name}\" not found"))),
        }
    }

    /// Every pool record with its load state.
    pub fn pools(&self) -> Vec<(PoolRecord, LoadedPool)> {
        self.pools.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Creates the root volume of a new empty instance; returns a guard that deletes it
    /// unless disarmed (so a failed DB write leaves nothing behind).
    pub(super) fn create_empty_root(&self, m: &Model, inst: &InstanceRecord) -> Result<VolumeGuard> {
        let pool = m.root_pool(inst)?;
        let driver = self.pool_driver(&pool)?;
        let vol = instance_volume(inst);
        let vm_size = match inst.instance_type {
            InstanceType::VirtualMachine => Some(super::vm_images::empty_root_size(m, inst)?),
            _ => None,
        };
        let mut fill = |p: &std::path::Path| -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
            match vm_size {
                Some(size) => crate::storage::vm_volume::fill_empty(p, size)?,
                None => std::fs::create_dir_all(p.join("rootfs"))?,
            }
            Ok(())
        };
        driver.create_volume(&vol, Some(&mut fill))?;
        Ok(VolumeGuard { driver: Some(driver), vol })
    }

    /// Deletes an instance's root volume (logged, not fatal: the record is already gone).
    pub(super) fn delete_root(&self, pool: Option<&str>, inst: &InstanceRecord) {
        let Some(pool) = pool else { return };
        let vol = instance_volume(inst);
        match self.pool_driver(pool) {
            Ok(d) if d.volume_exists(&vol) => {
                if let Err(e) = d.delete_volume(&vol) {
                    tracing::error!(instance = %inst.name, error = %e, "deleting root volume");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(instance = %inst.name, error = %e, "deleting root volume"),
        }
    }

    /// Renames an instance's root volume if it has one.
    pub(super) fn rename_root(&self, m: &Model, inst: &InstanceRecord, new: &str) -> Result<()> {
        let pool = m.root_pool(inst)?;
        let d = self.pool_driver(&pool)?;
        let vol = instance_volume(inst);
        if d.volume_exists(&vol) {
            d.rename_volume(&vol, new)?;
        }
        Ok(())
    }

    /// The root volume path of an instance (its `rootfs` is below it).
    pub fn instance_path(&self, project: &str, name: &str) -> Result<std::path::PathBuf> {
        let m = self.model();
        let inst = m.instances.get(&scoped_key(project, name)).ok_or_else(|| Error::not_found("Instance not found"))?;
        let pool = m.root_pool(inst)?;
        let vol = instance_volume(inst);
        drop(m);
        Ok(self.pool_driver(&pool)?.volume_path(&vol))
    }
}

/// Deletes a freshly created volume on drop unless [`VolumeGuard::disarm`] was called.
pub struct VolumeGuard {
    driver: Option<Arc<dyn Driver>>,
    vol: Volume,
}

impl VolumeGuard {
    /// A guard that deletes `vol` unless disarmed.
    pub(super) fn armed(driver: Arc<dyn Driver>, vol: Volume) -> Self {
        VolumeGuard { driver: Some(driver), vol }
    }

    /// Keeps the volume.
    pub fn disarm(mut self) {
        self.driver = None;
    }
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        if let Some(d) = self.driver.take() {
            if let Err(e) = d.delete_volume(&self.vol) {
                tracing::error!(volume = %self.vol.name, error = %e, "reverting volume");
            }
        }
    }
}
