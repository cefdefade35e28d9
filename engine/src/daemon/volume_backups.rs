//! Custom volume backups (API extension `custom_volume_backup`: `lxc storage volume
//! export/import`). As for instances, creating a backup freezes the volume (with its
//! snapshots unless `volume_only`) into a hidden volume of the pool, and the export streams
//! the tarball from it; import restores a tarball of type `custom` as a new volume with
//! its snapshot records.

use std::io::{Read, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::backups::checked_backup_name;
use super::{volume_key, Daemon, Model, VolumeRecord};
use crate::backup::{self, ExportRequest, ImportRequest};
use crate::db::tables;
use crate::error::{Error, Result};
use crate::image::Compression;
use crate::storage::drivers::CopySource;
use crate::storage::{Volume, VolumeType};

/// A backup of a custom volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeBackupRecord {
    pub name: String,
    pub pool: String,
    pub project: String,
    pub volume: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub volume_only: bool,
    #[serde(default)]
    pub optimized_storage: bool,
    #[serde(default)]
    pub compression: String,
    /// The hidden volume holding the frozen copy.
    #[serde(default)]
    pub frozen: String,
    /// The volume record and its snapshot records at creation.
    #[serde(default)]
    pub records: Vec<VolumeRecord>,
}

impl VolumeBackupRecord {
    /// `pool/project/volume/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", volume_key(&self.pool, &self.project, &self.volume, None), self.name)
    }

    fn frozen_volume(&self) -> Volume {
        Volume::in_project(VolumeType::Custom, &self.project, &self.frozen)
    }
}

/// What the export embeds in index.yaml `config` for a volume.
#[derive(Serialize, Deserialize)]
struct Embedded {
    volume: VolumeRecord,
    #[serde(default)]
    volume_snapshots: Vec<VolumeRecord>,
}

impl Model {
    /// A custom volume's backups, oldest first.
    pub fn volume_backups_of(&self, pool: &str, project: &str, volume: &str) -> Vec<&VolumeBackupRecord> {
        let prefix = format!("{}/", volume_key(pool, project, volume, None));
        let mut v: Vec<&VolumeBackupRecord> =
            self.volume_backups.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(_, b)| b).collect();
        v.sort_by_key(|b| b.created_at);
        v
    }

    /// One custom volume backup.
    pub fn volume_backup(&self, pool: &str, project: &str, volume: &str, name: &str) -> Option<&VolumeBackupRecord> {
        self.volume_backups.get(&format!("{}/{name}", volume_key(pool, project, volume, None)))
    }
}

impl Daemon {
    /// Creates a backup of a custom volume, frozen now; returns its name.
    pub fn create_volume_backup(&self, mut rec: VolumeBackupRecord) -> Result<String> {
        let records = {
            let m = self.model();
            let vol = m
                .volumes
                .get(&volume_key(&rec.pool, &rec.project, &rec.volume, None))
                .cloned()
                .ok_or_else(|| Error::not_found("Storage volume not found"))?;
            let existing: Vec<String> = m.volume_backups_of(&rec.pool, &rec.project, &rec.volume).iter().map(|b| b.name.clone()).collect();
            rec.name = checked_backup_name(&rec.name, &rec.compression, &existing)?;
            let snaps = if rec.volume_only { Vec::new() } else { m.volume_snapshots(&rec.pool, &rec.project, &rec.volume).into_iter().cloned().collect() };
            std::iter::once(vol).chain(snaps).collect::<Vec<_>>()
        };
        let driver = self.pool_driver(&rec.pool)?;
        if rec.optimized_storage && !driver.info().optimized_backups {
            rec.optimized_storage = false;
        }
        rec.frozen = format!(".backup-{:016x}", rand::random::<u64>());
        let names: Vec<String> = records.iter().filter_map(|r| r.snapshot.clone()).collect();
        let src = Volume::in_project(VolumeType::Custom, &rec.project, &rec.volume);
        driver.copy_volume(&rec.frozen_volume(), &CopySource { volume: &src, snapshot: None, snapshots: &names })?;
        let guard = super::VolumeGuard::armed(driver, rec.frozen_volume());
        rec.records = records;
        let key = rec.key();
        let mut tx = self.txn();
        if tx.model().volume_backups.contains_key(&key) {
            return Err(Error::conflict(format!("Backup \"{}\" already exists", rec.name)));
        }
        tx.commit(|db| db.put(&tables::VOLUME_BACKUPS, &key, &rec), |m| {
            m.volume_backups.insert(key.clone(), rec.clone());
        })?;
        guard.disarm();
        Ok(rec.name)
    }

    /// Deletes a custom volume backup and its frozen copy.
    pub fn delete_volume_backup(&self, pool: &str, project: &str, volume: &str, name: &str) -> Result<()> {
        let mut tx = self.txn();
        let rec = tx.model().volume_backup(pool, project, volume, name).cloned().ok_or_else(|| Error::not_found("Backup not found"))?;
        let key = rec.key();
        tx.commit(|db| db.delete(&tables::VOLUME_BACKUPS, &key), |m| {
            m.volume_backups.remove(&key);
        })?;
        drop(tx);
        self.drop_frozen_volume(&rec);
        Ok(())
    }

    fn drop_frozen_volume(&self, rec: &VolumeBackupRecord) {
        let res = self.pool_driver(&rec.pool).and_then(|d| {
            let v = rec.frozen_volume();
            if d.volume_exists(&v) {
                d.delete_volume(&v)?;
            }
            Ok(())
        });
        if let Err(e) = res {
            tracing::error!(pool = %rec.pool, volume = %rec.frozen, error = %e, "deleting volume backup copy");
        }
    }

    /// Deletes every backup of a custom volume (the volume is being deleted).
    pub(super) fn delete_volume_backups_of(&self, pool: &str, project: &str, volume: &str) {
        let names: Vec<String> = self.model().volume_backups_of(pool, project, volume).iter().map(|b| b.name.clone()).collect();
        for n in names {
            if let Err(e) = self.delete_volume_backup(pool, project, volume, &n) {
                tracing::error!(volume = %volume, backup = %n, error = %e, "deleting volume backup");
            }
        }
    }

    /// Deletes expired custom volume backups.
    pub fn prune_expired_volume_backups(&self, now: DateTime<Utc>) -> usize {
        let expired: Vec<VolumeBackupRecord> = self
            .model()
            .volume_backups
            .values()
            .filter(|b| b.expires_at.is_some_and(|e| e <= now && e > crate::model::zero_time()))
            .cloned()
            .collect();
        expired.iter().filter(|b| self.delete_volume_backup(&b.pool, &b.project, &b.volume, &b.name).is_ok()).count()
    }

    /// Streams the tarball of a custom volume backup into `out`.
    pub fn export_volume_backup(&self, pool: &str, project: &str, volume: &str, name: &str, out: &mut dyn Write) -> Result<()> {
        let rec = self.model().volume_backup(pool, project, volume, name).cloned().ok_or_else(|| Error::not_found("Backup not found"))?;
        let driver = self.pool_driver(pool)?;
        let main = rec.records.iter().find(|r| r.snapshot.is_none()).cloned().ok_or_else(|| Error::internal("backup without its volume record"))?;
        let snaps: Vec<VolumeRecord> = rec.records.iter().filter(|r| r.snapshot.is_some()).cloned().collect();
        let embedded = Embedded { volume: main, volume_snapshots: snaps.clone() };
        let config = serde_yaml::to_value(&embedded).map_err(|e| Error::internal(e.to_string()))?;
        let frozen = rec.frozen_volume();
        let req = ExportRequest {
            driver: driver.as_ref(),
            volume: &frozen,
            snapshots: snaps.iter().filter_map(|s| s.snapshot.clone()).collect(),
            optimized: rec.optimized_storage && driver.info().optimized_backups,
            compression: Compression::parse(&rec.compression).unwrap_or(Compression::Gzip),
            config: Some(config),
        };
        backup::export_named(&req, volume, out)?;
        Ok(())
    }

    /// Restores a `custom` backup tarball as a new volume of `pool` (named `name`, or as in
    /// the backup). Returns the volume name.
    pub fn import_volume_backup(&self, pool: &str, project: &str, name: Option<&str>, input: &mut dyn Read) -> Result<String> {
        if let Some(n) = name {
            if self.model().volumes.contains_key(&volume_key(pool, project, n, None)) {
                return Err(Error::conflict(format!("Volume \"{n}\" already exists")));
            }
        }
        let driver = self.pool_driver(pool)?;
        let req = ImportRequest { driver: driver.as_ref(), project, name, opts: super::images::unpack_options() };
        let imported = backup::import(&req, input)?;
        let guard = super::VolumeGuard::armed(driver.clone(), imported.volume.clone());
        if imported.volume.vtype != VolumeType::Custom {
            return Err(Error::bad("The backup is not a custom volume backup"));
        }
        let new = imported.volume.name.clone();
        let embedded: Option<Embedded> = imported.info.config.clone().and_then(|c| serde_yaml::from_value(c).ok());
        let now = Utc::now();
        let blank = |snapshot: Option<String>| VolumeRecord {
            pool: pool.to_string(),
            project: project.to_string(),
            name: new.clone(),
            snapshot,
            description: String::new(),
            config: Default::default(),
            content_type: "filesystem".into(),
            created_at: now,
            expires_at: None,
        };
        let mut main = embedded.as_ref().map(|e| e.volume.clone()).unwrap_or_else(|| blank(None));
        main.snapshot = None;
        let mut recs = vec![main];
        for s in &imported.info.snapshots {
            let found = embedded.as_ref().and_then(|e| e.volume_snapshots.iter().find(|r| r.snapshot.as_deref() == Some(s.as_str()))).cloned();
            recs.push(found.unwrap_or_else(|| blank(Some(s.clone()))));
        }
        for r in &mut recs {
            r.pool = pool.to_string();
            r.project = project.to_string();
            r.name = new.clone();
        }
        let mut tx = self.txn();
        if tx.model().volumes.contains_key(&volume_key(pool, project, &new, None)) {
            return Err(Error::conflict(format!("Volume \"{new}\" already exists")));
        }
        tx.commit(
            |db| {
                for r in &recs {
                    db.put(&tables::VOLUMES, &r.key(), r)?;
                }
                Ok(())
            },
            |m| {
                for r in &recs {
                    m.volumes.insert(r.key(), r.clone());
                }
            },
        )?;
        guard.disarm();
        Ok(new)
    }
}
