//! Making one tree identical to another in place (rsync-like): what is already the same
//! (type, size, mtime, owner, mode, link target) is left alone, the rest is replaced by a
//! copy (reflink where the filesystem allows) and what the source lacks is removed. Used
//! to move volumes between pools of any drivers and to refresh a copy without re-copying
//! unchanged files.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::util::{apply_metadata, copy_entry, remove_tree, CopyStats, Links};
use super::{Error, Result};

/// What a sync did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    /// Entries copied (new or changed).
    pub copied: u64,
    /// Entries found unchanged.
    pub unchanged: u64,
    /// Entries removed from the destination.
    pub removed: u64,
}

/// Makes the existing directory `dst` a copy of the directory `src`.
pub fn sync_tree(src: &Path, dst: &Path) -> Result<SyncStats> {
    let meta = fs::symlink_metadata(src).map_err(|e| Error::io("stat", src, e))?;
    if !meta.is_dir() || !dst.is_dir() {
        return Err(Error::io("sync (not a directory)", src, io::Error::from(io::ErrorKind::InvalidInput)));
    }
    let mut stats = SyncStats::default();
    let mut links: Links = HashMap::new();
    sync_dir(src, dst, &mut stats, &mut links)?;
    apply_metadata(src, dst, &meta)?;
    Ok(stats)
}

fn same(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.file_type() == b.file_type()
        && a.uid() == b.uid()
        && a.gid() == b.gid()
        && a.mode() == b.mode()
        && (a.is_dir() || (a.size() == b.size() && a.mtime() == b.mtime() && a.mtime_nsec() == b.mtime_nsec() && a.rdev() == b.rdev()))
}

fn sync_dir(src: &Path, dst: &Path, stats: &mut SyncStats, links: &mut Links) -> Result<()> {
    let mut wanted = std::collections::HashSet::new();
    for entry in fs::read_dir(src).map_err(|e| Error::io("readdir", src, e))? {
        let entry = entry.map_err(|e| Error::io("readdir", src, e))?;
        let name = entry.file_name();
        let (s, d) = (entry.path(), dst.join(&name));
        wanted.insert(name);
        let sm = fs::symlink_metadata(&s).map_err(|e| Error::io("stat", &s, e))?;
        let dm = fs::symlink_metadata(&d).ok();
        match dm {
            Some(dm) if sm.is_dir() && dm.is_dir() => {
                sync_dir(&s, &d, stats, links)?;
                apply_metadata(&s, &d, &sm)?;
                continue;
            }
            Some(dm) if same(&sm, &dm) && (!sm.file_type().is_symlink() || fs::read_link(&s).ok() == fs::read_link(&d).ok()) => {
                stats.unchanged += 1;
                continue;
            }
            Some(dm) => remove_entry(&d, &dm)?,
            None => {}
        }
        let mut cs = CopyStats::default();
        copy_entry(&s, &d, &sm, &mut cs, links)?;
        stats.copied += 1;
    }
    for entry in fs::read_dir(dst).map_err(|e| Error::io("readdir", dst, e))? {
        let entry = entry.map_err(|e| Error::io("readdir", dst, e))?;
        if !wanted.contains(&entry.file_name()) {
            let p = entry.path();
            let m = fs::symlink_metadata(&p).map_err(|e| Error::io("stat", &p, e))?;
            remove_entry(&p, &m)?;
            stats.removed += 1;
        }
    }
    Ok(())
}

fn remove_entry(p: &Path, m: &fs::Metadata) -> Result<()> {
    if m.is_dir() {
        remove_tree(p)
    } else {
        fs::remove_file(p).map_err(|e| Error::io("remove", p, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_makes_trees_equal_and_skips_unchanged() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::create_dir_all(a.join("d/e")).unwrap();
        fs::write(a.join("d/e/f"), "one").unwrap();
        fs::write(a.join("keep"), "same").unwrap();
        std::os::unix::fs::symlink("keep", a.join("link")).unwrap();
        super::super::util::copy_tree(&a, &b).unwrap();
        fs::write(a.join("d/e/f"), "changed!").unwrap();
        fs::write(a.join("new"), "n").unwrap();
        fs::write(b.join("extra"), "x").unwrap();
        fs::create_dir(b.join("extradir")).unwrap();
        fs::remove_file(a.join("link")).unwrap();
        std::os::unix::fs::symlink("new", a.join("link")).unwrap();
        let st = sync_tree(&a, &b).unwrap();
        assert_eq!(fs::read_to_string(b.join("d/e/f")).unwrap(), "changed!");
        assert_eq!(fs::read_to_string(b.join("new")).unwrap(), "n");
        assert_eq!(fs::read_link(b.join("link")).unwrap(), Path::new("new"));
        assert!(!b.join("extra").exists() && !b.join("extradir").exists());
        assert_eq!(st.removed, 2);
        assert_eq!(st.unchanged, 1, "{st:?}");
        assert_eq!(st.copied, 3, "{st:?}");
    }
}
