//! Storage drivers: one [`Driver`] object per pool, created from the static [`DRIVERS`] table.
//!
//! A driver knows the pool's paths and config and nothing else. A driver the host cannot run
//! reports "not operational, because X" from its probe instead of failing the daemon.

mod btrfs;
mod dir;
pub mod sync;
pub mod util;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::volume::{Volume, VolumeType};

pub use btrfs::{is_btrfs, is_subvolume, loop_devices_of, Btrfs};
pub use dir::Dir;

/// Hole-preserving file copies (tree copies of VM disks).
mod sparse;

/// Errors of the storage drivers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name that cannot be a path component.
    #[error("invalid {what} name {name:?}")]
    InvalidName { what: &'static str, name: String },
    /// A pool config key that is unknown or has a bad value.
    #[error("invalid pool config {key}={value:?}: {reason}")]
    InvalidConfig { key: String, value: String, reason: String },
    /// No driver of that name.
    #[error("unknown storage driver {0:?}")]
    UnknownDriver(String),
    /// The host cannot run this driver.
    #[error("storage driver {driver} is not operational: {reason}")]
    NotOperational { driver: &'static str, reason: String },
    /// The driver does not offer this operation.
    #[error("{driver} does not support {what}")]
    Unsupported { driver: &'static str, what: &'static str },
    /// Creating something that exists.
    #[error("{what} {name:?} already exists")]
    AlreadyExists { what: &'static str, name: String },
    /// Using something that does not exist.
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    /// Still in use (a pool with volumes, a mounted pool).
    #[error("{what} {name:?} is busy: {reason}")]
    Busy { what: &'static str, name: String, reason: String },
    /// A filesystem call failed on `path`.
    #[error("{op} {path}")]
    Io { op: &'static str, path: PathBuf, #[source] source: std::io::Error },
    /// An external command failed.
    #[error("{command} failed (status {status}): {stderr}")]
    Command { command: String, status: String, stderr: String },
    /// The filler callback of `create_volume` failed; the volume was removed.
    #[error("filling volume {volume}")]
    Fill { volume: String, #[source] source: Box<dyn std::error::Error + Send + Sync> },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::Io { op, path: path.to_path_buf(), source }
    }
}

/// Shorthand for driver results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a pool is: its name, driver config and where the daemon keeps its data.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    /// Pool name (a path component).
    pub name: String,
    /// Pool config (`source`, `size`, ...).
    pub config: BTreeMap<String, String>,
    /// The daemon's data directory; the pool mounts at `<data_dir>/storage-pools/<name>`.
    pub data_dir: PathBuf,
}

impl PoolSpec {
    /// A spec with the given config pairs.
    pub fn new(name: &str, data_dir: &Path, config: &[(&str, &str)]) -> PoolSpec {
        PoolSpec {
            name: name.to_string(),
            config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// `<data_dir>/storage-pools/<name>`: where every volume of the pool lives.
    pub fn mount_path(&self) -> PathBuf {
        self.data_dir.join("storage-pools").join(&self.name)
    }

    /// `<data_dir>/disks/<name>.img`: the default loop file of loop-backed pools.
    pub fn default_loop_file(&self) -> PathBuf {
        self.data_dir.join("disks").join(format!("{}.img", self.name))
    }
}

/// Space and inode usage of a pool (`GET /1.0/storage-pools/P/resources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes used.
    pub space_used: u64,
    /// Bytes in total.
    pub space_total: u64,
    /// Inodes used (0 when the filesystem has no fixed inode count).
    pub inodes_used: u64,
    /// Inodes in total (0 when the filesystem has no fixed inode count).
    pub inodes_total: u64,
}

/// The result of a driver probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverStatus {
    /// Usable; `version` is the tool or kernel version found.
    Operational { version: String },
    /// Not usable on this host, and why.
    NotOperational { reason: String },
}

impl DriverStatus {
    /// Whether the driver can be used.
    pub fn is_operational(&self) -> bool {
        matches!(self, DriverStatus::Operational { .. })
    }
}

/// Static facts about a driver.
#[derive(Debug, Clone, Copy)]
pub struct DriverInfo {
    /// Driver name (`dir`, `btrfs`).
    pub name: &'static str,
    /// Image volumes are kept and instance volumes are cheap clones of them.
    pub optimized_images: bool,
    /// `send_volume`/`receive_volume` exist (optimized backups).
    pub optimized_backups: bool,
    /// `set_quota` works.
    pub quotas: bool,
}

/// Fills a newly created volume through its mounted path.
pub type Filler<'a> = &'a mut dyn FnMut(&Path) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// What `copy_volume` copies.
#[derive(Debug, Clone)]
pub struct CopySource<'a> {
    /// The source volume.
    pub volume: &'a Volume,
    /// Copy from this snapshot of the source instead of its current state.
    pub snapshot: Option<&'a str>,
    /// Snapshots of the source to recreate on the target, oldest first.
    pub snapshots: &'a [String],
}

/// A storage driver bound to one pool. All methods are blocking.
pub trait Driver: Send + Sync {
    /// Static facts.
    fn info(&self) -> DriverInfo;
    /// The pool this driver serves.
    fn spec(&self) -> &PoolSpec;

    // Pool.
    /// Checks the pool config without touching the host.
    fn validate_pool_config(&self) -> Result<()>;
    /// Creates the pool's storage and layout, and mounts it. Returns config keys to store
    /// (for example a defaulted `source`).
    fn create_pool(&self) -> Result<BTreeMap<String, String>>;
    /// Removes the pool's storage. Fails with [`Error::Busy`] if volumes remain.
    fn delete_pool(&self) -> Result<()>;
    /// Mounts the pool; returns whether this call mounted it.
    fn mount(&self) -> Result<bool>;
    /// Unmounts the pool; returns whether this call unmounted it.
    fn unmount(&self) -> Result<bool>;
    /// Space and inode usage.
    fn usage(&self) -> Result<Usage>;

    // Volumes.
    /// Creates an empty volume, then runs `filler` on its path if given. On any failure
    /// the volume is removed again.
    fn create_volume(&self, vol: &Volume, filler: Option<Filler<'_>>) -> Result<()>;
    /// Creates `dst` as a copy of `src` (cheap where the driver can).
    fn copy_volume(&self, dst: &Volume, src: &CopySource<'_>) -> Result<()>;
    /// Deletes a volume and all its snapshots.
    fn delete_volume(&self, vol: &Volume) -> Result<()>;
    /// Renames a volume and its snapshots.
    fn rename_volume(&self, vol: &Volume, new_name: &str) -> Result<()>;
    /// Sets (Some) or removes (None) the volume's size limit in bytes.
    fn set_quota(&self, vol: &Volume, size: Option<u64>) -> Result<()>;
    /// Where the volume's files are.
    fn volume_path(&self, vol: &Volume) -> PathBuf {
        vol.path_in(&self.spec().mount_path())
    }
    /// Bytes the volume's files occupy (blocks allocated; hardlinks once, extents shared
    /// with snapshots or images counted in full).
    fn volume_usage(&self, vol: &Volume) -> Result<u64> {
        vol.validate()?;
        let path = self.volume_path(vol);
        if !path.is_dir() {
            return Err(Error::NotFound { what: "volume", name: vol.name.clone() });
        }
        util::disk_usage(&path)
    }
    /// Whether the volume exists.
    fn volume_exists(&self, vol: &Volume) -> bool {
        self.volume_path(vol).is_dir()
    }
    /// All volumes of the pool, by type, project and name.
    fn list_volumes(&self) -> Result<Vec<Volume>> {
        util::list_volumes(&self.spec().mount_path())
    }
    /// The hidden backup volumes (`.backup-*`, see `daemon::backup_capture`).
    fn list_backup_volumes(&self) -> Result<Vec<Volume>> {
        util::list_backup_volumes(&self.spec().mount_path())
    }

    // Snapshots.
    /// Takes a snapshot of the volume.
    fn create_snapshot(&self, vol: &Volume, snap: &str) -> Result<()>;
    /// Deletes a snapshot.
    fn delete_snapshot(&self, vol: &Volume, snap: &str) -> Result<()>;
    /// Renames a snapshot.
    fn rename_snapshot(&self, vol: &Volume, snap: &str, new_name: &str) -> Result<()>;
    /// Replaces the volume's content with the snapshot's.
    fn restore_snapshot(&self, vol: &Volume, snap: &str) -> Result<()>;
    /// Snapshot names, sorted.
    fn list_snapshots(&self, vol: &Volume) -> Result<Vec<String>> {
        util::list_dir_names(&vol.snapshots_dir_in(&self.spec().mount_path()))
    }
    /// Where a snapshot's files are.
    fn snapshot_path(&self, vol: &Volume, snap: &str) -> PathBuf {
        vol.snapshot_path_in(&self.spec().mount_path(), snap)
    }

    // Optimized backups.
    /// Writes a native stream of the snapshot (or, with `None`, of the volume's current
    /// state), incremental on `parent` when given. Returns the bytes written.
    fn send_volume(&self, vol: &Volume, snap: Option<&str>, parent: Option<&str>, out: &mut dyn Write) -> Result<u64> {
        let _ = (vol, snap, parent, out);
        Err(Error::Unsupported { driver: self.info().name, what: "optimized backups" })
    }
    /// Receives a stream written by `send_volume` as the snapshot `snap` or, with `None`,
    /// as the volume itself (which must not exist yet; its snapshots are received first).
    fn receive_volume(&self, vol: &Volume, snap: Option<&str>, input: &mut dyn Read) -> Result<()> {
        let _ = (vol, snap, input);
        Err(Error::Unsupported { driver: self.info().name, what: "optimized backups" })
    }
}

/// One entry of the driver table.
pub struct DriverEntry {
    /// Driver name as the API spells it.
    pub name: &'static str,
    /// Whether this host can run the driver.
    pub probe: fn() -> DriverStatus,
    /// Builds the driver for a pool (validates the config, touches nothing).
    pub new: fn(PoolSpec) -> Result<Box<dyn Driver>>,
}

/// Every storage driver berth knows. Adding a driver touches only this table.
pub static DRIVERS: &[DriverEntry] = &[
    DriverEntry { name: "dir", probe: dir::probe, new: dir::new_boxed },
    DriverEntry { name: "btrfs", probe: btrfs::probe, new: btrfs::new_boxed },
];

/// The status of every driver, in table order.
pub fn statuses() -> Vec<(&'static str, DriverStatus)> {
    DRIVERS.iter().map(|d| (d.name, (d.probe)())).collect()
}

/// Builds the driver `name` for `spec`, refusing drivers the host cannot run.
pub fn load(name: &str, spec: PoolSpec) -> Result<Box<dyn Driver>> {
    let entry = DRIVERS.iter().find(|d| d.name == name).ok_or_else(|| Error::UnknownDriver(name.to_string()))?;
    if let DriverStatus::NotOperational { reason } = (entry.probe)() {
        return Err(Error::NotOperational { driver: entry.name, reason });
    }
    let driver = (entry.new)(spec)?;
    driver.validate_pool_config()?;
    Ok(driver)
}

/// The ordinary volume types as a slice (for callers iterating a pool).
pub fn volume_types() -> &'static [VolumeType] {
    &VolumeType::ALL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_knows_dir_and_btrfs_and_never_panics() {
        let all = statuses();
        assert_eq!(all.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec!["dir", "btrfs"]);
        assert!(all[0].1.is_operational(), "dir must always be operational: {:?}", all[0].1);
        assert!(matches!(load("zfs", PoolSpec::new("p", Path::new("/tmp"), &[])), Err(Error::UnknownDriver(_))));
    }

    #[test]
    fn bad_pool_config_is_refused_by_load() {
        let spec = PoolSpec::new("p", Path::new("/tmp"), &[("bogus.key", "1")]);
        assert!(matches!(load("dir", spec), Err(Error::InvalidConfig { .. })));
    }
}

#[cfg(test)]
pub(crate) mod root_tests;

/// Test helper: unmounts a path on drop.
#[cfg(test)]
pub(crate) fn root_tests_guard(path: PathBuf) -> root_tests::MountGuard {
    root_tests::MountGuard(path)
}

/// Test helper: root plus an operational btrfs driver.
#[cfg(test)]
pub(crate) fn root_tests_btrfs_probe() -> std::result::Result<(), String> {
    root_tests::btrfs_probe()
}

#[cfg(test)]
mod bench;
