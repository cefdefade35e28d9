//! Safe extraction of untrusted tarballs into a directory.
//!
//! Every path is created relative to a directory descriptor of the destination; parents
//! are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` and leaves with
//! `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`, so no entry can write through a symlink, even one
//! the archive itself created. Symlinks themselves are stored as they are: an absolute
//! target resolves inside the container, which is what images need.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, fstatat, futimens, mkdirat, mknodat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use nix::fcntl::AtFlags;

use super::archive::decompress;
use super::Error;

/// Limits and policy for one extraction.
#[derive(Debug, Clone, Copy)]
pub struct UnpackOptions {
    /// Refuse the archive once this many bytes of file content have been written.
    pub max_bytes: u64,
    /// Refuse the archive after this many entries.
    pub max_entries: u64,
    /// Character and block device nodes are allowed (privileged images only).
    pub allow_devices: bool,
    /// Apply `SCHILY.xattr.*` records to files and directories.
    pub xattrs: bool,
    /// The largest virtual size of a VM image's disk, in bytes.
    pub max_disk_size: u64,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions { max_bytes: 64 << 30, max_entries: 10_000_000, allow_devices: false, xattrs: true, max_disk_size: 256 << 30 }
    }
}

/// What an extraction wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    /// Entries created.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Extracts one or more archives into a directory, sharing one budget.
pub struct Unpacker {
    root: OwnedFd,
    root_path: PathBuf,
    opts: UnpackOptions,
    stats: UnpackStats,
    /// Regular files extracted so far (paths relative to the root): valid hardlink targets.
    files: HashSet<Vec<u8>>,
    /// Directory metadata, applied last so read-only directories can still be filled.
    dirs: Vec<(Vec<u8>, u32, i64)>,
}

/// A destination-relative path split into components.
type Components = Vec<Vec<u8>>;

impl Unpacker {
    /// Prepares to extract into the existing directory `dest`.
    pub fn new(dest: &Path, opts: UnpackOptions) -> Result<Unpacker, Error> {
        let root = openat(AT_FDCWD, dest, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| Error::Io { op: "open destination", path: dest.to_path_buf(), source: e.into() })?;
        Ok(Unpacker { root, root_path: dest.to_path_buf(), opts, stats: UnpackStats::default(), files: HashSet::new(), dirs: Vec::new() })
    }

    /// Extracts a (possibly compressed) tar stream under `prefix` (`""` or e.g. `"rootfs"`).
    pub fn unpack<R: Read>(&mut self, reader: R, prefix: &str) -> Result<(), Error> {
        let decoded = decompress(BufReader::with_capacity(1 << 16, reader))?;
        let mut archive = tar::Archive::new(decoded);
        let prefix: Components = prefix.split('/').filter(|c| !c.is_empty()).map(|c| c.as_bytes().to_vec()).collect();
        let entries = archive.entries().map_err(|e| Error::Corrupt { entry: String::new(), source: e })?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::Corrupt { entry: String::new(), source: e })?;
            self.extract(entry, &prefix, b"")?;
        }
        Ok(())
    }

    /// Extracts one entry of a larger archive whose names (and hardlink targets) start
    /// with `strip/`; that part is removed. The `strip` directory itself maps to the root.
    pub fn unpack_entry<R: Read>(&mut self, entry: tar::Entry<'_, R>, strip: &str) -> Result<(), Error> {
        self.extract(entry, &Vec::new(), strip.trim_end_matches('/').as_bytes())
    }

    /// What has been written so far.
    pub fn stats(&self) -> UnpackStats {
        self.stats
    }

    /// Applies directory modes and times; returns the totals.
    pub fn finish(mut self) -> Result<UnpackStats, Error> {
        // Deepest first, so setting a parent's mtime is not undone by its children.
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.0.len()));
        for (rel, mode, mtime) in dirs {
            let comps = split_rel(&rel);
            let Some((leaf, parent)) = comps.split_last() else { continue };
            let entry = String::from_utf8_lossy(&rel).into_owned();
            let pfd = self.open_dir(parent, false, &entry)?;
            let leaf_c = cstr(leaf, &entry)?;
            // Not O_PATH: fchmod and futimens need a real descriptor.
            let fd = openat(pfd.as_fd(), leaf_c.as_c_str(), OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| self.io("open", &rel, e))?;
            fchmod(fd.as_fd(), Mode::from_bits_truncate(mode & 0o7777)).map_err(|e| self.io("chmod", &rel, e))?;
            let t = TimeSpec::new(mtime, 0);
            futimens(fd.as_fd(), &t, &t).map_err(|e| self.io("utimes", &rel, e))?;
        }
        Ok(self.stats)
    }

    fn io(&self, op: &'static str, rel: &[u8], e: Errno) -> Error {
        Error::Io { op, path: self.root_path.join(String::from_utf8_lossy(rel).as_ref()), source: e.into() }
    }

    fn extract<R: Read>(&mut self, mut entry: tar::Entry<'_, R>, prefix: &Components, strip: &[u8]) -> Result<(), Error> {
        let full_raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&full_raw).into_owned();
        let raw = strip_prefix(&full_raw, strip).ok_or_else(|| Error::Unsafe { entry: name.clone(), reason: "outside the expected directory".into() })?;
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
            return Ok(());
        }
        self.stats.entries += 1;
        if self.stats.entries > self.opts.max_entries {
            return Err(Error::TooLarge { entry: name, limit: format!("{} entries", self.opts.max_entries) });
        }
        let raw = if prefix.is_empty() && strip.is_empty() { strip_root_in_layout(raw) } else { raw };
        let rel = normalize(&raw).map_err(|reason| Error::Unsafe { entry: name.clone(), reason })?;
        let Some((leaf, parent_rel)) = rel.split_last() else {
            return Ok(()); // "./": the destination itself.
        };
        let parent: Components = prefix.iter().cloned().chain(parent_rel.iter().cloned()).collect();
        let full = join(&parent, leaf);
        let (uid, gid, xattrs) = owner_and_xattrs(&mut entry, self.opts.xattrs).map_err(|e| Error::Corrupt { entry: name.clone(), source: e })?;
        let header = entry.header();
        let mode = header.mode().map_err(|e| Error::Corrupt { entry: name.clone(), source: e })?;
        let mtime = header.mtime().unwrap_or(0) as i64;
        let dir = self.open_dir(&parent, true, &name)?;
        let leaf_c = cstr(leaf, &name)?;

        match kind {
            tar::EntryType::Directory => {
                match mkdirat(dir.as_fd(), leaf_c.as_c_str(), Mode::from_bits_truncate(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EEXIST) if self.is_dir_at(&dir, &leaf_c) => {}
                    Err(Errno::EEXIST) => {
                        self.remove_leaf(&dir, &leaf_c, &name)?;
                        mkdirat(dir.as_fd(), leaf_c.as_c_str(), Mode::from_bits_truncate(0o700)).map_err(|e| self.io("mkdir", &full, e))?;
                    }
                    Err(e) => return Err(self.io("mkdir", &full, e)),
                }
                fchownat(dir.as_fd(), leaf_c.as_c_str(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| self.io("chown", &full, e))?;
                if !xattrs.is_empty() {
                    let fd = openat(dir.as_fd(), leaf_c.as_c_str(), OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                        .map_err(|e| self.io("open", &full, e))?;
                    set_xattrs(&fd, &xattrs);
                }
                self.files.remove(&full);
                self.dirs.push((full, mode, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.remove_leaf(&dir, &leaf_c, &name)?;
                let fd = openat(
                    dir.as_fd(),
                    leaf_c.as_c_str(),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| self.io("create", &full, e))?;
                let mut file = File::from(fd);
                self.copy_limited(&mut entry, &mut file, &name)?;
                fchown(file.as_fd(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(|e| self.io("chown", &full, e))?;
                fchmod(file.as_fd(), Mode::from_bits_truncate(mode & 0o7777)).map_err(|e| self.io("chmod", &full, e))?;
                set_xattrs(&file, &xattrs);
                let t = TimeSpec::new(mtime, 0);
                futimens(file.as_fd(), &t, &t).map_err(|e| self.io("utimes", &full, e))?;
                self.files.insert(full);
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|c| c.into_owned()).unwrap_or_default();
                if target.is_empty() {
                    return Err(Error::Unsafe { entry: name, reason: "symlink without a target".into() });
                }
                check_symlink(&target, parent_rel.len()).map_err(|reason| Error::Unsafe { entry: name.clone(), reason })?;
                self.remove_leaf(&dir, &leaf_c, &name)?;
                let target_c = cstr(&target, &name)?;
                symlinkat(target_c.as_c_str(), dir.as_fd(), leaf_c.as_c_str()).map_err(|e| self.io("symlink", &full, e))?;
                fchownat(dir.as_fd(), leaf_c.as_c_str(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| self.io("chown", &full, e))?;
                let t = TimeSpec::new(mtime, 0);
                nix::sys::stat::utimensat(dir.as_fd(), leaf_c.as_c_str(), &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
                    .map_err(|e| self.io("utimes", &full, e))?;
                self.files.remove(&full);
            }
            tar::EntryType::Link => {
                let full_target = entry.link_name_bytes().map(|c| c.into_owned()).unwrap_or_default();
                let target = strip_prefix(&full_target, strip)
                    .ok_or_else(|| Error::Unsafe { entry: name.clone(), reason: "hardlink target outside the expected directory".into() })?;
                let trel = normalize(&target).map_err(|reason| Error::Unsafe { entry: name.clone(), reason: format!("hardlink target: {reason}") })?;
                let Some((tleaf, tparent_rel)) = trel.split_last() else {
                    return Err(Error::Unsafe { entry: name, reason: "hardlink to the archive root".into() });
                };
                let tparent: Components = prefix.iter().cloned().chain(tparent_rel.iter().cloned()).collect();
                let tfull = join(&tparent, tleaf);
                if !self.files.contains(&tfull) {
                    return Err(Error::Unsafe {
                        entry: name,
                        reason: format!("hardlink target {:?} is not an earlier file of the archive", String::from_utf8_lossy(&target)),
                    });
                }
                if tfull == full {
                    return Ok(());
                }
                let tdir = self.open_dir(&tparent, false, &name)?;
                let tleaf_c = cstr(tleaf, &name)?;
                self.remove_leaf(&dir, &leaf_c, &name)?;
                linkat(tdir.as_fd(), tleaf_c.as_c_str(), dir.as_fd(), leaf_c.as_c_str(), AtFlags::empty()).map_err(|e| self.io("link", &full, e))?;
                self.files.insert(full);
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (kind_flag, rdev) = match kind {
                    tar::EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        if !self.opts.allow_devices {
                            return Err(Error::Unsafe { entry: name, reason: "device node in an image for unprivileged use".into() });
                        }
                        let major = header.device_major().ok().flatten().unwrap_or(0);
                        let minor = header.device_minor().ok().flatten().unwrap_or(0);
                        let flag = if kind == tar::EntryType::Char { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
                        (flag, libc::makedev(major, minor))
                    }
                };
                self.remove_leaf(&dir, &leaf_c, &name)?;
                mknodat(dir.as_fd(), leaf_c.as_c_str(), kind_flag, Mode::from_bits_truncate(0o600), rdev).map_err(|e| self.io("mknod", &full, e))?;
                fchownat(dir.as_fd(), leaf_c.as_c_str(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| self.io("chown", &full, e))?;
                nix::sys::stat::fchmodat(dir.as_fd(), leaf_c.as_c_str(), Mode::from_bits_truncate(mode & 0o7777), nix::sys::stat::FchmodatFlags::FollowSymlink)
                    .map_err(|e| self.io("chmod", &full, e))?;
                self.files.remove(&full);
            }
            other => {
                return Err(Error::Unsafe { entry: name, reason: format!("unsupported entry type {other:?}") });
            }
        }
        Ok(())
    }

    /// Copies file content, aborting once the archive's total passes the limit. Blocks of
    /// zeros become holes (sparse entries and zero-filled disks stay sparse).
    fn copy_limited<R: Read>(&mut self, from: &mut R, to: &mut File, entry: &str) -> Result<(), Error> {
        let mut buf = vec![0u8; 1 << 16];
        let mut pos = 0u64;
        loop {
            let n = super::sparse_tar::read_full(from, &mut buf).map_err(|e| Error::Corrupt { entry: entry.to_string(), source: e })?;
            if n == 0 {
                break;
            }
            self.stats.bytes += n as u64;
            if self.stats.bytes > self.opts.max_bytes {
                return Err(Error::TooLarge { entry: entry.to_string(), limit: format!("{} bytes expanded", self.opts.max_bytes) });
            }
            for (off, run) in super::sparse_tar::data_runs(&buf[..n]) {
                to.write_all_at(run, pos + off as u64).map_err(|e| Error::Io { op: "write", path: self.root_path.join(entry), source: e })?;
            }
            pos += n as u64;
        }
        to.set_len(pos).map_err(|e| Error::Io { op: "truncate", path: self.root_path.join(entry), source: e })
    }

    /// Opens a directory below the root without following any symlink; creates missing
    /// components (0755, root-owned) when `create`.
    fn open_dir(&self, comps: &[Vec<u8>], create: bool, entry: &str) -> Result<OwnedFd, Error> {
        let how = || {
            OpenHow::new()
                .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS)
        };
        let unsafe_path = |e: Errno| match e {
            Errno::ELOOP => Some("path passes through a symlink"),
            Errno::ENOTDIR => Some("path passes through a non-directory"),
            Errno::EXDEV => Some("path escapes the destination"),
            _ => None,
        };
        if comps.is_empty() {
            return openat2(self.root.as_fd(), ".", how()).map_err(|e| self.io("open", b".", e));
        }
        let joined = comps.join(&b'/');
        let path = cstr(&joined, entry)?;
        match openat2(self.root.as_fd(), path.as_c_str(), how()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) if create => {}
            Err(e) => {
                return Err(match unsafe_path(e) {
                    Some(reason) => Error::Unsafe { entry: entry.to_string(), reason: reason.into() },
                    None => self.io("open", &joined, e),
                })
            }
        }
        // Walk and create component by component.
        let mut cur = openat2(self.root.as_fd(), ".", how()).map_err(|e| self.io("open", b".", e))?;
        for c in comps {
            let cc = cstr(c, entry)?;
            let next = match openat2(cur.as_fd(), cc.as_c_str(), how()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    match mkdirat(cur.as_fd(), cc.as_c_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(self.io("mkdir", c, e)),
                    }
                    openat2(cur.as_fd(), cc.as_c_str(), how()).map_err(|e| match unsafe_path(e) {
                        Some(reason) => Error::Unsafe { entry: entry.to_string(), reason: reason.into() },
                        None => self.io("open", c, e),
                    })?
                }
                Err(e) => {
                    return Err(match unsafe_path(e) {
                        Some(reason) => Error::Unsafe { entry: entry.to_string(), reason: reason.into() },
                        None => self.io("open", c, e),
                    })
                }
            };
            cur = next;
        }
        Ok(cur)
    }

    fn is_dir_at(&self, dir: &OwnedFd, leaf: &CString) -> bool {
        fstatat(dir.as_fd(), leaf.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .unwrap_or(false)
    }

    /// Removes a non-directory at the leaf (a later entry replaces an earlier one, as in
    /// tar); a directory there is an error.
    fn remove_leaf(&self, dir: &OwnedFd, leaf: &CString, entry: &str) -> Result<(), Error> {
        match fstatat(dir.as_fd(), leaf.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(self.io("stat", entry.as_bytes(), e)),
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                Err(Error::Unsafe { entry: entry.to_string(), reason: "replaces a directory".into() })
            }
            Ok(_) => unlinkat(dir.as_fd(), leaf.as_c_str(), UnlinkatFlags::NoRemoveDir).map_err(|e| self.io("unlink", entry.as_bytes(), e)),
        }
    }
}

/// Removes `strip/` (or a whole `strip`) from the front of `raw`; `None` when it does not
/// start there. An empty `strip` keeps `raw`.
fn strip_prefix(raw: &[u8], strip: &[u8]) -> Option<Vec<u8>> {
    if strip.is_empty() {
        return Some(raw.to_vec());
    }
    let raw = raw.strip_prefix(b"./").unwrap_or(raw);
    let rest = raw.strip_prefix(strip)?;
    match rest.first() {
        None => Some(Vec::new()),
        Some(b'/') => Some(rest[1..].to_vec()),
        Some(_) => None,
    }
}

/// GNU tar, and so LXD, strips a leading `/` from member names, and images in the wild
/// (pylxd's test image has `/rootfs/etc/inittab`) rely on it. It is stripped here only when
/// the path stays inside the image layout (`/rootfs/…`, `/templates/…`); any other absolute
/// path is still refused by [`normalize`].
fn strip_root_in_layout(raw: Vec<u8>) -> Vec<u8> {
    let trimmed: &[u8] = {
        let mut t = raw.as_slice();
        while let Some(rest) = t.strip_prefix(b"/") {
            t = rest;
        }
        t
    };
    let first = trimmed.split(|b| *b == b'/').next().unwrap_or_default();
    if trimmed.len() < raw.len() && (first == b"rootfs" || first == b"templates") {
        trimmed.to_vec()
    } else {
        raw
    }
}

/// Splits an archive path into components, refusing absolute paths and `..`.
pub fn normalize(raw: &[u8]) -> Result<Components, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    if raw.contains(&0) {
        return Err("NUL in path".into());
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("`..` component".into()),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

/// A relative symlink may not climb above the archive root (`depth` is the number of
/// directories above the link inside the archive); absolute targets are container paths.
fn check_symlink(target: &[u8], depth: usize) -> Result<(), String> {
    if target.first() == Some(&b'/') {
        return Ok(());
    }
    let mut level = depth as i64;
    for c in target.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                level -= 1;
                if level < 0 {
                    return Err(format!("symlink target {:?} points outside the archive", String::from_utf8_lossy(target)));
                }
            }
            _ => level += 1,
        }
    }
    Ok(())
}

fn join(parent: &Components, leaf: &[u8]) -> Vec<u8> {
    let mut v = parent.join(&b'/');
    if !v.is_empty() {
        v.push(b'/');
    }
    v.extend_from_slice(leaf);
    v
}

fn split_rel(rel: &[u8]) -> Components {
    rel.split(|b| *b == b'/').filter(|c| !c.is_empty()).map(|c| c.to_vec()).collect()
}

fn cstr(bytes: &[u8], entry: &str) -> Result<CString, Error> {
    CString::new(bytes).map_err(|_| Error::Unsafe { entry: entry.to_string(), reason: "NUL in name".into() })
}

type Xattrs = Vec<(CString, Vec<u8>)>;

/// Numeric owner (PAX `uid`/`gid` win over the header) and `SCHILY.xattr.*` records.
fn owner_and_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, want_xattrs: bool) -> io::Result<(u32, u32, Xattrs)> {
    let mut uid = entry.header().uid()?;
    let mut gid = entry.header().gid()?;
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            if key == "uid" {
                uid = ext.value().ok().and_then(|v| v.parse().ok()).unwrap_or(uid);
            } else if key == "gid" {
                gid = ext.value().ok().and_then(|v| v.parse().ok()).unwrap_or(gid);
            } else if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                if want_xattrs {
                    if let Ok(c) = CString::new(name) {
                        xattrs.push((c, ext.value_bytes().to_vec()));
                    }
                }
            }
        }
    }
    let uid = u32::try_from(uid).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "uid out of range"))?;
    let gid = u32::try_from(gid).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "gid out of range"))?;
    Ok((uid, gid, xattrs))
}

/// Best effort: a filesystem without a namespace (say `trusted.*` unprivileged) skips it.
fn set_xattrs<F: AsRawFd>(fd: &F, xattrs: &Xattrs) {
    for (name, value) in xattrs {
        // SAFETY: valid fd, NUL-terminated name, value slice valid for its length.
        unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    }
}
