//! Instance drivers: one [`Driver`] per instance type, looked up in a static registry, each
//! reporting whether this host can run it. A driver loads [`Instance`] objects that do the
//! lifecycle, state, exec, console and file work. The traits are transport-neutral: the
//! REST layer pumps [`ExecSession`]/[`ConsoleSession`] into websockets, and a VM driver can
//! implement the same traits over its guest agent.

pub mod container;
mod socket_console;
pub mod vm;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Devices, InstanceType};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("The instance is not running")]
    NotRunning,
    #[error("The instance is already running")]
    AlreadyRunning,
    #[error("The instance is frozen")]
    Frozen,
    #[error("Instance driver {driver} is not operational: {reason}")]
    NotOperational { driver: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{action}: {reason}")]
    Failed { action: String, reason: String },
}

impl Error {
    pub(crate) fn failed(action: &str, e: impl std::fmt::Display) -> Error {
        Error::Failed { action: action.to_string(), reason: e.to_string() }
    }
}

/// Whether a driver can run on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverStatus {
    Operational,
    NotOperational(String),
}

/// Observable runtime status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Frozen,
    Stopped,
}

/// Lifecycle points; `Pre*` may deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PreStart,
    OnStart,
    PreStop,
    OnStopNs,
    OnStop,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::PreStart => "pre-start",
            Hook::OnStart => "onstart",
            Hook::PreStop => "pre-stop",
            Hook::OnStopNs => "onstopns",
            Hook::OnStop => "onstop",
        }
    }
}

/// Where drivers deliver lifecycle hooks (the daemon's dispatcher).
pub trait HookSink: Sync {
    fn hook(&self, hook: Hook) -> Result<(), String>;
}

/// Hooks that do nothing.
pub struct NoHooks;
impl HookSink for NoHooks {
    fn hook(&self, _: Hook) -> Result<(), String> {
        Ok(())
    }
}

/// Everything a driver needs to load one instance.
#[derive(Debug, Clone)]
pub struct LoadArgs {
    pub project: String,
    pub name: String,
    pub config: BTreeMap<String, String>,
    pub devices: Devices,
    /// The root volume's directory (its `rootfs` is below it).
    pub volume_path: PathBuf,
    /// Per-instance runtime dir, surviving daemon restarts.
    pub runtime_dir: PathBuf,
    /// Per-instance log dir.
    pub log_dir: PathBuf,
    /// Id maps of the other instances (`volatile.idmap.current`).
    pub other_maps: Vec<String>,
}

/// What the daemon records after a start (volatile keys).
#[derive(Debug, Clone, Default)]
pub struct StartRecord {
    pub volatile: BTreeMap<String, String>,
}

/// Network interface state as the API shows it.
pub use crate::container::state::NetInterface;

/// A running instance's state.
#[derive(Debug, Clone)]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub processes: u64,
    pub memory_usage: u64,
    pub memory_peak: u64,
    pub cpu_usage_ns: u64,
    /// Disk usage in bytes per disk device (empty when unknown).
    pub disk: BTreeMap<String, u64>,
    pub network: BTreeMap<String, NetInterface>,
}

impl State {
    /// The state of an instance that is not running.
    pub fn stopped() -> State {
        State {
            status: Status::Stopped,
            pid: 0,
            processes: 0,
            memory_usage: 0,
            memory_peak: 0,
            cpu_usage_ns: 0,
            disk: BTreeMap::new(),
            network: BTreeMap::new(),
        }
    }
}

/// What to run in `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecArgs {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub uid: u32,
    pub gid: u32,
    pub cwd: String,
    pub interactive: bool,
    pub width: u16,
    pub height: u16,
}

/// Output of a running command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// For an interactive session, everything is stdout.
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The exit code (128+signal when killed); always the last event.
    Exit(i32),
}

/// A running command. `next_event` blocks; the caller runs it on a thread.
pub trait ExecSession: Send + Sync {
    fn write_stdin(&self, data: &[u8]) -> Result<(), Error>;
    fn close_stdin(&self);
    fn resize(&self, width: u16, height: u16) -> Result<(), Error>;
    fn signal(&self, sig: i32) -> Result<(), Error>;
    /// None once `Exit` has been returned.
    fn next_event(&self) -> Option<ExecEvent>;
}

/// An attached console. `read` blocks (None = console gone).
pub trait ConsoleSession: Send + Sync {
    fn write(&self, data: &[u8]) -> Result<(), Error>;
    fn read(&self) -> Option<Vec<u8>>;
    fn resize(&self, width: u16, height: u16) -> Result<(), Error>;
    fn close(&self);
}

/// A file's metadata (container ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    pub kind: FileType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub modified: i64,
    pub target: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    File,
    Directory,
    Symlink,
    Other,
}

/// File access inside an instance (paths resolved inside its root).
pub trait FileOps: Send {
    fn stat(&self, path: &str) -> Result<Option<FileStat>, Error>;
    fn read(&self, path: &str) -> Result<Vec<u8>, Error>;
    fn list(&self, path: &str) -> Result<Vec<String>, Error>;
    /// Creates or overwrites (or appends to) a file.
    fn write(&self, path: &str, uid: u32, gid: u32, mode: u32, data: &[u8], append: bool) -> Result<(), Error>;
    fn mkdir(&self, path: &str, uid: u32, gid: u32, mode: u32) -> Result<(), Error>;
    fn symlink(&self, path: &str, target: &str, uid: u32, gid: u32) -> Result<(), Error>;
    fn delete(&self, path: &str) -> Result<(), Error>;
}

/// A file as a write stores it: an existing file keeps its owner and mode (LXD applies
/// them only on creation) and an append starts from its content; a directory is refused.
pub(crate) struct FileWrite {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub content: Vec<u8>,
}

impl FileWrite {
    pub(crate) fn plan(
        ops: &(impl FileOps + ?Sized),
        path: &str,
        (uid, gid, mode): (u32, u32, u32),
        data: &[u8],
        append: bool,
    ) -> Result<FileWrite, Error> {
        let mut w = FileWrite { uid, gid, mode, content: Vec::new() };
        if let Some(st) = ops.stat(path)? {
            if st.kind == FileType::Directory {
                return Err(Error::Invalid(format!("{path} is a directory")));
            }
            (w.uid, w.gid, w.mode) = (st.uid, st.gid, st.mode);
            if append {
                w.content = ops.read(path)?;
            }
        }
        w.content.extend_from_slice(data);
        Ok(w)
    }
}

/// One loaded instance. Methods are blocking.
pub trait Instance: Send + Sync {
    /// Starts it; returns the volatile keys to record.
    fn start(&self, hooks: &dyn HookSink) -> Result<StartRecord, Error>;
    /// Forced (`force`) or clean stop with the default timeout.
    fn stop(&self, force: bool, hooks: &dyn HookSink) -> Result<(), Error> {
        if force {
            self.kill(hooks)
        } else {
            self.shutdown(None, hooks).map(|_| ())
        }
    }
    /// Kills everything at once.
    fn kill(&self, hooks: &dyn HookSink) -> Result<(), Error>;
    /// Clean shutdown (None = wait forever); kills after the timeout. True if clean.
    fn shutdown(&self, timeout: Option<Duration>, hooks: &dyn HookSink) -> Result<bool, Error>;
    fn restart(&self, timeout: Option<Duration>, hooks: &dyn HookSink) -> Result<StartRecord, Error> {
        if self.is_running() {
            match timeout {
                Some(t) if t.is_zero() => self.kill(hooks)?,
                _ => {
                    self.shutdown(timeout, hooks)?;
                }
            }
        }
        self.start(hooks)
    }
    fn freeze(&self) -> Result<(), Error>;
    fn unfreeze(&self) -> Result<(), Error>;
    fn is_running(&self) -> bool;
    fn state(&self) -> Result<State, Error>;
    fn exec(&self, args: &ExecArgs) -> Result<Box<dyn ExecSession>, Error>;
    fn console(&self, width: u16, height: u16) -> Result<Box<dyn ConsoleSession>, Error>;
    fn console_log(&self) -> Result<Vec<u8>, Error>;
    fn clear_console_log(&self) -> Result<(), Error>;
    fn files(&self) -> Result<Box<dyn FileOps>, Error>;
    /// Applies a new expanded config/devices to a running instance (limits, hotplug).
    fn update(&self, config: &BTreeMap<String, String>, devices: &Devices) -> Result<StartRecord, Error>;
    /// Waits until it stops by itself (None = forever); true once stopped. Then call
    /// `cleanup`.
    fn wait_exit(&self, timeout: Option<Duration>) -> bool;
    /// Tears down after a stop from inside; true if it asked for a reboot.
    fn cleanup(&self, hooks: &dyn HookSink) -> Result<bool, Error>;
    /// Called before the instance's record and volume are deleted.
    fn on_delete(&self) -> Result<(), Error>;
}

/// A driver for one instance type.
pub trait Driver: Send + Sync {
    fn name(&self) -> &'static str;
    fn status(&self) -> DriverStatus;
    /// Loads an instance; if it was left running by an earlier daemon it is adopted.
    fn load(&self, args: LoadArgs) -> Result<Box<dyn Instance>, Error>;
}

type Constructor = fn() -> Box<dyn Driver>;

/// The registry: instance type name → constructor.
const REGISTRY: &[(&str, Constructor)] = &[
    ("container", || Box::new(container::ContainerDriver::new())),
    ("virtual-machine", || Box::new(vm::VmDriver::new())),
];

/// The driver of an instance type (or why there is none).
pub fn driver_for(t: InstanceType) -> Result<Box<dyn Driver>, Error> {
    let name = match t {
        InstanceType::VirtualMachine => "virtual-machine",
        _ => "container",
    };
    let ctor = REGISTRY
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .ok_or_else(|| Error::NotOperational { driver: name.into(), reason: "no driver is built in".into() })?;
    let d = ctor();
    match d.status() {
        DriverStatus::Operational => Ok(d),
        DriverStatus::NotOperational(reason) => Err(Error::NotOperational { driver: name.into(), reason }),
    }
}

/// Every registered driver with its status (for `GET /1.0` and diagnostics).
pub fn drivers() -> Vec<(&'static str, DriverStatus)> {
    REGISTRY.iter().map(|(n, c)| (*n, c().status())).collect()
}
