//! One running QEMU process: start, adopt, stop, freeze, state, live memory.
//!
//! All methods block (QMP and process waits); callers run them in `spawn_blocking`. The
//! QEMU process is daemonized and owned by nobody: berthd finds it again through the
//! pidfile and the QMP socket ([`Machine::adopt`]), so a daemon restart leaves VMs running.

use super::agent::{AgentClient, AgentError};
use super::cmdline::{self, RunPaths, VmSpec};
use super::qmp::{BlockStats, Qmp, QmpError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long QEMU gets to create its sockets and daemonize.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the VM lifecycle.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The run directory could not be prepared.
    #[error("run dir {path}")]
    RunDir { path: PathBuf, source: std::io::Error },
    /// QEMU could not be started.
    #[error("spawn {program}")]
    Spawn { program: PathBuf, source: std::io::Error },
    /// QEMU exited before daemonizing.
    #[error("qemu failed to start ({status}): {log}")]
    StartFailed { status: String, log: String },
    /// No usable pidfile.
    #[error("pidfile {path}: {detail}")]
    Pidfile { path: PathBuf, detail: String },
    /// The pid in the pidfile is not this VM's QEMU.
    #[error("pid {pid} from {path} is not running this VM's qemu")]
    NotRunning { pid: i32, path: PathBuf },
    /// A QMP failure.
    #[error("qmp")]
    Qmp(#[from] QmpError),
    /// An agent failure.
    #[error("agent")]
    Agent(#[from] AgentError),
    /// QEMU did not exit after quit and SIGKILL.
    #[error("qemu pid {pid} did not exit")]
    StillRunning { pid: i32 },
    /// A device could not be plugged or unplugged.
    #[error("hotplug: {detail}")]
    Hotplug { detail: String },
    /// The client state lock was poisoned by a panic.
    #[error("vm handle lock poisoned")]
    Poisoned,
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// The guest powered itself off after the ACPI button.
    Clean,
    /// The guest ignored the button; QEMU was told to quit (or killed).
    Forced,
}

/// What a live memory change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryUpdate {
    /// The balloon target changed now (only shrinking below boot memory is possible).
    Ballooned,
    /// No balloon, or growth beyond boot memory: applies at the next start.
    NextStart,
}

/// A snapshot of the VM's state for `GET /1.0/instances/<name>/state`.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineState {
    /// QEMU run state (`running`, `paused`, …).
    pub status: String,
    /// Whether vCPUs run.
    pub running: bool,
    /// QEMU's pid.
    pub pid: i32,
    /// Boot memory in bytes.
    pub memory_total: u64,
    /// Memory the guest has (balloon `actual`), when there is a balloon.
    pub memory_actual: Option<u64>,
    /// vCPU count.
    pub cpus: u32,
    /// CPU time of all vCPU threads, nanoseconds.
    pub cpu_ns: u64,
    /// Block device counters.
    pub disks: Vec<BlockStats>,
}

/// A running VM.
pub struct Machine {
    paths: RunPaths,
    pid: i32,
    qmp: Mutex<Qmp>,
    agent: Mutex<Option<Arc<AgentClient>>>,
}

impl Machine {
    /// Starts QEMU for `spec` and connects QMP. The run dir is created if needed; stale
    /// sockets and pidfile are removed first.
    pub fn start(qemu: &Path, spec: &VmSpec, paths: RunPaths) -> Result<Machine, MachineError> {
        let dir_err = |source| MachineError::RunDir { path: paths.dir.clone(), source };
        std::fs::create_dir_all(&paths.dir).map_err(dir_err)?;
        for p in [paths.qmp(), paths.agent(), paths.console(), paths.pidfile()] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(MachineError::RunDir { path: p, source }),
            }
        }
        let log = std::fs::File::create(paths.qemu_log()).map_err(dir_err)?;
        let log2 = log.try_clone().map_err(dir_err)?;
        let mut child = Command::new(qemu)
            .args(cmdline::build_args(spec, &paths))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| MachineError::Spawn { program: qemu.to_path_buf(), source })?;
        // With -daemonize the parent exits once the child is initialized (sockets listen).
        let deadline = Instant::now() + START_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                // QEMU's set-up takes tens of ms; a coarse poll would add up to its period.
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                Ok(None) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(MachineError::StartFailed { status: "timeout".into(), log: read_log(&paths) });
                }
            }
        };
        if !status.success() {
            return Err(MachineError::StartFailed { status: status.to_string(), log: read_log(&paths) });
        }
        Machine::adopt(paths)
    }

    /// Attaches to a VM started earlier (possibly by another berthd process).
    pub fn adopt(paths: RunPaths) -> Result<Machine, MachineError> {
        let pid = read_pidfile(&paths.pidfile())?;
        if !is_our_qemu(pid, &paths.qmp()) {
            return Err(MachineError::NotRunning { pid, path: paths.pidfile() });
        }
        let qmp = Qmp::connect(&paths.qmp(), Duration::from_secs(5))?;
        Ok(Machine { paths, pid, qmp: Mutex::new(qmp), agent: Mutex::new(None) })
    }

    /// QEMU's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The run directory layout.
    pub fn paths(&self) -> &RunPaths {
        &self.paths
    }

    /// Whether the QEMU process still runs.
    pub fn is_running(&self) -> bool {
        process_alive(self.pid)
    }

    /// Direct QMP access for callers that need more than the methods here.
    pub fn qmp(&self) -> Result<MutexGuard<'_, Qmp>, MachineError> {
        self.qmp.lock().map_err(|_| MachineError::Poisoned)
    }

    /// The agent client, connecting on first use and waiting up to `wait` for the guest.
    pub fn agent(&self, wait: Duration) -> Result<Arc<AgentClient>, MachineError> {
        let mut slot = self.agent.lock().map_err(|_| MachineError::Poisoned)?;
        if let Some(a) = slot.as_ref().filter(|a| a.is_connected()) {
            return Ok(a.clone());
        }
        let a = Arc::new(AgentClient::connect(&self.paths.agent(), wait)?);
        *slot = Some(a.clone());
        Ok(a)
    }

    /// Pauses all vCPUs.
    pub fn freeze(&self) -> Result<(), MachineError> {
        Ok(self.qmp()?.stop()?)
    }

    /// Resumes the vCPUs.
    pub fn unfreeze(&self) -> Result<(), MachineError> {
        Ok(self.qmp()?.cont()?)
    }

    /// Presses the power button and waits up to `timeout` for QEMU to exit; then forces it.
    pub fn shutdown(&self, timeout: Duration) -> Result<ShutdownOutcome, MachineError> {
        {
            let mut q = self.qmp()?;
            // A paused guest cannot act on the button.
            if !q.query_status()?.running {
                q.cont()?;
            }
            q.system_powerdown()?;
        }
        if wait_exit(self.pid, timeout) {
            return Ok(ShutdownOutcome::Clean);
        }
        self.stop()?;
        Ok(ShutdownOutcome::Forced)
    }

    /// Stops QEMU now: `quit`, then SIGKILL if it lingers.
    pub fn stop(&self) -> Result<(), MachineError> {
        if let Ok(mut q) = self.qmp() {
            let _ = q.quit();
        }
        if wait_exit(self.pid, Duration::from_secs(10)) {
            return Ok(());
        }
        // SAFETY: kill(2) with a pid we verified as our QEMU.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        if wait_exit(self.pid, Duration::from_secs(5)) {
            Ok(())
        } else {
            Err(MachineError::StillRunning { pid: self.pid })
        }
    }

    /// Restarts: clean shutdown (forced after `timeout`), then a fresh start with `spec`
    /// (new limits apply here). Returns the new machine and how the old one stopped.
    pub fn restart(self, qemu: &Path, spec: &VmSpec, timeout: Duration) -> Result<(Machine, ShutdownOutcome), MachineError> {
        let how = self.shutdown(timeout)?;
        let paths = self.paths.clone();
        drop(self);
        Ok((Machine::start(qemu, spec, paths)?, how))
    }

    /// Status, memory, CPU and disk counters from QMP and /proc.
    pub fn state(&self) -> Result<MachineState, MachineError> {
        let mut q = self.qmp()?;
        let st = q.query_status()?;
        let cpus = q.query_cpus_fast()?;
        let memory_total = q.query_memory_size()?;
        let memory_actual = q.query_balloon()?;
        let disks = q.query_blockstats()?;
        let cpu_ns = cpus.iter().map(|c| thread_cpu_ns(self.pid, c.thread_id)).sum();
        Ok(MachineState {
            status: st.status,
            running: st.running,
            pid: self.pid,
            memory_total,
            memory_actual,
            cpus: cpus.len() as u32,
            cpu_ns,
            disks,
        })
    }

    /// Applies a new `limits.memory` live when the balloon can, else at the next start.
    pub fn set_memory(&self, bytes: u64) -> Result<MemoryUpdate, MachineError> {
        let mut q = self.qmp()?;
        let total = q.query_memory_size()?;
        if bytes > total || q.query_balloon()?.is_none() {
            return Ok(MemoryUpdate::NextStart);
        }
        q.balloon(bytes)?;
        Ok(MemoryUpdate::Ballooned)
    }
}

fn read_log(paths: &RunPaths) -> String {
    let s = std::fs::read_to_string(paths.qemu_log()).unwrap_or_default();
    s.trim().lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("; ")
}

fn read_pidfile(path: &Path) -> Result<i32, MachineError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| MachineError::Pidfile { path: path.to_path_buf(), detail: e.to_string() })?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| MachineError::Pidfile { path: path.to_path_buf(), detail: format!("bad pid {:?}", text.trim()) })
}

/// The pid runs (not a zombie) and its command line names our QMP socket, so a reused pid
/// is not mistaken for the VM.
fn is_our_qemu(pid: i32, qmp: &Path) -> bool {
    if !process_alive(pid) {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let needle = cmdline::opt_escape(qmp);
    String::from_utf8_lossy(&cmdline).contains(&needle)
}

/// Alive and not a zombie (a daemonized QEMU is not our child; we cannot reap it).
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

fn wait_exit(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while process_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// utime + stime of one thread, in nanoseconds.
fn thread_cpu_ns(pid: i32, tid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    // After the comm field: state is [0], utime [11], stime [12].
    let ticks: u64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<u64>().ok()).sum();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    ticks * 1_000_000_000 / hz
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// Test access to the liveness check.
    pub(crate) fn alive(pid: i32) -> bool {
        super::process_alive(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfile_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pid");
        std::fs::write(&p, "1234\n").unwrap();
        assert_eq!(read_pidfile(&p).unwrap(), 1234);
        std::fs::write(&p, "x").unwrap();
        assert!(matches!(read_pidfile(&p), Err(MachineError::Pidfile { .. })));
        assert!(read_pidfile(&dir.path().join("none")).is_err());
    }

    #[test]
    fn liveness_and_ownership() {
        assert!(process_alive(std::process::id() as i32));
        assert!(!process_alive(i32::MAX));
        // We are alive but not a QEMU with that socket.
        assert!(!is_our_qemu(std::process::id() as i32, Path::new("/run/x/qmp.sock")));
    }
}
