//! Stopping, cleaning up and re-adopting containers.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{ioe, net, Container, Error, Hooks, RuntimeState};
use crate::sys;

const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Exit status of a pid-namespace init that called reboot(RB_AUTOBOOT) (killed by SIGHUP);
/// a halt or power-off gives 128 + SIGINT.
pub const REBOOT_STATUS: i32 = 128 + libc::SIGHUP;

impl Container {
    /// Waits until init exits (None = forever). Returns true if it has exited.
    pub fn wait_exit(&self, timeout: Option<Duration>) -> bool {
        let Some(fd) = &self.pidfd else { return true };
        let ms = timeout.map(|t| t.as_millis().min(i32::MAX as u128) as i32).unwrap_or(-1);
        sys::pidfd_wait_exit(fd.as_fd(), ms).unwrap_or(true)
    }

    /// Forced stop: kills everything in the container, then cleans up.
    pub fn stop(&self, hooks: &dyn Hooks) -> Result<(), Error> {
        if let Some(fd) = &self.pidfd {
            // Thaw first: a frozen init would not die until thawed on v1.
            let _ = self.rt.cgroup.thaw();
            let _ = sys::pidfd_signal(fd.as_fd(), libc::SIGKILL);
        }
        self.rt.cgroup.kill_all(KILL_TIMEOUT)?;
        if !self.wait_exit(Some(KILL_TIMEOUT)) {
            return Err(Error::Timeout("init did not exit after SIGKILL".into()));
        }
        self.cleanup(hooks).map(|_| ())
    }

    /// Clean shutdown: sends `signal` (the spec's halt signal, SIGPWR by default) to init
    /// and waits up to `timeout`; kills it afterwards. Returns true if it stopped cleanly.
    pub fn shutdown(&self, signal: i32, timeout: Duration, hooks: &dyn Hooks) -> Result<bool, Error> {
        let Some(fd) = &self.pidfd else { return self.cleanup(hooks).map(|_| true) };
        let _ = self.rt.cgroup.thaw();
        sys::pidfd_signal(fd.as_fd(), signal).map_err(ioe("signal init"))?;
        let deadline = Instant::now() + timeout;
        // On v1, init exits before its children are gone; wait for the cgroup too.
        let clean = self.wait_exit(Some(timeout));
        while clean && !self.rt.cgroup.pids()?.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !clean {
            self.stop(hooks)?;
            return Ok(false);
        }
        self.cleanup(hooks)?;
        Ok(true)
    }

    /// Tears down what is left once init has exited: processes, hooks, devices, the
    /// console helper, cgroups and the state file. Safe to call more than once.
    /// Returns init's exit status when this process was its parent (not after adoption):
    /// [`REBOOT_STATUS`] means the container asked for a reboot.
    pub fn cleanup(&self, hooks: &dyn Hooks) -> Result<Option<i32>, Error> {
        if self.is_running() {
            return Err(Error::Invalid("container is still running".into()));
        }
        let mut status = None;
        if let (true, Some(fd)) = (self.is_child, &self.pidfd) {
            status = sys::pidfd_reap(fd.as_fd(), false).ok().flatten();
        }
        if self.rt.cgroup.exists() {
            let _ = self.rt.cgroup.thaw();
            self.rt.cgroup.kill_all(KILL_TIMEOUT)?;
        }
        let netns = self.netns.lock().unwrap_or_else(|e| e.into_inner()).take();
        hooks.on_stop_ns(netns.as_ref().map(|f| f.as_fd()));
        drop(netns);
        for n in &self.rt.host_nics {
            net::detach(n);
        }
        if let Some(h) = &self.holder_pidfd {
            if !sys::pidfd_wait_exit(h.as_fd(), 2000).unwrap_or(true) {
                let _ = sys::pidfd_signal(h.as_fd(), libc::SIGKILL);
                let _ = sys::pidfd_wait_exit(h.as_fd(), 2000);
            }
            if self.holder_is_child {
                let _ = sys::pidfd_reap(h.as_fd(), false);
            }
        }
        if self.rt.cgroup.exists() {
            self.rt.cgroup.remove()?;
        }
        let _ = std::fs::remove_file(&self.rt.console_socket);
        let sf = Container::state_file(&self.runtime_dir);
        match std::fs::remove_file(&sf) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ioe(format!("remove {}", sf.display()))(e)),
        }
        hooks.on_stop();
        Ok(status)
    }

    /// Finds a container started by an earlier daemon from `<runtime_dir>/state.json`.
    /// The pid is trusted only if its start time matches; a container whose init is gone
    /// comes back not running, ready for `cleanup`.
    pub fn adopt(runtime_dir: &Path) -> Result<Container, Error> {
        let sf = Container::state_file(runtime_dir);
        let data = match std::fs::read(&sf) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotRunning),
            Err(e) => return Err(ioe(format!("read {}", sf.display()))(e)),
        };
        let rt: RuntimeState =
            serde_json::from_slice(&data).map_err(|e| Error::Invalid(format!("corrupt {}: {e}", sf.display())))?;
        let me = std::process::id() as i32;
        let (pidfd, is_child) = match open_checked(rt.pid, rt.start_time) {
            Some(fd) => (Some(fd), sys::proc::parent_pid(rt.pid).ok() == Some(me)),
            None => (None, false),
        };
        let netns = match &pidfd {
            Some(_) => std::fs::File::open(format!("/proc/{}/ns/net", rt.pid)).ok().map(OwnedFd::from),
            None => None,
        };
        let (holder_pidfd, holder_is_child) = match open_checked(rt.holder_pid, rt.holder_start_time) {
            Some(fd) => (Some(fd), sys::proc::parent_pid(rt.holder_pid).ok() == Some(me)),
            None => (None, false),
        };
        Ok(Container {
            rt,
            runtime_dir: runtime_dir.to_path_buf(),
            pidfd,
            netns: Mutex::new(netns),
            is_child,
            holder_pidfd,
            holder_is_child,
        })
    }
}

/// A pidfd for `pid` if it is still the process that started at `start_time`.
fn open_checked(pid: i32, start_time: u64) -> Option<OwnedFd> {
    let fd = sys::pidfd_open(pid).ok()?;
    // Checked after opening the pidfd, so the pid cannot be recycled in between.
    if sys::proc::start_time(pid).ok()? != start_time {
        return None;
    }
    Some(fd)
}
