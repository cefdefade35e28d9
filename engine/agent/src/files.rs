//! File push, pull, stat and delete inside the guest.
//!
//! A pushed file is written to a temporary sibling and renamed over the target when the
//! host ends the data, so a broken transfer never leaves a half-written file behind.

use crate::Sender;
use berth_agent::proto::{FileKind, FileStat, Msg, CHUNK};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{lchown, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file being received.
pub struct PushState {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
}

impl PushState {
    /// Appends a chunk.
    pub fn write(&mut self, data: &[u8]) -> Result<(), String> {
        self.file.write_all(data).map_err(|e| format!("write {}: {e}", self.dest.display()))
    }

    /// Flushes and moves the file into place.
    pub fn finish(&mut self) -> Result<(), String> {
        self.file.sync_all().map_err(|e| format!("sync {}: {e}", self.dest.display()))?;
        fs::rename(&self.tmp, &self.dest).map_err(|e| format!("rename to {}: {e}", self.dest.display()))
    }
}

impl Drop for PushState {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Starts a push. Directories and symlinks are made at once (`None`); files return the
/// state that receives the data frames.
pub fn push_begin(
    path: &str,
    kind: FileKind,
    mode: u32,
    uid: u32,
    gid: u32,
    target: Option<&str>,
) -> Result<Option<PushState>, String> {
    let dest = absolute(path)?;
    let chown = |p: &Path| lchown(p, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", p.display()));
    match kind {
        FileKind::Directory => {
            if !dest.is_dir() {
                fs::create_dir(&dest).map_err(|e| format!("mkdir {}: {e}", dest.display()))?;
            }
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode & 0o7777))
                .map_err(|e| format!("chmod {}: {e}", dest.display()))?;
            chown(&dest)?;
            Ok(None)
        }
        FileKind::Symlink => {
            let target = target.ok_or_else(|| "symlink push without a target".to_string())?;
            let _ = fs::remove_file(&dest);
            std::os::unix::fs::symlink(target, &dest).map_err(|e| format!("symlink {}: {e}", dest.display()))?;
            chown(&dest)?;
            Ok(None)
        }
        FileKind::File => {
            let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let tmp = dest.with_file_name(format!(".{name}.berth-push"));
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode & 0o7777)
                .open(&tmp)
                .map_err(|e| format!("create {}: {e}", dest.display()))?;
            // The umask may have cut bits off; set the mode explicitly.
            fs::set_permissions(&tmp, fs::Permissions::from_mode(mode & 0o7777))
                .map_err(|e| format!("chmod {}: {e}", dest.display()))?;
            chown(&tmp)?;
            Ok(Some(PushState { file, tmp, dest }))
        }
        FileKind::Other => Err("only files, directories and symlinks can be pushed".into()),
    }
}

/// Describes a path without following a final symlink.
pub fn stat(path: &str) -> Result<FileStat, String> {
    let p = absolute(path)?;
    let md = fs::symlink_metadata(&p).map_err(|e| format!("stat {}: {e}", p.display()))?;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        FileKind::File
    } else if ft.is_dir() {
        FileKind::Directory
    } else if ft.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Other
    };
    let entries = if kind == FileKind::Directory {
        let mut names: Vec<String> = fs::read_dir(&p)
            .map_err(|e| format!("list {}: {e}", p.display()))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Some(names)
    } else {
        None
    };
    let target = if kind == FileKind::Symlink {
        fs::read_link(&p).ok().map(|t| t.to_string_lossy().into_owned())
    } else {
        None
    };
    Ok(FileStat {
        kind,
        size: md.size(),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: md.mtime(),
        entries,
        target,
    })
}

/// Sends a path: its stat, then (for a file) data frames and an empty end frame.
pub fn pull(stream: u32, path: &str, tx: &Sender) {
    let st = match stat(path) {
        Ok(s) => s,
        Err(e) => return tx.error(stream, e),
    };
    let kind = st.kind;
    if kind != FileKind::File {
        return tx.send(&Msg::StatReply { stream, stat: st }, &[]);
    }
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return tx.error(stream, format!("open {path}: {e}")),
    };
    tx.send(&Msg::StatReply { stream, stat: st }, &[]);
    let mut buf = vec![0u8; CHUNK];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => tx.send(&Msg::Data { stream }, &buf[..n]),
            Err(e) => return tx.error(stream, format!("read {path}: {e}")),
        }
    }
    tx.send(&Msg::Data { stream }, &[]);
}

/// Removes a file, symlink or empty directory.
pub fn delete(path: &str) -> Result<(), String> {
    let p = absolute(path)?;
    let md = fs::symlink_metadata(&p).map_err(|e| format!("stat {}: {e}", p.display()))?;
    let r = if md.is_dir() { fs::remove_dir(&p) } else { fs::remove_file(&p) };
    r.map_err(|e| format!("delete {}: {e}", p.display()))
}

fn absolute(path: &str) -> Result<PathBuf, String> {
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(format!("path must be absolute: {path:?}"))
    }
}
