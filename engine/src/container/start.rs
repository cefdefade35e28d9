//! Starting a container (daemon side of the handshake in `init`).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Mutex;

use super::console::{open_pty, spawn_holder};
use super::init::{CgMount, Plan};
use super::{devices, msg, net, rootfs, seccomp, Container, ContainerSpec, Error, Hooks, NoHooks, RuntimeState, StartInfo};
use crate::cgroup::{Cgroup, Layout, Limits};
use crate::sys;

/// Undo list for a failed start.
struct Revert {
    cgroup: Option<Cgroup>,
    pids: Vec<i32>,
    nics: Vec<String>,
    armed: bool,
}

impl Drop for Revert {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for p in &self.pids {
            // SAFETY: kill(2) of processes we forked.
            unsafe { libc::kill(*p, libc::SIGKILL) };
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(*p), None);
        }
        for n in &self.nics {
            net::detach(n);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.kill_all(std::time::Duration::from_secs(5));
            let _ = cg.remove();
        }
    }
}

fn cstr(s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::Invalid(format!("NUL byte in {s:?}")))
}

/// Host devices every container gets when the host has them (as LXD: fuse and tun).
fn default_binds() -> Vec<super::init::Bind> {
    ["/dev/fuse", "/dev/net/tun"]
        .iter()
        .map(std::path::PathBuf::from)
        .filter(|p| p.exists())
        .map(|p| super::init::Bind { target: p.clone(), source: p, readonly: false, file: true, shift: false })
        .collect()
}

/// cgroup directory name of an instance.
pub fn cgroup_name(name: &str) -> String {
    format!("berth-{name}")
}

fn cgroup_mounts(layout: &Layout) -> Vec<CgMount> {
    let mut out: Vec<CgMount> = Vec::new();
    match layout {
        Layout::V1 { parents } => {
            // One mount per hierarchy, named like the host's mountpoint ("cpu,cpuacct").
            let mut by_dir: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for (ctrl, p) in parents {
                let mnt = std::path::Path::new("/sys/fs/cgroup");
                let dir = p
                    .strip_prefix(mnt)
                    .ok()
                    .and_then(|r| r.components().next())
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_else(|| ctrl.clone());
                by_dir.entry(dir).or_default().push(ctrl.clone());
            }
            for (dir, ctrls) in by_dir {
                if ctrls.iter().any(|c| c == crate::cgroup::UNIFIED) {
                    out.push(CgMount { dir, fstype: "cgroup2", opts: String::new() });
                } else {
                    out.push(CgMount { dir, fstype: "cgroup", opts: ctrls.join(",") });
                }
            }
        }
        Layout::V2 { .. } => out.push(CgMount { dir: String::new(), fstype: "cgroup2", opts: String::new() }),
    }
    // A v2-only host mounts cgroup2 directly on /sys/fs/cgroup: no tmpfs in between.
    out
}

impl Container {
    /// Starts the container; returns once init has been executed.
    pub fn start(spec: &ContainerSpec, hooks: &dyn Hooks) -> Result<(Container, StartInfo), Error> {
        std::fs::create_dir_all(&spec.runtime_dir).map_err(super::ioe(format!("create {}", spec.runtime_dir.display())))?;
        if Container::state_file(&spec.runtime_dir).exists() {
            if let Ok(old) = Container::adopt(&spec.runtime_dir) {
                if old.is_running() {
                    return Err(Error::AlreadyRunning(spec.name.clone()));
                }
                old.cleanup(&NoHooks)?;
            }
        }
        if spec.init.is_empty() {
            return Err(Error::Invalid("empty init command".into()));
        }
        let seccomp_spec = seccomp::spec(&spec.config);
        let seccomp = match &seccomp_spec {
            Some(s) => Some(s.program().map_err(|e| Error::Invalid(format!("seccomp: {e}")))?),
            None => None,
        };
        let dplan = devices::plan(spec)?;
        let limits = Limits::from_config(&spec.config, super::host_cpus(), super::host_memory())?;
        let layout = Layout::detect(spec.cgroup_parent.as_deref())?;
        let cg = Cgroup::create(&layout, &cgroup_name(&spec.name))?;
        let mut revert = Revert { cgroup: Some(cg.clone()), pids: vec![], nics: vec![], armed: true };
        if !cg.pids()?.is_empty() {
            cg.kill_all(std::time::Duration::from_secs(10))?;
        }
        cg.apply(&limits)?;
        cg.set_device_rules(&dplan.cgroup_rules)?;

        let pty = open_pty(spec.root_host_ids())?;
        let mut env = Vec::new();
        for (k, v) in spec.environment() {
            env.push(cstr(&format!("{k}={v}"))?);
        }
        let plan = Plan {
            unprivileged: !spec.privileged(),
            nesting: spec.nesting(),
            rootfs: spec.rootfs.clone(),
            hostname: spec.hostname().to_string(),
            console_slave: pty.slave_path.clone(),
            init: spec.init.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?,
            env,
            binds: default_binds().into_iter().chain(dplan.binds.iter().cloned()).collect(),
            cgroup_mounts: cgroup_mounts(&layout),
            seccomp: seccomp.clone(),
        };

        let (psock, csock) = msg::pair().map_err(super::ioe("socketpair"))?;
        let c = sys::fork().map_err(super::ioe("fork"))?;
        if c == 0 {
            drop(psock);
            super::init::setup(&plan, csock);
        }
        drop(csock);
        revert.pids.push(c);
        let fail = |m: String| Error::Setup(m);
        let ps = psock.as_fd();

        msg::send(ps, msg::GO, b"", None).map_err(super::ioe("handshake"))?;

        // User namespace: write the maps, then bring the rootfs ids in line.
        let mut disk_idmap = spec.disk_idmap.clone();
        let mut mount_fd: Option<OwnedFd> = None;
        if let Some(map) = &spec.idmap {
            msg::expect(ps, msg::USERNS_READY).map_err(fail)?;
            std::fs::write(format!("/proc/{c}/uid_map"), map.render(true)).map_err(super::ioe("write uid_map"))?;
            std::fs::write(format!("/proc/{c}/gid_map"), map.render(false)).map_err(super::ioe("write gid_map"))?;
            let userns = std::fs::File::open(format!("/proc/{c}/ns/user")).map_err(super::ioe("open user namespace"))?;
            // Prefer an idmapped mount (needs the rootfs unshifted on disk); otherwise
            // shift the rootfs once and report the shift so it is not repeated.
            let shifted = disk_idmap.as_ref().is_some_and(|m| !m.is_identity());
            for (i, b) in plan.binds.iter().enumerate().filter(|(_, b)| b.shift) {
                match rootfs::idmapped_mount(&b.source, userns.as_fd()) {
                    Ok(tree) => {
                        if b.readonly {
                            sys::mount_setattr_rdonly(tree.as_fd()).map_err(super::ioe("make mount read-only"))?;
                        }
                        msg::send(ps, msg::BIND_FD, i.to_string().as_bytes(), Some(tree.as_raw_fd())).map_err(super::ioe("handshake"))?;
                    }
                    // A filesystem without idmapped mounts: a plain bind (ids show unmapped).
                    Err(e) => tracing::warn!(source = %b.source.display(), "cannot shift disk through an idmapped mount: {e}"),
                }
            }
            match rootfs::idmapped_mount(&spec.rootfs, userns.as_fd()) {
                Ok(fd) => {
                    if shifted {
                        rootfs::shift_tree(&spec.rootfs, disk_idmap.as_ref(), None).map_err(super::ioe("unshift rootfs"))?;
                    }
                    disk_idmap = None;
                    mount_fd = Some(fd);
                }
                Err(_) => {
                    let from = disk_idmap.as_ref().filter(|m| !m.is_identity());
                    if from != Some(map) {
                        rootfs::shift_tree(&spec.rootfs, from, Some(map)).map_err(super::ioe("shift rootfs"))?;
                    }
                    disk_idmap = Some(map.clone());
                }
            }
        } else if disk_idmap.as_ref().is_some_and(|m| !m.is_identity()) {
            rootfs::shift_tree(&spec.rootfs, disk_idmap.as_ref(), None).map_err(super::ioe("unshift rootfs"))?;
            disk_idmap = None;
        }
        msg::send(ps, msg::MAPPED, b"", mount_fd.as_ref().map(|f| f.as_raw_fd())).map_err(super::ioe("handshake"))?;
        drop(mount_fd);

        let m = msg::expect(ps, msg::INIT_PID).map_err(fail)?;
        let pid: i32 = String::from_utf8_lossy(&m.payload)
            .parse()
            .map_err(|_| Error::Setup("bad init pid from setup process".into()))?;
        revert.pids.insert(0, pid);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(c), None);
        revert.pids.retain(|p| *p != c);
        let pidfd = sys::pidfd_open(pid).map_err(super::ioe("pidfd_open init"))?;
        msg::send(ps, msg::GO, b"", None).map_err(super::ioe("handshake"))?;
        // Init builds its mounts meanwhile; it enters its cgroup namespace after this.
        cg.add_pid(pid)?;
        msg::send(ps, msg::GO, b"", None).map_err(super::ioe("handshake"))?;

        msg::expect(ps, msg::MOUNTED).map_err(fail)?;
        let netns: OwnedFd = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(super::ioe("open netns"))?.into();
        let mut host_nics = Vec::new();
        for nic in &dplan.nics {
            net::attach(nic, pid, netns.as_fd())?;
            revert.nics.push(nic.host_name.clone());
            host_nics.push((nic.device.clone(), nic.host_name.clone()));
        }
        let socket = spec.runtime_dir.join("console.sock");
        let (holder_pid, holder_pidfd) = spawn_holder(&spec.console_helper, &pty, pid, &spec.log_path, &socket)?;
        revert.pids.push(holder_pid);
        let rt = RuntimeState {
            name: spec.name.clone(),
            pid,
            start_time: sys::proc::start_time(pid).map_err(super::ioe("read init start time"))?,
            cgroup: cg.clone(),
            idmap: spec.idmap.clone(),
            holder_pid,
            holder_start_time: sys::proc::start_time(holder_pid).map_err(super::ioe("read helper start time"))?,
            console_socket: socket,
            log_path: spec.log_path.clone(),
            host_nics: revert.nics.clone(),
            rootfs: spec.rootfs.clone(),
            seccomp: None,
            seccomp_policy: seccomp_spec,
        };
        let json = serde_json::to_vec_pretty(&rt).map_err(|e| Error::Setup(format!("encode state: {e}")))?;
        let sf = Container::state_file(&spec.runtime_dir);
        std::fs::write(&sf, json).map_err(super::ioe(format!("write {}", sf.display())))?;
        if let Err(e) = hooks.on_start(pid) {
            let _ = std::fs::remove_file(&sf);
            return Err(Error::Setup(format!("start hook: {e}")));
        }

        msg::send(ps, msg::GO, b"", None).map_err(super::ioe("handshake"))?;
        // EOF means init was executed (the socket is close-on-exec); anything else failed.
        let done = msg::recv(ps).map_err(super::ioe("handshake"))?;
        if done.tag.is_some() {
            let _ = std::fs::remove_file(&sf);
            return Err(Error::Setup(String::from_utf8_lossy(&done.payload).into_owned()));
        }
        drop(pty);
        revert.armed = false;
        let ct = Container {
            rt,
            runtime_dir: spec.runtime_dir.clone(),
            pidfd: Some(pidfd),
            netns: Mutex::new(Some(netns)),
            is_child: true,
            holder_pidfd: Some(holder_pidfd),
            holder_is_child: true,
        };
        let info = StartInfo { pid, idmap: spec.idmap.clone(), disk_idmap, host_nics };
        Ok((ct, info))
    }
}
