//! [`FileOps`] inside a running VM, over the guest agent.

use std::sync::Arc;

use crate::instance::{Error, FileOps, FileStat, FileType, FileWrite};
use crate::vm::agent::{AgentClient, AgentError, FileKind};

pub(super) struct VmFiles(pub(super) Arc<AgentClient>);

fn is_not_found(e: &AgentError) -> bool {
    matches!(e, AgentError::Guest { message } if message.contains("No such file") || message.contains("os error 2)"))
}

fn map(path: &str) -> impl FnOnce(AgentError) -> Error + '_ {
    move |e| {
        if is_not_found(&e) {
            return Error::NotFound(format!("{path}: no such file or directory"));
        }
        match e {
            AgentError::Guest { message } => Error::Invalid(message),
            other => Error::failed(path, super::chain(&other)),
        }
    }
}

impl FileOps for VmFiles {
    fn stat(&self, path: &str) -> Result<Option<FileStat>, Error> {
        match self.0.stat(path) {
            Ok(s) => Ok(Some(FileStat {
                kind: match s.kind {
                    FileKind::File => FileType::File,
                    FileKind::Directory => FileType::Directory,
                    FileKind::Symlink => FileType::Symlink,
                    FileKind::Other => FileType::Other,
                },
                mode: s.mode & 0o7777,
                uid: s.uid,
                gid: s.gid,
                size: s.size,
                modified: s.mtime,
                target: s.target,
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(map(path)(e)),
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.0.pull_file(path, &mut out).map_err(map(path))?;
        Ok(out)
    }

    fn list(&self, path: &str) -> Result<Vec<String>, Error> {
        let s = self.0.stat(path).map_err(map(path))?;
        Ok(s.entries.unwrap_or_default())
    }

    fn write(&self, path: &str, uid: u32, gid: u32, mode: u32, data: &[u8], append: bool) -> Result<(), Error> {
        let w = FileWrite::plan(self, path, (uid, gid, mode), data, append)?;
        self.0.push_file(path, &mut w.content.as_slice(), w.mode, w.uid, w.gid).map_err(map(path))
    }

    fn mkdir(&self, path: &str, uid: u32, gid: u32, mode: u32) -> Result<(), Error> {
        if let Some(st) = self.stat(path)? {
            if st.kind == FileType::Directory {
                return Ok(());
            }
            return Err(Error::Invalid(format!("{path} exists and is not a directory")));
        }
        self.0.mkdir(path, mode, uid, gid).map_err(map(path))
    }

    fn symlink(&self, path: &str, target: &str, uid: u32, gid: u32) -> Result<(), Error> {
        self.0.symlink(path, target, uid, gid).map_err(map(path))
    }

    fn delete(&self, path: &str) -> Result<(), Error> {
        self.0.delete(path).map_err(map(path))
    }
}
