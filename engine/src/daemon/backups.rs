//! Instance backups: records of what to back up (name, expiry, instance_only,
//! optimized_storage, compression) and the state frozen at creation (see
//! [`super::backup_capture`]). The tarball is produced when it is exported, from the frozen
//! volume, and streamed straight to the client, so no tarball is ever staged on disk.
//! Import restores a tarball into a pool and recreates the instance and snapshot records.

use std::io::{Read, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::backup_capture::Captured;
use super::{instance_volume, Daemon, Model, SnapshotRecord};
use crate::backup::{self, ExportRequest, ImportRequest};
use crate::config;
use crate::db::tables;
use crate::error::{Error, Result};
use crate::image::Compression;
use crate::model::{scoped_key, InstanceRecord};
use crate::snapshot_rules;

/// A backup of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub name: String,
    pub instance: String,
    pub project: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub instance_only: bool,
    #[serde(default)]
    pub optimized_storage: bool,
    #[serde(default)]
    pub compression: String,
    /// The creation-time copy the export reads; `None` in records made before captures
    /// existed (those export the live instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured: Option<Captured>,
}

impl BackupRecord {
    /// The database key.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.project, self.instance, self.name)
    }
}

impl From<backup::Error> for Error {
    fn from(e: backup::Error) -> Self {
        match e {
            backup::Error::Image(i) => i.into(),
            backup::Error::Storage(s) => s.into(),
            backup::Error::AlreadyExists { .. } => Error::conflict(e.to_string()),
            backup::Error::Io { .. } | backup::Error::StreamSize { .. } => Error::internal(format!("{e}: {}", source_chain(&e))),
            _ => Error::bad(e.to_string()),
        }
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut s = e.source();
    while let Some(x) = s {
        out.push(x.to_string());
        s = x.source();
    }
    out.join(": ")
}

/// What `lxc export` embeds in index.yaml so `lxc import` can rebuild the records.
#[derive(Serialize, Deserialize)]
struct Embedded {
    container: InstanceRecord,
    #[serde(default)]
    snapshots: Vec<SnapshotRecord>,
}

impl Model {
    /// An instance's backups, oldest first.
    pub fn backups_of(&self, project: &str, instance: &str) -> Vec<&BackupRecord> {
        let prefix = format!("{}/", scoped_key(project, instance));
        let mut v: Vec<&BackupRecord> =
            self.backups.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(_, b)| b).collect();
        v.sort_by_key(|b| b.created_at);
        v
    }

    /// One backup.
    pub fn backup(&self, project: &str, instance: &str, name: &str) -> Option<&BackupRecord> {
        self.backups.get(&format!("{}/{name}", scoped_key(project, instance)))
    }
}

/// The name a new backup gets (`backup%d` when empty), checked against the existing ones,
/// with its compression checked too (instance and custom-volume backups alike).
pub(super) fn checked_backup_name(name: &str, compression: &str, existing: &[String]) -> Result<String> {
    let name = if name.is_empty() {
        snapshot_rules::next_snapshot_name("backup%d", existing).map_err(|e| Error::bad(e.to_string()))?
    } else {
        name.to_string()
    };
    if name.contains('/') {
        return Err(Error::bad("Backup names may not contain slashes"));
    }
    if existing.contains(&name) {
        return Err(Error::conflict(format!("Backup \"{name}\" already exists")));
    }
    if Compression::parse(compression).is_none() {
        return Err(Error::bad(format!("Unsupported compression algorithm \"{compression}\"")));
    }
    Ok(name)
}

impl Daemon {
    /// Creates a backup: freezes the instance's volume (and its snapshots unless
    /// `instance_only`) into a hidden volume, outside the write lock, then records it.
    /// Returns its name.
    pub fn create_backup(&self, project: &str, instance: &str, rec: BackupRecord) -> Result<String> {
        // Under the instance's action lock, so it cannot start between "stopped" and the
        // record of a lazily captured backup.
        self.with_action_lock(project, instance, || self.create_backup_locked(project, instance, rec))
    }

    fn create_backup_locked(&self, project: &str, instance: &str, mut rec: BackupRecord) -> Result<String> {
        let (inst, snaps, pool) = {
            let m = self.model();
            let inst = m.instance(project, instance).cloned().ok_or_else(|| Error::not_found("Instance not found"))?;
            let existing: Vec<String> = m.backups_of(project, instance).iter().map(|b| b.name.clone()).collect();
            rec.name = checked_backup_name(&rec.name, &rec.compression, &existing)?;
            let snaps: Vec<SnapshotRecord> =
                if rec.instance_only { Vec::new() } else { m.snapshots_of(project, instance).into_iter().cloned().collect() };
            let pool = m.root_pool(&inst)?;
            (inst, snaps, pool)
        };
        if rec.optimized_storage && !self.pool_driver(&pool)?.info().optimized_backups {
            rec.optimized_storage = false;
        }
        rec.instance = instance.to_string();
        rec.project = project.to_string();
        // A stopped instance is captured lazily (see `materialize_backups`): `lxc export`
        // then streams straight from the instance, writing no copy at all.
        let stopped = self.model().power(project, instance) == super::PowerState::Stopped;
        rec.captured = if stopped { None } else { Some(self.capture_backup(&pool, &inst, snaps)?) };
        let key = rec.key();
        let mut tx = self.txn();
        let clash = {
            let m = tx.model();
            if m.instance(project, instance).is_none() {
                Some(Error::not_found("Instance not found"))
            } else if m.backup(project, instance, &rec.name).is_some() {
                Some(Error::conflict(format!("Backup \"{}\" already exists", rec.name)))
            } else {
                None
            }
        };
        let res = match clash {
            Some(e) => Err(e),
            None => tx.commit(|db| db.put(&tables::BACKUPS, &key, &rec), |m| {
                m.backups.insert(key.clone(), rec.clone());
            }),
        };
        drop(tx);
        if let Err(e) = res {
            self.drop_captured(rec.captured.as_ref());
            return Err(e);
        }
        self.events.lifecycle(project, "instance-backup-created", &backup_url(project, instance, &rec.name), json!({}));
        Ok(rec.name)
    }

    /// Deletes a backup record.
    pub fn delete_backup(&self, project: &str, instance: &str, name: &str) -> Result<()> {
        let mut tx = self.txn();
        let rec = tx.model().backup(project, instance, name).cloned().ok_or_else(|| Error::not_found("Backup not found"))?;
        let key = rec.key();
        tx.commit(|db| db.delete(&tables::BACKUPS, &key), |m| {
            m.backups.remove(&key);
        })?;
        drop(tx);
        self.drop_captured(rec.captured.as_ref());
        self.events.lifecycle(project, "instance-backup-deleted", &backup_url(project, instance, name), json!({}));
        Ok(())
    }

    /// Renames a backup.
    pub fn rename_backup(&self, project: &str, instance: &str, name: &str, new: &str) -> Result<()> {
        if new.is_empty() || new.contains('/') {
            return Err(Error::bad(format!("Invalid backup name \"{new}\"")));
        }
        let mut tx = self.txn();
        let m = tx.model();
        let mut rec = m.backup(project, instance, name).cloned().ok_or_else(|| Error::not_found("Backup not found"))?;
        if m.backup(project, instance, new).is_some() {
            return Err(Error::conflict(format!("Backup \"{new}\" already exists")));
        }
        drop(m);
        let old = rec.key();
        rec.name = new.to_string();
        let key = rec.key();
        tx.commit(
            |db| {
                db.delete(&tables::BACKUPS, &old)?;
                db.put(&tables::BACKUPS, &key, &rec)
            },
            |m| {
                m.backups.remove(&old);
                m.backups.insert(key.clone(), rec.clone());
            },
        )?;
        Ok(())
    }

    /// Deletes every expired backup record.
    pub fn prune_expired_backups(&self, now: DateTime<Utc>) -> usize {
        let expired: Vec<BackupRecord> =
            self.model().backups.values().filter(|b| b.expires_at.is_some_and(|e| e <= now && e > crate::model::zero_time())).cloned().collect();
        expired.iter().filter(|b| self.delete_backup(&b.project, &b.instance, &b.name).is_ok()).count()
    }

    /// Writes the backup tarball of `name` into `out` (blocking; streamed by the caller).
    pub fn export_backup(&self, project: &str, instance: &str, name: &str, out: &mut dyn Write) -> Result<()> {
        let (inst, rec, snaps, pool) = {
            let m = self.model();
            let inst = m.instance(project, instance).cloned().ok_or_else(|| Error::not_found("Instance not found"))?;
            let rec = m.backup(project, instance, name).cloned().ok_or_else(|| Error::not_found("Backup not found"))?;
            match &rec.captured {
                Some(c) => {
                    let mut frozen = c.instance.clone();
                    frozen.name = inst.name.clone();
                    let snaps = c.snapshots.iter().map(|s| SnapshotRecord { instance: inst.name.clone(), ..s.clone() }).collect();
                    (frozen, rec.clone(), snaps, c.pool.clone())
                }
                None => {
                    let snaps: Vec<SnapshotRecord> =
                        if rec.instance_only { Vec::new() } else { m.snapshots_of(project, instance).into_iter().cloned().collect() };
                    let pool = m.root_pool(&inst)?;
                    (inst, rec, snaps, pool)
                }
            }
        };
        let driver = self.pool_driver(&pool)?;
        let volume = match &rec.captured {
            Some(c) => c.volume(),
            None => instance_volume(&inst),
        };
        let embedded = Embedded { container: inst.clone(), snapshots: snaps.clone() };
        let config = serde_yaml::to_value(&embedded).map_err(|e| Error::internal(e.to_string()))?;
        let req = ExportRequest {
            driver: driver.as_ref(),
            volume: &volume,
            snapshots: snaps.iter().map(|s| s.name.clone()).collect(),
            optimized: rec.optimized_storage && driver.info().optimized_backups,
            compression: Compression::parse(&rec.compression).unwrap_or(Compression::Gzip),
            config: Some(config),
        };
        backup::export_named(&req, &inst.name, out)?;
        Ok(())
    }

    /// Restores a backup tarball as a new instance (`POST /1.0/instances`, octet-stream).
    pub fn import_backup(&self, project: &str, pool: Option<&str>, name: Option<&str>, input: &mut dyn Read) -> Result<String> {
        let pool = match pool.filter(|p| !p.is_empty()) {
            Some(p) => p.to_string(),
            None => self.model().default_root_pool(project).ok_or_else(|| Error::bad("No storage pool to import into"))?,
        };
        if let Some(n) = name {
            config::valid_instance_name(n)?;
            if self.model().instance(project, n).is_some() {
                return Err(Error::conflict(format!("Instance \"{n}\" already exists")));
            }
        }
        let driver = self.pool_driver(&pool)?;
        let req = ImportRequest { driver: driver.as_ref(), project, name, opts: super::images::unpack_options() };
        let imported = backup::import(&req, input)?;
        let guard = super::VolumeGuard::armed(driver.clone(), imported.volume.clone());
        super::vm_images::check_imported_volume(driver.as_ref(), &imported.volume, &imported.info.snapshots)?;
        let new_name = imported.volume.name.clone();
        let embedded: Option<Embedded> = imported.info.config.clone().and_then(|c| serde_yaml::from_value(c).ok());
        let now = Utc::now();
        let mut inst = match &embedded {
            Some(e) => e.container.clone(),
            None => InstanceRecord {
                name: new_name.clone(),
                project: project.to_string(),
                instance_type: match imported.volume.vtype {
                    crate::storage::VolumeType::VirtualMachine => config::InstanceType::VirtualMachine,
                    _ => config::InstanceType::Container,
                },
                architecture: super::host_architecture().to_string(),
                config: Default::default(),
                devices: Default::default(),
                profiles: vec!["default".into()],
                ephemeral: false,
                stateful: false,
                description: String::new(),
                created_at: now,
                last_used_at: crate::model::zero_time(),
            },
        };
        inst.name = new_name.clone();
        inst.project = project.to_string();
        // The volume's type decides: a record claiming otherwise would point elsewhere.
        inst.instance_type = match imported.volume.vtype {
            crate::storage::VolumeType::VirtualMachine => config::InstanceType::VirtualMachine,
            _ => config::InstanceType::Container,
        };
        for d in inst.devices.values_mut() {
            if config::is_root_disk(d) {
                d.insert("pool".into(), pool.clone());
            }
        }
        let mut snaps: Vec<SnapshotRecord> = Vec::new();
        for s in &imported.info.snapshots {
            let found = embedded.as_ref().and_then(|e| e.snapshots.iter().find(|r| &r.name == s)).cloned();
            let mut rec = found.unwrap_or_else(|| SnapshotRecord::capture(&inst, s, None));
            rec.instance = new_name.clone();
            rec.project = project.to_string();
            for d in rec.devices.values_mut() {
                if config::is_root_disk(d) {
                    d.insert("pool".into(), pool.clone());
                }
            }
            snaps.push(rec);
        }
        let mut tx = self.txn();
        let m = tx.model();
        if m.instance(project, &new_name).is_some() {
            return Err(Error::conflict(format!("Instance \"{new_name}\" already exists")));
        }
        if m.root_pool(&inst).ok().as_deref() != Some(pool.as_str()) {
            inst.devices.insert(
                "root".into(),
                [("type", "disk"), ("path", "/"), ("pool", pool.as_str())].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            );
        }
        drop(m);
        let key = scoped_key(project, &new_name);
        tx.commit_instance_with_snapshots(&key, &inst, &snaps)?;
        guard.disarm();
        self.events.lifecycle(project, "instance-created", &Model::instance_url(project, &new_name), json!({}));
        Ok(new_name)
    }
}

/// The URL of a backup.
pub fn backup_url(project: &str, instance: &str, name: &str) -> String {
    super::with_project(format!("/1.0/instances/{instance}/backups/{name}"), project)
}
