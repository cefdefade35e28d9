//! The container driver: [`Instance`] over the native runtime in `crate::container`.

mod files;
mod session;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    ConsoleSession, Driver, DriverStatus, Error, ExecArgs, ExecSession, FileOps, Hook, HookSink, Instance, LoadArgs,
    StartRecord, State, Status,
};
use crate::config::Devices;
use crate::container::{self as rt, Container, ContainerSpec};
use crate::idmap::IdmapSet;

/// Runs containers on namespaces and cgroups.
pub struct ContainerDriver;

impl ContainerDriver {
    pub fn new() -> Self {
        ContainerDriver
    }
}

impl Default for ContainerDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl Driver for ContainerDriver {
    fn name(&self) -> &'static str {
        "container"
    }

    fn status(&self) -> DriverStatus {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return DriverStatus::NotOperational("the daemon is not running as root".into());
        }
        if let Err(e) = crate::cgroup::Layout::detect(None) {
            return DriverStatus::NotOperational(format!("no usable cgroup hierarchy: {e}"));
        }
        if !std::path::Path::new("/proc/self/ns/user").exists() {
            return DriverStatus::NotOperational("the kernel has no user namespaces".into());
        }
        DriverStatus::Operational
    }

    fn load(&self, args: LoadArgs) -> Result<Box<dyn Instance>, Error> {
        let ct = match Container::adopt(&args.runtime_dir) {
            Ok(ct) => Some(Arc::new(ct)),
            Err(rt::Error::NotRunning) => None,
            Err(e) => {
                tracing::warn!(instance = %args.name, error = %e, "cannot adopt container state; treating it as stopped");
                None
            }
        };
        let devices = args.devices.clone();
        Ok(Box::new(ContainerInstance { args: Mutex::new(args), ct: Mutex::new(ct), devices: Mutex::new(devices) }))
    }
}

/// One container instance.
pub struct ContainerInstance {
    args: Mutex<LoadArgs>,
    ct: Mutex<Option<Arc<Container>>>,
    /// The devices the running container was started or updated with.
    devices: Mutex<Devices>,
}

/// Bridges runtime hooks to the daemon's dispatcher.
struct Bridge<'a>(&'a dyn HookSink);

impl rt::Hooks for Bridge<'_> {
    fn on_start(&self, _pid: i32) -> Result<(), String> {
        self.0.hook(Hook::OnStart)
    }
    fn on_stop_ns(&self, _netns: Option<std::os::fd::BorrowedFd<'_>>) {
        let _ = self.0.hook(Hook::OnStopNs);
    }
    fn on_stop(&self) {
        let _ = self.0.hook(Hook::OnStop);
    }
}

fn rt_err(action: &str) -> impl FnOnce(rt::Error) -> Error + '_ {
    move |e| match e {
        rt::Error::NotRunning => Error::NotRunning,
        rt::Error::AlreadyRunning(_) => Error::AlreadyRunning,
        rt::Error::Invalid(m) if m.contains("frozen") => Error::Frozen,
        rt::Error::Invalid(m) => Error::Invalid(m),
        rt::Error::Device { device, reason } => Error::Invalid(format!("Invalid device {device}: {reason}")),
        other => Error::failed(action, chain(&other)),
    }
}

/// An error with its sources, for messages the user can act on.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// Short stable id of a data dir, so two daemons on one host never share cgroups.
fn daemon_tag(runtime_dir: &std::path::Path) -> String {
    use sha2::Digest;
    let base = runtime_dir.parent().and_then(|p| p.parent()).unwrap_or(runtime_dir);
    hex::encode(&sha2::Sha256::digest(base.as_os_str().as_encoded_bytes())[..4])
}

impl ContainerInstance {
    fn running(&self) -> Result<Arc<Container>, Error> {
        let g = self.ct.lock().unwrap_or_else(|p| p.into_inner());
        match &*g {
            Some(c) if c.is_running() => Ok(c.clone()),
            _ => Err(Error::NotRunning),
        }
    }

    fn current(&self) -> Option<Arc<Container>> {
        self.ct.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn spec(&self) -> Result<ContainerSpec, Error> {
        let a = self.args.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let maps: Vec<IdmapSet> = a.other_maps.iter().filter_map(|j| IdmapSet::from_json(j).ok()).collect();
        let mut spec = ContainerSpec::from_config(
            &a.name,
            a.volume_path.join("rootfs"),
            a.runtime_dir.clone(),
            a.log_dir.join("console.log"),
            a.config.clone(),
            a.devices.clone(),
            &maps,
        )
        .map_err(rt_err("Failed to prepare container"))?;
        spec.cgroup_parent = Some(format!("berth-{}/{}", daemon_tag(&a.runtime_dir), a.project));
        if let Some(sig) = a.config.get("raw.lxc").and_then(|r| halt_signal(r)) {
            spec.halt_signal = sig;
        }
        Ok(spec)
    }

    /// Sets new config/devices for the next start (and for `update`).
    pub fn set_args(&self, config: BTreeMap<String, String>, devices: Devices) {
        let mut a = self.args.lock().unwrap_or_else(|p| p.into_inner());
        a.config = config;
        a.devices = devices;
    }
}

/// `lxc.signal.halt = SIGxxx` in raw.lxc.
fn halt_signal(raw: &str) -> Option<i32> {
    let v = raw.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "lxc.signal.halt").then(|| v.trim().to_string())
    })?;
    let name = v.trim_start_matches("SIG");
    Some(match name {
        "PWR" => libc::SIGPWR,
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "KILL" => libc::SIGKILL,
        other => other.parse().ok()?,
    })
}

impl Instance for ContainerInstance {
    fn start(&self, hooks: &dyn HookSink) -> Result<StartRecord, Error> {
        if self.running().is_ok() {
            return Err(Error::AlreadyRunning);
        }
        let spec = self.spec()?;
        if let Some(dir) = spec.log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::failed("Failed to create the log directory", e))?;
        }
        let data_dir = spec.runtime_dir.parent().and_then(|p| p.parent()).map(PathBuf::from);
        ensure_traversable(&spec.rootfs, data_dir.as_deref());
        let (ct, info) = Container::start(&spec, &Bridge(hooks)).map_err(rt_err("Failed to start container"))?;
        let mut rec = StartRecord::default();
        let v = &mut rec.volatile;
        v.insert("volatile.last_state.power".into(), "RUNNING".into());
        if let Some(m) = &info.idmap {
            v.insert("volatile.idmap.current".into(), m.to_json());
            v.insert("volatile.idmap.next".into(), m.to_json());
        }
        v.insert("volatile.last_state.idmap".into(), info.disk_idmap.as_ref().map(|m| m.to_json()).unwrap_or_else(|| "[]".into()));
        for (dev, host) in &info.host_nics {
            v.insert(format!("volatile.{dev}.host_name"), host.clone());
        }
        *self.devices.lock().unwrap_or_else(|p| p.into_inner()) = spec.devices.clone();
        *self.ct.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(ct));
        Ok(rec)
    }

    fn kill(&self, hooks: &dyn HookSink) -> Result<(), Error> {
        let ct = self.current().ok_or(Error::NotRunning)?;
        ct.stop(&Bridge(hooks)).map_err(rt_err("Failed to stop container"))?;
        Ok(())
    }

    fn shutdown(&self, timeout: Option<Duration>, hooks: &dyn HookSink) -> Result<bool, Error> {
        let ct = self.running()?;
        let sig = self.spec().map(|s| s.halt_signal).unwrap_or(libc::SIGPWR);
        let t = timeout.unwrap_or(Duration::from_secs(u32::MAX as u64));
        ct.shutdown(sig, t, &Bridge(hooks)).map_err(rt_err("Failed to shut down container"))
    }

    fn freeze(&self) -> Result<(), Error> {
        self.running()?.freeze().map_err(rt_err("Failed to freeze container"))
    }

    fn unfreeze(&self) -> Result<(), Error> {
        self.running()?.unfreeze().map_err(rt_err("Failed to unfreeze container"))
    }

    fn is_running(&self) -> bool {
        self.running().is_ok()
    }

    fn state(&self) -> Result<State, Error> {
        let Ok(ct) = self.running() else {
            return Ok(State::stopped());
        };
        let s = ct.state().map_err(rt_err("Failed to read container state"))?;
        Ok(State {
            status: match s.status {
                rt::Status::Running => Status::Running,
                rt::Status::Frozen => Status::Frozen,
                rt::Status::Stopped => Status::Stopped,
            },
            pid: s.pid,
            processes: s.processes,
            memory_usage: s.memory_usage,
            memory_peak: s.memory_peak,
            cpu_usage_ns: s.cpu_usage_ns,
            disk: BTreeMap::new(),
            network: s.network,
        })
    }

    fn exec(&self, args: &ExecArgs) -> Result<Box<dyn ExecSession>, Error> {
        let ct = self.running()?;
        // `environment.*` applies to exec too; the request's own variables win.
        let mut env: Vec<(String, String)> = {
            let a = self.args.lock().unwrap_or_else(|p| p.into_inner());
            a.config.iter().filter_map(|(k, v)| Some((k.strip_prefix("environment.")?.to_string(), v.clone()))).collect()
        };
        env.retain(|(k, _)| !args.env.iter().any(|(ek, _)| ek == k));
        env.extend(args.env.iter().cloned());
        let req = rt::ExecRequest {
            command: args.command.clone(),
            env,
            uid: args.uid,
            gid: args.gid,
            cwd: if args.cwd.is_empty() { if args.uid == 0 { "/root".into() } else { "/".into() } } else { args.cwd.clone() },
            interactive: args.interactive,
            width: args.width,
            height: args.height,
        };
        let ex = ct.exec(&req).map_err(rt_err("Failed to run command"))?;
        Ok(Box::new(session::CtExec::new(ex)))
    }

    fn console(&self, width: u16, height: u16) -> Result<Box<dyn ConsoleSession>, Error> {
        let ct = self.running()?;
        let att = ct.console_attach().map_err(rt_err("Failed to attach to the console"))?;
        if width > 0 && height > 0 {
            let _ = att.resize(width, height);
        }
        Ok(Box::new(session::CtConsole::new(att)?))
    }

    fn console_log(&self) -> Result<Vec<u8>, Error> {
        let path = self.args.lock().unwrap_or_else(|p| p.into_inner()).log_dir.join("console.log");
        match std::fs::read(&path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::failed("Failed to read the console log", e)),
        }
    }

    fn clear_console_log(&self) -> Result<(), Error> {
        let path = self.args.lock().unwrap_or_else(|p| p.into_inner()).log_dir.join("console.log");
        match std::fs::OpenOptions::new().write(true).truncate(true).open(&path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::failed("Failed to clear the console log", e)),
        }
    }

    fn files(&self) -> Result<Box<dyn FileOps>, Error> {
        if let Ok(ct) = self.running() {
            let f = rt::Files::for_container(&ct).map_err(rt_err("Failed to open the container filesystem"))?;
            return Ok(Box::new(files::CtFiles(f)));
        }
        let a = self.args.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let disk = a.config.get("volatile.last_state.idmap").and_then(|j| IdmapSet::from_json(j).ok()).filter(|m| !m.entries.is_empty());
        let f = rt::Files::for_stopped(&a.volume_path.join("rootfs"), disk).map_err(rt_err("Failed to open the container filesystem"))?;
        Ok(Box::new(files::CtFiles(f)))
    }

    fn update(&self, config: &BTreeMap<String, String>, devices: &Devices) -> Result<StartRecord, Error> {
        self.set_args(config.clone(), devices.clone());
        let mut rec = StartRecord::default();
        let Ok(ct) = self.running() else { return Ok(rec) };
        ct.apply_limits(config).map_err(rt_err("Failed to apply limits"))?;
        let mut cur = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let removed: Vec<(String, BTreeMap<String, String>)> =
            cur.iter().filter(|(n, d)| devices.get(*n) != Some(*d)).map(|(n, d)| (n.clone(), d.clone())).collect();
        let changed = !removed.is_empty() || devices.keys().any(|n| !cur.contains_key(n));
        for (name, dev) in removed {
            ct.remove_device(&name, &dev, config).map_err(rt_err("Failed to remove device"))?;
            cur.remove(&name);
            if dev.get("type").map(String::as_str) == Some("nic") {
                rec.volatile.insert(format!("volatile.{name}.host_name"), String::new());
            }
        }
        if changed {
            ct.set_device_rules(devices).map_err(rt_err("Failed to set device rules"))?;
        }
        for (name, dev) in devices {
            if cur.contains_key(name) {
                continue;
            }
            if let Some(host) = ct.add_device(name, dev, config).map_err(rt_err("Failed to add device"))? {
                rec.volatile.insert(format!("volatile.{name}.host_name"), host);
            }
            cur.insert(name.clone(), dev.clone());
        }
        Ok(rec)
    }

    fn wait_exit(&self, timeout: Option<Duration>) -> bool {
        match self.current() {
            Some(ct) => ct.wait_exit(timeout),
            None => true,
        }
    }

    fn cleanup(&self, hooks: &dyn HookSink) -> Result<bool, Error> {
        let Some(ct) = self.current() else { return Ok(false) };
        let status = ct.cleanup(&Bridge(hooks)).map_err(rt_err("Failed to clean up container"))?;
        Ok(status == Some(rt::REBOOT_STATUS))
    }

    fn on_delete(&self) -> Result<(), Error> {
        if self.is_running() {
            return Err(Error::Invalid("Instance is running".into()));
        }
        let a = self.args.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let _ = std::fs::remove_dir_all(&a.runtime_dir);
        let _ = std::fs::remove_dir_all(&a.log_dir);
        Ok(())
    }
}

/// Gives every ancestor of the rootfs o+x (like LXD's 0711 dirs), so the container's
/// unprivileged root can reach it, up to and including the daemon's data dir.
fn ensure_traversable(rootfs: &std::path::Path, stop_at: Option<&std::path::Path>) {
    use std::os::unix::fs::PermissionsExt;
    let mut p: Option<PathBuf> = rootfs.parent().map(PathBuf::from);
    while let Some(dir) = p {
        if let Ok(md) = std::fs::metadata(&dir) {
            let mode = md.permissions().mode();
            if mode & 0o001 == 0 {
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode((mode & 0o7777) | 0o001));
            }
        }
        if Some(dir.as_path()) == stop_at {
            break;
        }
        p = dir.parent().map(PathBuf::from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halt_signal_from_raw_lxc() {
        assert_eq!(halt_signal("lxc.signal.halt = SIGTERM\n"), Some(libc::SIGTERM));
        assert_eq!(halt_signal("lxc.signal.halt=10"), Some(10));
        assert_eq!(halt_signal("lxc.other = 1"), None);
    }

    #[test]
    fn driver_registry_reports_status() {
        let all = crate::instance::drivers();
        assert!(all.iter().any(|(n, _)| *n == "container"));
        // The VM driver is registered; without QEMU it reports why.
        assert!(all.iter().any(|(n, _)| *n == "virtual-machine"));
        let vm = crate::instance::driver_for(crate::config::InstanceType::VirtualMachine);
        match crate::instance::vm::layout::find_qemu() {
            Some(_) => assert!(vm.is_ok()),
            None => assert!(matches!(vm, Err(Error::NotOperational { reason, .. }) if reason.contains("qemu"))),
        }
    }
}
