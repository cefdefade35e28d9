//! Instance cgroups behind one enum with a v1 (per-controller hierarchies) and a v2
//! (unified) backend. Every path is derived from a root given as a parameter, so the v2
//! backend is unit-tested against a fake cgroupfs in a temp dir.
//!
//! Instance cgroups go under a parent that defaults to the daemon's own cgroup (read per
//! controller from /proc/self/cgroup), never at a hierarchy root we are not in.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod devbpf;
pub mod limits;
pub mod v1;
pub mod v2;

pub use limits::Limits;

/// v1 controllers an instance gets a cgroup in (when the host mounts them).
/// `name=systemd` is included so systemd inside the container finds its hierarchy.
pub const V1_CONTROLLERS: &[&str] =
    &["cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "devices", "blkio", "name=systemd"];

/// Key of the cgroup2 hierarchy in a hybrid layout's parent map.
pub const UNIFIED: &str = "unified";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cgroup file {path}")]
    Io { path: PathBuf, source: io::Error },
    #[error("unexpected content in {path}: {value:?}")]
    Parse { path: PathBuf, value: String },
    #[error("invalid value for {key}: {value:?}")]
    InvalidLimit { key: String, value: String },
    #[error("no usable cgroup hierarchy found")]
    NoHierarchy,
    #[error("cgroup {path} did not reach state {state} in time")]
    Timeout { path: PathBuf, state: String },
    #[error("{what} is not supported by the {backend} backend")]
    Unsupported { what: String, backend: &'static str },
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

pub(crate) fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(io_err(path))
}

pub(crate) fn write(path: &Path, value: &str) -> Result<(), Error> {
    std::fs::write(path, value).map_err(io_err(path))
}

pub(crate) fn read_u64(path: &Path) -> Result<u64, Error> {
    let v = read(path)?;
    v.parse().map_err(|_| Error::Parse { path: path.to_path_buf(), value: v })
}

/// Where instance cgroups are created on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// controller → parent directory (mountpoint + the parent cgroup path). On a hybrid
    /// host the cgroup2 tree is there too, under the key [`UNIFIED`].
    V1 { parents: BTreeMap<String, PathBuf> },
    /// The parent directory in the unified hierarchy.
    V2 { parent: PathBuf },
}

impl Layout {
    /// Detects the host layout. `parent` is a cgroup path relative to the daemon's own
    /// cgroup of each controller (None = directly in it).
    pub fn detect(parent: Option<&str>) -> Result<Self, Error> {
        let mi = std::fs::read_to_string("/proc/self/mountinfo").map_err(io_err(Path::new("/proc/self/mountinfo")))?;
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(io_err(Path::new("/proc/self/cgroup")))?;
        Self::from_texts(&mi, &own, parent)
    }

    /// Detection from the texts of /proc/self/mountinfo and /proc/self/cgroup. v1 wins
    /// when any v1 controller we use is mounted (a hybrid host keeps its limits there).
    pub fn from_texts(mountinfo: &str, self_cgroup: &str, parent: Option<&str>) -> Result<Self, Error> {
        let mut own_v1: BTreeMap<String, String> = BTreeMap::new();
        let mut own_v2: Option<String> = None;
        for line in self_cgroup.lines() {
            let mut it = line.splitn(3, ':');
            let (_, ctrls, path) = match (it.next(), it.next(), it.next()) {
                (Some(a), Some(b), Some(c)) => (a, b, c),
                _ => continue,
            };
            if ctrls.is_empty() {
                // After moving into our leaf (see v2::DAEMON_LEAF) the parent is still "ours".
                let p = path.strip_suffix(&format!("/{}", v2::DAEMON_LEAF)).unwrap_or(path);
                own_v2 = Some(if p.is_empty() { "/".to_string() } else { p.to_string() });
            }
            for c in ctrls.split(',').filter(|c| !c.is_empty()) {
                own_v1.insert(c.to_string(), path.to_string());
            }
        }
        let mut v1_mounts: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut v2_mount: Option<PathBuf> = None;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 5 || r.len() < 3 || l[3] != "/" {
                continue;
            }
            let mnt = PathBuf::from(l[4]);
            match r[0] {
                "cgroup2" => {
                    v2_mount.get_or_insert(mnt);
                }
                "cgroup" => {
                    for opt in r[2].split(',') {
                        if V1_CONTROLLERS.contains(&opt) {
                            v1_mounts.entry(opt.to_string()).or_insert_with(|| mnt.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        let join = |base: &Path, own: &str| {
            let mut p = base.join(own.trim_start_matches('/'));
            if let Some(extra) = parent {
                p = p.join(extra.trim_start_matches('/'));
            }
            p
        };
        if !v1_mounts.is_empty() {
            let mut parents: BTreeMap<String, PathBuf> = v1_mounts
                .iter()
                .map(|(c, m)| (c.clone(), join(m, own_v1.get(c).map(String::as_str).unwrap_or("/"))))
                .collect();
            if let Some(m) = &v2_mount {
                parents.insert(UNIFIED.to_string(), join(m, own_v2.as_deref().unwrap_or("/")));
            }
            return Ok(Layout::V1 { parents });
        }
        match v2_mount {
            Some(m) => Ok(Layout::V2 { parent: join(&m, own_v2.as_deref().unwrap_or("/")) }),
            None => Err(Error::NoHierarchy),
        }
    }
}

/// Usage counters of one cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub memory_usage: u64,
    pub memory_peak: u64,
    pub cpu_usage_ns: u64,
    pub processes: u64,
}

/// The cgroup of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cgroup {
    V1(v1::V1),
    V2(v2::V2),
}

macro_rules! both {
    ($self:ident, $cg:ident => $e:expr) => {
        match $self {
            Cgroup::V1($cg) => $e,
            Cgroup::V2($cg) => $e,
        }
    };
}

impl Cgroup {
    /// Creates the cgroup `name` under the layout's parent(s).
    pub fn create(layout: &Layout, name: &str) -> Result<Self, Error> {
        Ok(match layout {
            Layout::V1 { parents } => Cgroup::V1(v1::V1::create(parents, name)?),
            Layout::V2 { parent } => Cgroup::V2(v2::V2::create(parent, name)?),
        })
    }

    /// Moves `pid` (0 = the caller) into the cgroup.
    pub fn add_pid(&self, pid: i32) -> Result<(), Error> {
        both!(self, c => c.add_pid(pid))
    }

    /// The cgroup.procs files a process joining the instance writes itself into.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        both!(self, c => c.procs_files())
    }

    /// Applies limits at once (works on a running instance).
    pub fn apply(&self, limits: &Limits) -> Result<(), Error> {
        both!(self, c => c.apply(limits))
    }

    pub fn stats(&self) -> Result<Stats, Error> {
        both!(self, c => c.stats())
    }

    /// Every pid in the cgroup (and its children).
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        both!(self, c => c.pids())
    }

    pub fn freeze(&self) -> Result<(), Error> {
        both!(self, c => c.freeze())
    }

    pub fn thaw(&self) -> Result<(), Error> {
        both!(self, c => c.thaw())
    }

    pub fn is_frozen(&self) -> Result<bool, Error> {
        both!(self, c => c.is_frozen())
    }

    /// SIGKILLs everything inside and waits (up to `timeout`) until it is empty.
    pub fn kill_all(&self, timeout: std::time::Duration) -> Result<(), Error> {
        both!(self, c => c.kill_all(timeout))
    }

    /// Removes the cgroup directories (the cgroup must be empty).
    pub fn remove(&self) -> Result<(), Error> {
        both!(self, c => c.remove())
    }

    /// Whether the cgroup directories still exist.
    pub fn exists(&self) -> bool {
        both!(self, c => c.exists())
    }

    /// Makes the instance's devices beyond the defaults exactly `rules` (`c 1:3 rwm`
    /// style, from its whole device list), so the result never depends on what this
    /// process allowed before: a restarted berthd knows nothing of an adopted container's
    /// earlier rules. v2 replaces the device program (a removed device is denied again);
    /// v1 can only add.
    pub fn set_device_rules(&self, rules: &[String]) -> Result<(), Error> {
        match self {
            Cgroup::V1(c) => rules.iter().try_for_each(|r| c.allow_device(r)),
            Cgroup::V2(c) => c.set_devices(v1::DEFAULT_DEVICES.iter().map(|r| r.to_string()).chain(rules.iter().cloned()).collect()),
        }
    }
}

/// How long to wait before polling a cgroup file again: 0.5 ms doubling to 10 ms, as
/// freezing and dying usually take well under a millisecond (a fixed 10 ms made every
/// forced stop ~20 ms).
pub(crate) fn backoff(attempt: &mut u32) -> std::time::Duration {
    let d = std::time::Duration::from_micros((500u64 << (*attempt).min(5)).min(10_000));
    *attempt += 1;
    d
}

/// rmdir with retries: a cgroup is briefly busy right after its last task exited.
pub(crate) fn rmdir_retry(path: &Path) -> Result<(), Error> {
    for i in 0..50 {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && i < 49 => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => return Err(Error::Io { path: path.to_path_buf(), source: e }),
        }
    }
    Ok(())
}

/// Renders a cpu list as "0-2,5".
pub fn render_cpuset(cpus: &[u32]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests;
