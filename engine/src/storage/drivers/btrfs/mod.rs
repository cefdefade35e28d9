//! The `btrfs` driver: a subvolume per volume, read-only snapshots, cheap clones from
//! image volumes, qgroup size limits and send/receive streams.
//!
//! The pool is either a btrfs directory (`source=<dir>`, bind-mounted at the pool path;
//! created as a subvolume when missing and its parent is on btrfs) or a loop file (`source=<file>` or the default `<data>/disks/<pool>.img`,
//! created sparse with `size=`) formatted and mounted.

mod cmd;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use super::util::{self, parse_size};
use super::{CopySource, Driver, DriverInfo, DriverStatus, Error, Filler, PoolSpec, Result, Usage};
use crate::storage::volume::{validate_name, Volume};

pub use cmd::{is_btrfs, is_subvolume};

/// Pool config keys the btrfs driver accepts.
const KEYS: &[&str] = &["source", "size", "btrfs.mount_options", "volume.size"];
/// The loop file size when none is given.
const DEFAULT_LOOP_SIZE: u64 = 5 << 30;
/// mkfs.btrfs refuses smaller devices.
const MIN_LOOP_SIZE: u64 = 128 << 20;
const DEFAULT_MOUNT_OPTIONS: &str = "user_subvol_rm_allowed";

/// A `btrfs` pool.
pub struct Btrfs {
    spec: PoolSpec,
}

/// Operational when btrfs-progs runs, the kernel knows btrfs and loop devices exist.
pub fn probe() -> DriverStatus {
    let version = match cmd::version() {
        Ok(v) => v,
        Err(reason) => return DriverStatus::NotOperational { reason },
    };
    let kernel = fs::read_to_string("/proc/filesystems").map(|s| s.lines().any(|l| l.trim_end().ends_with("btrfs"))).unwrap_or(false);
    if !kernel {
        return DriverStatus::NotOperational { reason: "the kernel has no btrfs support".into() };
    }
    if !Path::new("/dev/loop-control").exists() {
        return DriverStatus::NotOperational { reason: "no /dev/loop-control for loop-backed pools".into() };
    }
    if util::run("mkfs.btrfs", &["--version".as_ref()]).is_err() {
        return DriverStatus::NotOperational { reason: "mkfs.btrfs is not installed".into() };
    }
    DriverStatus::Operational { version }
}

pub(super) fn new_boxed(spec: PoolSpec) -> Result<Box<dyn Driver>> {
    Ok(Box::new(Btrfs::new(spec)))
}

/// Where the pool's filesystem comes from.
enum Backing {
    /// A directory already on btrfs, bind-mounted.
    Dir(PathBuf),
    /// A loop file we format and mount.
    LoopFile(PathBuf),
}

impl Btrfs {
    /// A driver for `spec` (nothing is touched until a method runs).
    pub fn new(spec: PoolSpec) -> Btrfs {
        Btrfs { spec }
    }

    fn root(&self) -> PathBuf {
        self.spec.mount_path()
    }

    fn backing(&self) -> Backing {
        match self.spec.config.get("source").filter(|s| !s.is_empty()) {
            Some(s) if Path::new(s).is_dir() => Backing::Dir(PathBuf::from(s)),
            Some(s) => Backing::LoopFile(PathBuf::from(s)),
            None => Backing::LoopFile(self.spec.default_loop_file()),
        }
    }

    fn mount_options(&self) -> String {
        self.spec.config.get("btrfs.mount_options").cloned().unwrap_or_else(|| DEFAULT_MOUNT_OPTIONS.to_string())
    }

    fn check_vol(&self, vol: &Volume, must_exist: bool) -> Result<PathBuf> {
        vol.validate()?;
        let path = self.volume_path(vol);
        if must_exist && !path.is_dir() {
            return Err(Error::NotFound { what: "volume", name: vol.name.clone() });
        }
        if !must_exist && fs::symlink_metadata(&path).is_ok() {
            return Err(Error::AlreadyExists { what: "volume", name: vol.name.clone() });
        }
        Ok(path)
    }

    fn check_snap(&self, vol: &Volume, snap: &str, must_exist: bool) -> Result<PathBuf> {
        vol.validate()?;
        validate_name("snapshot", snap)?;
        let path = self.snapshot_path(vol, snap);
        if must_exist && !path.is_dir() {
            return Err(Error::NotFound { what: "snapshot", name: snap.to_string() });
        }
        if !must_exist && fs::symlink_metadata(&path).is_ok() {
            return Err(Error::AlreadyExists { what: "snapshot", name: snap.to_string() });
        }
        Ok(path)
    }

    /// Re-applies a `size` from the volume config to a (new) subvolume.
    fn apply_config_quota(&self, vol: &Volume) -> Result<()> {
        match vol.config.get("size").and_then(|s| parse_size(s)) {
            Some(size) if size > 0 => self.set_quota(vol, Some(size)),
            _ => Ok(()),
        }
    }

    fn delete_snapshots_of(&self, vol: &Volume) -> Result<()> {
        let dir = vol.snapshots_dir_in(&self.root());
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            cmd::subvolume_delete(&entry.path())?;
        }
        util::remove_tree(&dir)
    }
}

impl Driver for Btrfs {
    fn info(&self) -> DriverInfo {
        DriverInfo { name: "btrfs", optimized_images: true, optimized_backups: true, quotas: true }
    }

    fn spec(&self) -> &PoolSpec {
        &self.spec
    }

    fn validate_pool_config(&self) -> Result<()> {
        validate_name("pool", &self.spec.name)?;
        for (key, value) in &self.spec.config {
            if !KEYS.contains(&key.as_str()) {
                return Err(Error::InvalidConfig { key: key.clone(), value: value.clone(), reason: "unknown key for btrfs".into() });
            }
        }
        if let Some(size) = self.spec.config.get("size") {
            match parse_size(size) {
                Some(n) if n >= MIN_LOOP_SIZE => {}
                _ => {
                    return Err(Error::InvalidConfig {
                        key: "size".into(),
                        value: size.clone(),
                        reason: format!("must be a size of at least {MIN_LOOP_SIZE} bytes"),
                    })
                }
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
        let mut stored = BTreeMap::new();
        // A missing source= on a btrfs filesystem becomes a subvolume there, as in LXD.
        if let Some(src) = self.spec.config.get("source").filter(|s| !s.is_empty()).map(PathBuf::from) {
            if !src.exists() && src.parent().map(cmd::is_btrfs).unwrap_or(false) {
                cmd::subvolume_create(&src)?;
            }
        }
        match self.backing() {
            Backing::Dir(dir) => {
                if !cmd::is_btrfs(&dir) {
                    return Err(Error::InvalidConfig {
                        key: "source".into(),
                        value: dir.display().to_string(),
                        reason: "is not on a btrfs filesystem".into(),
                    });
                }
                stored.insert("source".into(), dir.display().to_string());
            }
            Backing::LoopFile(file) => {
                if file.exists() {
                    return Err(Error::AlreadyExists { what: "loop file", name: file.display().to_string() });
                }
                let size = self.spec.config.get("size").and_then(|s| parse_size(s)).unwrap_or(DEFAULT_LOOP_SIZE);
                if let Some(parent) = file.parent() {
                    util::ensure_dir(parent, 0o700)?;
                }
                let made = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&file)
                    .and_then(|f| f.set_len(size))
                    .map_err(|e| Error::io("create loop file", &file, e));
                if let Err(e) = made.and_then(|_| cmd::mkfs(&file, &self.spec.name)) {
                    let _ = fs::remove_file(&file);
                    return Err(e);
                }
                stored.insert("source".into(), file.display().to_string());
                stored.insert("size".into(), size.to_string());
            }
        }
        util::ensure_dir(&self.root(), 0o711)?;
        let result = self.mount().and_then(|_| util::create_layout(&self.root()));
        if let Err(e) = result {
            let _ = self.unmount();
            if let Backing::LoopFile(file) = self.backing() {
                let _ = fs::remove_file(file);
            }
            return Err(e);
        }
        Ok(stored)
    }

    fn delete_pool(&self) -> Result<()> {
        if util::is_mountpoint(&self.root()) {
            util::remove_layout(&self.root(), &self.spec.name)?;
        }
        self.unmount()?;
        if let Backing::LoopFile(file) = self.backing() {
            match fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove loop file", &file, e)),
            }
        }
        match fs::remove_dir(self.root()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("rmdir", &self.root(), e)),
        }
    }

    fn mount(&self) -> Result<bool> {
        let root = self.root();
        if util::is_mountpoint(&root) {
            return Ok(false);
        }
        util::ensure_dir(&root, 0o711)?;
        match self.backing() {
            Backing::Dir(dir) => {
                mount(Some(&dir), &root, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .map_err(|e| Error::io("bind mount", &dir, e.into()))?;
            }
            Backing::LoopFile(file) => {
                if !file.is_file() {
                    return Err(Error::NotFound { what: "loop file", name: file.display().to_string() });
                }
                let dev = cmd::loop_attach(&file)?;
                let mounted = mount(Some(&dev), &root, Some("btrfs"), MsFlags::empty(), Some(self.mount_options().as_str()))
                    .map_err(|e| Error::io("mount", &dev, e.into()));
                // Either way, drop our reference: a mounted device then auto-clears at umount.
                let detached = cmd::loop_detach(&dev);
                mounted?;
                detached?;
            }
        }
        Ok(true)
    }

    fn unmount(&self) -> Result<bool> {
        let root = self.root();
        if !util::is_mountpoint(&root) {
            return Ok(false);
        }
        util::unmount(&root)?;
        Ok(true)
    }

    fn usage(&self) -> Result<Usage> {
        util::fs_usage(&self.root())
    }

    fn create_volume(&self, vol: &Volume, filler: Option<Filler<'_>>) -> Result<()> {
        let path = self.check_vol(vol, false)?;
        cmd::subvolume_create(&path)?;
        let result = (|| {
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o711)).map_err(|e| Error::io("chmod", &path, e))?;
            self.apply_config_quota(vol)?;
            if let Some(fill) = filler {
                fill(&path).map_err(|source| Error::Fill { volume: vol.name.clone(), source })?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = cmd::subvolume_delete(&path);
        }
        result
    }

    fn copy_volume(&self, dst: &Volume, src: &CopySource<'_>) -> Result<()> {
        let to = self.check_vol(dst, false)?;
        let from = match src.snapshot {
            Some(s) => self.check_snap(src.volume, s, true)?,
            None => self.check_vol(src.volume, true)?,
        };
        let mut made: Vec<PathBuf> = Vec::new();
        let result = (|| {
            for snap in src.snapshots {
                let sfrom = self.check_snap(src.volume, snap, true)?;
                let sto = self.check_snap(dst, snap, false)?;
                util::ensure_dir(&dst.snapshots_dir_in(&self.root()), 0o700)?;
                cmd::subvolume_snapshot(&sfrom, &sto, true)?;
                made.push(sto);
            }
            cmd::subvolume_snapshot(&from, &to, false)?;
            made.push(to.clone());
            self.apply_config_quota(dst)
        })();
        if result.is_err() {
            for p in made.iter().rev() {
                let _ = cmd::subvolume_delete(p);
            }
            let _ = fs::remove_dir(dst.snapshots_dir_in(&self.root()));
        }
        result
    }

    fn delete_volume(&self, vol: &Volume) -> Result<()> {
        let path = self.check_vol(vol, true)?;
        self.delete_snapshots_of(vol)?;
        cmd::subvolume_delete(&path)
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
                let _ = fs::rename(new.snapshots_dir_in(&self.root()), &snaps);
            }
            return Err(e);
        }
        Ok(())
    }

    fn set_quota(&self, vol: &Volume, size: Option<u64>) -> Result<()> {
        let path = self.check_vol(vol, true)?;
        match size {
            Some(n) if n > 0 => {
                cmd::quota_enable(&self.root())?;
                cmd::qgroup_limit(&path, Some(n))
            }
            _ => match cmd::qgroup_limit(&path, None) {
                // No quotas enabled means no limit to remove.
                Err(Error::Command { stderr, .. }) if stderr.contains("not enabled") || stderr.contains("ENOTCONN") => Ok(()),
                other => other,
            },
        }
    }

    fn create_snapshot(&self, vol: &Volume, snap: &str) -> Result<()> {
        let from = self.check_vol(vol, true)?;
        let to = self.check_snap(vol, snap, false)?;
        util::ensure_dir(&vol.snapshots_dir_in(&self.root()), 0o700)?;
        cmd::subvolume_snapshot(&from, &to, true)
    }

    fn delete_snapshot(&self, vol: &Volume, snap: &str) -> Result<()> {
        let path = self.check_snap(vol, snap, true)?;
        cmd::subvolume_delete(&path)?;
        let _ = fs::remove_dir(vol.snapshots_dir_in(&self.root()));
        Ok(())
    }

    fn rename_snapshot(&self, vol: &Volume, snap: &str, new_name: &str) -> Result<()> {
        let from = self.check_snap(vol, snap, true)?;
        let to = self.check_snap(vol, new_name, false)?;
        util::rename_noreplace(&from, &to)
    }

    fn restore_snapshot(&self, vol: &Volume, snap: &str) -> Result<()> {
        let path = self.check_vol(vol, true)?;
        let from = self.check_snap(vol, snap, true)?;
        let tmp = util::sibling_tmp(&path, "restore");
        let old = util::sibling_tmp(&path, "old");
        cmd::subvolume_snapshot(&from, &tmp, false)?;
        if let Err(e) = fs::rename(&path, &old) {
            let _ = cmd::subvolume_delete(&tmp);
            return Err(Error::io("rename", &path, e));
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::rename(&old, &path);
            let _ = cmd::subvolume_delete(&tmp);
            return Err(Error::io("rename", &tmp, e));
        }
        cmd::subvolume_delete(&old)?;
        self.apply_config_quota(vol)
    }

    fn send_volume(&self, vol: &Volume, snap: Option<&str>, parent: Option<&str>, out: &mut dyn Write) -> Result<u64> {
        let parent_path = match parent {
            Some(p) => Some(self.check_snap(vol, p, true)?),
            None => None,
        };
        match snap {
            Some(s) => {
                let path = self.check_snap(vol, s, true)?;
                cmd::send(&path, parent_path.as_deref(), out)
            }
            None => {
                // btrfs only sends read-only subvolumes: send a throwaway snapshot.
                self.check_vol(vol, true)?;
                let tmp = format!(".send-{}", std::process::id());
                self.create_snapshot(vol, &tmp)?;
                let sent = cmd::send(&self.snapshot_path(vol, &tmp), parent_path.as_deref(), out);
                let deleted = self.delete_snapshot(vol, &tmp);
                let n = sent?;
                deleted?;
                Ok(n)
            }
        }
    }

    fn receive_volume(&self, vol: &Volume, snap: Option<&str>, input: &mut dyn Read) -> Result<()> {
        let target = match snap {
            Some(s) => self.check_snap(vol, s, false)?,
            None => self.check_vol(vol, false)?,
        };
        // Received subvolumes are read-only and a read-only directory cannot change parent,
        // so receive straight into the snapshot directory and only rename within it.
        let snaps_dir = vol.snapshots_dir_in(&self.root());
        util::ensure_dir(&snaps_dir, 0o700)?;
        let before = all_names(&snaps_dir)?;
        let received = cmd::receive(&snaps_dir, input);
        let new: Vec<String> = all_names(&snaps_dir)?.into_iter().filter(|n| !before.contains(n)).collect();
        let result = received.and_then(|()| {
            let [name] = new.as_slice() else {
                return Err(Error::Command {
                    command: "btrfs receive".into(),
                    status: "0".into(),
                    stderr: format!("expected one received subvolume, got {}", new.len()),
                });
            };
            let got = snaps_dir.join(name);
            match snap {
                Some(_) if got == target => Ok(()),
                Some(_) => util::rename_noreplace(&got, &target),
                None => {
                    let made = cmd::subvolume_snapshot(&got, &target, false);
                    let dropped = cmd::subvolume_delete(&got);
                    made?;
                    dropped?;
                    self.apply_config_quota(vol)
                }
            }
        });
        if result.is_err() {
            for name in &new {
                let p = snaps_dir.join(name);
                if p != target {
                    let _ = cmd::subvolume_delete(&p);
                }
            }
        }
        if util::list_dir_names(&snaps_dir).map(|v| v.is_empty()).unwrap_or(false) {
            let _ = fs::remove_dir(&snaps_dir);
        }
        result
    }
}

/// Every entry name in `dir`, hidden ones included.
fn all_names(dir: &Path) -> Result<Vec<String>> {
    Ok(fs::read_dir(dir)
        .map_err(|e| Error::io("readdir", dir, e))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect())
}

/// Loop devices still attached to a pool's loop file (for tests and diagnostics).
pub fn loop_devices_of(file: &Path) -> Vec<String> {
    cmd::loops_of(file)
}
