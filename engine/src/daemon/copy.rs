//! Where a new instance's root volume comes from: empty, an image, or a copy of another
//! instance or snapshot (with its snapshots unless `instance_only`), in the same pool or
//! another one (see [`super::migrate`], which also has `refresh`).

use super::{instance_volume, Daemon, InstanceCreate, Model, SnapshotRecord, VolumeGuard};
use crate::config;
use crate::error::{Error, Result};
use crate::model::InstanceRecord;
use super::migrate::{copy_across, snapshot_in_pool, Side};
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

    /// Whether making the root volume of `inst` from `source` is a real copy (dir pools,
    /// another pool) rather than a snapshot or an empty volume: such work is done outside
    /// the daemon's write lock.
    pub(super) fn root_is_heavy(&self, m: &Model, inst: &InstanceRecord, source: &RootSource) -> bool {
        let cheap_in = |pool: &str| self.pool_driver(pool).map(|d| d.info().optimized_images).unwrap_or(false);
        let Ok(dst_pool) = m.root_pool(inst) else { return false };
        match source {
            RootSource::Empty => false,
            RootSource::Image(_) => !cheap_in(&dst_pool),
            RootSource::Copy { instance, .. } => match m.instance(&inst.project, instance).and_then(|s| m.root_pool(s).ok()) {
                Some(src_pool) => src_pool != dst_pool || !cheap_in(&dst_pool),
                None => false,
            },
        }
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
                let driver = self.pool_driver(&dst_pool)?;
                let snaps: Vec<&SnapshotRecord> =
                    if *instance_only || snapshot.is_some() { Vec::new() } else { m.snapshots_of(&inst.project, instance) };
                let names: Vec<String> = snaps.iter().map(|s| s.name.clone()).collect();
                let src_vol = instance_volume(src);
                let dst = instance_volume(inst);
                if src_pool == dst_pool {
                    driver.copy_volume(&dst, &CopySource { volume: &src_vol, snapshot: snapshot.as_deref(), snapshots: &names })?;
                } else {
                    let src_driver = self.pool_driver(&src_pool)?;
                    let (from, to) = (Side { driver: src_driver.as_ref(), volume: &src_vol }, Side { driver: driver.as_ref(), volume: &dst });
                    copy_across(&from, snapshot.as_deref(), &names, &to)?;
                }
                let records = snaps
                    .iter()
                    .map(|s| {
                        let mut r = snapshot_in_pool(m, s, &inst.name, &dst_pool);
                        r.config.retain(|k, _| config::include_when_copying(k, false));
                        r
                    })
                    .collect();
                Ok((VolumeGuard::armed(driver, dst), records))
            }
        }
    }
}
