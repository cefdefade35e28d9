//! What a backup holds: the instance volume (with the snapshots the backup includes) and
//! its records as they were at creation. A running instance is copied at creation into a
//! hidden volume of the same pool (a btrfs snapshot per subvolume, a reflink or plain copy
//! on dir). A stopped one is captured lazily: the instance itself holds the creation-time
//! state until something is about to change it (start, file writes, config, snapshots,
//! restore, rename, refresh, pool move), and that path freezes the backup first
//! (`materialize_backups`). Export streams the tarball from whichever holds it, so
//! `lxc export` of a stopped instance writes no copy at all. Deleting or expiring the
//! backup, or deleting its instance, removes the hidden volume.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::backups::BackupRecord;
use super::{instance_volume, Daemon, SnapshotRecord};
use crate::db::tables;
use crate::error::Result;
use crate::model::InstanceRecord;
use crate::storage::drivers::CopySource;
use crate::storage::Volume;

/// The frozen state of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Captured {
    /// The pool holding the hidden volume.
    pub pool: String,
    /// The hidden volume's name (`.backup-<random>`, a name no instance can have).
    pub volume: String,
    /// The instance record at creation.
    pub instance: InstanceRecord,
    /// The snapshot records included, oldest first (empty for `instance_only`).
    #[serde(default)]
    pub snapshots: Vec<SnapshotRecord>,
}

impl Captured {
    /// The hidden volume (same type and project as the instance's).
    pub fn volume(&self) -> Volume {
        instance_volume(&self.instance).renamed(&self.volume)
    }
}

impl Daemon {
    /// Copies `inst`'s volume (and `snaps`) into a new hidden volume of `pool`.
    pub(super) fn capture_backup(&self, pool: &str, inst: &InstanceRecord, snaps: Vec<SnapshotRecord>) -> Result<Captured> {
        let driver = self.pool_driver(pool)?;
        let src = instance_volume(inst);
        let name = format!(".backup-{:016x}", rand::random::<u64>());
        let dst = src.renamed(&name);
        let names: Vec<String> = snaps.iter().map(|s| s.name.clone()).collect();
        driver.copy_volume(&dst, &CopySource { volume: &src, snapshot: None, snapshots: &names })?;
        Ok(Captured { pool: pool.to_string(), volume: name, instance: inst.clone(), snapshots: snaps })
    }

    /// Freezes every lazily captured backup of the instance into a hidden volume. A backup
    /// of a stopped instance is left uncaptured at creation (the instance itself holds
    /// the creation-time state while nothing changes it); every path that is about to
    /// change the instance's volume, records or snapshots calls this first.
    pub fn materialize_backups(&self, project: &str, instance: &str) -> Result<()> {
        let pending: Vec<BackupRecord> =
            self.model().backups_of(project, instance).into_iter().filter(|b| b.captured.is_none()).cloned().collect();
        for mut rec in pending {
            let (inst, snaps, pool) = {
                let m = self.model();
                let Some(inst) = m.instance(project, instance).cloned() else { return Ok(()) };
                let snaps: Vec<SnapshotRecord> =
                    if rec.instance_only { Vec::new() } else { m.snapshots_of(project, instance).into_iter().cloned().collect() };
                let pool = m.root_pool(&inst)?;
                (inst, snaps, pool)
            };
            rec.captured = Some(self.capture_backup(&pool, &inst, snaps)?);
            let key = rec.key();
            let mut tx = self.txn();
            let pending = tx.model().backups.get(&key).is_some_and(|b| b.captured.is_none());
            let res = if pending {
                tx.commit(|db| db.put(&tables::BACKUPS, &key, &rec), |m| {
                    m.backups.insert(key.clone(), rec.clone());
                })
            } else {
                Ok(()) // deleted or captured meanwhile
            };
            drop(tx);
            if !pending || res.is_err() {
                self.drop_captured(rec.captured.as_ref());
            }
            res?;
        }
        Ok(())
    }

    /// On start, before serving: removes the hidden `.backup-*` volumes that no backup
    /// record holds. A crash between a copy and its record (or during an export's
    /// temporary copy) leaves one; nothing acknowledged refers to it.
    pub fn sweep_backup_volumes(&self) {
        let held: HashSet<(String, String)> = {
            let m = self.model();
            let instance = m.backups.values().filter_map(|b| b.captured.as_ref()).map(|c| (c.pool.clone(), c.volume.clone()));
            let custom = m.volume_backups.values().map(|b| (b.pool.clone(), b.frozen.clone()));
            instance.chain(custom).collect()
        };
        let pools: Vec<String> = self.pools.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        for pool in pools {
            let Ok(driver) = self.pool_driver(&pool) else { continue };
            let vols = match driver.list_backup_volumes() {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(pool = %pool, error = %e, "listing volumes for the backup sweep");
                    continue;
                }
            };
            for vol in vols {
                if held.contains(&(pool.clone(), vol.name.clone())) {
                    continue;
                }
                match driver.delete_volume(&vol) {
                    Ok(()) => tracing::info!(pool = %pool, volume = %vol.name, "removed an orphaned backup volume"),
                    Err(e) => tracing::warn!(pool = %pool, volume = %vol.name, error = %e, "removing an orphaned backup volume"),
                }
            }
        }
    }

    /// Removes a backup's hidden volume (logged, not fatal: the record is already gone).
    pub(super) fn drop_captured(&self, captured: Option<&Captured>) {
        let Some(c) = captured else { return };
        let res = self.pool_driver(&c.pool).and_then(|d| {
            let vol = c.volume();
            if d.volume_exists(&vol) {
                d.delete_volume(&vol)?;
            }
            Ok(())
        });
        if let Err(e) = res {
            tracing::error!(pool = %c.pool, volume = %c.volume, error = %e, "deleting backup volume");
        }
    }
}
