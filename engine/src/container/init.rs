//! Code that runs in the forked setup processes (never in the daemon itself).
//!
//! `setup` (process C) creates the user namespace (the daemon writes the maps), then the
//! other namespaces but the cgroup one, and clones the init process I with CLONE_PARENT
//! so init is the daemon's child. I builds the mount tree (rootfs, /proc, /sys, /dev,
//! devices) while the daemon moves it into its cgroups (the first cgroup v1 migration
//! waits for an RCU grace period, ~8 ms here, so it runs alongside the mounts); then I
//! enters a new cgroup namespace rooted there, mounts the cgroup filesystems, waits for
//! the daemon to plug in network devices, pivots and execs init.
//! Errors go back to the daemon as a FAILED message.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use super::msg;
use crate::sys;

/// A bind mount into the container (disk devices, device nodes).
#[derive(Debug, Clone)]
pub(crate) struct Bind {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: PathBuf,
    pub readonly: bool,
    /// Create a file (not a directory) as mount point.
    pub file: bool,
    /// Mount through the container's idmap (disk `shift`), so its ids appear unshifted.
    pub shift: bool,
}

/// A cgroup filesystem to mount below /sys/fs/cgroup inside the container.
#[derive(Debug, Clone)]
pub(crate) struct CgMount {
    pub dir: String,
    pub fstype: &'static str,
    pub opts: String,
}

/// Everything the setup processes need, computed by the daemon before fork.
#[derive(Debug)]
pub(crate) struct Plan {
    pub unprivileged: bool,
    pub nesting: bool,
    pub rootfs: PathBuf,
    pub hostname: String,
    pub console_slave: PathBuf,
    pub init: Vec<CString>,
    pub env: Vec<CString>,
    pub binds: Vec<Bind>,
    pub cgroup_mounts: Vec<CgMount>,
    pub seccomp: Option<Vec<libc::sock_filter>>,
}

type R<T> = Result<T, String>;

fn ctx<T, E: std::fmt::Display>(r: Result<T, E>, what: impl FnOnce() -> String) -> R<T> {
    r.map_err(|e| format!("{}: {e}", what()))
}

/// Process C. Never returns.
pub(crate) fn setup(plan: &Plan, sock: OwnedFd) -> ! {
    let code = match setup_inner(plan, &sock) {
        Ok(()) => 0,
        Err(m) => {
            let _ = msg::send(sock.as_fd(), msg::FAILED, m.as_bytes(), None);
            1
        }
    };
    sys::exit_now(code)
}

fn setup_inner(plan: &Plan, sock: &OwnedFd) -> R<()> {
    msg::expect(sock.as_fd(), msg::GO)?;
    if plan.unprivileged {
        ctx(unshare(CloneFlags::CLONE_NEWUSER), || "unshare user namespace".into())?;
        ctx(msg::send(sock.as_fd(), msg::USERNS_READY, b"", None), || "handshake".into())?;
    }
    let (mapped, bind_fds) = expect_mapped(sock)?;
    if plan.unprivileged {
        ctx(nix::unistd::setresgid(0.into(), 0.into(), 0.into()), || "setresgid".into())?;
        ctx(nix::unistd::setresuid(0.into(), 0.into(), 0.into()), || "setresuid".into())?;
        ctx(nix::unistd::setgroups(&[]), || "setgroups".into())?;
    }
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWPID;
    ctx(unshare(flags), || "unshare namespaces".into())?;
    let pid = ctx(sys::clone_parent(), || "clone init".into())?;
    if pid == 0 {
        run_init(plan, sock, mapped.fd, bind_fds)
    }
    ctx(msg::send(sock.as_fd(), msg::INIT_PID, pid.to_string().as_bytes(), None), || "handshake".into())
}

/// Process I (pid 1 of the container). Never returns.
fn run_init(plan: &Plan, sock: &OwnedFd, rootfs_mnt: Option<OwnedFd>, bind_fds: BTreeMap<usize, OwnedFd>) -> ! {
    let err = match init_inner(plan, sock, rootfs_mnt, bind_fds) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = msg::send(sock.as_fd(), msg::FAILED, err.as_bytes(), None);
    sys::exit_now(1)
}

enum Never {}

fn fdpath(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens (creating when missing) a mount point inside the rootfs without leaving it.
pub(crate) fn mountpoint(root: BorrowedFd<'_>, rel: &Path, file: bool) -> R<OwnedFd> {
    let o_path = libc::O_PATH;
    if let Ok(fd) = sys::open_in_root(root, rel, o_path, 0) {
        return Ok(fd);
    }
    let mut cur = PathBuf::from("/");
    let comps: Vec<_> = rel.components().filter(|c| matches!(c, std::path::Component::Normal(_))).collect();
    for (i, c) in comps.iter().enumerate() {
        let next = cur.join(c);
        if sys::open_in_root(root, &next, o_path, 0).is_err() {
            let parent = ctx(sys::open_in_root(root, &cur, libc::O_DIRECTORY | libc::O_RDONLY, 0), || format!("open {}", cur.display()))?;
            let last = i == comps.len() - 1;
            let name = c.as_os_str();
            if last && file {
                let f = nix::fcntl::openat(parent.as_fd(), name, nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::from_bits_truncate(0o644));
                ctx(f, || format!("create {}", next.display()))?;
            } else {
                let r = nix::sys::stat::mkdirat(parent.as_fd(), name, nix::sys::stat::Mode::from_bits_truncate(0o755));
                if let Err(e) = r {
                    if e != nix::errno::Errno::EEXIST {
                        return Err(format!("mkdir {}: {e}", next.display()));
                    }
                }
            }
        }
        cur = next;
    }
    ctx(sys::open_in_root(root, rel, o_path, 0), || format!("open {}", rel.display()))
}

fn mnt(src: Option<&str>, target: &Path, fstype: Option<&str>, flags: MsFlags, data: Option<&str>) -> R<()> {
    ctx(mount(src, target, fstype, flags, data), || format!("mount {} on {}", fstype.or(src).unwrap_or("?"), target.display()))
}

/// Flags a bind remount must keep (the kernel refuses to drop locked ones in a user ns).
fn locked_flags(path: &Path) -> MsFlags {
    let mut f = MsFlags::empty();
    if let Ok(s) = nix::sys::statvfs::statvfs(path) {
        use nix::sys::statvfs::FsFlags;
        let fl = s.flags();
        for (a, b) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if fl.contains(a) {
                f |= b;
            }
        }
    }
    f
}

fn bind(root: BorrowedFd<'_>, source: &Path, target: &Path, readonly: bool, file: bool) -> R<()> {
    let t = mountpoint(root, target, file)?;
    mnt(Some(&source.to_string_lossy()), &fdpath(t.as_fd()), None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    if readonly {
        let top = ctx(sys::open_in_root(root, target, libc::O_PATH, 0), || format!("reopen {}", target.display()))?;
        let p = fdpath(top.as_fd());
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(&p);
        mnt(None, &p, None, flags, None)?;
    }
    Ok(())
}

/// Waits for MAPPED, keeping the idmapped bind trees the daemon sends before it.
fn expect_mapped(sock: &OwnedFd) -> R<(msg::Msg, BTreeMap<usize, OwnedFd>)> {
    let mut fds = BTreeMap::new();
    loop {
        let m = ctx(msg::recv(sock.as_fd()), || "handshake".into())?;
        if m.tag == Some(msg::BIND_FD) {
            let i = String::from_utf8_lossy(&m.payload).parse::<usize>().map_err(|_| "handshake: bad bind index".to_string())?;
            let fd = m.fd.ok_or_else(|| "handshake: bind without a mount".to_string())?;
            fds.insert(i, fd);
            continue;
        }
        return match m.tag {
            Some(msg::MAPPED) => Ok((m, fds)),
            Some(msg::FAILED) => Err(String::from_utf8_lossy(&m.payload).into_owned()),
            Some(t) => Err(format!("handshake: unexpected message {:?}", t as char)),
            None => Err("handshake: the daemon went away while waiting for the id maps".into()),
        };
    }
}

fn init_inner(plan: &Plan, sock: &OwnedFd, rootfs_mnt: Option<OwnedFd>, mut bind_fds: BTreeMap<usize, OwnedFd>) -> R<Never> {
    // Wait until the daemon has our pid (C reports it on the same socket).
    msg::expect(sock.as_fd(), msg::GO)?;
    mnt(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_SLAVE, None)?;
    match rootfs_mnt {
        Some(fd) => ctx(sys::move_mount_to(fd.as_fd(), &plan.rootfs), || "attach idmapped rootfs".into())?,
        None => {
            let r = plan.rootfs.to_string_lossy();
            mnt(Some(&r), &plan.rootfs, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?
        }
    }
    let root = ctx(sys::open_path(&plan.rootfs), || "open rootfs".into())?;
    let root = root.as_fd();
    ctx(nix::unistd::sethostname(&plan.hostname), || "sethostname".into())?;

    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let p = mountpoint(root, Path::new("proc"), false)?;
    mnt(Some("proc"), &fdpath(p.as_fd()), Some("proc"), nosuid, None)?;
    let s = mountpoint(root, Path::new("sys"), false)?;
    let sys_ro = if !plan.unprivileged && !plan.nesting { MsFlags::MS_RDONLY } else { MsFlags::empty() };
    mnt(Some("sysfs"), &fdpath(s.as_fd()), Some("sysfs"), nosuid | sys_ro, None)?;

    let d = mountpoint(root, Path::new("dev"), false)?;
    mnt(Some("tmpfs"), &fdpath(d.as_fd()), Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("mode=755,size=65536k"))?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = PathBuf::from("/dev").join(node);
        bind(root, &host, &Path::new("dev").join(node), false, true)?;
    }
    let pts = mountpoint(root, Path::new("dev/pts"), false)?;
    mnt(Some("devpts"), &fdpath(pts.as_fd()), Some("devpts"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("newinstance,ptmxmode=0666,mode=0620,gid=5"))?;
    let devdir = ctx(sys::open_in_root(root, Path::new("dev"), libc::O_DIRECTORY | libc::O_RDONLY, 0), || "open dev".into())?;
    for (target, name) in [("pts/ptmx", "ptmx"), ("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr")] {
        ctx(nix::unistd::symlinkat(target, devdir.as_fd(), name), || format!("symlink /dev/{name}"))?;
    }
    let shm = mountpoint(root, Path::new("dev/shm"), false)?;
    mnt(Some("tmpfs"), &fdpath(shm.as_fd()), Some("tmpfs"), nosuid, Some("mode=1777"))?;
    bind(root, &plan.console_slave, Path::new("dev/console"), false, true)?;
    for (i, b) in plan.binds.iter().enumerate() {
        match bind_fds.remove(&i) {
            Some(tree) => {
                let t = mountpoint(root, &b.target, b.file)?;
                ctx(sys::move_mount_to_fd(tree.as_fd(), t.as_fd()), || format!("attach shifted {}", b.target.display()))?;
            }
            None => bind(root, &b.source, &b.target, b.readonly, b.file)?,
        }
    }

    // The daemon says GO once we are in the container's cgroups: the cgroup namespace
    // is rooted where we are when it is created.
    msg::expect(sock.as_fd(), msg::GO)?;
    ctx(unshare(CloneFlags::CLONE_NEWCGROUP), || "unshare cgroup namespace".into())?;
    if !plan.cgroup_mounts.is_empty() {
        let cg = mountpoint(root, Path::new("sys/fs/cgroup"), false)?;
        mnt(Some("tmpfs"), &fdpath(cg.as_fd()), Some("tmpfs"), nosuid, Some("mode=755"))?;
        for m in &plan.cgroup_mounts {
            let t = mountpoint(root, &Path::new("sys/fs/cgroup").join(&m.dir), false)?;
            let data = if m.opts.is_empty() { None } else { Some(m.opts.as_str()) };
            mnt(Some("cgroup"), &fdpath(t.as_fd()), Some(m.fstype), nosuid, data)?;
        }
    }

    ctx(msg::send(sock.as_fd(), msg::MOUNTED, b"", None), || "handshake".into())?;
    msg::expect(sock.as_fd(), msg::GO)?;

    ctx(nix::unistd::fchdir(root), || "chdir rootfs".into())?;
    ctx(nix::unistd::pivot_root(".", "."), || "pivot_root".into())?;
    ctx(umount2(".", MntFlags::MNT_DETACH), || "detach old root".into())?;
    ctx(nix::unistd::chdir("/"), || "chdir /".into())?;

    ctx(nix::unistd::setsid(), || "setsid".into())?;
    let console = ctx(nix::fcntl::open("/dev/console", nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY, nix::sys::stat::Mode::empty()), || "open /dev/console".into())?;
    // SAFETY: TIOCSCTTY on a terminal fd we own.
    unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSCTTY, 0) };
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        unsafe { libc::dup2(console.as_raw_fd(), target) };
    }
    drop(console);
    for cap in [25 /* sys_time */, 16 /* sys_module */, 17 /* sys_rawio */, 33 /* mac_admin */, 32 /* mac_override */] {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
    sys::reset_signals();
    if let Some(prog) = &plan.seccomp {
        ctx(super::seccomp::install(prog), || "install seccomp filter".into())?;
    }
    // Everything but stdio closes on exec (including the handshake socket: EOF = success).
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32) };
    let Some(argv0) = plan.init.first() else { return Err("empty init command".into()) };
    let e = nix::unistd::execve(argv0, &plan.init, &plan.env);
    Err(format!("exec {}: {}", argv0.to_string_lossy(), e.err().map(|e| e.to_string()).unwrap_or_default()))
}
