//! [`FileOps`] over the runtime's in-root file access.

use std::io::Read;
use std::path::Path;

use crate::container::{self as rt, FileKind, Files};
use crate::instance::{Error, FileOps, FileStat, FileType, FileWrite};

pub(super) struct CtFiles(pub(super) Files);

fn not_found(e: &rt::Error) -> bool {
    matches!(e, rt::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

fn map(path: &str) -> impl FnOnce(rt::Error) -> Error + '_ {
    move |e| {
        if not_found(&e) {
            return Error::NotFound(format!("{path}: no such file or directory"));
        }
        match e {
            rt::Error::Invalid(m) => Error::Invalid(m),
            other => Error::failed(path, super::chain(&other)),
        }
    }
}

impl FileOps for CtFiles {
    fn stat(&self, path: &str) -> Result<Option<FileStat>, Error> {
        match self.0.stat(Path::new(path)) {
            Ok(i) => Ok(Some(FileStat {
                kind: match i.kind {
                    FileKind::File => FileType::File,
                    FileKind::Directory => FileType::Directory,
                    FileKind::Symlink => FileType::Symlink,
                    FileKind::Other => FileType::Other,
                },
                mode: i.mode,
                uid: i.uid,
                gid: i.gid,
                size: i.size,
                modified: 0,
                target: i.target.map(|t| t.to_string_lossy().into_owned()),
            })),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(map(path)(e)),
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, Error> {
        let mut f = self.0.read(Path::new(path)).map_err(map(path))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out).map_err(|e| Error::failed(path, e))?;
        Ok(out)
    }

    fn list(&self, path: &str) -> Result<Vec<String>, Error> {
        self.0.list(Path::new(path)).map_err(map(path))
    }

    fn write(&self, path: &str, uid: u32, gid: u32, mode: u32, data: &[u8], append: bool) -> Result<(), Error> {
        let w = FileWrite::plan(self, path, (uid, gid, mode), data, append)?;
        self.0.write(Path::new(path), w.uid, w.gid, w.mode, &mut w.content.as_slice()).map_err(map(path))?;
        Ok(())
    }

    fn mkdir(&self, path: &str, uid: u32, gid: u32, mode: u32) -> Result<(), Error> {
        if let Some(st) = self.stat(path)? {
            if st.kind == FileType::Directory {
                return Ok(());
            }
            return Err(Error::Invalid(format!("{path} exists and is not a directory")));
        }
        self.0.mkdir(Path::new(path), uid, gid, mode).map_err(map(path))
    }

    fn symlink(&self, path: &str, target: &str, uid: u32, gid: u32) -> Result<(), Error> {
        if self.stat(path)?.is_some() {
            self.0.delete(Path::new(path)).map_err(map(path))?;
        }
        self.0.symlink(Path::new(path), Path::new(target), uid, gid).map_err(map(path))
    }

    fn delete(&self, path: &str) -> Result<(), Error> {
        self.0.delete(Path::new(path)).map_err(map(path))
    }
}
