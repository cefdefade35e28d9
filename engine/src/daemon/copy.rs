//! Where a new instance's root volume comes from: empty, an image, or a copy of another
//! instance or snapshot (with its snapshots unless `instance_only`), and `refresh`.

use super::{instance_volume, Daemon, InstanceCreate, Model, SnapshotRecord, VolumeGuard};
use crate::config;
use crate::error::{Error, Result};
use crate::model::InstanceRecord;
use crate::snapshot_rules::{compare_snapshots, ComparableSnapshot};
use crate::storage::drivers::CopySource;

/// The source of a new instance's root volume.
#[derive(Debug, Clone, Default)]
pub enum RootSource {
    #[default]
    Empty,
    /// A full fingerprint.
    Image(String),
    /// Another instance of the same project, or one of its snapshots.
    Copy { instance: String, snapshot: Option<String>, instance_only: bool },
}

impl Daemon {
    /// Fills an instance request from its copy source as LXD does: the source's config
    /// (minus volatile keys except `volatile.base_image` and `volatile.last_state.idmap`)
    /// under the request's keys, its devices and profiles when the request has none.
    pub fn prepare_copy(&self, project: &str, req: &mut InstanceCreate, source: &RootSource) -> Result<()> {
        let RootSource::Copy { instance, snapshot, .. } = source else { return Ok(()) };
        let m = self.model();
        let src: InstanceRecord = match snapshot {
            Some(s) => m
                .snapshot(project, instance, s)
                .map(SnapshotRecord::as_instance)
                .ok_or_else(|| Error::not_found(format!("Snapshot \"{instance}/{s}\" not found")))?,
            None => m.instance(project, instance).cloned().ok_or_else(|| Error::not_found(format!("Instance \"{instance}\" not found")))?,
        };
        for (k, v) in &src.config {
            if config::include_when_copying(k, false) && !req.config.contains_key(k) {
                req.config.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &src.devices {
            req.devices.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if req.profiles.is_none() {
            req.profiles = Some(src.profiles.clone());
        }
        if req.architecture.is_none() {
            req.architecture = Some(src.architecture.clone());
        }
        req.instance_type = src.instance_type;
        Ok(())
    }

    /// Creates the root volume for `inst` from `source`; returns a guard that removes it
    /// on failure and the snapshot records the copy brought along.
    pub(super) fn create_root(&self, m: &Model, inst: &InstanceRecord, source: &RootSource) -> Result<(VolumeGuard, Vec<SnapshotRecord>)> {
        match source {
            RootSource::Empty => Ok((self.create_empty_root(m, inst)?, Vec::new())),
            RootSource::Image(fp) => Ok((self.create_root_from_image(m, inst, fp)?, Vec::new())),
            RootSource::Copy { instance, snapshot, instance_only } => {
                let src = m.instance(&inst.project, instance).ok_or_else(|| Error::not_found(format!("Instance \"{instance}\" not found")))?;
                let (src_pool, dst_pool) = (m.root_pool(src)?, m.root_pool(inst)?);
                if src_pool != dst_pool {
                    return Err(Error::bad(format!("Copying between pools (\"{src_pool}\" to \"{dst_pool}\") is not supported")));
                }
                let driver = self.pool_driver(&dst_pool)?;
                let snaps: Vec<&SnapshotRecord> =
                    if *instance_only || snapshot.is_some() { Vec::new() } else { m.snapshots_of(&inst.project, instance) };
                let names: Vec<String> = snaps.iter().map(|s| s.name.clone()).collect();
                let src_vol = instance_volume(src);
                let dst = instance_volume(inst);
                driver.copy_volume(&dst, &CopySource { volume: &src_vol, snapshot: snapshot.as_deref(), snapshots: &names })?;
                let records = snaps
                    .iter()
                    .map(|s| {
                        let mut r = (*s).clone();
                        r.instance = inst.name.clone();
                        r.config.retain(|k, _| config::include_when_copying(k, false));
                        r
                    })
                    .collect();
                Ok((VolumeGuard::armed(driver, dst), records))
            }
        }
    }

    /// `copy --refresh`: brings an existing target up to date with its source. Snapshots
    /// are compared as LXD does; when anything differs the target volume is copied again
    /// (with the source's snapshots), and the target's records follow.
    pub fn refresh_instance(&self, project: &str, target: &str, source: &str, instance_only: bool) -> Result<()> {
        let mut tx = self.txn();
        let m = tx.model();
        let src = m.instance(project, source).cloned().ok_or_else(|| Error::not_found(format!("Instance \"{source}\" not found")))?;
        let dst = m.instance(project, target).cloned().ok_or_else(|| Error::not_found(format!("Instance \"{target}\" not found")))?;
        if m.power(project, target) != super::PowerState::Stopped {
            return Err(Error::bad("The target instance must be stopped to refresh it"));
        }
        let comparable = |v: &[&SnapshotRecord], id: &str| -> Vec<ComparableSnapshot> {
            v.iter().map(|s| ComparableSnapshot { name: s.name.clone(), id: id.to_string(), creation_date: s.created_at }).collect()
        };
        let src_snaps = if instance_only { Vec::new() } else { m.snapshots_of(project, source) };
        let dst_snaps = m.snapshots_of(project, target);
        let (sync, delete) = compare_snapshots(&comparable(&src_snaps, "x"), &comparable(&dst_snaps, "x"));
        tracing::debug!(sync = sync.len(), delete = delete.len(), "refresh");
        let pool = m.root_pool(&dst)?;
        if m.root_pool(&src)? != pool {
            return Err(Error::bad("Refreshing between pools is not supported"));
        }
        let names: Vec<String> = src_snaps.iter().map(|s| s.name.clone()).collect();
        let new_records: Vec<SnapshotRecord> = src_snaps
            .iter()
            .map(|s| SnapshotRecord { instance: target.to_string(), ..(*s).clone() })
            .collect();
        let old_keys: Vec<String> = dst_snaps.iter().map(|s| s.key()).collect();
        drop(m);
        let driver = self.pool_driver(&pool)?;
        let dst_vol = instance_volume(&dst);
        let tmp = dst_vol.renamed(&format!("{}.refresh-{}", dst.name, rand::random::<u32>()));
        driver.copy_volume(&tmp, &CopySource { volume: &instance_volume(&src), snapshot: None, snapshots: &names })?;
        driver.delete_volume(&dst_vol)?;
        driver.rename_volume(&tmp, &dst.name)?;
        tx.commit(
            |db| {
                for k in &old_keys {
                    db.delete(&crate::db::tables::SNAPSHOTS, k)?;
                }
                for s in &new_records {
                    db.put(&crate::db::tables::SNAPSHOTS, &s.key(), s)?;
                }
                Ok(())
            },
            |m| {
                for k in &old_keys {
                    m.snapshots.remove(k);
                }
                for s in &new_records {
                    m.snapshots.insert(s.key(), s.clone());
                }
            },
        )?;
        Ok(())
    }
}
