//! Running a command inside a running container: setns into its namespaces and cgroup,
//! then user/group/cwd/env; stdio over pipes (binary safe) or a pty from the container's
//! own devpts. The returned `Exec` owns the descriptors the daemon pumps.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{ioe, spawn, Container, Error};
use crate::sys;

/// What to run.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub command: Vec<String>,
    /// Extra environment; PATH, HOME, LANG get defaults when absent.
    pub env: Vec<(String, String)>,
    /// Container uid/gid.
    pub uid: u32,
    pub gid: u32,
    pub cwd: String,
    /// A pty (true) or three pipes (false).
    pub interactive: bool,
    pub width: u16,
    pub height: u16,
}

impl Default for ExecRequest {
    fn default() -> Self {
        ExecRequest { command: vec![], env: vec![], uid: 0, gid: 0, cwd: "/root".into(), interactive: false, width: 80, height: 24 }
    }
}

/// A running exec. Pipes: `stdin`/`stdout`/`stderr`; pty: `pty` (the master) only.
#[derive(Debug)]
pub struct Exec {
    pub pid: i32,
    pidfd: OwnedFd,
    reaped: std::sync::atomic::AtomicBool,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub pty: Option<OwnedFd>,
}

impl Exec {
    /// Blocks until the process exits; shell-style code (128+signal when killed).
    pub fn wait(&self) -> Result<i32, Error> {
        let code = sys::pidfd_reap(self.pidfd.as_fd(), false)
            .map_err(ioe("wait for exec"))?
            .ok_or_else(|| Error::Invalid("exec still running".into()))?;
        self.reaped.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(code)
    }

    /// The exit code if it has exited.
    pub fn try_wait(&self) -> Result<Option<i32>, Error> {
        let r = sys::pidfd_reap(self.pidfd.as_fd(), true).map_err(ioe("wait for exec"))?;
        if r.is_some() {
            self.reaped.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(r)
    }

    pub fn signal(&self, sig: i32) -> Result<(), Error> {
        sys::pidfd_signal(self.pidfd.as_fd(), sig).map_err(ioe("signal exec"))
    }

    pub fn resize(&self, cols: u16, rows: u16) -> Result<(), Error> {
        match &self.pty {
            Some(m) => super::console::set_winsize(m, cols, rows),
            None => Err(Error::Invalid("not an interactive exec".into())),
        }
    }

    /// Readable when the process exits (for the daemon's poll loop).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }
}

impl Drop for Exec {
    /// An exec dropped without `wait` is reaped in the background (no zombies).
    fn drop(&mut self) {
        if self.reaped.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if let Ok(fd) = self.pidfd.try_clone() {
            std::thread::spawn(move || {
                let _ = sys::pidfd_reap(fd.as_fd(), false);
            });
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ioe("pipe")(e.into()))
}

const NS_ORDER: &[(&str, i32)] = &[
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("mnt", libc::CLONE_NEWNS),
];

/// The child's stdio: either a pty slave or three pipe ends (kept open until spawned).
enum ChildIo {
    Pty(OwnedFd),
    Pipes(OwnedFd, OwnedFd, OwnedFd),
}

impl Container {
    /// Starts `req` inside the container.
    pub fn exec(&self, req: &ExecRequest) -> Result<Exec, Error> {
        self.ensure_running()?;
        if req.command.is_empty() {
            return Err(Error::Invalid("empty command".into()));
        }
        // A new process would join the frozen cgroup and hang there.
        if self.rt.cgroup.is_frozen()? {
            return Err(Error::Invalid("container is frozen".into()));
        }
        let pid = self.rt.pid;
        let mut ns = Vec::new();
        for (name, flag) in NS_ORDER {
            let f = std::fs::File::open(format!("/proc/{pid}/ns/{name}")).map_err(ioe(format!("open {name} namespace")))?;
            ns.push((OwnedFd::from(f), *flag));
        }
        let userns = match &self.rt.idmap {
            Some(_) => Some(OwnedFd::from(std::fs::File::open(format!("/proc/{pid}/ns/user")).map_err(ioe("open user namespace"))?)),
            None => None,
        };
        let mut env: Vec<(String, String)> = req.env.clone();
        for (k, v) in [
            ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            ("HOME", if req.uid == 0 { "/root" } else { "/" }),
            ("LANG", "C.UTF-8"),
        ] {
            if !env.iter().any(|(ek, _)| ek == k) {
                env.push((k.into(), v.into()));
            }
        }
        let path_dirs: Vec<String> = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.split(':').map(str::to_string).collect()).unwrap_or_default();
        let cs = |s: &str| CString::new(s).map_err(|_| Error::Invalid(format!("NUL byte in {s:?}")));
        let mut parent_side = (None, None, None, None);
        let io = if req.interactive {
            let (master, slave) = self.open_container_pty(req)?;
            parent_side.3 = Some(master);
            ChildIo::Pty(slave)
        } else {
            let (ir, iw) = pipe()?;
            let (or, ow) = pipe()?;
            let (er, ew) = pipe()?;
            parent_side = (Some(iw), Some(or), Some(er), None);
            ChildIo::Pipes(ir, ow, ew)
        };
        let mut ns_raw: Vec<(i32, i32)> = ns.iter().map(|(f, t)| (f.as_raw_fd(), *t)).collect();
        if let Some(u) = &userns {
            ns_raw.push((u.as_raw_fd(), libc::CLONE_NEWUSER));
        }
        let argv: Vec<CString> = req.command.iter().map(|a| cs(a)).collect::<Result<_, _>>()?;
        let arg0 = argv[0].as_bytes();
        let candidates: Vec<CString> = if arg0.contains(&b'/') {
            vec![argv[0].clone()]
        } else {
            path_dirs.iter().filter_map(|d| CString::new([d.as_bytes(), b"/", arg0].concat()).ok()).collect()
        };
        let plan = spawn::Plan {
            procs: self
                .rt
                .cgroup
                .procs_files()
                .iter()
                .map(|p| CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::Invalid("NUL byte in cgroup path".into())))
                .collect::<Result<_, _>>()?,
            ns: ns_raw,
            stdio: match &io {
                ChildIo::Pty(s) => spawn::Stdio::Pty(s.as_raw_fd()),
                ChildIo::Pipes(i, o, e) => spawn::Stdio::Pipes(i.as_raw_fd(), o.as_raw_fd(), e.as_raw_fd()),
            },
            uid: req.uid,
            gid: req.gid,
            cwd: cs(&req.cwd)?,
            seccomp: match (&self.rt.seccomp_policy, self.rt.seccomp) {
                (Some(s), _) => Some(s.program().map_err(|e| Error::Invalid(format!("seccomp: {e}")))?),
                (None, Some(f)) => Some(super::seccomp::program_with(f.deny_default, f.deny_compat)),
                (None, None) => None,
            },
            candidates,
            argv,
            env: env.iter().map(|(k, v)| cs(&format!("{k}={v}"))).collect::<Result<_, _>>()?,
        };
        let epid = match spawn::spawn(&plan) {
            Ok(pid) => pid,
            Err(spawn::SpawnError::Io(e)) => return Err(ioe("start exec process")(e)),
            Err(spawn::SpawnError::Child(f)) => return Err(Error::Setup(f.message(&plan))),
        };
        drop(io);
        let pidfd = sys::pidfd_open(epid).map_err(ioe("pidfd_open exec"))?;
        Ok(Exec { pid: epid, pidfd, reaped: false.into(), stdin: parent_side.0, stdout: parent_side.1, stderr: parent_side.2, pty: parent_side.3 })
    }

    /// A pty from the container's devpts: its /dev/ptmx opened through /proc/<pid>/root
    /// without following anything out of the container; the slave is given to the user.
    fn open_container_pty(&self, req: &ExecRequest) -> Result<(OwnedFd, OwnedFd), Error> {
        let root = sys::open_path(Path::new(&format!("/proc/{}/root", self.rt.pid))).map_err(ioe("open container root"))?;
        let master = sys::open_in_root(root.as_fd(), Path::new("/dev/ptmx"), libc::O_RDWR | libc::O_NOCTTY, 0)
            .map_err(ioe("open container /dev/ptmx"))?;
        let st = nix::sys::stat::fstat(&master).map_err(|e| ioe("stat ptmx")(e.into()))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFCHR || libc::major(st.st_rdev) != 5 || libc::minor(st.st_rdev) != 2 {
            return Err(Error::Invalid("container /dev/ptmx is not a pty multiplexer".into()));
        }
        let unlock: libc::c_int = 0;
        // SAFETY: TIOCSPTLCK / TIOCGPTPEER on the master fd we just opened.
        let slave = unsafe {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock);
            libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)
        };
        if slave < 0 {
            return Err(ioe("open pty peer")(std::io::Error::last_os_error()));
        }
        // SAFETY: fresh descriptor from TIOCGPTPEER.
        let slave = unsafe { OwnedFd::from_raw_fd(slave) };
        let (hu, hg) = match &self.rt.idmap {
            Some(m) => (m.to_host(true, req.uid as u64).unwrap_or(65534), m.to_host(false, 5).unwrap_or(65534)),
            None => (req.uid as u64, 5),
        };
        nix::unistd::fchown(&slave, Some((hu as u32).into()), Some((hg as u32).into())).map_err(|e| ioe("chown pty")(e.into()))?;
        super::console::set_winsize(&master, req.width.max(1), req.height.max(1))?;
        Ok((master, slave))
    }
}
