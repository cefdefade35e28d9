//! The native container runtime: namespaces, cgroups, idmapped rootfs, console, exec,
//! files and devices, without liblxc/runc. Every call is synchronous; the daemon runs
//! them in `spawn_blocking`.
//!
//! # API for the daemon
//! ```text
//! let spec = ContainerSpec::from_config(name, rootfs, runtime_dir, log_path,
//!                                       expanded_config, expanded_devices, &other_maps)?;
//! // spec.init / cgroup_parent / console_helper / halt_signal can be adjusted.
//! let (ct, info) = Container::start(&spec, &hooks)?;  // StartInfo: pid, idmap, disk_idmap, host_nics
//! ct.state()?;                                         // status, pid, processes, memory, cpu, network
//! ct.freeze()?; ct.unfreeze()?;
//! ct.apply_limits(&new_expanded_config)?;              // live limits.* update
//! let ex = ct.exec(&ExecRequest { .. })?;              // fds to pump; ex.resize/signal/wait
//! let att = ct.console_attach()?;                      // att.stream (read/write), att.resize
//! let f = Files::for_container(&ct)?;                  // or Files::for_stopped(rootfs, disk_idmap)
//! ct.shutdown(spec.halt_signal, timeout, &hooks)?;     // Ok(false) = had to kill
//! ct.stop(&hooks)?;                                    // forced
//! let ct = Container::adopt(&runtime_dir)?;            // after a daemon restart
//! if ct.wait_exit(None) { ct.cleanup(&hooks)?; }       // init exited by itself (poweroff/reboot)
//! ```
//! Hooks fire in the order on_start (before init is executed), on_stop_ns (processes gone,
//! network namespace still held), on_stop (everything torn down).
//!
//! Record after start: `volatile.idmap.current` = `info.idmap`, `volatile.last_state.idmap`
//! = `info.disk_idmap` (feed it back as `spec.disk_idmap`; `from_config` reads it), and
//! `volatile.<dev>.host_name` from `info.host_nics`.
//!
//! A running container survives the daemon: init is the daemon's child (CLONE_PARENT) and is
//! reparented when the daemon dies; the only other process is the tiny `berth-console`
//! helper (installed next to berthd) that holds the console pty and appends the console
//! log. `adopt` re-opens both from `<runtime_dir>/state.json` (pid + start time + pidfd).
//!
//! Processes started by `exec` are children of the daemon too: `wait` for every `Exec` (or
//! drop it, which reaps in the background). An unreaped exec zombie keeps the container's
//! pid namespace, and so its init, from finishing its exit.
//!
//! The rootfs' parent directories must be traversable (o+x) by the container's root uid.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroup;
use crate::idmap::IdmapSet;

pub mod console;
pub mod devices;
pub mod exec;
pub mod files;
mod hotplug;
mod init;
mod msg;
mod spawn;
pub mod net;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
mod start;
pub mod state;
pub mod stop;

pub use exec::{Exec, ExecRequest};
pub use console::ConsoleAttach;
pub use stop::REBOOT_STATUS;
pub use files::{FileInfo, FileKind, Files};
pub use spec::ContainerSpec;
pub use state::{ContainerState, NetInterface, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cgroup")]
    Cgroup(#[from] crate::cgroup::Error),
    #[error("id map")]
    Idmap(#[from] crate::idmap::Error),
    #[error("{what}")]
    Io { what: String, source: std::io::Error },
    #[error("container setup failed: {0}")]
    Setup(String),
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    #[error("container is not running")]
    NotRunning,
    #[error("invalid device {device}: {reason}")]
    Device { device: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

pub(crate) fn ioe(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Lifecycle callbacks, fired in the order on_start, on_stop_ns, on_stop.
pub trait Hooks: Sync {
    /// After namespaces and devices exist, before init is executed.
    fn on_start(&self, _pid: i32) -> Result<(), String> {
        Ok(())
    }
    /// After the container's processes are gone but while its network namespace still exists.
    fn on_stop_ns(&self, _netns: Option<BorrowedFd<'_>>) {}
    /// After everything was torn down.
    fn on_stop(&self) {}
}

/// Hooks that do nothing.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// What the daemon should record after a start (LXD volatile keys).
#[derive(Debug, Clone)]
pub struct StartInfo {
    pub pid: i32,
    /// `volatile.idmap.current`.
    pub idmap: Option<IdmapSet>,
    /// `volatile.last_state.idmap`: how the rootfs on disk is shifted now.
    pub disk_idmap: Option<IdmapSet>,
    /// device name → host-side interface (`volatile.<dev>.host_name`).
    pub host_nics: Vec<(String, String)>,
}

/// The runtime state written to `<runtime_dir>/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeState {
    pub name: String,
    pub pid: i32,
    pub start_time: u64,
    pub cgroup: Cgroup,
    pub idmap: Option<IdmapSet>,
    pub holder_pid: i32,
    pub holder_start_time: u64,
    pub console_socket: PathBuf,
    pub log_path: PathBuf,
    pub host_nics: Vec<String>,
    pub rootfs: PathBuf,
    /// The seccomp filter of containers started by an older berthd (exec gets the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<seccomp::Flags>,
    /// The seccomp policy the container runs under (exec gets the same).
    #[serde(default)]
    pub seccomp_policy: Option<seccomp::Spec>,
}

/// A started (or adopted) container.
#[derive(Debug)]
pub struct Container {
    pub(crate) rt: RuntimeState,
    pub(crate) runtime_dir: PathBuf,
    /// None when init was already gone at adoption.
    pub(crate) pidfd: Option<OwnedFd>,
    /// Held so on_stop_ns can run while the namespace still exists.
    pub(crate) netns: std::sync::Mutex<Option<OwnedFd>>,
    /// Whether init is our child (then we reap it).
    pub(crate) is_child: bool,
    pub(crate) holder_pidfd: Option<OwnedFd>,
    pub(crate) holder_is_child: bool,
}

impl Container {
    pub fn pid(&self) -> i32 {
        self.rt.pid
    }

    pub fn name(&self) -> &str {
        &self.rt.name
    }

    pub fn runtime_state(&self) -> &RuntimeState {
        &self.rt
    }

    pub fn cgroup(&self) -> &Cgroup {
        &self.rt.cgroup
    }

    /// True while init runs.
    pub fn is_running(&self) -> bool {
        match &self.pidfd {
            Some(fd) => !crate::sys::pidfd_wait_exit(fd.as_fd(), 0).unwrap_or(true),
            None => false,
        }
    }

    pub fn freeze(&self) -> Result<(), Error> {
        self.ensure_running()?;
        Ok(self.rt.cgroup.freeze()?)
    }

    pub fn unfreeze(&self) -> Result<(), Error> {
        self.ensure_running()?;
        Ok(self.rt.cgroup.thaw()?)
    }

    /// Applies the `limits.*` keys of a (new) expanded config to the running container.
    pub fn apply_limits(&self, config: &std::collections::BTreeMap<String, String>) -> Result<(), Error> {
        let l = crate::cgroup::Limits::from_config(config, host_cpus(), host_memory())?;
        Ok(self.rt.cgroup.apply(&l)?)
    }

    pub(crate) fn ensure_running(&self) -> Result<(), Error> {
        if self.is_running() {
            Ok(())
        } else {
            Err(Error::NotRunning)
        }
    }

    pub(crate) fn state_file(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }
}

pub(crate) fn host_cpus() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

pub(crate) fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
