//! What a backup holds: at creation, the instance volume (with the snapshots the backup
//! includes) is copied into a hidden volume of the same pool (a btrfs snapshot per
//! subvolume, a reflink or plain copy on dir), and the instance and snapshot records are
//! frozen in the backup record. Export streams the tarball from that frozen volume, so
//! its content is the creation-time state and no second copy is staged while exporting.
//! Deleting or expiring the backup, or deleting its instance, removes the volume.

use serde::{Deserialize, Serialize};

use super::{instance_volume, Daemon, SnapshotRecord};
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
