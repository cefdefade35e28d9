//! cgroup v1: one directory per controller hierarchy (co-mounted ones share a directory).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{io_err, read, read_u64, render_cpuset, rmdir_retry, write, Error, Limits, Stats};

/// Default device rules (LXC's defaults for a container).
pub(crate) const DEFAULT_DEVICES: &[&str] = &[
    "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm",
    "c 5:2 rwm", "c 136:* rwm", "c 10:229 rwm", "c 10:200 rwm",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1 {
    /// controller → this instance's directory.
    pub dirs: BTreeMap<String, PathBuf>,
}

impl V1 {
    /// Creates `<parent>/<name>` in every controller's hierarchy.
    pub fn create(parents: &BTreeMap<String, PathBuf>, name: &str) -> Result<Self, Error> {
        let mut dirs = BTreeMap::new();
        for (ctrl, parent) in parents {
            let dir = parent.join(name);
            ensure_dir(&dir, ctrl == "cpuset")?;
            dirs.insert(ctrl.clone(), dir);
        }
        let cg = V1 { dirs };
        if let Some(d) = cg.dir("devices") {
            // Deny everything, then allow the defaults; ignore EPERM from nested setups.
            if write(&d.join("devices.deny"), "a").is_ok() {
                for rule in DEFAULT_DEVICES {
                    write(&d.join("devices.allow"), rule)?;
                }
            }
        }
        Ok(cg)
    }

    fn dir(&self, ctrl: &str) -> Option<&Path> {
        self.dirs.get(ctrl).map(PathBuf::as_path)
    }

    fn unique_dirs(&self) -> BTreeSet<&PathBuf> {
        self.dirs.values().collect()
    }

    pub fn exists(&self) -> bool {
        self.unique_dirs().iter().any(|d| d.is_dir())
    }

    pub fn add_pid(&self, pid: i32) -> Result<(), Error> {
        for f in self.procs_files() {
            write(&f, &pid.to_string())?;
        }
        Ok(())
    }

    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.unique_dirs().into_iter().map(|d| d.join("cgroup.procs")).collect()
    }

    pub fn apply(&self, l: &Limits) -> Result<(), Error> {
        if let Some(d) = self.dir("cpuset") {
            let cpus = match &l.cpuset {
                Some(cpus) => render_cpuset(cpus),
                // Unset: back to everything the parent has.
                None => match d.parent() {
                    Some(p) => read(&p.join("cpuset.cpus"))?,
                    None => String::new(),
                },
            };
            if !cpus.is_empty() {
                write(&d.join("cpuset.cpus"), &cpus)?;
            }
        }
        if let Some(d) = self.dir("cpu") {
            let (q, p) = l.cpu_quota.map(|(q, p)| (q as i64, p)).unwrap_or((-1, 100_000));
            write(&d.join("cpu.cfs_period_us"), &p.to_string())?;
            write(&d.join("cpu.cfs_quota_us"), &q.to_string())?;
            write(&d.join("cpu.shares"), &l.shares(1024).max(2).to_string())?;
        }
        if let Some(d) = self.dir("memory") {
            let hard = d.join("memory.limit_in_bytes");
            let soft = d.join("memory.soft_limit_in_bytes");
            let memsw = d.join("memory.memsw.limit_in_bytes");
            let unlimited = "-1";
            match l.memory {
                Some(m) if l.memory_soft => {
                    if memsw.exists() {
                        write(&memsw, unlimited)?;
                    }
                    write(&hard, unlimited)?;
                    write(&soft, &m.to_string())?;
                }
                Some(m) => {
                    // memsw must stay >= the memory limit: order the writes accordingly.
                    let sw = if l.swap { unlimited.to_string() } else { m.to_string() };
                    if memsw.exists() {
                        let _ = write(&memsw, unlimited);
                    }
                    write(&hard, &m.to_string())?;
                    write(&soft, &(m / 10 * 9).to_string())?;
                    if memsw.exists() {
                        write(&memsw, &sw)?;
                    }
                }
                None => {
                    if memsw.exists() {
                        write(&memsw, unlimited)?;
                    }
                    write(&hard, unlimited)?;
                    write(&soft, unlimited)?;
                }
            }
            if !l.swap {
                write(&d.join("memory.swappiness"), "0")?;
            }
        }
        if let Some(d) = self.dir("pids") {
            let v = l.processes.map(|n| n.to_string()).unwrap_or_else(|| "max".into());
            write(&d.join("pids.max"), &v)?;
        }
        Ok(())
    }

    pub fn stats(&self) -> Result<Stats, Error> {
        let mut s = Stats::default();
        if let Some(d) = self.dir("memory") {
            s.memory_usage = read_u64(&d.join("memory.usage_in_bytes"))?;
            s.memory_peak = read_u64(&d.join("memory.max_usage_in_bytes"))?;
        }
        if let Some(d) = self.dir("cpuacct") {
            s.cpu_usage_ns = read_u64(&d.join("cpuacct.usage"))?;
        }
        s.processes = match self.dir("pids") {
            Some(d) => read_u64(&d.join("pids.current"))?,
            None => self.pids()?.len() as u64,
        };
        Ok(s)
    }

    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        let d = self.dir("pids").or_else(|| self.dir("freezer")).or_else(|| self.dirs.values().next().map(PathBuf::as_path));
        match d {
            Some(d) => collect_pids(d),
            None => Ok(vec![]),
        }
    }

    pub fn freeze(&self) -> Result<(), Error> {
        self.set_freezer("FROZEN")
    }

    pub fn thaw(&self) -> Result<(), Error> {
        self.set_freezer("THAWED")
    }

    fn set_freezer(&self, state: &str) -> Result<(), Error> {
        let d = self.dir("freezer").ok_or(Error::Unsupported { what: "freezing".into(), backend: "v1 without freezer" })?;
        let f = d.join("freezer.state");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut attempt = 0;
        loop {
            write(&f, state)?;
            if read(&f)? == state {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout { path: f, state: state.into() });
            }
            std::thread::sleep(super::backoff(&mut attempt));
        }
    }

    pub fn is_frozen(&self) -> Result<bool, Error> {
        match self.dir("freezer") {
            Some(d) => Ok(read(&d.join("freezer.state"))? != "THAWED"),
            None => Ok(false),
        }
    }

    pub fn kill_all(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut attempt = 0;
        // Freeze first so nothing forks between reading cgroup.procs and killing.
        let frozen = self.dir("freezer").is_some() && self.freeze().is_ok();
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                break;
            }
            for p in &pids {
                // SAFETY: kill(2) with a pid read from the cgroup.
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
            if frozen {
                let _ = self.thaw();
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout { path: self.dirs.values().next().cloned().unwrap_or_default(), state: "empty".into() });
            }
            std::thread::sleep(super::backoff(&mut attempt));
        }
        if frozen {
            self.thaw()?;
        }
        Ok(())
    }

    pub fn remove(&self) -> Result<(), Error> {
        for d in self.unique_dirs() {
            remove_tree(d)?;
        }
        Ok(())
    }

    pub fn allow_device(&self, rule: &str) -> Result<(), Error> {
        match self.dir("devices") {
            Some(d) => write(&d.join("devices.allow"), rule),
            None => Ok(()),
        }
    }
}

/// Creates a directory (and parents); for cpuset, copies cpus/mems from the parent into
/// every new level, as v1 refuses tasks in a cpuset with empty lists.
fn ensure_dir(dir: &Path, cpuset: bool) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(parent, cpuset)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::Io { path: dir.to_path_buf(), source: e }),
    }
    if cpuset {
        if let Some(parent) = dir.parent() {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if read(&dir.join(f))?.is_empty() {
                    write(&dir.join(f), &read(&parent.join(f))?)?;
                }
            }
        }
    }
    Ok(())
}

/// pids of a cgroup directory and all of its children.
pub(crate) fn collect_pids(dir: &Path) -> Result<Vec<i32>, Error> {
    let mut out = Vec::new();
    let procs = dir.join("cgroup.procs");
    match std::fs::read_to_string(&procs) {
        Ok(t) => out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::Io { path: procs, source: e }),
    }
    let rd = std::fs::read_dir(dir).map_err(io_err(dir))?;
    for entry in rd.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.extend(collect_pids(&entry.path())?);
        }
    }
    Ok(out)
}

/// Removes a cgroup directory and its child cgroups, deepest first.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), Error> {
    if !dir.is_dir() {
        return Ok(());
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for entry in rd.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&entry.path())?;
            }
        }
    }
    rmdir_retry(dir)
}
