//! The layout of a virtual-machine volume (and of the image volume it is cloned from).
//!
//! A VM volume is a directory like a container's: `root.img` (the root disk, qcow2 or raw)
//! instead of `rootfs/`, `metadata.yaml` and `templates/` as for containers, and optionally
//! `boot/vmlinuz`, `boot/initrd.img` and `boot/cmdline` (berth's direct kernel boot). Copies
//! and snapshots are the drivers' ordinary tree operations; this module only knows the names
//! and checks that an unpacked volume has the shape the VM driver may trust.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The root disk inside a VM volume.
pub const ROOT_DISK: &str = "root.img";
/// The directory of the direct kernel boot files.
pub const BOOT_DIR: &str = "boot";
/// The kernel inside [`BOOT_DIR`].
pub const BOOT_KERNEL: &str = "vmlinuz";
/// The initrd inside [`BOOT_DIR`].
pub const BOOT_INITRD: &str = "initrd.img";
/// The kernel command line inside [`BOOT_DIR`].
pub const BOOT_CMDLINE: &str = "cmdline";
/// The root disk size of `lxc init --empty --vm` when the root disk has no `size`.
pub const DEFAULT_ROOT_SIZE: u64 = 10 << 30;
/// The largest `boot/cmdline` read.
const MAX_CMDLINE: u64 = 4096;

/// Errors of VM volume layout checks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the VM driver reads is missing or is not what it must be.
    #[error("invalid VM volume: {path} {reason}")]
    Layout { path: String, reason: String },
    /// A file operation failed.
    #[error("{op} {path}")]
    Io { op: &'static str, path: PathBuf, #[source] source: std::io::Error },
}

/// The direct-boot files of a VM volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// `boot/vmlinuz`.
    pub kernel: PathBuf,
    /// `boot/initrd.img`, when present.
    pub initrd: Option<PathBuf>,
    /// The content of `boot/cmdline` (trimmed), when present.
    pub cmdline: Option<String>,
}

/// `<volume>/root.img`.
pub fn root_disk(volume: &Path) -> PathBuf {
    volume.join(ROOT_DISK)
}

/// The direct-boot files of the VM volume at `volume`, or `None` when it has no kernel.
/// Every present boot file must be a regular file (never a symlink out of the volume).
pub fn boot_files(volume: &Path) -> Result<Option<BootFiles>, Error> {
    check_layout(volume)?;
    let boot = volume.join(BOOT_DIR);
    let kernel = boot.join(BOOT_KERNEL);
    if fs::symlink_metadata(&kernel).is_err() {
        return Ok(None);
    }
    let initrd = boot.join(BOOT_INITRD);
    let initrd = fs::symlink_metadata(&initrd).is_ok().then_some(initrd);
    let cmdline_path = boot.join(BOOT_CMDLINE);
    let cmdline = if fs::symlink_metadata(&cmdline_path).is_ok() {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&cmdline_path)
            .map_err(|source| Error::Io { op: "open", path: cmdline_path.clone(), source })?;
        let mut s = String::new();
        f.take(MAX_CMDLINE)
            .read_to_string(&mut s)
            .map_err(|source| Error::Io { op: "read", path: cmdline_path.clone(), source })?;
        Some(s.trim().to_string())
    } else {
        None
    };
    Ok(Some(BootFiles { kernel, initrd, cmdline }))
}

/// Checks what the VM driver will open: `root.img` is a regular file; `boot` (if present) is
/// a real directory whose known entries are regular files; `boot/cmdline` is small.
pub fn check_layout(volume: &Path) -> Result<(), Error> {
    let layout = |path: &str, reason: &str| Error::Layout { path: path.to_string(), reason: reason.to_string() };
    match fs::symlink_metadata(volume.join(ROOT_DISK)) {
        Ok(m) if m.file_type().is_file() => {}
        Ok(_) => return Err(layout(ROOT_DISK, "is not a regular file")),
        Err(_) => return Err(layout(ROOT_DISK, "is missing")),
    }
    let boot = volume.join(BOOT_DIR);
    match fs::symlink_metadata(&boot) {
        Err(_) => return Ok(()),
        Ok(m) if !m.file_type().is_dir() => return Err(layout(BOOT_DIR, "is not a directory")),
        Ok(_) => {}
    }
    for name in [BOOT_KERNEL, BOOT_INITRD, BOOT_CMDLINE] {
        let rel = format!("{BOOT_DIR}/{name}");
        match fs::symlink_metadata(boot.join(name)) {
            Err(_) => {}
            Ok(m) if !m.file_type().is_file() => return Err(layout(&rel, "is not a regular file")),
            Ok(m) if name == BOOT_CMDLINE && m.len() > MAX_CMDLINE => {
                return Err(layout(&rel, &format!("is larger than {MAX_CMDLINE} bytes")))
            }
            Ok(_) => {}
        }
    }
    if fs::symlink_metadata(boot.join(BOOT_INITRD)).is_ok() && fs::symlink_metadata(boot.join(BOOT_KERNEL)).is_err() {
        return Err(layout("boot/initrd.img", "is present without boot/vmlinuz"));
    }
    Ok(())
}

/// Fills a new, empty VM volume: a sparse raw `root.img` of `size` bytes.
pub fn fill_empty(volume: &Path, size: u64) -> Result<(), Error> {
    let path = root_disk(volume);
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|source| Error::Io { op: "create", path: path.clone(), source })?;
    f.set_len(size).map_err(|source| Error::Io { op: "truncate", path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_volume_has_a_sparse_root_disk() {
        let dir = tempfile::tempdir().unwrap();
        fill_empty(dir.path(), 1 << 30).unwrap();
        let m = fs::metadata(dir.path().join(ROOT_DISK)).unwrap();
        assert_eq!(m.len(), 1 << 30);
        assert!(std::os::unix::fs::MetadataExt::blocks(&m) < 64, "root.img is not sparse");
        assert!(check_layout(dir.path()).is_ok());
        assert_eq!(boot_files(dir.path()).unwrap(), None);
        // A second fill never overwrites.
        assert!(fill_empty(dir.path(), 1).is_err());
    }

    #[test]
    fn boot_files_must_be_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path();
        fill_empty(v, 1 << 20).unwrap();
        fs::create_dir(v.join(BOOT_DIR)).unwrap();
        fs::write(v.join("boot/vmlinuz"), b"kernel").unwrap();
        fs::write(v.join("boot/cmdline"), b"console=ttyS0 quiet\n").unwrap();
        let b = boot_files(v).unwrap().unwrap();
        assert_eq!(b.kernel, v.join("boot/vmlinuz"));
        assert_eq!(b.initrd, None);
        assert_eq!(b.cmdline.as_deref(), Some("console=ttyS0 quiet"));
        std::os::unix::fs::symlink("/etc/shadow", v.join("boot/initrd.img")).unwrap();
        let e = boot_files(v).unwrap_err().to_string();
        assert!(e.contains("boot/initrd.img") && e.contains("regular file"), "{e}");
        fs::remove_file(v.join("boot/initrd.img")).unwrap();
        fs::write(v.join("boot/cmdline"), vec![b'a'; 5000]).unwrap();
        assert!(check_layout(v).unwrap_err().to_string().contains("boot/cmdline"));
    }

    #[test]
    fn root_disk_must_exist_and_not_be_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_layout(dir.path()).unwrap_err().to_string().contains("missing"));
        std::os::unix::fs::symlink("/dev/sda", dir.path().join(ROOT_DISK)).unwrap();
        assert!(check_layout(dir.path()).unwrap_err().to_string().contains("regular file"));
    }
}
