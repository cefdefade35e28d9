//! The `dir` driver: plain directories under the pool path. Copies and snapshots are tree
//! copies that share extents (reflink) where the filesystem allows.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nix::mount::{mount, MsFlags};

use super::util::{self, copy_tree, remove_tree};
use super::{CopySource, Driver, DriverInfo, DriverStatus, Error, Filler, PoolSpec, Result, Usage};
use crate::storage::volume::{validate_name, Volume};

/// Pool config keys the dir driver accepts.
const KEYS: &[&str] = &["source", "rsync.bwlimit", "rsync.compression", "volume.size"];

/// A `dir` pool.
pub struct Dir {
    spec: PoolSpec,
}

/// The dir driver needs nothing from the host.
pub fn probe() -> DriverStatus {
    DriverStatus::Operational { version: "1".into() }
}

pub(super) fn new_boxed(spec: PoolSpec) -> Result<Box<dyn Driver>> {
    Ok(Box::new(Dir::new(spec)))
}

impl Dir {
    /// A driver for `spec` (nothing is touched until a method runs).
    pub fn new(spec: PoolSpec) -> Dir {
        Dir { spec }
    }

    /// The directory holding the pool's data: `source=`, or the mount path itself.
    fn source(&self) -> PathBuf {
        match self.spec.config.get("source") {
            Some(s) if !s.is_empty() => PathBuf::from(s),
            _ => self.spec.mount_path(),
        }
    }

    fn uses_bind_mount(&self) -> bool {
        self.source() != self.spec.mount_path()
    }

    fn root(&self) -> PathBuf {
        self.spec.mount_path()
    }

    fn check_vol(&self, vol: &Volume, must_exist: bool) -> Result<PathBuf> {
        vol.validate()?;
        let path = self.volume_path(vol);
        let exists = path.is_dir();
        if must_exist && !exists {
            return Err(Error::NotFound { what: "volume", name: vol.name.clone() });
        }
        if !must_exist && std::fs::symlink_metadata(&path).is_ok() {
            return Err(Error::AlreadyExists { what: "volume", name: vol.name.clone() });
        }
        Ok(path)
    }
}

impl Driver for Dir {
    fn info(&self) -> DriverInfo {
        DriverInfo { name: "dir", optimized_images: false, optimized_backups: false, quotas: false }
    }

    fn spec(&self) -> &PoolSpec {
        &self.spec
    }

    fn validate_pool_config(&self) -> Result<()> {
        validate_name("pool", &self.spec.name)?;
        for (key, value) in &self.spec.config {
            if !KEYS.contains(&key.as_str()) {
                return Err(Error::InvalidConfig { key: key.clone(), value: value.clone(), reason: "unknown key for dir".into() });
            }
        }
        if let Some(src) = self.spec.config.get("source") {
            if !src.is_empty() && !src.starts_with('/') {
                return Err(Error::InvalidConfig { key: "source".into(), value: src.clone(), reason: "must be an absolute path".into() });
            }
        }
        Ok(())
    }

    fn create_pool(&self) -> Result<BTreeMap<String, String>> {
        let source = self.source();
        util::ensure_dir(&source, 0o711)?;
        if self.uses_bind_mount() && util::list_dir_names(&source)?.iter().any(|n| !is_layout_dir(n)) {
            return Err(Error::Busy { what: "source", name: source.display().to_string(), reason: "directory is not empty".into() });
        }
        util::ensure_dir(&self.root(), 0o711)?;
        self.mount()?;
        util::create_layout(&self.root())?;
        Ok(BTreeMap::from([("source".to_string(), source.display().to_string())]))
    }

    fn delete_pool(&self) -> Result<()> {
        let root = self.root();
        if root.is_dir() {
            util::remove_layout(&root, &self.spec.name)?;
        }
        self.unmount()?;
        // Only directories berth made are removed; a user's source= directory stays.
        for p in [root] {
            match std::fs::remove_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("rmdir", &p, e)),
            }
        }
        Ok(())
    }

    fn mount(&self) -> Result<bool> {
        if !self.uses_bind_mount() || util::is_mountpoint(&self.root()) {
            return Ok(false);
        }
        util::ensure_dir(&self.root(), 0o711)?;
        mount(Some(&self.source()), &self.root(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| Error::io("bind mount", &self.source(), e.into()))?;
        Ok(true)
    }

    fn unmount(&self) -> Result<bool> {
        if !self.uses_bind_mount() || !util::is_mountpoint(&self.root()) {
            return Ok(false);
        }
        util::unmount(&self.root())?;
        Ok(true)
    }

    fn usage(&self) -> Result<Usage> {
        util::fs_usage(&self.root())
    }

    fn create_volume(&self, vol: &Volume, filler: Option<Filler<'_>>) -> Result<()> {
        let path = self.check_vol(vol, false)?;
        util::ensure_dir(&path, 0o711)?;
        if let Some(fill) = filler {
            if let Err(source) = fill(&path) {
                let _ = remove_tree(&path);
                return Err(Error::Fill { volume: vol.name.clone(), source });
            }
        }
        Ok(())
    }

    fn copy_volume(&self, dst: &Volume, src: &CopySource<'_>) -> Result<()> {
        let to = self.check_vol(dst, false)?;
        let from = match src.snapshot {
            Some(s) => {
                validate_name("snapshot", s)?;
                self.snapshot_path(src.volume, s)
            }
            None => self.check_vol(src.volume, true)?,
        };
        if !from.is_dir() {
            return Err(Error::NotFound { what: "copy source", name: from.display().to_string() });
        }
        let result = (|| {
            for snap in src.snapshots {
                validate_name("snapshot", snap)?;
                let dir = dst.snapshots_dir_in(&self.root());
                util::ensure_dir(&dir, 0o700)?;
                copy_tree(&self.snapshot_path(src.volume, snap), &dir.join(snap))?;
            }
            copy_tree(&from, &to).map(|_| ())
        })();
        if result.is_err() {
            let _ = remove_tree(&to);
            let _ = remove_tree(&dst.snapshots_dir_in(&self.root()));
        }
        result
    }

    fn delete_volume(&self, vol: &Volume) -> Result<()> {
        let path = self.check_vol(vol, true)?;
        remove_tree(&vol.snapshots_dir_in(&self.root()))?;
        remove_tree(&path)
    }

    fn rename_volume(&self, vol: &Volume, new_name: &str) -> Result<()> {
        let from = self.check_vol(vol, true)?;
        let new = vol.renamed(new_name);
        let to = self.check_vol(&new, false)?;
        let snaps = vol.snapshots_dir_in(&self.root());
        let had_snaps = snaps.exists();
        if had_snaps {
            util::rename_noreplace(&snaps, &new.snapshots_dir_in(&self.root()))?;
        }
        if let Err(e) = util::rename_noreplace(&from, &to) {
            if had_snaps {
                let _ = std::fs::rename(new.snapshots_dir_in(&self.root()), &snaps);
            }
            return Err(e);
        }
        Ok(())
    }

    fn set_quota(&self, vol: &Volume, size: Option<u64>) -> Result<()> {
        self.check_vol(vol, true)?;
        match size {
            None | Some(0) => Ok(()),
            Some(_) => Err(Error::Unsupported { driver: "dir", what: "volume size limits (no project quotas on this host)" }),
        }
    }

    fn create_snapshot(&self, vol: &Volume, snap: &str) -> Result<()> {
        let from = self.check_vol(vol, true)?;
        validate_name("snapshot", snap)?;
        let dir = vol.snapshots_dir_in(&self.root());
        util::ensure_dir(&dir, 0o700)?;
        let to = dir.join(snap);
        if to.exists() {
            return Err(Error::AlreadyExists { what: "snapshot", name: snap.to_string() });
        }
        let tmp = util::sibling_tmp(&to, "new");
        let _ = remove_tree(&tmp);
        if let Err(e) = copy_tree(&from, &tmp) {
            let _ = remove_tree(&tmp);
            return Err(e);
        }
        util::rename_noreplace(&tmp, &to)
    }

    fn delete_snapshot(&self, vol: &Volume, snap: &str) -> Result<()> {
        validate_name("snapshot", snap)?;
        let path = self.snapshot_path(vol, snap);
        if !path.is_dir() {
            return Err(Error::NotFound { what: "snapshot", name: snap.to_string() });
        }
        remove_tree(&path)?;
        // Drop the per-volume snapshot directory once empty.
        let _ = std::fs::remove_dir(vol.snapshots_dir_in(&self.root()));
        Ok(())
    }

    fn rename_snapshot(&self, vol: &Volume, snap: &str, new_name: &str) -> Result<()> {
        validate_name("snapshot", snap)?;
        validate_name("snapshot", new_name)?;
        let from = self.snapshot_path(vol, snap);
        if !from.is_dir() {
            return Err(Error::NotFound { what: "snapshot", name: snap.to_string() });
        }
        util::rename_noreplace(&from, &self.snapshot_path(vol, new_name))
    }

    fn restore_snapshot(&self, vol: &Volume, snap: &str) -> Result<()> {
        let path = self.check_vol(vol, true)?;
        validate_name("snapshot", snap)?;
        let from = self.snapshot_path(vol, snap);
        if !from.is_dir() {
            return Err(Error::NotFound { what: "snapshot", name: snap.to_string() });
        }
        // Copy aside first, then swap, so a failed copy leaves the volume untouched.
        let tmp = util::sibling_tmp(&path, "restore");
        let old = util::sibling_tmp(&path, "old");
        let _ = remove_tree(&tmp);
        if let Err(e) = copy_tree(&from, &tmp) {
            let _ = remove_tree(&tmp);
            return Err(e);
        }
        std::fs::rename(&path, &old).map_err(|e| Error::io("rename", &path, e))?;
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::rename(&old, &path);
            return Err(Error::io("rename", &tmp, e));
        }
        remove_tree(&old)
    }
}

fn is_layout_dir(name: &str) -> bool {
    crate::storage::VolumeType::ALL.iter().any(|t| t.dir_name() == name || t.snapshots_dir_name() == name)
}
