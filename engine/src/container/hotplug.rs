//! Adding and removing devices on a running container: nics are plugged like at start;
//! disks and device nodes are cloned as detached mounts on the host and attached from a
//! helper that joined the container's mount (and user) namespace.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use super::devices::{plan_one, DevicePlan};
use super::{ioe, msg, net, Container, Error};
use crate::sys;

impl Container {
    /// Makes the cgroup's device rules those of `devices`, the instance's whole new device
    /// list: called between unplugging and plugging, it allows what `add_device` will
    /// plug and denies (on v2) what was unplugged, whatever this process allowed before.
    pub fn set_device_rules(&self, devices: &BTreeMap<String, BTreeMap<String, String>>) -> Result<(), Error> {
        self.ensure_running()?;
        self.rt.cgroup.set_device_rules(&super::devices::cgroup_rules(devices))?;
        Ok(())
    }

    /// Plugs device `name` into the running container (call `set_device_rules` first). `config` is the expanded config
    /// (for `volatile.<name>.*`). Returns the host-side nic name for a nic.
    pub fn add_device(&self, name: &str, device: &BTreeMap<String, String>, config: &BTreeMap<String, String>) -> Result<Option<String>, Error> {
        self.ensure_running()?;
        let mut plan = DevicePlan::default();
        plan_one(config, name, device, &mut plan)?;
        for b in &plan.binds {
            let tree = sys::open_tree_clone(&b.source).map_err(ioe(format!("clone mount of {}", b.source.display())))?;
            if b.shift && self.rt.idmap.is_some() {
                let userns = std::fs::File::open(format!("/proc/{}/ns/user", self.rt.pid)).map_err(ioe("open user namespace"))?;
                sys::mount_setattr_idmap(tree.as_fd(), userns.as_fd()).map_err(ioe(format!("shift {}", b.source.display())))?;
            }
            if b.readonly {
                sys::mount_setattr_rdonly(tree.as_fd()).map_err(ioe("make mount read-only"))?;
            }
            let target = b.target.clone();
            let file = b.file;
            self.in_mount_ns(move || {
                let root = sys::open_path(Path::new("/")).map_err(|e| format!("open /: {e}"))?;
                let t = super::init::mountpoint(root.as_fd(), &target, file)?;
                sys::move_mount_to_fd(tree.as_fd(), t.as_fd()).map_err(|e| format!("attach {}: {e}", target.display()))
            })?;
        }
        let mut host = None;
        if let Some(nic) = plan.nics.first() {
            let guard = self.netns.lock().unwrap_or_else(|e| e.into_inner());
            let ns = guard.as_ref().ok_or(Error::NotRunning)?;
            net::attach(nic, self.rt.pid, ns.as_fd())?;
            host = Some(nic.host_name.clone());
        }
        Ok(host)
    }

    /// Unplugs device `name` (disk and device nodes are unmounted; nics deleted by their
    /// host name from `volatile.<name>.host_name`).
    pub fn remove_device(&self, name: &str, device: &BTreeMap<String, String>, config: &BTreeMap<String, String>) -> Result<(), Error> {
        self.ensure_running()?;
        let mut plan = DevicePlan::default();
        plan_one(config, name, device, &mut plan)?;
        for b in &plan.binds {
            let target = CString::new(b.target.to_string_lossy().as_bytes()).map_err(|_| Error::Invalid("NUL in path".into()))?;
            self.in_mount_ns(move || {
                // SAFETY: umount2 with a valid C string; resolved inside the container root.
                let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
                if rc < 0 {
                    return Err(format!("unmount {}: {}", target.to_string_lossy(), std::io::Error::last_os_error()));
                }
                Ok(())
            })?;
        }
        for nic in &plan.nics {
            net::detach(&nic.host_name);
        }
        Ok(())
    }

    /// Runs `f` in a forked helper inside the container's mount namespace (and, for an
    /// unprivileged container, its user namespace as root).
    fn in_mount_ns(&self, f: impl FnOnce() -> Result<(), String>) -> Result<(), Error> {
        let pid = self.rt.pid;
        let open = |ns: &str| -> Result<OwnedFd, Error> {
            Ok(std::fs::File::open(format!("/proc/{pid}/ns/{ns}")).map_err(ioe(format!("open {ns} namespace")))?.into())
        };
        let mnt = open("mnt")?;
        let user = match self.rt.idmap {
            Some(_) => Some(open("user")?),
            None => None,
        };
        let (psock, csock) = msg::pair().map_err(ioe("socketpair"))?;
        let child = sys::fork().map_err(ioe("fork"))?;
        if child == 0 {
            drop(psock);
            let r = (|| {
                sys::setns(mnt.as_fd(), libc::CLONE_NEWNS).map_err(|e| format!("setns mnt: {e}"))?;
                if let Some(u) = &user {
                    sys::setns(u.as_fd(), libc::CLONE_NEWUSER).map_err(|e| format!("setns user: {e}"))?;
                    nix::unistd::setresgid(0.into(), 0.into(), 0.into()).map_err(|e| format!("setgid: {e}"))?;
                    nix::unistd::setresuid(0.into(), 0.into(), 0.into()).map_err(|e| format!("setuid: {e}"))?;
                }
                f()
            })();
            let code = match r {
                Ok(()) => {
                    let _ = msg::send(csock.as_fd(), msg::GO, b"", None);
                    0
                }
                Err(e) => {
                    let _ = msg::send(csock.as_fd(), msg::FAILED, e.as_bytes(), None);
                    1
                }
            };
            sys::exit_now(code);
        }
        drop(csock);
        let r = msg::expect(psock.as_fd(), msg::GO);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
        r.map(|_| ()).map_err(Error::Setup)
    }
}
