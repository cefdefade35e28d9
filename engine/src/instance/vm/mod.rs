//! The virtual-machine driver: [`Instance`] over one daemonized QEMU per VM (`crate::vm`),
//! QMP for lifecycle and state, the guest agent for exec, files and network state.
//!
//! QEMU outlives berthd; `load` adopts a running one through its pidfile and QMP socket.
//! The agent connection is opened in the background right after a start, so the first
//! exec finds it ready; an exec arriving earlier waits up to [`AGENT_WAIT`].

mod devices;
mod files;
pub mod layout;
mod session;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{
    ConsoleSession, Driver, DriverStatus, Error, ExecArgs, ExecSession, FileOps, Hook, HookSink, Instance, LoadArgs,
    StartRecord, State, Status,
};
use crate::config::Devices;
use crate::container::net;
use crate::vm::agent::{AgentClient, ExecSpec, WinSize};
use crate::vm::{Machine, MachineError, RunPaths, ShutdownOutcome, VmSpec};

use super::container::chain;

/// How long an exec or file request waits for the guest agent of a booting VM.
pub const AGENT_WAIT: Duration = Duration::from_secs(60);
/// How long `state` waits for an agent that is not connected yet (network is optional).
const STATE_AGENT_WAIT: Duration = Duration::from_millis(200);
/// How long the background connect after a start waits for the guest.
const PREWARM_WAIT: Duration = Duration::from_secs(180);

/// Runs VMs with QEMU.
pub struct VmDriver {
    qemu: Option<PathBuf>,
    agent_wait: Duration,
}

impl VmDriver {
    /// Finds QEMU; `BERTH_VM_AGENT_WAIT` (seconds) overrides [`AGENT_WAIT`].
    pub fn new() -> Self {
        let agent_wait = std::env::var("BERTH_VM_AGENT_WAIT")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(AGENT_WAIT);
        VmDriver { qemu: layout::find_qemu(), agent_wait }
    }
}

impl Default for VmDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl Driver for VmDriver {
    fn name(&self) -> &'static str {
        "virtual-machine"
    }

    fn status(&self) -> DriverStatus {
        match &self.qemu {
            Some(_) => DriverStatus::Operational,
            None => DriverStatus::NotOperational(format!("{} was not found in PATH", layout::QEMU)),
        }
    }

    fn load(&self, args: LoadArgs) -> Result<Box<dyn Instance>, Error> {
        let qemu = self.qemu.clone().ok_or_else(|| Error::NotOperational {
            driver: self.name().into(),
            reason: format!("{} was not found in PATH", layout::QEMU),
        })?;
        let paths = layout::run_paths(&args.runtime_dir);
        let machine = if paths.pidfile().exists() {
            match Machine::adopt(paths.clone()) {
                Ok(m) => Some(Arc::new(m)),
                Err(MachineError::NotRunning { .. }) | Err(MachineError::Pidfile { .. }) => None,
                Err(e) => {
                    tracing::warn!(instance = %args.name, error = %chain(&e), "cannot adopt VM; treating it as stopped");
                    None
                }
            }
        } else {
            None
        };
        if machine.is_some() {
            devices::replug_nics(&args);
        }
        let shared = Arc::new(Shared::default());
        shared.set_current(machine.as_ref());
        Ok(Box::new(VmInstance {
            args: Mutex::new(args),
            qemu,
            paths,
            machine: Mutex::new(machine),
            shared,
            agent_wait: self.agent_wait,
        }))
    }
}

/// One VM instance.
pub struct VmInstance {
    args: Mutex<LoadArgs>,
    qemu: PathBuf,
    paths: RunPaths,
    machine: Mutex<Option<Arc<Machine>>>,
    shared: Arc<Shared>,
    /// Bound on waiting for the agent of a booting guest.
    agent_wait: Duration,
}

/// What the background agent connect shares with the instance.
#[derive(Default)]
struct Shared {
    /// The machine the agent belongs to (weak: only the instance keeps QMP open).
    current: Mutex<Weak<Machine>>,
    /// The connected agent of the current machine.
    agent: Mutex<Option<Arc<AgentClient>>>,
    /// Serialises agent connects (the channel takes one client at a time).
    connecting: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn m_err(action: &str) -> impl FnOnce(MachineError) -> Error + '_ {
    move |e| Error::failed(action, chain(&e))
}

impl Shared {
    fn is_current(&self, m: &Weak<Machine>) -> bool {
        Weak::ptr_eq(&lock(&self.current), m) && m.strong_count() > 0
    }

    fn cached(&self) -> Option<Arc<AgentClient>> {
        lock(&self.agent).as_ref().filter(|a| a.is_connected()).cloned()
    }

    /// The cached agent if connected; otherwise connects, waiting up to `wait` in all
    /// (also for another thread's connect, e.g. the one after start). With `try_only`,
    /// gives up at once when another thread is connecting, and a guest that does not
    /// answer is not an error.
    /// The machine is held weakly, so a background connect never keeps QMP open.
    fn agent(&self, m: &Weak<Machine>, wait: Duration, try_only: bool) -> Result<Option<Arc<AgentClient>>, Error> {
        let start = Instant::now();
        let not_ready = |detail: String| Error::Failed {
            action: "The VM agent isn't currently running".into(),
            reason: format!("{detail} (the guest may still be booting, or it has no berth-agent)"),
        };
        let _g = loop {
            if let Some(a) = self.cached() {
                return Ok(Some(a));
            }
            match self.connecting.try_lock() {
                Ok(g) => break g,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) if try_only => return Ok(None),
                Err(std::sync::TryLockError::WouldBlock) if start.elapsed() >= wait => {
                    return Err(not_ready(format!("no answer after {wait:?}")))
                }
                // Short: an exec waiting here runs as soon as the connect is made.
                Err(std::sync::TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        if let Some(a) = self.cached() {
            return Ok(Some(a));
        }
        let running = |m: &Weak<Machine>| m.upgrade().is_some_and(|m| m.is_running());
        let Some(path) = m.upgrade().filter(|_| self.is_current(m)).map(|m| m.paths().agent()) else {
            return Err(Error::NotRunning);
        };
        match AgentClient::connect(&path, wait.saturating_sub(start.elapsed())) {
            Ok(a) => {
                tracing::debug!(waited = ?start.elapsed(), "agent connected");
                let a = Arc::new(a);
                if self.is_current(m) {
                    *lock(&self.agent) = Some(a.clone());
                }
                Ok(Some(a))
            }
            Err(e) if try_only => {
                tracing::debug!(error = %e, "agent not ready");
                Ok(None)
            }
            Err(_) if !running(m) => Err(Error::NotRunning),
            Err(e) => Err(not_ready(chain(&e))),
        }
    }

    fn set_current(&self, m: Option<&Arc<Machine>>) {
        *lock(&self.agent) = None;
        *lock(&self.current) = m.map(Arc::downgrade).unwrap_or_default();
    }
}

impl VmInstance {
    fn current(&self) -> Option<Arc<Machine>> {
        lock(&self.machine).clone()
    }

    fn running(&self) -> Result<Arc<Machine>, Error> {
        self.current().filter(|m| m.is_running()).ok_or(Error::NotRunning)
    }

    fn spec(&self) -> Result<VmSpec, Error> {
        let a = lock(&self.args).clone();
        let (disk, boot) = layout::boot_layout(&a.volume_path).map_err(|e| Error::Invalid(chain(&e)))?;
        let accel = layout::accel(&self.qemu);
        // Host paths from config would hand host files to the guest (and bypass project
        // restrictions on raw.qemu): the kernel and initrd come only from the volume.
        let mut config = a.config.clone();
        config.remove("user.boot.kernel");
        config.remove("user.boot.initrd");
        VmSpec::from_config(&a.name, &config, accel, Some(disk), boot, layout::host_memory())
            .map_err(|e| Error::Invalid(format!("Invalid VM configuration: {}", chain(&e))))
    }

    fn forget_machine(&self) {
        *lock(&self.machine) = None;
        self.shared.set_current(None);
    }

    /// The agent of the running VM, waiting for it to come up.
    fn ready_agent(&self) -> Result<Arc<AgentClient>, Error> {
        let m = self.running()?;
        self.shared.agent(&Arc::downgrade(&m), self.agent_wait, false)?.ok_or(Error::NotRunning)
    }

    /// Connects the agent in the background so the first exec finds it ready.
    fn prewarm(&self, m: &Arc<Machine>) {
        let shared = self.shared.clone();
        let m = Arc::downgrade(m);
        let spawned = std::thread::Builder::new().name("vm-agent-connect".into()).stack_size(256 * 1024).spawn(move || {
            if let Err(e) = shared.agent(&m, PREWARM_WAIT, false) {
                tracing::debug!(error = %e, "background agent connect");
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the agent connect thread");
        }
    }

    fn is_paused(m: &Machine) -> bool {
        m.qmp().ok().and_then(|mut q| q.query_status().ok()).is_some_and(|s| !s.running && s.status == "paused")
    }
}

impl Instance for VmInstance {
    fn start(&self, hooks: &dyn HookSink) -> Result<StartRecord, Error> {
        if self.running().is_ok() {
            return Err(Error::AlreadyRunning);
        }
        let mut spec = self.spec()?;
        let (nics, disks) = {
            let a = lock(&self.args);
            devices::plans(&a.name, &a.config, &a.devices)?
        };
        spec.nics = nics.iter().map(devices::qemu_nic).collect();
        spec.disks = disks;
        let m = Arc::new(Machine::start(&self.qemu, &spec, self.paths.clone()).map_err(m_err("Failed to start VM"))?);
        *lock(&self.machine) = Some(m.clone());
        self.shared.set_current(Some(&m));
        let plugged = nics.iter().try_for_each(|n| {
            net::plug(n).map_err(|e| format!("nic {}: {}", n.device, chain(&e)))
        });
        if let Err(reason) = plugged.and_then(|()| hooks.hook(Hook::OnStart)) {
            let _ = m.stop();
            self.forget_machine();
            return Err(Error::Failed { action: "Failed to start VM".into(), reason });
        }
        self.prewarm(&m);
        let mut rec = StartRecord::default();
        rec.volatile.insert("volatile.last_state.power".into(), "RUNNING".into());
        for n in &nics {
            rec.volatile.insert(format!("volatile.{}.host_name", n.device), n.host_name.clone());
        }
        Ok(rec)
    }

    fn kill(&self, hooks: &dyn HookSink) -> Result<(), Error> {
        let m = self.current().ok_or(Error::NotRunning)?;
        m.stop().map_err(m_err("Failed to stop VM"))?;
        self.forget_machine();
        let _ = hooks.hook(Hook::OnStop);
        Ok(())
    }

    fn shutdown(&self, timeout: Option<Duration>, hooks: &dyn HookSink) -> Result<bool, Error> {
        let m = self.running()?;
        let t = timeout.unwrap_or(Duration::from_secs(u32::MAX as u64));
        let how = m.shutdown(t).map_err(m_err("Failed to shut down VM"))?;
        self.forget_machine();
        let _ = hooks.hook(Hook::OnStop);
        Ok(how == ShutdownOutcome::Clean)
    }

    fn freeze(&self) -> Result<(), Error> {
        self.running()?.freeze().map_err(m_err("Failed to pause VM"))
    }

    fn unfreeze(&self) -> Result<(), Error> {
        self.running()?.unfreeze().map_err(m_err("Failed to resume VM"))
    }

    fn is_running(&self) -> bool {
        self.running().is_ok()
    }

    fn state(&self) -> Result<State, Error> {
        let Ok(m) = self.running() else {
            return Ok(State::stopped());
        };
        let s = m.state().map_err(m_err("Failed to read VM state"))?;
        let status = match (s.running, s.status.as_str()) {
            (true, _) => Status::Running,
            (false, "paused") => Status::Frozen,
            _ => Status::Running,
        };
        // The host's view: what QEMU holds in RAM (the guest's own figure needs the agent).
        let (rss, peak) = layout::qemu_memory(s.pid);
        let mut disk = BTreeMap::new();
        if let Some(d) = layout::root_disk(&lock(&self.args).volume_path) {
            disk.insert("root".to_string(), layout::disk_usage(&d.path));
        }
        let mut network = BTreeMap::new();
        if status == Status::Running {
            if let Ok(Some(a)) = self.shared.agent(&Arc::downgrade(&m), STATE_AGENT_WAIT, true) {
                match a.network() {
                    Ok(ifs) => network = ifs.into_iter().map(|i| (i.name.clone(), convert_interface(i))).collect(),
                    Err(e) => tracing::debug!(error = %e, "agent network state"),
                }
            }
        }
        Ok(State { status, pid: s.pid, processes: 0, memory_usage: rss, memory_peak: peak, cpu_usage_ns: s.cpu_ns, disk, network })
    }

    fn exec(&self, args: &ExecArgs) -> Result<Box<dyn ExecSession>, Error> {
        let m = self.running()?;
        if Self::is_paused(&m) {
            return Err(Error::Frozen);
        }
        let agent = self.ready_agent()?;
        let mut env: BTreeMap<String, String> = {
            let a = lock(&self.args);
            a.config.iter().filter_map(|(k, v)| Some((k.strip_prefix("environment.")?.to_string(), v.clone()))).collect()
        };
        env.extend(args.env.iter().cloned());
        let spec = ExecSpec {
            argv: args.command.clone(),
            env,
            cwd: Some(args.cwd.clone()).filter(|c| !c.is_empty()),
            uid: args.uid,
            gid: args.gid,
            pty: args.interactive.then(|| WinSize { rows: args.height.max(1), cols: args.width.max(1) }),
        };
        let ex = agent.exec(spec).map_err(|e| Error::failed("Failed to run command", chain(&e)))?;
        Ok(Box::new(session::VmExec::new(ex, args.interactive)))
    }

    fn console(&self, _width: u16, _height: u16) -> Result<Box<dyn ConsoleSession>, Error> {
        self.running()?;
        Ok(Box::new(session::VmConsole::attach(&self.paths.console())?))
    }

    fn console_log(&self) -> Result<Vec<u8>, Error> {
        match std::fs::read(self.paths.console_log()) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::failed("Failed to read the console log", e)),
        }
    }

    fn clear_console_log(&self) -> Result<(), Error> {
        match std::fs::OpenOptions::new().write(true).truncate(true).open(self.paths.console_log()) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::failed("Failed to clear the console log", e)),
        }
    }

    fn files(&self) -> Result<Box<dyn FileOps>, Error> {
        Ok(Box::new(files::VmFiles(self.ready_agent()?)))
    }

    fn update(&self, config: &BTreeMap<String, String>, devices: &Devices) -> Result<StartRecord, Error> {
        let (old_memory, old_devices, name) = {
            let mut a = lock(&self.args);
            let old = a.config.get("limits.memory").cloned();
            a.config = config.clone();
            let old_devices = std::mem::replace(&mut a.devices, devices.clone());
            (old, old_devices, a.name.clone())
        };
        let Ok(m) = self.running() else { return Ok(StartRecord::default()) };
        if config.get("limits.memory") != old_memory.as_ref() {
            let bytes = match config.get("limits.memory").map(|s| s.trim()).filter(|s| !s.is_empty()) {
                Some(v) => crate::vm::units::parse_size(v, layout::host_memory())
                    .map_err(|e| Error::Invalid(format!("Invalid limits.memory: {e}")))?,
                None => crate::vm::cmdline::DEFAULT_MEMORY,
            };
            let how = m.set_memory(bytes).map_err(m_err("Failed to change the VM memory"))?;
            tracing::info!(instance = %lock(&self.args).name, ?how, "limits.memory update");
        }
        // Nics and disks are plugged in and out now; limits.cpu and raw.qemu apply at the
        // next start.
        let volatile = devices::apply_changes(&m, &name, config, &old_devices, devices)?;
        Ok(StartRecord { volatile })
    }

    fn wait_exit(&self, timeout: Option<Duration>) -> bool {
        let Some(m) = self.current() else { return true };
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        while m.is_running() {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }

    fn cleanup(&self, hooks: &dyn HookSink) -> Result<bool, Error> {
        // A guest reboot keeps QEMU running (it resets the machine): an exit is a poweroff.
        if self.current().is_some() {
            self.forget_machine();
            let _ = hooks.hook(Hook::OnStop);
        }
        for p in [self.paths.qmp(), self.paths.agent(), self.paths.console(), self.paths.pidfile()] {
            let _ = std::fs::remove_file(p);
        }
        Ok(false)
    }

    fn on_delete(&self) -> Result<(), Error> {
        if self.is_running() {
            return Err(Error::Invalid("Instance is running".into()));
        }
        let a = lock(&self.args).clone();
        let _ = std::fs::remove_dir_all(&self.paths.dir);
        let _ = std::fs::remove_dir_all(&a.runtime_dir);
        let _ = std::fs::remove_dir_all(&a.log_dir);
        Ok(())
    }
}

fn convert_interface(i: crate::vm::agent::Interface) -> super::NetInterface {
    use crate::container::state::{NetAddress, NetCounters};
    super::NetInterface {
        addresses: i
            .addresses
            .into_iter()
            .map(|a| NetAddress { family: a.family, address: a.address, netmask: a.netmask, scope: a.scope })
            .collect(),
        counters: NetCounters {
            bytes_received: i.counters.bytes_received,
            bytes_sent: i.counters.bytes_sent,
            packets_received: i.counters.packets_received,
            packets_sent: i.counters.packets_sent,
        },
        hwaddr: i.hwaddr,
        mtu: u64::from(i.mtu),
        state: i.state,
        kind: i.kind,
    }
}

#[cfg(test)]
mod tests;
