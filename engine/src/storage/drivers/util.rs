//! Helpers shared by the drivers: tree copies with reflink, usage, commands, mounts.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::stat::{Mode, SFlag};

use super::{Error, Result, Usage};
use crate::storage::volume::{split_storage_name, Volume, VolumeType};

/// `FICLONE`: share all extents of the source file (btrfs, XFS with reflink).
const FICLONE: libc::c_ulong = 0x4004_9409;

/// How a tree copy went: files cloned by reflink versus copied byte by byte.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files whose extents were shared.
    pub reflinked: u64,
    /// Regular files copied with read/write.
    pub copied: u64,
}

/// Copies the tree `src` to `dst` (which must not exist), keeping ownership, modes,
/// times, xattrs, symlinks, device nodes and hardlinks within the tree. Files are
/// reflinked when the filesystem allows, else copied.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<CopyStats> {
    let mut stats = CopyStats::default();
    let meta = fs::symlink_metadata(src).map_err(|e| Error::io("stat", src, e))?;
    if !meta.is_dir() {
        return Err(Error::io("copy (not a directory)", src, io::Error::from(io::ErrorKind::InvalidInput)));
    }
    let mut links = HashMap::new();
    copy_entry(src, dst, &meta, &mut stats, &mut links)?;
    Ok(stats)
}

/// (dev, inode) of multiply-linked files already copied → their copy.
pub(super) type Links = HashMap<(u64, u64), PathBuf>;

pub(super) fn copy_entry(src: &Path, dst: &Path, meta: &fs::Metadata, stats: &mut CopyStats, links: &mut Links) -> Result<()> {
    let ft = meta.file_type();
    if ft.is_file() && meta.nlink() > 1 {
        if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
            return fs::hard_link(first, dst).map_err(|e| Error::io("link", dst, e));
        }
        links.insert((meta.dev(), meta.ino()), dst.to_path_buf());
    }
    if ft.is_dir() {
        fs::create_dir(dst).map_err(|e| Error::io("mkdir", dst, e))?;
        // Owner-writable while children are created; the real mode is set afterwards.
        fs::set_permissions(dst, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| Error::io("chmod", dst, e))?;
        for entry in fs::read_dir(src).map_err(|e| Error::io("readdir", src, e))? {
            let entry = entry.map_err(|e| Error::io("readdir", src, e))?;
            let child = entry.path();
            let child_meta = fs::symlink_metadata(&child).map_err(|e| Error::io("stat", &child, e))?;
            copy_entry(&child, &dst.join(entry.file_name()), &child_meta, stats, links)?;
        }
    } else if ft.is_file() {
        copy_file(src, dst, stats)?;
    } else if ft.is_symlink() {
        let target = fs::read_link(src).map_err(|e| Error::io("readlink", src, e))?;
        std::os::unix::fs::symlink(&target, dst).map_err(|e| Error::io("symlink", dst, e))?;
    } else {
        // Device, fifo or socket: same type and number.
        let kind = SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
        nix::sys::stat::mknod(dst, kind, Mode::from_bits_truncate(meta.mode() & 0o7777), meta.rdev())
            .map_err(|e| Error::io("mknod", dst, e.into()))?;
    }
    apply_metadata(src, dst, meta)
}

/// Copies one regular file: reflink first, then plain copy.
fn copy_file(src: &Path, dst: &Path, stats: &mut CopyStats) -> Result<()> {
    let from = File::open(src).map_err(|e| Error::io("open", src, e))?;
    let to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(dst)
        .map_err(|e| Error::io("create", dst, e))?;
    // SAFETY: both descriptors are open for the duration of the call; FICLONE takes an fd.
    let rc = unsafe { libc::ioctl(to.as_raw_fd(), FICLONE as _, from.as_raw_fd()) };
    if rc == 0 {
        stats.reflinked += 1;
        return Ok(());
    }
    super::sparse::copy_sparse(&from, &to).map_err(|e| Error::io("copy", dst, e))?;
    stats.copied += 1;
    Ok(())
}

/// Ownership, then mode (chown clears setuid bits), xattrs and times; never follows symlinks.
pub(super) fn apply_metadata(src: &Path, dst: &Path, meta: &fs::Metadata) -> Result<()> {
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid())).map_err(|e| Error::io("chown", dst, e))?;
    let is_link = meta.file_type().is_symlink();
    if !is_link {
        fs::set_permissions(dst, std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777))
            .map_err(|e| Error::io("chmod", dst, e))?;
    }
    copy_xattrs(src, dst)?;
    let atime = nix::sys::time::TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dst,
        &atime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| Error::io("utimensat", dst, e.into()))
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::io("path", p, io::Error::from(io::ErrorKind::InvalidInput)))
}

/// Copies every xattr the source has; filesystems without xattrs are skipped quietly.
fn copy_xattrs(src: &Path, dst: &Path) -> Result<()> {
    let (cs, cd) = (cpath(src)?, cpath(dst)?);
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffer is valid for its length; the path is NUL-terminated.
    let n = unsafe { libc::llistxattr(cs.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Ok(());
    }
    names.truncate(n as usize);
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).map_err(|_| Error::io("xattr name", src, io::Error::from(io::ErrorKind::InvalidData)))?;
        let mut value = vec![0u8; 65536];
        // SAFETY: as above.
        let len = unsafe { libc::lgetxattr(cs.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if len < 0 {
            continue;
        }
        // SAFETY: as above; value holds `len` initialised bytes.
        let rc = unsafe { libc::lsetxattr(cd.as_ptr(), cname.as_ptr(), value.as_ptr().cast(), len as usize, 0) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            // Symlinks cannot carry user.* xattrs; filesystems may lack a namespace.
            if !matches!(err.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOTSUP)) {
                return Err(Error::io("setxattr", dst, err));
            }
        }
    }
    Ok(())
}

/// Removes a tree if it exists, making read-only directories writable on the way.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Allocated bytes under `path`, counting each inode once and staying on one filesystem.
pub fn disk_usage(path: &Path) -> Result<u64> {
    fn walk(p: &Path, dev: u64, seen: &mut std::collections::HashSet<u64>, total: &mut u64) -> Result<()> {
        let meta = fs::symlink_metadata(p).map_err(|e| Error::io("stat", p, e))?;
        if meta.dev() != dev || !seen.insert(meta.ino()) {
            return Ok(());
        }
        *total += meta.blocks() * 512;
        if meta.is_dir() {
            for entry in fs::read_dir(p).map_err(|e| Error::io("readdir", p, e))? {
                let entry = entry.map_err(|e| Error::io("readdir", p, e))?;
                walk(&entry.path(), dev, seen, total)?;
            }
        }
        Ok(())
    }
    let dev = fs::symlink_metadata(path).map_err(|e| Error::io("stat", path, e))?.dev();
    let mut total = 0;
    walk(path, dev, &mut std::collections::HashSet::new(), &mut total)?;
    Ok(total)
}

/// Creates a directory (and parents) with `mode`; fine if it exists.
pub fn ensure_dir(path: &Path, mode: u32) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(path).map_err(|e| Error::io("mkdir", path, e))?;
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).map_err(|e| Error::io("chmod", path, e))
}

/// Entry names of a directory, sorted; a missing directory is empty.
pub fn list_dir_names(path: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("readdir", path, e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("readdir", path, e))?;
        if let Some(name) = entry.file_name().to_str() {
            if !name.starts_with('.') {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Every volume found in the pool layout.
pub fn list_volumes(root: &Path) -> Result<Vec<Volume>> {
    let mut out = Vec::new();
    for vtype in VolumeType::ALL {
        for storage in list_dir_names(&root.join(vtype.dir_name()))? {
            let (project, name) = split_storage_name(vtype, &storage);
            out.push(Volume::in_project(vtype, &project, &name));
        }
    }
    Ok(out)
}

/// The hidden backup volumes (`.backup-*`) of a pool, which `list_volumes` leaves out.
pub fn list_backup_volumes(root: &Path) -> Result<Vec<Volume>> {
    let mut out = Vec::new();
    for vtype in VolumeType::ALL {
        let dir = root.join(vtype.dir_name());
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("readdir", &dir, e)),
        };
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("readdir", &dir, e))?;
            let Some(storage) = entry.file_name().to_str().map(str::to_string) else { continue };
            let (project, name) = split_storage_name(vtype, &storage);
            if name.starts_with(".backup-") {
                out.push(Volume::in_project(vtype, &project, &name));
            }
        }
    }
    Ok(out)
}

/// Creates the per-type directories of a pool.
pub fn create_layout(root: &Path) -> Result<()> {
    ensure_dir(root, 0o711)?;
    for vtype in VolumeType::ALL {
        ensure_dir(&root.join(vtype.dir_name()), 0o711)?;
        ensure_dir(&root.join(vtype.snapshots_dir_name()), 0o700)?;
    }
    Ok(())
}

/// Removes the per-type directories; refuses while any volume is left.
pub fn remove_layout(root: &Path, pool: &str) -> Result<()> {
    let left = list_volumes(root)?;
    if let Some(v) = left.first() {
        return Err(Error::Busy {
            what: "storage pool",
            name: pool.to_string(),
            reason: format!("{} volume(s) left, first {} {}", left.len(), v.vtype.as_str(), v.name),
        });
    }
    for vtype in VolumeType::ALL {
        for dir in [vtype.dir_name(), vtype.snapshots_dir_name()] {
            let p = root.join(dir);
            match fs::remove_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("rmdir", &p, e)),
            }
        }
    }
    Ok(())
}

/// Space and inode usage of the filesystem holding `path`.
pub fn fs_usage(path: &Path) -> Result<Usage> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| Error::io("statvfs", path, e.into()))?;
    let frsize = st.fragment_size() as u64;
    let blocks = st.blocks() as u64;
    let files = st.files() as u64;
    Ok(Usage {
        space_total: blocks * frsize,
        space_used: blocks.saturating_sub(st.blocks_free() as u64) * frsize,
        inodes_total: files,
        inodes_used: files.saturating_sub(st.files_free() as u64),
    })
}

/// Runs a command, returning stdout; a failure carries its stderr.
pub fn run(program: &str, args: &[&OsStr]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Command { command: program.to_string(), status: "spawn".into(), stderr: e.to_string() })?;
    if !out.status.success() {
        return Err(command_error(program, args, &out.status, &out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The error for a failed command, naming it with its arguments.
pub fn command_error(program: &str, args: &[&OsStr], status: &std::process::ExitStatus, stderr: &[u8]) -> Error {
    let argv: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    Error::Command {
        command: format!("{program} {}", argv.join(" ")),
        status: status.to_string(),
        stderr: String::from_utf8_lossy(stderr).trim().to_string(),
    }
}

/// Whether something is mounted exactly at `path` (from /proc/self/mountinfo).
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = path.as_os_str().as_bytes();
    info.lines().any(|line| line.split(' ').nth(4).map(|m| unescape_mount(m) == want).unwrap_or(false))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Unmounts `path`, retrying for a while on EBUSY: a process forked elsewhere in the
/// daemon may hold a copied descriptor for the instant before it execs (LXD's TryUnmount).
pub fn unmount(path: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match nix::mount::umount2(path, nix::mount::MntFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) if tries < 20 => {
                tracing::debug!(path = %path.display(), "umount busy, retrying");
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(Error::io("umount", path, e.into())),
        }
    }
}

/// Parses LXD sizes exactly as validation does ([`crate::config::parse_byte_size`]).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    crate::config::parse_byte_size(s).ok()
}

/// Renames `from` to `to`, failing if `to` exists.
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    if fs::symlink_metadata(to).is_ok() {
        return Err(Error::AlreadyExists { what: "path", name: to.display().to_string() });
    }
    fs::rename(from, to).map_err(|e| Error::io("rename", from, e))
}

/// A sibling path for temporary work next to `path`.
pub fn sibling_tmp(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_lxd() {
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("10B"), Some(10));
        assert_eq!(parse_size("2MiB"), Some(2 << 20));
        assert_eq!(parse_size("3GB"), Some(3_000_000_000));
        assert_eq!(parse_size("abc"), None);
        assert_eq!(parse_size("1XB"), None);
    }

    #[test]
    fn mountinfo_unescapes_octal() {
        assert_eq!(unescape_mount("/a\\040b"), b"/a b".to_vec());
        assert!(is_mountpoint(Path::new("/proc")));
    }

    #[test]
    fn copy_tree_keeps_links_modes_and_hardlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("d")).unwrap();
        fs::write(src.join("d/f"), b"hello").unwrap();
        fs::hard_link(src.join("d/f"), src.join("hl")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("abs")).unwrap();
        fs::set_permissions(src.join("d"), std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
        let dst = tmp.path().join("dst");
        let stats = copy_tree(&src, &dst).unwrap();
        assert_eq!(stats.reflinked + stats.copied, 1);
        assert_eq!(fs::read(dst.join("d/f")).unwrap(), b"hello");
        assert_eq!(fs::read_link(dst.join("abs")).unwrap(), Path::new("/etc/passwd"));
        assert_eq!(fs::metadata(dst.join("d")).unwrap().mode() & 0o7777, 0o555);
        assert_eq!(fs::metadata(dst.join("hl")).unwrap().ino(), fs::metadata(dst.join("d/f")).unwrap().ino());
        fs::set_permissions(src.join("d"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        fs::set_permissions(dst.join("d"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
}
