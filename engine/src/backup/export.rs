//! Writing backups.

use std::io::{self, Write};

use super::{layout, type_name, Error, Info, INDEX_PATH};
use crate::image::archive::{append_tree, Compression, Encoder};
use crate::storage::drivers::Driver;
use crate::storage::Volume;

/// What to back up.
pub struct ExportRequest<'a> {
    /// The pool's driver.
    pub driver: &'a dyn Driver,
    /// The instance or custom volume.
    pub volume: &'a Volume,
    /// Snapshots to include, oldest first (empty for `instance_only`).
    pub snapshots: Vec<String>,
    /// Use the driver's native streams (btrfs send).
    pub optimized: bool,
    /// Compression of the whole tarball.
    pub compression: Compression,
    /// The instance/volume config to embed in index.yaml.
    pub config: Option<serde_yaml::Value>,
}

fn io_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let op = op.into();
    move |source| Error::Io { op, source }
}

/// Streams the backup tarball into `out`; returns the index written.
pub fn export(req: &ExportRequest<'_>, out: &mut dyn Write) -> Result<Info, Error> {
    export_named(req, &req.volume.name, out)
}

/// As [`export`], naming the backup `name` in index.yaml: the volume read may be a frozen
/// copy under another name.
pub fn export_named(req: &ExportRequest<'_>, name: &str, out: &mut dyn Write) -> Result<Info, Error> {
    let info = Info {
        name: name.to_string(),
        backend: req.driver.info().name.to_string(),
        pool: req.driver.spec().name.clone(),
        snapshots: req.snapshots.clone(),
        optimized: Some(req.optimized),
        optimized_header: Some(false),
        backup_type: Some(type_name(req.volume.vtype).to_string()),
        config: req.config.clone(),
    };
    if req.optimized && !req.driver.info().optimized_backups {
        return Err(Error::Invalid(format!("driver {} has no optimized backups", info.backend)));
    }
    let encoder = Encoder::new(out, req.compression).map_err(io_err("start compression"))?;
    let mut builder = tar::Builder::new(encoder);
    let yaml = serde_yaml::to_string(&info).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut header = file_header(yaml.len() as u64);
    builder.append_data(&mut header, INDEX_PATH, yaml.as_bytes()).map_err(io_err("write index.yaml"))?;

    let (main_dir, snaps_dir) = layout(req.volume.vtype);
    if req.optimized {
        let mut parent: Option<String> = None;
        for snap in &req.snapshots {
            let path = format!("backup/{snaps_dir}/{snap}.bin");
            write_stream(&mut builder, req, Some(snap), parent.as_deref(), &path)?;
            parent = Some(snap.clone());
        }
        // The volume's current state goes through a throwaway snapshot so both passes see
        // the same bytes.
        let tmp = format!(".backup-{}", rand::random::<u32>());
        req.driver.create_snapshot(req.volume, &tmp)?;
        let sent = write_stream(&mut builder, req, Some(&tmp), parent.as_deref(), &format!("backup/{main_dir}.bin"));
        let deleted = req.driver.delete_snapshot(req.volume, &tmp);
        sent?;
        deleted?;
    } else {
        for snap in &req.snapshots {
            let path = req.driver.snapshot_path(req.volume, snap);
            append_tree(&mut builder, &path, &format!("backup/{snaps_dir}/{snap}"))?;
        }
        append_tree(&mut builder, &req.driver.volume_path(req.volume), &format!("backup/{main_dir}"))?;
    }
    let encoder = builder.into_inner().map_err(io_err("finish tarball"))?;
    let out = encoder.finish().map_err(io_err("finish compression"))?;
    out.flush().map_err(io_err("flush"))?;
    Ok(info)
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// A tar entry whose size must be known before its data: the stream is sent once into a
/// counter, then again into the tarball, and both counts must agree.
fn write_stream<W: Write>(builder: &mut tar::Builder<W>, req: &ExportRequest<'_>, snap: Option<&str>, parent: Option<&str>, path: &str) -> Result<(), Error> {
    let mut counter = Counter::default();
    let expected = req.driver.send_volume(req.volume, snap, parent, &mut counter)?;
    let mut header = file_header(expected);
    header.set_path(path).map_err(io_err(format!("tar path {path}")))?;
    header.set_cksum();
    let inner = builder.get_mut();
    inner.write_all(header.as_bytes()).map_err(io_err(format!("write {path}")))?;
    let mut limited = Exact { inner: &mut *inner, left: expected };
    let actual = req.driver.send_volume(req.volume, snap, parent, &mut limited)?;
    if actual != expected {
        return Err(Error::StreamSize { what: path.to_string(), expected, actual });
    }
    let pad = (512 - (expected % 512) as usize) % 512;
    inner.write_all(&vec![0u8; pad]).map_err(io_err(format!("write {path}")))?;
    Ok(())
}

#[derive(Default)]
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Refuses to write more than `left` bytes, so a grown stream cannot corrupt the tarball.
struct Exact<'a, W: Write> {
    inner: &'a mut W,
    left: u64,
}

impl<W: Write> Write for Exact<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(io::Error::other("send stream longer than in the sizing pass"));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
