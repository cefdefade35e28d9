//! File access inside a container's rootfs, for running and stopped containers. Every
//! path is resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) below the root,
//! so `..` and planted symlinks (absolute or relative) stay inside it. Ownership is given
//! and reported in container ids and mapped through the container's id map.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::sys::stat::{fchmod, fstatat, Mode};
use nix::unistd::{fchown, fchownat, unlinkat, UnlinkatFlags};

use super::{ioe, Container, Error};
use crate::idmap::IdmapSet;
use crate::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    Other,
}

/// What `stat` reports (ids are container ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// For a symlink, its target.
    pub target: Option<PathBuf>,
}

/// A handle on a container's filesystem.
#[derive(Debug)]
pub struct Files {
    root: OwnedFd,
    /// How container ids appear through `root` (None = identity).
    map: Option<IdmapSet>,
    /// For a running unprivileged container: new inodes are created from inside its
    /// user and mount namespaces (an idmapped mount refuses creators it cannot map).
    creator: Option<creator::Creator>,
}

mod creator;

impl Files {
    /// For a running container: its root as its init sees it (/proc/<pid>/root).
    pub fn for_container(ct: &Container) -> Result<Self, Error> {
        ct.ensure_running()?;
        let root = sys::open_path(Path::new(&format!("/proc/{}/root", ct.rt.pid))).map_err(ioe("open container root"))?;
        let creator = match ct.rt.idmap {
            Some(_) => Some(creator::Creator::open(ct.rt.pid)?),
            None => None,
        };
        Ok(Files { root, map: ct.rt.idmap.clone(), creator })
    }

    /// For a stopped container: the rootfs on disk, shifted by `disk_idmap`
    /// (`volatile.last_state.idmap`; None when unshifted).
    pub fn for_stopped(rootfs: &Path, disk_idmap: Option<IdmapSet>) -> Result<Self, Error> {
        let root = sys::open_path(rootfs).map_err(ioe(format!("open {}", rootfs.display())))?;
        Ok(Files { root, map: disk_idmap.filter(|m| !m.is_identity()), creator: None })
    }

    fn open(&self, path: &Path, flags: i32, mode: u32) -> Result<OwnedFd, Error> {
        sys::open_in_root(self.root.as_fd(), path, flags, mode).map_err(ioe(format!("open {}", path.display())))
    }

    fn host_ids(&self, uid: u32, gid: u32) -> Result<(u32, u32), Error> {
        match &self.map {
            None => Ok((uid, gid)),
            Some(m) => match (m.to_host(true, uid as u64), m.to_host(false, gid as u64)) {
                (Some(u), Some(g)) => Ok((u as u32, g as u32)),
                _ => Err(Error::Invalid(format!("ids {uid}:{gid} are not mapped in the container"))),
            },
        }
    }

    fn ns_ids(&self, uid: u32, gid: u32) -> (u32, u32) {
        match &self.map {
            None => (uid, gid),
            Some(m) => (
                m.to_ns(true, uid as u64).map(|v| v as u32).unwrap_or(65534),
                m.to_ns(false, gid as u64).map(|v| v as u32).unwrap_or(65534),
            ),
        }
    }

    /// Splits a path into (parent dir fd, final name), refusing names that are not plain.
    fn parent_and_name<'a>(&self, path: &'a Path) -> Result<(OwnedFd, &'a OsStr), Error> {
        let name = match path.components().next_back() {
            Some(Component::Normal(n)) => n,
            _ => return Err(Error::Invalid(format!("{} does not name a file", path.display()))),
        };
        let parent = path.parent().unwrap_or(Path::new("/"));
        Ok((self.open(parent, libc::O_PATH | libc::O_DIRECTORY, 0)?, name))
    }

    /// lstat of a path (a final symlink is reported, not followed).
    pub fn stat(&self, path: &Path) -> Result<FileInfo, Error> {
        let (parent, name) = match path.components().next_back() {
            Some(Component::Normal(_)) => self.parent_and_name(path)?,
            _ => (self.open(path, libc::O_PATH | libc::O_DIRECTORY, 0)?, OsStr::new(".")),
        };
        let st = fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| ioe(format!("stat {}", path.display()))(e.into()))?;
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        };
        let target = if kind == FileKind::Symlink {
            Some(PathBuf::from(nix::fcntl::readlinkat(&parent, name).map_err(|e| ioe("readlink")(e.into()))?))
        } else {
            None
        };
        let (uid, gid) = self.ns_ids(st.st_uid, st.st_gid);
        Ok(FileInfo { kind, mode: st.st_mode & 0o7777, uid, gid, size: st.st_size as u64, target })
    }

    /// Opens a file for reading (symlinks followed, inside the root).
    pub fn read(&self, path: &Path) -> Result<std::fs::File, Error> {
        Ok(std::fs::File::from(self.open(path, libc::O_RDONLY, 0)?))
    }

    /// Names in a directory.
    pub fn list(&self, path: &Path) -> Result<Vec<String>, Error> {
        let fd = self.open(path, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(|e| ioe("read dir")(e.into()))?;
        let mut out: Vec<String> = dir
            .iter()
            .filter_map(|e| e.ok())
            .map(|e| String::from_utf8_lossy(e.file_name().to_bytes()).into_owned())
            .filter(|n| n != "." && n != "..")
            .collect();
        out.sort();
        Ok(out)
    }

    /// Creates or replaces a file with the content of `data`.
    pub fn write(&self, path: &Path, uid: u32, gid: u32, mode: u32, data: &mut dyn Read) -> Result<u64, Error> {
        let (hu, hg) = self.host_ids(uid, gid)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
        let fd = match &self.creator {
            Some(c) => c.run(creator::Op::Open { path, flags, mode: mode & 0o7777 })?
                .ok_or_else(|| Error::Setup("file helper returned no descriptor".into()))?,
            None => self.open(path, flags, mode & 0o7777)?,
        };
        fchown(&fd, Some(hu.into()), Some(hg.into())).map_err(|e| ioe("chown")(e.into()))?;
        fchmod(&fd, Mode::from_bits_truncate(mode & 0o7777)).map_err(|e| ioe("chmod")(e.into()))?;
        let mut f = std::fs::File::from(fd);
        let n = std::io::copy(data, &mut f).map_err(ioe(format!("write {}", path.display())))?;
        f.flush().map_err(ioe("flush"))?;
        Ok(n)
    }

    /// Creates a directory (its parent must exist).
    pub fn mkdir(&self, path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), Error> {
        let (hu, hg) = self.host_ids(uid, gid)?;
        let (parent, name) = self.parent_and_name(path)?;
        match &self.creator {
            Some(c) => {
                c.run(creator::Op::Mkdir { path, mode: mode & 0o7777 })?;
            }
            None => nix::sys::stat::mkdirat(&parent, name, Mode::from_bits_truncate(mode & 0o7777))
                .map_err(|e| ioe(format!("mkdir {}", path.display()))(e.into()))?,
        }
        fchownat(&parent, name, Some(hu.into()), Some(hg.into()), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| ioe("chown")(e.into()))
    }

    /// Creates a symlink (the target is stored as given and resolved in-root when used).
    pub fn symlink(&self, path: &Path, target: &Path, uid: u32, gid: u32) -> Result<(), Error> {
        let (hu, hg) = self.host_ids(uid, gid)?;
        let (parent, name) = self.parent_and_name(path)?;
        match &self.creator {
            Some(c) => {
                c.run(creator::Op::Symlink { path, target })?;
            }
            None => nix::unistd::symlinkat(target, &parent, name)
                .map_err(|e| ioe(format!("symlink {}", path.display()))(e.into()))?,
        }
        fchownat(&parent, name, Some(hu.into()), Some(hg.into()), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| ioe("chown")(e.into()))
    }

    /// Removes a file, symlink or empty directory (never follows a final symlink).
    pub fn delete(&self, path: &Path) -> Result<(), Error> {
        let (parent, name) = self.parent_and_name(path)?;
        if name.as_bytes().contains(&b'/') {
            return Err(Error::Invalid("bad name".into()));
        }
        let st = fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| ioe(format!("stat {}", path.display()))(e.into()))?;
        let flag = if st.st_mode & libc::S_IFMT == libc::S_IFDIR { UnlinkatFlags::RemoveDir } else { UnlinkatFlags::NoRemoveDir };
        unlinkat(&parent, name, flag).map_err(|e| ioe(format!("delete {}", path.display()))(e.into()))
    }
}

#[cfg(test)]
mod tests;
