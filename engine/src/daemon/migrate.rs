//! Instance volumes across pools and incremental refreshes, for drivers of any kind: the
//! target volume is filled by [`sync_tree`] (rsync-like, reflink where it can), one
//! snapshot at a time, oldest first, then the volume itself.
//!
//! - a copy into another pool (`lxc copy c1 c2 -s pool2`);
//! - `copy --refresh`: LXD's CompareSnapshots decides which target snapshots go and which
//!   source snapshots are brought over; snapshots both sides share are left alone, and the
//!   instance volume is re-synced file by file, not copied again;
//! - a move into another pool (`lxc move c1 -s pool2`, `POST /1.0/instances/c1` with
//!   `migration` and `pool`, API extension `instance_pool_move`).

use std::sync::Arc;

use serde_json::json;

use super::{instance_volume, Daemon, Model, PowerState, SnapshotRecord};
use crate::config;
use crate::db::tables;
use crate::error::{Error, Result};
use crate::model::{scoped_key, InstanceRecord};
use crate::snapshot_rules::{compare_snapshots, ComparableSnapshot};
use crate::storage::drivers::sync::sync_tree;
use crate::storage::drivers::Driver;
use crate::storage::Volume;

/// Where a volume's content comes from.
pub(super) struct Side<'a> {
    pub driver: &'a dyn Driver,
    pub volume: &'a Volume,
}

/// Brings snapshot `snap` (or the volume itself) of `src` into the existing `dst` volume.
fn sync_from(src: &Side<'_>, snap: Option<&str>, dst: &Side<'_>) -> Result<()> {
    let from = match snap {
        Some(s) => src.driver.snapshot_path(src.volume, s),
        None => src.driver.volume_path(src.volume),
    };
    sync_tree(&from, &dst.driver.volume_path(dst.volume))?;
    Ok(())
}

/// Creates `dst` as a copy of `src` (or of its snapshot `from_snap`) with `snaps` of `src`
/// as its snapshots; removes what it made on failure.
pub(super) fn copy_across(src: &Side<'_>, from_snap: Option<&str>, snaps: &[String], dst: &Side<'_>) -> Result<()> {
    dst.driver.create_volume(dst.volume, None)?;
    let res = (|| {
        for s in snaps {
            sync_from(src, Some(s), dst)?;
            dst.driver.create_snapshot(dst.volume, s)?;
        }
        sync_from(src, from_snap, dst)
    })();
    if res.is_err() {
        let _ = dst.driver.delete_volume(dst.volume);
    }
    res
}

/// LXD's rule: an update may not move the root disk to another pool (that is a move).
pub(super) fn same_root_pool(m: &Model, old: &InstanceRecord, new: &InstanceRecord) -> Result<()> {
    if let (Ok(a), Ok(b)) = (m.root_pool(old), m.root_pool(new)) {
        if a != b {
            return Err(Error::bad(format!("Cannot update root disk device pool name to \"{b}\"")));
        }
    }
    Ok(())
}

/// A snapshot record for `instance` whose root disk points at `pool` (copies into another
/// pool, so that a later restore keeps the instance where its volume is).
pub(super) fn snapshot_in_pool(m: &Model, rec: &SnapshotRecord, instance: &str, pool: &str) -> SnapshotRecord {
    let mut r = SnapshotRecord { instance: instance.to_string(), ..rec.clone() };
    let mut as_inst = r.as_instance();
    repoint_root(m, &mut as_inst, pool);
    r.devices = as_inst.devices;
    r
}

/// Points the root disk of `devices` (or, when it comes from a profile, a local override)
/// at `pool`.
fn repoint_root(m: &Model, inst: &mut InstanceRecord, pool: &str) {
    if m.root_pool(inst).ok().as_deref() == Some(pool) {
        return;
    }
    if let Some(d) = inst.devices.values_mut().find(|d| config::is_root_disk(d)) {
        d.insert("pool".into(), pool.to_string());
        return;
    }
    let name = m
        .expand(inst)
        .ok()
        .and_then(|(_, devs)| devs.iter().find(|(_, d)| config::is_root_disk(d)).map(|(k, _)| k.clone()))
        .unwrap_or_else(|| "root".to_string());
    let dev = [("type", "disk"), ("path", "/"), ("pool", pool)].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    inst.devices.insert(name, dev);
}

impl Daemon {
    /// `copy --refresh`: brings the stopped instance `target` up to date with `source`.
    /// Target snapshots the source lacks (or has with another creation date) are deleted,
    /// source snapshots the target lacks are brought over, and the volume is re-synced.
    pub fn refresh_instance(&self, project: &str, target: &str, source: &str, instance_only: bool) -> Result<()> {
        self.materialize_backups(project, target)?;
        let mut tx = self.txn();
        let m = tx.model();
        let src = m.instance(project, source).cloned().ok_or_else(|| Error::not_found(format!("Instance \"{source}\" not found")))?;
        let dst = m.instance(project, target).cloned().ok_or_else(|| Error::not_found(format!("Instance \"{target}\" not found")))?;
        if m.power(project, target) != PowerState::Stopped {
            return Err(Error::bad("The target instance must be stopped to refresh it"));
        }
        let src_snaps: Vec<SnapshotRecord> =
            if instance_only { Vec::new() } else { m.snapshots_of(project, source).into_iter().cloned().collect() };
        let dst_snaps: Vec<SnapshotRecord> = m.snapshots_of(project, target).into_iter().cloned().collect();
        let comparable = |v: &[SnapshotRecord]| -> Vec<ComparableSnapshot> {
            v.iter().map(|s| ComparableSnapshot { name: s.name.clone(), id: String::new(), creation_date: s.created_at }).collect()
        };
        let (sync, delete) = if instance_only { (Vec::new(), Vec::new()) } else { compare_snapshots(&comparable(&src_snaps), &comparable(&dst_snaps)) };
        let (src_pool, dst_pool) = (m.root_pool(&src)?, m.root_pool(&dst)?);
        let brought: Vec<SnapshotRecord> = sync.iter().map(|&i| snapshot_in_pool(&m, &src_snaps[i], target, &dst_pool)).collect();
        drop(m);
        let (sd, dd): (Arc<dyn Driver>, Arc<dyn Driver>) = (self.pool_driver(&src_pool)?, self.pool_driver(&dst_pool)?);
        let (sv, dv) = (instance_volume(&src), instance_volume(&dst));
        let (s, d) = (Side { driver: sd.as_ref(), volume: &sv }, Side { driver: dd.as_ref(), volume: &dv });
        let deleted: Vec<&SnapshotRecord> = delete.iter().map(|&i| &dst_snaps[i]).collect();
        for snap in &deleted {
            if dd.snapshot_path(&dv, &snap.name).exists() {
                dd.delete_snapshot(&dv, &snap.name)?;
            }
        }
        let mut added: Vec<SnapshotRecord> = Vec::new();
        for mut r in brought {
            sync_from(&s, Some(&r.name), &d)?;
            dd.create_snapshot(&dv, &r.name)?;
            r.config.retain(|k, _| config::include_when_copying(k, false));
            added.push(r);
        }
        sync_from(&s, None, &d)?;
        tracing::debug!(synced = sync.len(), deleted = deleted.len(), "refresh");
        let old_keys: Vec<String> = deleted.iter().map(|s| s.key()).collect();
        tx.commit(
            |db| {
                for k in &old_keys {
                    db.delete(&tables::SNAPSHOTS, k)?;
                }
                for r in &added {
                    db.put(&tables::SNAPSHOTS, &r.key(), r)?;
                }
                Ok(())
            },
            |m| {
                for k in &old_keys {
                    m.snapshots.remove(k);
                }
                for r in &added {
                    m.snapshots.insert(r.key(), r.clone());
                }
            },
        )?;
        Ok(())
    }

    /// Moves the stopped instance `name` (and its snapshots unless `instance_only`) into
    /// `pool`, under `new_name`; the old volume goes once the records point at the new one.
    pub fn move_instance_pool(&self, project: &str, name: &str, new_name: &str, pool: &str, instance_only: bool) -> Result<()> {
        config::valid_instance_name(new_name)?;
        self.materialize_backups(project, name)?;
        let mut tx = self.txn();
        let m = tx.model();
        let old = m.instance(project, name).cloned().ok_or_else(|| Error::not_found(format!("Instance \"{name}\" not found")))?;
        if m.power(project, name) != PowerState::Stopped {
            return Err(Error::bad("Instance must be stopped to be moved between pools"));
        }
        if new_name != name && m.instance(project, new_name).is_some() {
            return Err(Error::conflict(format!("Instance \"{new_name}\" already exists")));
        }
        let src_pool = m.root_pool(&old)?;
        let snaps: Vec<SnapshotRecord> = m.snapshots_of(project, name).into_iter().cloned().collect();
        let mut inst = old.clone();
        inst.name = new_name.to_string();
        repoint_root(&m, &mut inst, pool);
        let kept: Vec<SnapshotRecord> = if instance_only { Vec::new() } else { snaps.clone() };
        let new_snaps: Vec<SnapshotRecord> = kept.iter().map(|s| snapshot_in_pool(&m, s, new_name, pool)).collect();
        let backups: Vec<super::BackupRecord> = m.backups_of(project, name).into_iter().cloned().collect();
        drop(m);
        if src_pool == pool && new_name == name {
            return Err(Error::bad(format!("Instance \"{name}\" is already in pool \"{pool}\"")));
        }
        let (sd, dd) = (self.pool_driver(&src_pool)?, self.pool_driver(pool)?);
        let (sv, dv) = (instance_volume(&old), instance_volume(&inst));
        let names: Vec<String> = kept.iter().map(|s| s.name.clone()).collect();
        copy_across(&Side { driver: sd.as_ref(), volume: &sv }, None, &names, &Side { driver: dd.as_ref(), volume: &dv })?;
        let (old_key, new_key) = (scoped_key(project, name), scoped_key(project, new_name));
        let old_snap_keys: Vec<String> = snaps.iter().map(|s| s.key()).collect();
        let new_backups: Vec<super::BackupRecord> =
            backups.iter().map(|b| super::BackupRecord { instance: new_name.to_string(), ..b.clone() }).collect();
        let old_backup_keys: Vec<String> = backups.iter().map(|b| b.key()).collect();
        let res = tx.commit(
            |db| {
                db.delete(&tables::INSTANCES, &old_key)?;
                for k in &old_snap_keys {
                    db.delete(&tables::SNAPSHOTS, k)?;
                }
                for k in &old_backup_keys {
                    db.delete(&tables::BACKUPS, k)?;
                }
                db.put(&tables::INSTANCES, &new_key, &inst)?;
                for s in &new_snaps {
                    db.put(&tables::SNAPSHOTS, &s.key(), s)?;
                }
                for b in &new_backups {
                    db.put(&tables::BACKUPS, &b.key(), b)?;
                }
                Ok(())
            },
            |m| {
                if let Some(p) = m.power.remove(&old_key) {
                    m.power.insert(new_key.clone(), p);
                }
                m.instances.remove(&old_key);
                m.instances.insert(new_key.clone(), inst.clone());
                for k in &old_snap_keys {
                    m.snapshots.remove(k);
                }
                for k in &old_backup_keys {
                    m.backups.remove(k);
                }
                for s in &new_snaps {
                    m.snapshots.insert(s.key(), s.clone());
                }
                for b in &new_backups {
                    m.backups.insert(b.key(), b.clone());
                }
            },
        );
        if let Err(e) = res {
            let _ = dd.delete_volume(&dv);
            return Err(e);
        }
        drop(tx);
        if let Err(e) = sd.delete_volume(&sv) {
            tracing::error!(instance = %name, pool = %src_pool, error = %e, "removing the moved instance's old volume");
        }
        if new_name != name {
            self.events.lifecycle(project, "instance-renamed", &Model::instance_url(project, new_name), json!({"old_name": name}));
        }
        self.events.lifecycle(project, "instance-updated", &Model::instance_url(project, new_name), json!({}));
        Ok(())
    }
}
