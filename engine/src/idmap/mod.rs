//! Id maps for unprivileged containers: the host's subordinate id range (/etc/subuid,
//! /etc/subgid for root), per-instance allocation (shared or `security.idmap.isolated`),
//! `raw.idmap` punch-through entries, uid_map/gid_map rendering and id translation.
//!
//! The JSON form matches LXD's `volatile.idmap.*` values so the daemon can store them as is.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Default subordinate range when /etc/subuid has no entry for root (LXD's default).
pub const DEFAULT_RANGE: (u64, u64) = (1_000_000, 1_000_000_000);
/// Ids given to one instance unless `security.idmap.size` says otherwise.
pub const DEFAULT_SIZE: u64 = 65536;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid value for {key}: {value}")]
    InvalidKey { key: String, value: String },
    #[error("invalid raw.idmap: {0}")]
    RawIdmap(String),
    #[error("no free id range of size {size} left in {start}:{count}")]
    Exhausted { size: u64, start: u64, count: u64 },
    #[error("id map does not fit the host range {start}:{count}")]
    OutOfRange { start: u64, count: u64 },
    #[error("malformed id map json")]
    Json(#[source] serde_json::Error),
}

/// One mapping line; field names follow LXD's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdEntry {
    #[serde(rename = "Isuid")]
    pub is_uid: bool,
    #[serde(rename = "Isgid")]
    pub is_gid: bool,
    #[serde(rename = "Hostid")]
    pub host_id: u64,
    #[serde(rename = "Nsid")]
    pub ns_id: u64,
    #[serde(rename = "Maprange")]
    pub range: u64,
}

impl IdEntry {
    fn applies(&self, uid: bool) -> bool {
        if uid { self.is_uid } else { self.is_gid }
    }
}

/// A full id map (uids and gids).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdmapSet {
    pub entries: Vec<IdEntry>,
}

/// The host's subordinate ranges usable by the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRange {
    pub uid: (u64, u64),
    pub gid: (u64, u64),
}

impl Default for HostRange {
    fn default() -> Self {
        Self { uid: DEFAULT_RANGE, gid: DEFAULT_RANGE }
    }
}

impl HostRange {
    /// Reads /etc/subuid and /etc/subgid, falling back to the default range.
    pub fn from_host() -> Self {
        Self::from_files(Path::new("/etc/subuid"), Path::new("/etc/subgid"))
    }

    /// Reads the two subid files (missing or without a root line → default range).
    pub fn from_files(subuid: &Path, subgid: &Path) -> Self {
        let pick = |p: &Path| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|t| parse_subid(&t, "root").into_iter().max_by_key(|r| r.1))
                .unwrap_or(DEFAULT_RANGE)
        };
        Self { uid: pick(subuid), gid: pick(subgid) }
    }
}

/// Parses subuid/subgid text and returns the ranges of `user` (by name or by uid 0 for root).
pub fn parse_subid(text: &str, user: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.trim().split(':');
            let (name, start, count) = (it.next()?, it.next()?, it.next()?);
            let matches = name == user || (user == "root" && name == "0");
            if !matches {
                return None;
            }
            Some((start.trim().parse().ok()?, count.trim().parse().ok()?))
        })
        .filter(|r: &(u64, u64)| r.1 > 0)
        .collect()
}

/// The idmap-related settings of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdmapConfig {
    pub isolated: bool,
    pub base: Option<u64>,
    pub size: Option<u64>,
    pub raw: Vec<IdEntry>,
}

impl IdmapConfig {
    /// Reads `security.idmap.*` and `raw.idmap` from an expanded config.
    pub fn from_config(config: &BTreeMap<String, String>) -> Result<Self, Error> {
        let num = |key: &str| -> Result<Option<u64>, Error> {
            match config.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| Error::InvalidKey { key: key.into(), value: v.into() }),
            }
        };
        let raw = match config.get("raw.idmap").filter(|v| !v.trim().is_empty()) {
            None => vec![],
            Some(v) => crate::config::parse_raw_idmap(v)
                .map_err(|e| Error::RawIdmap(e.to_string()))?
                .into_iter()
                .map(|e| IdEntry { is_uid: e.is_uid, is_gid: e.is_gid, host_id: e.host_id, ns_id: e.ns_id, range: e.range })
                .collect(),
        };
        Ok(Self {
            isolated: config.get("security.idmap.isolated").is_some_and(|v| is_true(v)),
            base: num("security.idmap.base")?,
            size: num("security.idmap.size")?,
            raw,
        })
    }
}

fn is_true(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

impl IdmapSet {
    /// Allocates the map of one instance. `used` are the maps of the other instances
    /// (only consulted for isolated maps, which must not overlap anything).
    pub fn allocate(cfg: &IdmapConfig, host: &HostRange, used: &[IdmapSet]) -> Result<Self, Error> {
        let size = cfg.size.unwrap_or(DEFAULT_SIZE);
        let (ustart, ucount) = host.uid;
        let (gstart, gcount) = host.gid;
        let fits = |base_u: u64, base_g: u64| base_u >= ustart && base_u + size <= ustart + ucount && base_g >= gstart && base_g + size <= gstart + gcount;
        let (hu, hg) = if let Some(base) = cfg.base {
            if !fits(base, base) {
                return Err(Error::OutOfRange { start: ustart, count: ucount });
            }
            (base, base)
        } else if cfg.isolated {
            let taken: Vec<(bool, (u64, u64))> = used
                .iter()
                .flat_map(|m| m.entries.iter())
                .flat_map(|e| {
                    let mut v = vec![];
                    if e.is_uid {
                        v.push((true, (e.host_id, e.range)));
                    }
                    if e.is_gid {
                        v.push((false, (e.host_id, e.range)));
                    }
                    v
                })
                .collect();
            // The first block is shared by non-isolated instances; isolated ones start after it.
            let mut off = DEFAULT_SIZE;
            loop {
                let (bu, bg) = (ustart + off, gstart + off);
                if !fits(bu, bg) {
                    return Err(Error::Exhausted { size, start: ustart, count: ucount });
                }
                let clash = taken.iter().any(|(is_u, r)| overlaps(*r, if *is_u { (bu, size) } else { (bg, size) }));
                if !clash {
                    break (bu, bg);
                }
                off += size.div_ceil(DEFAULT_SIZE) * DEFAULT_SIZE;
            }
        } else {
            if !fits(ustart, gstart) {
                return Err(Error::OutOfRange { start: ustart, count: ucount });
            }
            (ustart, gstart)
        };
        let mut set = IdmapSet {
            entries: vec![
                IdEntry { is_uid: true, is_gid: false, host_id: hu, ns_id: 0, range: size },
                IdEntry { is_uid: false, is_gid: true, host_id: hg, ns_id: 0, range: size },
            ],
        };
        for raw in &cfg.raw {
            set.punch(*raw);
        }
        Ok(set)
    }

    /// Adds `e`, removing its container ids from the existing entries first (LXD AddSafe).
    pub fn punch(&mut self, e: IdEntry) {
        let mut out = Vec::new();
        for old in self.entries.drain(..) {
            for (is_uid, is_gid) in [(true, false), (false, true)] {
                let kind_old = if is_uid { old.is_uid } else { old.is_gid };
                if !kind_old {
                    continue;
                }
                let kind_new = if is_uid { e.is_uid } else { e.is_gid };
                let piece = IdEntry { is_uid, is_gid, ..old };
                if !kind_new || !overlaps((old.ns_id, old.range), (e.ns_id, e.range)) {
                    out.push(piece);
                    continue;
                }
                if e.ns_id > old.ns_id {
                    out.push(IdEntry { range: e.ns_id - old.ns_id, ..piece });
                }
                let old_end = old.ns_id + old.range;
                let new_end = e.ns_id + e.range;
                if old_end > new_end {
                    let skip = new_end - old.ns_id;
                    out.push(IdEntry { ns_id: new_end, host_id: old.host_id + skip, range: old_end - new_end, ..piece });
                }
            }
        }
        out.push(e);
        out.sort_by_key(|x| (!x.is_uid, x.ns_id));
        self.entries = merge_kinds(out);
    }

    /// The text for /proc/<pid>/uid_map (`uid = true`) or gid_map.
    pub fn render(&self, uid: bool) -> String {
        let mut lines: Vec<&IdEntry> = self.entries.iter().filter(|e| e.applies(uid)).collect();
        lines.sort_by_key(|e| e.ns_id);
        lines.iter().map(|e| format!("{} {} {}\n", e.ns_id, e.host_id, e.range)).collect()
    }

    /// Container id → host id.
    pub fn to_host(&self, uid: bool, ns_id: u64) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.applies(uid) && ns_id >= e.ns_id && ns_id < e.ns_id + e.range)
            .map(|e| e.host_id + (ns_id - e.ns_id))
    }

    /// Host id → container id.
    pub fn to_ns(&self, uid: bool, host_id: u64) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.applies(uid) && host_id >= e.host_id && host_id < e.host_id + e.range)
            .map(|e| e.ns_id + (host_id - e.host_id))
    }

    /// LXD's JSON (`volatile.idmap.current`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "[]".into())
    }

    /// Parses LXD's JSON; an empty string is an empty map.
    pub fn from_json(s: &str) -> Result<Self, Error> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_json::from_str(s).map_err(Error::Json)
    }

    /// True when every id maps to itself (or the map is empty).
    pub fn is_identity(&self) -> bool {
        self.entries.iter().all(|e| e.host_id == e.ns_id)
    }
}

/// Joins identical uid and gid entries into one "both" entry.
fn merge_kinds(v: Vec<IdEntry>) -> Vec<IdEntry> {
    let mut out: Vec<IdEntry> = Vec::new();
    for e in v {
        if let Some(o) = out.iter_mut().find(|o| {
            o.host_id == e.host_id && o.ns_id == e.ns_id && o.range == e.range && (o.is_uid != e.is_uid || o.is_gid != e.is_gid)
        }) {
            o.is_uid |= e.is_uid;
            o.is_gid |= e.is_gid;
        } else {
            out.push(e);
        }
    }
    out
}

#[cfg(test)]
mod tests;
