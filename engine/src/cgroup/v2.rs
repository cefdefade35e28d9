//! cgroup v2: one directory in the unified hierarchy; controllers are enabled in the
//! parent's `cgroup.subtree_control`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::v1::{collect_pids, remove_tree};
use super::{read, read_u64, render_cpuset, write, Error, Limits, Stats};

const WANTED: &[&str] = &["cpuset", "cpu", "io", "memory", "pids"];

/// Leaf the daemon moves itself into when its own cgroup is the instances' parent: v2
/// forbids enabling controllers for children of a cgroup that has processes itself.
pub const DAEMON_LEAF: &str = "berthd.leaf";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2 {
    pub dir: PathBuf,
}

impl V2 {
    /// Enables the controllers we use in `parent` and creates `<parent>/<name>`.
    pub fn create(parent: &Path, name: &str) -> Result<Self, Error> {
        let available = read(&parent.join("cgroup.controllers")).unwrap_or_default();
        let enable: Vec<String> =
            available.split_whitespace().filter(|c| WANTED.contains(c)).map(|c| format!("+{c}")).collect();
        if !enable.is_empty() {
            let ctl = parent.join("cgroup.subtree_control");
            match write(&ctl, &enable.join(" ")) {
                Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
                    move_procs_to_leaf(parent)?;
                    write(&ctl, &enable.join(" "))?;
                }
                r => r?,
            }
        }
        let dir = parent.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::Io { path: dir, source: e }),
        }
        let cg = V2 { dir };
        cg.set_devices(super::v1::DEFAULT_DEVICES.iter().map(|r| r.to_string()).collect())?;
        Ok(cg)
    }

    /// Replaces the device program with one allowing exactly `rules` (v1 syntax). The
    /// daemon keeps no copy: callers pass the whole list. Only on a real cgroup2 filesystem (tests use
    /// a fake one), and EPERM (nested without CAP_BPF) leaves devices uncontrolled, as
    /// v1 does when `devices.deny` is refused.
    pub fn set_devices(&self, rules: Vec<String>) -> Result<(), Error> {
        let parsed = rules.iter().map(|r| super::devbpf::Rule::parse(r)).collect::<Result<Vec<_>, _>>()?;
        if !is_cgroup2(&self.dir) {
            return Ok(());
        }
        match super::devbpf::apply(&self.dir, &parsed) {
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EPERM) => Ok(()),
            r => r,
        }
    }

    fn f(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    pub fn add_pid(&self, pid: i32) -> Result<(), Error> {
        write(&self.f("cgroup.procs"), &pid.to_string())
    }

    pub fn procs_files(&self) -> Vec<PathBuf> {
        vec![self.f("cgroup.procs")]
    }

    pub fn apply(&self, l: &Limits) -> Result<(), Error> {
        if self.f("cpuset.cpus").exists() || l.cpuset.is_some() {
            // Empty means "inherit the parent's CPUs".
            write(&self.f("cpuset.cpus"), &l.cpuset.as_deref().map(render_cpuset).unwrap_or_default())?;
        }
        let max = match l.cpu_quota {
            Some((q, p)) => format!("{q} {p}"),
            None => "max 100000".into(),
        };
        write(&self.f("cpu.max"), &max)?;
        write(&self.f("cpu.weight"), &l.shares(100).clamp(1, 10000).to_string())?;
        match l.memory {
            Some(m) if l.memory_soft => {
                write(&self.f("memory.max"), "max")?;
                write(&self.f("memory.high"), &m.to_string())?;
            }
            Some(m) => {
                write(&self.f("memory.max"), &m.to_string())?;
                write(&self.f("memory.high"), "max")?;
            }
            None => {
                write(&self.f("memory.max"), "max")?;
                write(&self.f("memory.high"), "max")?;
            }
        }
        if self.f("memory.swap.max").exists() {
            write(&self.f("memory.swap.max"), if l.swap { "max" } else { "0" })?;
        }
        let pids = l.processes.map(|n| n.to_string()).unwrap_or_else(|| "max".into());
        write(&self.f("pids.max"), &pids)?;
        Ok(())
    }

    pub fn stats(&self) -> Result<Stats, Error> {
        let mut s = Stats::default();
        if self.f("memory.current").exists() {
            s.memory_usage = read_u64(&self.f("memory.current"))?;
            s.memory_peak = read_u64(&self.f("memory.peak")).unwrap_or(s.memory_usage);
        }
        if let Ok(stat) = read(&self.f("cpu.stat")) {
            let usec = stat
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec ").and_then(|v| v.trim().parse::<u64>().ok()))
                .unwrap_or(0);
            s.cpu_usage_ns = usec * 1000;
        }
        s.processes = match read_u64(&self.f("pids.current")) {
            Ok(n) => n,
            Err(_) => self.pids()?.len() as u64,
        };
        Ok(s)
    }

    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        collect_pids(&self.dir)
    }

    pub fn freeze(&self) -> Result<(), Error> {
        self.set_frozen(true)
    }

    pub fn thaw(&self) -> Result<(), Error> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, on: bool) -> Result<(), Error> {
        write(&self.f("cgroup.freeze"), if on { "1" } else { "0" })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut attempt = 0;
        while self.is_frozen()? != on {
            if Instant::now() > deadline {
                return Err(Error::Timeout { path: self.dir.clone(), state: if on { "frozen" } else { "thawed" }.into() });
            }
            std::thread::sleep(super::backoff(&mut attempt));
        }
        Ok(())
    }

    pub fn is_frozen(&self) -> Result<bool, Error> {
        let events = read(&self.f("cgroup.events"))?;
        Ok(events.lines().any(|l| l.trim() == "frozen 1"))
    }

    pub fn kill_all(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut attempt = 0;
        loop {
            if self.pids()?.is_empty() {
                return Ok(());
            }
            write(&self.f("cgroup.kill"), "1")?;
            if Instant::now() > deadline {
                return Err(Error::Timeout { path: self.dir.clone(), state: "empty".into() });
            }
            std::thread::sleep(super::backoff(&mut attempt));
        }
    }

    pub fn remove(&self) -> Result<(), Error> {
        remove_tree(&self.dir)
    }
}

fn is_cgroup2(dir: &Path) -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    nix::sys::statfs::statfs(dir).is_ok_and(|s| s.filesystem_type().0 as i64 == CGROUP2_SUPER_MAGIC)
}

/// Moves every process of `parent` into `parent/DAEMON_LEAF`.
fn move_procs_to_leaf(parent: &Path) -> Result<(), Error> {
    let leaf = parent.join(DAEMON_LEAF);
    match std::fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::Io { path: leaf, source: e }),
    }
    for pid in read(&parent.join("cgroup.procs"))?.lines() {
        // A process may exit meanwhile; ESRCH is fine.
        match write(&leaf.join("cgroup.procs"), pid.trim()) {
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {}
            r => r?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_parent() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("berth");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma\n").unwrap();
        (t, p)
    }

    #[test]
    fn create_enables_controllers() {
        let (_t, p) = fake_parent();
        let cg = V2::create(&p, "c1").unwrap();
        assert_eq!(std::fs::read_to_string(p.join("cgroup.subtree_control")).unwrap(), "+cpuset +cpu +io +memory +pids");
        assert!(cg.exists());
        assert_eq!(cg.procs_files(), vec![p.join("c1/cgroup.procs")]);
    }

    #[test]
    fn limits_render() {
        let (_t, p) = fake_parent();
        let cg = V2::create(&p, "c1").unwrap();
        std::fs::write(p.join("c1/memory.swap.max"), "max").unwrap();
        let l = Limits {
            cpuset: Some(vec![0, 1, 3]),
            cpu_quota: Some((50_000, 100_000)),
            memory: Some(64 << 20),
            swap: false,
            processes: Some(10),
            cpu_priority: Some(5),
            ..Default::default()
        };
        cg.apply(&l).unwrap();
        let r = |f: &str| std::fs::read_to_string(p.join("c1").join(f)).unwrap();
        assert_eq!(r("cpuset.cpus"), "0-1,3");
        assert_eq!(r("cpu.max"), "50000 100000");
        assert_eq!(r("cpu.weight"), "95");
        assert_eq!(r("memory.max"), (64u64 << 20).to_string());
        assert_eq!(r("memory.high"), "max");
        assert_eq!(r("memory.swap.max"), "0");
        assert_eq!(r("pids.max"), "10");
        let soft = Limits { memory: Some(1000), memory_soft: true, swap: true, ..Default::default() };
        cg.apply(&soft).unwrap();
        assert_eq!(r("memory.max"), "max");
        assert_eq!(r("memory.high"), "1000");
        assert_eq!(r("pids.max"), "max");
        assert_eq!(r("cpu.max"), "max 100000");
        assert_eq!(r("cpuset.cpus"), "");
    }

    #[test]
    fn stats_and_freeze() {
        let (_t, p) = fake_parent();
        let cg = V2::create(&p, "c1").unwrap();
        let d = p.join("c1");
        std::fs::write(d.join("memory.current"), "4096\n").unwrap();
        std::fs::write(d.join("memory.peak"), "8192\n").unwrap();
        std::fs::write(d.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        std::fs::write(d.join("cgroup.procs"), "12\n13\n").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/cgroup.procs"), "14\n").unwrap();
        let s = cg.stats().unwrap();
        assert_eq!(s, Stats { memory_usage: 4096, memory_peak: 8192, cpu_usage_ns: 1_500_000, processes: 3 });
        std::fs::write(d.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        cg.freeze().unwrap();
        assert_eq!(std::fs::read_to_string(d.join("cgroup.freeze")).unwrap(), "1");
        assert!(cg.is_frozen().unwrap());
        std::fs::write(d.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        cg.thaw().unwrap();
        assert!(!cg.is_frozen().unwrap());
    }

    #[test]
    fn kill_writes_cgroup_kill_and_times_out_when_never_empty() {
        let (_t, p) = fake_parent();
        let cg = V2::create(&p, "c1").unwrap();
        std::fs::write(p.join("c1/cgroup.procs"), "99999999\n").unwrap();
        let r = cg.kill_all(Duration::from_millis(50));
        assert!(matches!(r, Err(Error::Timeout { .. })));
        assert_eq!(std::fs::read_to_string(p.join("c1/cgroup.kill")).unwrap(), "1");
        std::fs::write(p.join("c1/cgroup.procs"), "").unwrap();
        cg.kill_all(Duration::from_millis(50)).unwrap();
    }
}
