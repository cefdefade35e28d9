//! Restoring backups from a stream.

use std::fs;
use std::io::{BufReader, Read};
use std::path::Path;

use super::{layout, Error, Info, INDEX_PATH};
use crate::image::archive::decompress;
use crate::image::{UnpackOptions, Unpacker};
use crate::storage::drivers::Driver;
use crate::storage::{validate_name, Volume};

/// The largest index.yaml accepted.
const MAX_INDEX: u64 = 1 << 20;

/// Where and how to restore.
pub struct ImportRequest<'a> {
    /// The target pool's driver.
    pub driver: &'a dyn Driver,
    /// Project of the restored volume.
    pub project: &'a str,
    /// Restore under this name instead of the backup's.
    pub name: Option<&'a str>,
    /// Unpack limits and policy (non-optimized backups).
    pub opts: UnpackOptions,
}

/// A restored backup.
#[derive(Debug)]
pub struct Imported {
    /// The backup's index.
    pub info: Info,
    /// The volume created (its snapshots are `info.snapshots`).
    pub volume: Volume,
}

/// What part of the backup an entry belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Section {
    Snapshot(String),
    Main,
}

/// Reads a backup tarball (index.yaml first) and restores it into the pool. On any error
/// everything created is removed again.
pub fn import(req: &ImportRequest<'_>, input: &mut dyn Read) -> Result<Imported, Error> {
    let decoded = decompress(BufReader::with_capacity(1 << 16, input))?;
    let mut archive = tar::Archive::new(decoded);
    let mut entries = archive.entries().map_err(|e| Error::Io { op: "read backup".into(), source: e })?;

    let first = entries.next().ok_or_else(|| Error::Invalid("empty tarball".into()))?;
    let mut first = first.map_err(|e| Error::Io { op: "read backup".into(), source: e })?;
    if first.path_bytes().as_ref() != INDEX_PATH.as_bytes() {
        return Err(Error::Invalid(format!("the first entry must be {INDEX_PATH}")));
    }
    let mut yaml = Vec::new();
    (&mut first).take(MAX_INDEX + 1).read_to_end(&mut yaml).map_err(|e| Error::Io { op: "read index.yaml".into(), source: e })?;
    if yaml.len() as u64 > MAX_INDEX {
        return Err(Error::Invalid("index.yaml is too large".into()));
    }
    drop(first);
    let info: Info = serde_yaml::from_slice(&yaml).map_err(|e| Error::Invalid(format!("index.yaml: {e}")))?;
    let vtype = info.volume_type()?;
    let name = req.name.unwrap_or(&info.name);
    let volume = Volume::in_project(vtype, req.project, name);
    volume.validate()?;
    for s in &info.snapshots {
        validate_name("snapshot", s)?;
    }
    let optimized = info.optimized.unwrap_or(false);
    let driver_name = req.driver.info().name;
    if optimized && (info.backend != driver_name || !req.driver.info().optimized_backups) {
        return Err(Error::WrongBackend { backend: info.backend.clone(), driver: driver_name.to_string() });
    }
    if req.driver.volume_exists(&volume) || !req.driver.list_snapshots(&volume)?.is_empty() {
        return Err(Error::AlreadyExists { what: "volume", name: name.to_string() });
    }

    let mut state = Restore { req, volume: volume.clone(), info: &info, done: Vec::new(), main_done: false, current: None, bytes: 0 };
    let result = (|| {
        for entry in entries {
            let entry = entry.map_err(|e| Error::Io { op: "read backup".into(), source: e })?;
            if optimized {
                state.stream(entry)?;
            } else {
                state.tree(entry)?;
            }
        }
        state.finish_section()?;
        state.check_complete()
    })();
    if let Err(e) = result {
        state.cleanup();
        return Err(e);
    }
    Ok(Imported { info, volume })
}

struct Restore<'a, 'b> {
    req: &'a ImportRequest<'b>,
    volume: Volume,
    info: &'a Info,
    /// Snapshots restored so far, in order.
    done: Vec<String>,
    main_done: bool,
    /// The tree section being unpacked.
    current: Option<(Section, Unpacker)>,
    /// Bytes unpacked by finished sections (the limit spans the whole backup).
    bytes: u64,
}

impl Restore<'_, '_> {
    fn classify(&self, path: &str) -> Result<(Section, String), Error> {
        let (main_dir, snaps_dir) = layout(self.volume.vtype);
        let rest = path.strip_prefix("./").unwrap_or(path);
        let rest = rest.strip_prefix("backup/").ok_or_else(|| Error::Invalid(format!("entry {path:?} is outside backup/")))?;
        let name = rest.trim_end_matches('/');
        if name == main_dir || rest.starts_with(&format!("{main_dir}/")) {
            return Ok((Section::Main, format!("backup/{main_dir}")));
        }
        if name == format!("{main_dir}.bin") {
            return Ok((Section::Main, String::new()));
        }
        if let Some(snap_path) = rest.strip_prefix(&format!("{snaps_dir}/")) {
            let snap = snap_path.split('/').next().unwrap_or("");
            if let Some(bin) = snap.strip_suffix(".bin").filter(|_| !snap_path.contains('/')) {
                return self.known_snapshot(bin).map(|s| (Section::Snapshot(s), String::new()));
            }
            return self.known_snapshot(snap).map(|s| (Section::Snapshot(s.clone()), format!("backup/{snaps_dir}/{s}")));
        }
        // LXD's optimized_header.yaml lists nested subvolumes; we restore none, so skip it.
        if name == snaps_dir || name.is_empty() || name == "optimized_header.yaml" {
            return Err(Error::Invalid(String::from("skip")));
        }
        Err(Error::Invalid(format!("unexpected entry {path:?}")))
    }

    fn known_snapshot(&self, snap: &str) -> Result<String, Error> {
        if !self.info.snapshots.iter().any(|s| s == snap) {
            return Err(Error::Invalid(format!("snapshot {snap:?} is not listed in index.yaml")));
        }
        Ok(snap.to_string())
    }

    /// Sections must come as listed: each snapshot once, in order, then the volume.
    fn check_order(&self, section: &Section) -> Result<(), Error> {
        if self.main_done {
            return Err(Error::Invalid("entries after the volume itself".into()));
        }
        let expected = self.info.snapshots.get(self.done.len());
        match (section, expected) {
            (Section::Snapshot(s), Some(e)) if s == e => Ok(()),
            (Section::Main, None) => Ok(()),
            (Section::Main, Some(e)) => Err(Error::Invalid(format!("volume before its snapshot {e:?} (snapshots must come first)"))),
            (Section::Snapshot(s), _) => Err(Error::Invalid(format!("snapshot {s:?} out of order"))),
        }
    }

    fn stream<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), Error> {
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let (section, _) = match self.classify(&path) {
            Err(Error::Invalid(m)) if m == "skip" => return Ok(()),
            other => other?,
        };
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(Error::Invalid(format!("{path:?} is not a stream file")));
        }
        self.check_order(&section)?;
        match &section {
            Section::Snapshot(s) => {
                self.req.driver.receive_volume(&self.volume, Some(s), &mut entry)?;
                self.done.push(s.clone());
            }
            Section::Main => {
                self.req.driver.receive_volume(&self.volume, None, &mut entry)?;
                self.main_done = true;
            }
        }
        Ok(())
    }

    fn tree<R: Read>(&mut self, entry: tar::Entry<'_, R>) -> Result<(), Error> {
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let (section, strip) = match self.classify(&path) {
            Err(Error::Invalid(m)) if m == "skip" => return Ok(()),
            other => other?,
        };
        if strip.is_empty() {
            return Err(Error::Invalid(format!("stream file {path:?} in a non-optimized backup")));
        }
        if self.current.as_ref().map(|(s, _)| s != &section).unwrap_or(true) {
            self.finish_section()?;
            self.check_order(&section)?;
            self.start_section(section.clone())?;
        }
        let Some((_, unpacker)) = self.current.as_mut() else {
            return Err(Error::Invalid("no section".into()));
        };
        unpacker.unpack_entry(entry, &strip)?;
        Ok(())
    }

    /// Empties the volume and opens an unpacker on it for the next section.
    fn start_section(&mut self, section: Section) -> Result<(), Error> {
        let driver = self.req.driver;
        if !driver.volume_exists(&self.volume) {
            driver.create_volume(&self.volume, None)?;
        }
        let path = driver.volume_path(&self.volume);
        clear_dir(&path)?;
        let left = self.req.opts.max_bytes.saturating_sub(self.bytes);
        let unpacker = Unpacker::new(&path, UnpackOptions { max_bytes: left, ..self.req.opts })?;
        self.current = Some((section, unpacker));
        Ok(())
    }

    /// Finishes the open section: a snapshot section becomes a snapshot.
    fn finish_section(&mut self) -> Result<(), Error> {
        let Some((section, unpacker)) = self.current.take() else { return Ok(()) };
        self.bytes += unpacker.stats().bytes;
        unpacker.finish()?;
        match section {
            Section::Snapshot(s) => {
                self.req.driver.create_snapshot(&self.volume, &s)?;
                self.done.push(s);
            }
            Section::Main => self.main_done = true,
        }
        Ok(())
    }

    fn check_complete(&self) -> Result<(), Error> {
        if self.done != self.info.snapshots {
            return Err(Error::Invalid(format!("snapshots restored {:?}, index lists {:?}", self.done, self.info.snapshots)));
        }
        if !self.main_done {
            return Err(Error::Invalid("the backup has no volume data".into()));
        }
        Ok(())
    }

    fn cleanup(&mut self) {
        self.current = None;
        let driver = self.req.driver;
        if driver.volume_exists(&self.volume) {
            let _ = driver.delete_volume(&self.volume);
        } else if let Ok(snaps) = driver.list_snapshots(&self.volume) {
            for s in snaps {
                let _ = driver.delete_snapshot(&self.volume, &s);
            }
        }
    }
}

/// Removes everything inside `dir`, keeping `dir`.
fn clear_dir(dir: &Path) -> Result<(), Error> {
    let rd = fs::read_dir(dir).map_err(|e| Error::Io { op: format!("read {}", dir.display()), source: e })?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::Io { op: format!("read {}", dir.display()), source: e })?;
        let p = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let r = if is_dir { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
        r.map_err(|e| Error::Io { op: format!("remove {}", p.display()), source: e })?;
    }
    Ok(())
}
