//! Pool management (create, update, delete) and custom volumes with their snapshots.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Daemon, LoadedPool, Model, PoolRecord};
use crate::db::tables;
use crate::error::{Error, Result};
use crate::model::ConfigMap;
use crate::storage::drivers::{self, CopySource, PoolSpec};
use crate::storage::{Volume, VolumeType};

/// A custom volume (or, with `snapshot`, one of its snapshots).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub pool: String,
    pub project: String,
    pub name: String,
    #[serde(default)]
    pub snapshot: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: ConfigMap,
    #[serde(default = "filesystem")]
    pub content_type: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// What `PUT/PATCH` on a custom volume or volume snapshot changes (`None`: keep).
#[derive(Debug, Clone, Default)]
pub struct VolumeUpdate {
    pub description: Option<String>,
    pub config: Option<ConfigMap>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

fn filesystem() -> String {
    "filesystem".into()
}

impl VolumeRecord {
    /// `pool/project/name[/snapshot]`.
    pub fn key(&self) -> String {
        volume_key(&self.pool, &self.project, &self.name, self.snapshot.as_deref())
    }

    /// The driver's view.
    pub fn volume(&self) -> Volume {
        Volume::in_project(VolumeType::Custom, &self.project, &self.name)
    }
}

/// The key of a custom volume record.
pub fn volume_key(pool: &str, project: &str, name: &str, snap: Option<&str>) -> String {
    match snap {
        Some(s) => format!("{pool}/{project}/{name}/{s}"),
        None => format!("{pool}/{project}/{name}"),
    }
}

impl Model {
    /// Custom volumes of a pool in a project (no snapshots).
    pub fn custom_volumes(&self, pool: &str, project: &str) -> Vec<&VolumeRecord> {
        self.volumes.values().filter(|v| v.pool == pool && v.project == project && v.snapshot.is_none()).collect()
    }

    /// Snapshots of a custom volume, oldest first.
    pub fn volume_snapshots(&self, pool: &str, project: &str, name: &str) -> Vec<&VolumeRecord> {
        let mut v: Vec<&VolumeRecord> = self
            .volumes
            .values()
            .filter(|v| v.pool == pool && v.project == project && v.name == name && v.snapshot.is_some())
            .collect();
        v.sort_by_key(|v| v.created_at);
        v
    }

    /// What uses a pool: instances (root disks), profiles, custom volumes.
    pub fn pool_used_by(&self, pool: &str) -> Vec<String> {
        let mut out = Vec::new();
        for i in self.instances.values() {
            if self.root_pool(i).ok().as_deref() == Some(pool) {
                out.push(Model::instance_url(&i.project, &i.name));
            }
        }
        for p in self.profiles.values() {
            if p.devices.values().any(|d| d.get("type").map(String::as_str) == Some("disk") && d.get("pool").map(String::as_str) == Some(pool)) {
                out.push(super::with_project(format!("/1.0/profiles/{}", p.name), "default"));
            }
        }
        for v in self.volumes.values().filter(|v| v.pool == pool && v.snapshot.is_none()) {
            out.push(super::with_project(format!("/1.0/storage-pools/{pool}/volumes/custom/{}", v.name), &v.project));
        }
        for i in self.images.values() {
            out.push(format!("/1.0/images/{}", i.fingerprint));
        }
        out
    }

    /// Instances and profiles using a custom volume as a disk.
    pub fn volume_used_by(&self, pool: &str, name: &str) -> Vec<String> {
        let uses = |d: &crate::config::Devices| {
            d.values().any(|d| d.get("pool").map(String::as_str) == Some(pool) && d.get("source").map(String::as_str) == Some(name))
        };
        let mut out: Vec<String> = self.instances.values().filter(|i| uses(&i.devices)).map(|i| Model::instance_url(&i.project, &i.name)).collect();
        out.extend(self.profiles.values().filter(|p| uses(&p.devices)).map(|p| format!("/1.0/profiles/{}", p.name)));
        out
    }
}

impl Daemon {
    /// Creates a pool: driver storage first, then the record; undone if the record fails.
    pub fn create_pool(&self, name: &str, driver: &str, description: &str, config: ConfigMap) -> Result<()> {
        crate::storage::validate_name("pool", name)?;
        if self.pools.read().unwrap_or_else(|p| p.into_inner()).contains_key(name) {
            return Err(Error::conflict(format!("Storage pool \"{name}\" already exists")));
        }
        let spec = PoolSpec { name: name.to_string(), config: config.clone(), data_dir: self.data_dir.clone() };
        let d: Arc<dyn drivers::Driver> = Arc::from(drivers::load(driver, spec)?);
        let extra = d.create_pool()?;
        let mut cfg = config;
        cfg.extend(extra);
        let rec = PoolRecord { name: name.into(), driver: driver.into(), description: description.into(), config: cfg };
        let mut tx = self.txn();
        if let Err(e) = tx.commit(|db| db.put(&tables::POOLS, name, &rec), |_| ()) {
            let _ = d.delete_pool();
            return Err(e);
        }
        self.pools.write().unwrap_or_else(|p| p.into_inner()).insert(name.into(), (rec, LoadedPool::Ready(d)));
        self.events.lifecycle("default", "storage-pool-created", &format!("/1.0/storage-pools/{name}"), json!({}));
        Ok(())
    }

    /// Updates a pool's description and user-changeable config (driver keys fixed at
    /// creation, like `source` and `size`, must stay as they are).
    pub fn update_pool(&self, name: &str, description: String, config: ConfigMap) -> Result<()> {
        let (mut rec, lp) = self.pools.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned().ok_or_else(|| Error::not_found("Storage pool not found"))?;
        for key in ["source", "size", "btrfs.mount_options"] {
            if let Some(v) = config.get(key) {
                if rec.config.get(key) != Some(v) {
                    return Err(Error::bad(format!("Pool config key \"{key}\" cannot be changed")));
                }
            }
        }
        for k in rec.config.keys() {
            if ["source", "size"].contains(&k.as_str()) {
                continue;
            }
        }
        let mut cfg = config;
        for key in ["source", "size", "btrfs.mount_options"] {
            if let Some(v) = rec.config.get(key) {
                cfg.entry(key.into()).or_insert(v.clone());
            }
        }
        rec.description = description;
        rec.config = cfg;
        let mut tx = self.txn();
        tx.commit(|db| db.put(&tables::POOLS, name, &rec), |_| ())?;
        self.pools.write().unwrap_or_else(|p| p.into_inner()).insert(name.into(), (rec, lp));
        Ok(())
    }

    /// Deletes an unused pool.
    pub fn delete_pool(&self, name: &str) -> Result<()> {
        let used = self.model().pool_used_by(name);
        let used: Vec<&String> = used.iter().filter(|u| !u.starts_with("/1.0/images/")).collect();
        if !used.is_empty() {
            return Err(Error::bad(format!("The storage pool is currently in use by {}", used.len())));
        }
        let (_, lp) = self.pools.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned().ok_or_else(|| Error::not_found("Storage pool not found"))?;
        if let LoadedPool::Ready(d) = &lp {
            for v in d.list_volumes()? {
                if v.vtype == VolumeType::Image {
                    d.delete_volume(&v)?;
                }
            }
            d.delete_pool()?;
        }
        let mut tx = self.txn();
        tx.commit(|db| db.delete(&tables::POOLS, name), |_| ())?;
        self.pools.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        self.events.lifecycle("default", "storage-pool-deleted", &format!("/1.0/storage-pools/{name}"), json!({}));
        Ok(())
    }

    /// Creates an empty custom volume, or a copy of another one of the same pool.
    pub fn create_custom_volume(&self, pool: &str, project: &str, name: &str, description: String, config: ConfigMap, copy_from: Option<&str>) -> Result<()> {
        let driver = self.pool_driver(pool)?;
        if self.model().volumes.contains_key(&volume_key(pool, project, name, None)) {
            return Err(Error::conflict(format!("Volume \"{name}\" already exists")));
        }
        let rec = VolumeRecord {
            pool: pool.into(),
            project: project.into(),
            name: name.into(),
            snapshot: None,
            description,
            config: config.clone(),
            content_type: filesystem(),
            created_at: Utc::now(),
            expires_at: None,
        };
        let mut vol = rec.volume();
        vol.config = config;
        vol.validate()?;
        match copy_from {
            Some(src) => driver.copy_volume(&vol, &CopySource { volume: &Volume::in_project(VolumeType::Custom, project, src), snapshot: None, snapshots: &[] })?,
            None => driver.create_volume(&vol, None)?,
        }
        if let Some(size) = vol.config.get("size").and_then(|s| crate::config::parse_byte_size(s).ok()) {
            if let Err(e) = driver.set_quota(&vol, Some(size)) {
                tracing::warn!(volume = %name, error = %e, "volume size not applied");
            }
        }
        let guard = super::VolumeGuard::armed(driver, vol);
        let key = rec.key();
        let mut tx = self.txn();
        tx.commit(|db| db.put(&tables::VOLUMES, &key, &rec), |m| {
            m.volumes.insert(key.clone(), rec.clone());
        })?;
        guard.disarm();
        Ok(())
    }

    /// Updates a custom volume's (or snapshot's) description and config.
    pub fn update_custom_volume(&self, pool: &str, project: &str, name: &str, snap: Option<&str>, upd: VolumeUpdate) -> Result<()> {
        let VolumeUpdate { description, config, expires_at } = upd;
        let key = volume_key(pool, project, name, snap);
        let mut tx = self.txn();
        let mut rec = tx.model().volumes.get(&key).cloned().ok_or_else(|| Error::not_found("Storage volume not found"))?;
        if let Some(d) = description {
            rec.description = d;
        }
        if let Some(c) = config {
            rec.config = c;
        }
        if let Some(e) = expires_at {
            rec.expires_at = e;
        }
        tx.commit(|db| db.put(&tables::VOLUMES, &key, &rec), |m| {
            m.volumes.insert(key.clone(), rec.clone());
        })?;
        Ok(())
    }

    /// Deletes a custom volume (and its snapshots) or one snapshot.
    pub fn delete_custom_volume(&self, pool: &str, project: &str, name: &str, snap: Option<&str>) -> Result<()> {
        let driver = self.pool_driver(pool)?;
        let mut tx = self.txn();
        let m = tx.model();
        let rec = m.volumes.get(&volume_key(pool, project, name, snap)).cloned().ok_or_else(|| Error::not_found("Storage volume not found"))?;
        if snap.is_none() && !m.volume_used_by(pool, name).is_empty() {
            return Err(Error::bad("The storage volume is still in use"));
        }
        let keys: Vec<String> = match snap {
            Some(_) => vec![rec.key()],
            None => std::iter::once(rec.key()).chain(m.volume_snapshots(pool, project, name).iter().map(|s| s.key())).collect(),
        };
        drop(m);
        let vol = rec.volume();
        match snap {
            Some(s) => driver.delete_snapshot(&vol, s)?,
            None if driver.volume_exists(&vol) => driver.delete_volume(&vol)?,
            None => {}
        }
        tx.commit(
            |db| {
                for k in &keys {
                    db.delete(&tables::VOLUMES, k)?;
                }
                Ok(())
            },
            |m| {
                for k in &keys {
                    m.volumes.remove(k);
                }
            },
        )?;
        drop(tx);
        if snap.is_none() {
            self.delete_volume_backups_of(pool, project, name);
        }
        Ok(())
    }

    /// Renames a custom volume (with its snapshots) or one snapshot.
    pub fn rename_custom_volume(&self, pool: &str, project: &str, name: &str, snap: Option<&str>, new: &str) -> Result<()> {
        let driver = self.pool_driver(pool)?;
        let mut tx = self.txn();
        let m = tx.model();
        let rec = m.volumes.get(&volume_key(pool, project, name, snap)).cloned().ok_or_else(|| Error::not_found("Storage volume not found"))?;
        let mut recs: Vec<VolumeRecord> = vec![rec.clone()];
        if snap.is_none() {
            if m.volumes.contains_key(&volume_key(pool, project, new, None)) {
                return Err(Error::conflict(format!("Volume \"{new}\" already exists")));
            }
            if !m.volume_used_by(pool, name).is_empty() {
                return Err(Error::bad("Renaming a volume that is in use is not allowed"));
            }
            recs.extend(m.volume_snapshots(pool, project, name).into_iter().cloned());
        }
        drop(m);
        let vol = rec.volume();
        match snap {
            Some(s) => driver.rename_snapshot(&vol, s, new)?,
            None => driver.rename_volume(&vol, new)?,
        }
        let old_keys: Vec<String> = recs.iter().map(VolumeRecord::key).collect();
        let new_recs: Vec<VolumeRecord> = recs
            .into_iter()
            .map(|mut r| {
                match snap {
                    Some(_) => r.snapshot = Some(new.to_string()),
                    None => r.name = new.to_string(),
                }
                r
            })
            .collect();
        tx.commit(
            |db| {
                for k in &old_keys {
                    db.delete(&tables::VOLUMES, k)?;
                }
                for r in &new_recs {
                    db.put(&tables::VOLUMES, &r.key(), r)?;
                }
                Ok(())
            },
            |m| {
                for k in &old_keys {
                    m.volumes.remove(k);
                }
                for r in &new_recs {
                    m.volumes.insert(r.key(), r.clone());
                }
            },
        )?;
        Ok(())
    }

    /// Takes a snapshot of a custom volume; returns its name.
    pub fn snapshot_custom_volume(&self, pool: &str, project: &str, name: &str, snap: Option<&str>, expires_at: Option<DateTime<Utc>>) -> Result<String> {
        let driver = self.pool_driver(pool)?;
        let mut tx = self.txn();
        let m = tx.model();
        let rec = m.volumes.get(&volume_key(pool, project, name, None)).cloned().ok_or_else(|| Error::not_found("Storage volume not found"))?;
        let existing: Vec<String> = m.volume_snapshots(pool, project, name).iter().filter_map(|s| s.snapshot.clone()).collect();
        drop(m);
        let snap = match snap.filter(|s| !s.is_empty()) {
            Some(s) => s.to_string(),
            None => crate::snapshot_rules::next_snapshot_name("snap%d", &existing).map_err(|e| Error::bad(e.to_string()))?,
        };
        if existing.contains(&snap) || snap.contains('/') {
            return Err(Error::conflict(format!("Snapshot \"{snap}\" already exists or is invalid")));
        }
        driver.create_snapshot(&rec.volume(), &snap)?;
        let srec = VolumeRecord { snapshot: Some(snap.clone()), created_at: Utc::now(), expires_at, ..rec };
        let key = srec.key();
        tx.commit(|db| db.put(&tables::VOLUMES, &key, &srec), |m| {
            m.volumes.insert(key.clone(), srec.clone());
        })?;
        Ok(snap)
    }

    /// Restores a custom volume from one of its snapshots.
    pub fn restore_custom_volume(&self, pool: &str, project: &str, name: &str, snap: &str) -> Result<()> {
        let driver = self.pool_driver(pool)?;
        let rec = self.model().volumes.get(&volume_key(pool, project, name, Some(snap))).cloned().ok_or_else(|| Error::not_found("Snapshot not found"))?;
        driver.restore_snapshot(&rec.volume(), snap)?;
        Ok(())
    }

    /// Where a custom volume's files are (for `disk` devices with `pool` + `source`).
    pub fn custom_volume_path(&self, pool: &str, project: &str, name: &str) -> Result<std::path::PathBuf> {
        if !self.model().volumes.contains_key(&volume_key(pool, project, name, None)) {
            return Err(Error::not_found(format!("Storage volume \"{name}\" not found in pool \"{pool}\"")));
        }
        Ok(self.pool_driver(pool)?.volume_path(&Volume::in_project(VolumeType::Custom, project, name)))
    }
}
