//! Subvolume ioctls (create, snapshot, delete: no process per call), and the btrfs-progs
//! CLI for the rest (quota, send, receive, mkfs) and loop devices.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::super::util::{command_error, run};
use super::super::{Error, Result};

/// The inode number of every subvolume's root directory.
const SUBVOL_ROOT_INO: u64 = 256;

fn os<P: AsRef<OsStr> + ?Sized>(p: &P) -> &OsStr {
    p.as_ref()
}

/// Whether `path` is on a btrfs filesystem.
pub fn is_btrfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).map(|s| s.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC).unwrap_or(false)
}

/// Whether `path` is the root of a subvolume.
pub fn is_subvolume(path: &Path) -> bool {
    fs::symlink_metadata(path).map(|m| m.is_dir() && m.ino() == SUBVOL_ROOT_INO).unwrap_or(false) && is_btrfs(path)
}

/// `BTRFS_IOC_SUBVOL_CREATE`: `_IOW(0x94, 14, struct btrfs_ioctl_vol_args)`.
const IOC_SUBVOL_CREATE: libc::c_ulong = 0x5000_940E;
/// `BTRFS_IOC_SNAP_DESTROY`: `_IOW(0x94, 15, struct btrfs_ioctl_vol_args)`.
const IOC_SNAP_DESTROY: libc::c_ulong = 0x5000_940F;
/// `BTRFS_IOC_SNAP_CREATE_V2`: `_IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)`.
const IOC_SNAP_CREATE_V2: libc::c_ulong = 0x5000_9417;
/// `BTRFS_SUBVOL_RDONLY`.
const SUBVOL_RDONLY: u64 = 1 << 1;

/// `struct btrfs_ioctl_vol_args` (4096 bytes).
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; 4088],
}

/// `struct btrfs_ioctl_vol_args_v2` (4096 bytes).
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; 4040],
}

const _: () = assert!(std::mem::size_of::<VolArgs>() == 4096);
const _: () = assert!(std::mem::size_of::<VolArgsV2>() == 4096);

/// The parent directory (opened) and the leaf name of `path`, for the ioctls.
fn parent_and_leaf(path: &Path) -> Result<(fs::File, Vec<u8>)> {
    let leaf = path.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
    let parent = path.parent().unwrap_or(Path::new("/"));
    if leaf.is_empty() || leaf.len() > 255 {
        return Err(Error::io("subvolume name", path, io::Error::from(io::ErrorKind::InvalidInput)));
    }
    let dir = fs::File::open(parent).map_err(|e| Error::io("open", parent, e))?;
    Ok((dir, leaf))
}

fn ioctl_result(rc: libc::c_int, op: &'static str, path: &Path) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::io(op, path, io::Error::last_os_error()))
    }
}

/// Creates an empty subvolume at `path` (ioctl; no process spawn).
pub fn subvolume_create(path: &Path) -> Result<()> {
    let (dir, leaf) = parent_and_leaf(path)?;
    let mut args = VolArgs { fd: 0, name: [0; 4088] };
    args.name[..leaf.len()].copy_from_slice(&leaf);
    // SAFETY: `dir` is an open directory and `args` is the kernel's 4096-byte struct.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), IOC_SUBVOL_CREATE as _, &mut args) };
    ioctl_result(rc, "btrfs subvolume create", path)
}

/// Snapshots the subvolume `from` as `to` (read-only if asked).
pub fn subvolume_snapshot(from: &Path, to: &Path, readonly: bool) -> Result<()> {
    let src = fs::File::open(from).map_err(|e| Error::io("open", from, e))?;
    let (dir, leaf) = parent_and_leaf(to)?;
    let mut args = VolArgsV2 { fd: src.as_raw_fd() as i64, transid: 0, flags: if readonly { SUBVOL_RDONLY } else { 0 }, unused: [0; 4], name: [0; 4040] };
    args.name[..leaf.len()].copy_from_slice(&leaf);
    // SAFETY: both descriptors are open; `args` is the kernel's 4096-byte struct.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), IOC_SNAP_CREATE_V2 as _, &mut args) };
    ioctl_result(rc, "btrfs subvolume snapshot", to)
}

fn destroy(path: &Path) -> Result<()> {
    let (dir, leaf) = parent_and_leaf(path)?;
    let mut args = VolArgs { fd: 0, name: [0; 4088] };
    args.name[..leaf.len()].copy_from_slice(&leaf);
    // SAFETY: as in subvolume_create.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), IOC_SNAP_DESTROY as _, &mut args) };
    ioctl_result(rc, "btrfs subvolume delete", path)
}

/// Deletes a subvolume, first deleting any subvolumes nested in it (deepest first).
pub fn subvolume_delete(path: &Path) -> Result<()> {
    if destroy(path).is_ok() {
        return Ok(());
    }
    let mut nested = Vec::new();
    find_nested(path, &mut nested)?;
    // Children were pushed after their parents: delete in reverse.
    for sub in nested.iter().rev() {
        make_writable(sub);
        destroy(sub)?;
    }
    destroy(path)
}

/// Nested subvolumes can be read-only snapshots (for example docker's); deleting their
/// parent needs them gone, which needs nothing more than root, but be safe.
fn make_writable(path: &Path) {
    let _ = run("btrfs", &[os("property"), os("set"), os("-ts"), path.as_os_str(), os("ro"), os("false")]);
}

fn find_nested(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = fs::read_dir(dir).map_err(|e| Error::io("readdir", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("readdir", dir, e))?;
        let ft = entry.file_type().map_err(|e| Error::io("stat", &entry.path(), e))?;
        if !ft.is_dir() {
            continue;
        }
        let p = entry.path();
        if fs::symlink_metadata(&p).map(|m| m.ino() == SUBVOL_ROOT_INO).unwrap_or(false) {
            out.push(p.clone());
        }
        find_nested(&p, out)?;
    }
    Ok(())
}

/// `btrfs quota enable` then a waiting rescan, only when quotas were off.
pub fn quota_enable(mnt: &Path) -> Result<()> {
    if run("btrfs", &[os("qgroup"), os("show"), mnt.as_os_str()]).is_ok() {
        return Ok(());
    }
    run("btrfs", &[os("quota"), os("enable"), mnt.as_os_str()])?;
    run("btrfs", &[os("quota"), os("rescan"), os("-w"), mnt.as_os_str()]).map(|_| ())
}

/// `btrfs qgroup limit <bytes|none> <path>`.
pub fn qgroup_limit(path: &Path, size: Option<u64>) -> Result<()> {
    let value = size.map(|s| s.to_string()).unwrap_or_else(|| "none".into());
    run("btrfs", &[os("qgroup"), os("limit"), os(&value), path.as_os_str()]).map(|_| ())
}

/// Streams `btrfs send [-p parent] <snapshot>` into `out`; returns the bytes written.
pub fn send(snapshot: &Path, parent: Option<&Path>, out: &mut dyn Write) -> Result<u64> {
    let mut args: Vec<&OsStr> = vec![os("send"), os("-q")];
    if let Some(p) = parent {
        args.extend([os("-p"), p.as_os_str()]);
    }
    args.push(snapshot.as_os_str());
    let mut child = Command::new("btrfs")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Command { command: "btrfs send".into(), status: "spawn".into(), stderr: e.to_string() })?;
    let copied = match child.stdout.take() {
        Some(mut stdout) => io::copy(&mut stdout, out),
        None => Ok(0),
    };
    let output = child.wait_with_output().map_err(|e| Error::io("wait btrfs send", snapshot, e))?;
    if !output.status.success() {
        return Err(command_error("btrfs", &args, &output.status, &output.stderr));
    }
    copied.map_err(|e| Error::io("btrfs send stream", snapshot, e))
}

/// Feeds `input` to `btrfs receive <dir>`.
pub fn receive(dir: &Path, input: &mut dyn Read) -> Result<()> {
    let args = [os("receive"), os("-q"), dir.as_os_str()];
    let mut child = Command::new("btrfs")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Command { command: "btrfs receive".into(), status: "spawn".into(), stderr: e.to_string() })?;
    let fed = match child.stdin.take() {
        Some(mut stdin) => io::copy(input, &mut stdin).map(|_| ()),
        None => Ok(()),
    };
    let output = child.wait_with_output().map_err(|e| Error::io("wait btrfs receive", dir, e))?;
    if !output.status.success() {
        return Err(command_error("btrfs", &args, &output.status, &output.stderr));
    }
    fed.map_err(|e| Error::io("btrfs receive stream", dir, e))
}

/// Attaches `file` to a free loop device; returns the device path.
pub fn loop_attach(file: &Path) -> Result<PathBuf> {
    let out = run("losetup", &[os("--find"), os("--show"), file.as_os_str()])?;
    Ok(PathBuf::from(out.trim()))
}

/// Detaches a loop device; on a device still in use this only marks it auto-clear, so it
/// goes away with its last user (the mount).
pub fn loop_detach(dev: &Path) -> Result<()> {
    run("losetup", &[os("-d"), dev.as_os_str()]).map(|_| ())
}

/// Loop devices backed by `file`.
pub fn loops_of(file: &Path) -> Vec<String> {
    run("losetup", &[os("-n"), os("-O"), os("NAME"), os("-j"), file.as_os_str()])
        .map(|s| s.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
        .unwrap_or_default()
}

/// `mkfs.btrfs` on a file or device.
pub fn mkfs(target: &Path, label: &str) -> Result<()> {
    run("mkfs.btrfs", &[os("-f"), os("-q"), os("-L"), os(label), target.as_os_str()]).map(|_| ())
}

/// The btrfs-progs version line, or why it is unusable.
pub fn version() -> std::result::Result<String, String> {
    let out = Command::new("btrfs").arg("--version").output().map_err(|e| format!("btrfs (btrfs-progs) not usable: {e}"))?;
    if !out.status.success() {
        return Err("btrfs --version failed".into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
