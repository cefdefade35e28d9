//! Getting the rootfs ids right for a user namespace: an idmapped mount where the
//! filesystem supports it, otherwise a one-time ownership shift (chown walk).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::idmap::IdmapSet;
use crate::sys;

/// A detached copy of `rootfs` whose ids are mapped through the user namespace `userns`.
/// Fails (EINVAL/EOPNOTSUPP/EPERM) when the filesystem cannot be idmapped.
pub fn idmapped_mount(rootfs: &Path, userns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let fd = sys::open_tree_clone(rootfs)?;
    sys::mount_setattr_idmap(fd.as_fd(), userns)?;
    Ok(fd)
}

/// The host id a file with on-disk id `disk` gets when moving from map `from` to map `to`
/// (None = unshifted, disk id == container id). Unmappable ids stay as they are.
pub fn shifted_id(disk: u32, uid: bool, from: Option<&IdmapSet>, to: Option<&IdmapSet>) -> u32 {
    let ns = match from {
        Some(m) => match m.to_ns(uid, disk as u64) {
            Some(n) => n,
            None => return disk,
        },
        None => disk as u64,
    };
    match to {
        Some(m) => m.to_host(uid, ns).map(|h| h as u32).unwrap_or(disk),
        None => ns as u32,
    }
}

/// Rewrites the ownership of every file below `root` (same filesystem only) from map
/// `from` to map `to`, keeping setuid/setgid bits that chown clears.
pub fn shift_tree(root: &Path, from: Option<&IdmapSet>, to: Option<&IdmapSet>) -> io::Result<()> {
    if from == to {
        return Ok(());
    }
    let dev = std::fs::symlink_metadata(root)?.dev();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p)?;
        if md.dev() != dev {
            continue;
        }
        let (nu, ng) = (shifted_id(md.uid(), true, from, to), shifted_id(md.gid(), false, from, to));
        if nu != md.uid() || ng != md.gid() {
            std::os::unix::fs::lchown(&p, Some(nu), Some(ng))?;
            let mode = md.permissions().mode();
            if !md.file_type().is_symlink() && mode & 0o6000 != 0 {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
        }
        if md.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idmap::{HostRange, IdmapConfig};

    #[test]
    fn id_translation() {
        let m = IdmapSet::allocate(&IdmapConfig::default(), &HostRange { uid: (100_000, 65536), gid: (100_000, 65536) }, &[]).unwrap();
        assert_eq!(shifted_id(0, true, None, Some(&m)), 100_000);
        assert_eq!(shifted_id(100_005, true, Some(&m), None), 5);
        assert_eq!(shifted_id(7, false, None, None), 7);
        // An id outside the source map is left alone.
        assert_eq!(shifted_id(5, true, Some(&m), None), 5);
    }

    #[test]
    fn shift_walk_roundtrip() {
        if !crate::testsupport::require("shift_walk_roundtrip", crate::testsupport::Tier::Root, crate::testsupport::probe_root()) {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/f"), "x").unwrap();
        std::fs::write(r.join("suid"), "x").unwrap();
        std::fs::set_permissions(r.join("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.join("link")).unwrap();
        std::os::unix::fs::lchown(r.join("etc/f"), Some(33), Some(44)).unwrap();
        let m = IdmapSet::allocate(&IdmapConfig::default(), &HostRange { uid: (100_000, 65536), gid: (200_000, 65536) }, &[]).unwrap();
        shift_tree(r, None, Some(&m)).unwrap();
        let md = std::fs::symlink_metadata(r.join("etc/f")).unwrap();
        assert_eq!((md.uid(), md.gid()), (100_033, 200_044));
        assert_eq!(std::fs::symlink_metadata(r.join("link")).unwrap().uid(), 100_000);
        assert_eq!(std::fs::metadata(r.join("suid")).unwrap().permissions().mode() & 0o7777, 0o4755);
        // The host's /etc/passwd behind the symlink was not touched.
        assert_eq!(std::fs::metadata("/etc/passwd").unwrap().uid(), 0);
        shift_tree(r, Some(&m), None).unwrap();
        let md = std::fs::symlink_metadata(r.join("etc/f")).unwrap();
        assert_eq!((md.uid(), md.gid()), (33, 44));
    }
}
