//! Starting an exec process without copying the daemon's address space.
//!
//! berthd maps a few thousand regions (wasmtime's instance pool reserves them up front),
//! and `fork` copies every one of them: measured ~2.5 ms per fork, twice per exec. Here
//! the two setup processes are `clone(CLONE_VM | CLONE_VFORK)` children instead: they
//! borrow the daemon's memory while the calling thread is suspended, as `posix_spawn`
//! does. The first joins the container's cgroups and namespaces; the second (created
//! with CLONE_PARENT, so it is the daemon's child and enters the pid namespace) sets up
//! stdio, ids, cwd, signals and seccomp, then execs.
//!
//! Code that runs in those children allocates nothing, takes no locks and calls raw
//! syscalls only (glibc's set*id wrappers would signal the daemon's own threads).
//! Everything they need is rendered beforehand into a [`Plan`]; failures are reported
//! as (stage, errno) through memory the children share with the caller.

use std::ffi::{c_char, c_int, c_void, CString};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

/// The child's stdio.
pub(super) enum Stdio {
    /// A pty slave: new session, controlling terminal, fds 0–2.
    Pty(RawFd),
    /// stdin, stdout, stderr.
    Pipes(RawFd, RawFd, RawFd),
}

/// Everything the children need, rendered in the caller.
pub(super) struct Plan {
    /// `cgroup.procs` files to join (by writing "0": the writer itself).
    pub procs: Vec<CString>,
    /// Namespace fds and their CLONE_NEW* types, joined in order; the user namespace last.
    pub ns: Vec<(RawFd, c_int)>,
    pub stdio: Stdio,
    pub uid: u32,
    pub gid: u32,
    pub cwd: CString,
    pub seccomp: Option<Vec<libc::sock_filter>>,
    /// Paths to try in order (one if argv[0] has a slash, else one per PATH entry).
    pub candidates: Vec<CString>,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
}

/// Where a child failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Cgroup(usize),
    Setns(usize),
    Clone,
    Setgroups,
    Setgid,
    Setuid,
    Seccomp,
    Exec,
}

/// Why the process could not be started.
#[derive(Debug)]
pub(super) struct Failure {
    pub stage: Stage,
    pub errno: i32,
}

impl Failure {
    /// The message the daemon reports, in the words the old fork path used.
    pub fn message(&self, plan: &Plan) -> String {
        let e = nix::errno::Errno::from_raw(self.errno);
        match self.stage {
            Stage::Cgroup(i) => format!("join cgroup {}: {}", plan.procs.get(i).map(|p| p.to_string_lossy()).unwrap_or_default(), e.desc()),
            Stage::Setns(i) => format!("setns {:#x}: {}", plan.ns.get(i).map(|n| n.1).unwrap_or(0), e.desc()),
            Stage::Clone => format!("clone: {}", e.desc()),
            Stage::Setgroups => format!("setgroups: {}", e.desc()),
            Stage::Setgid => format!("setgid {}: {}", plan.gid, e.desc()),
            Stage::Setuid => format!("setuid {}: {}", plan.uid, e.desc()),
            Stage::Seccomp => format!("seccomp: {}", e.desc()),
            Stage::Exec => format!("exec {}: {}", plan.argv.first().map(|a| a.to_string_lossy()).unwrap_or_default(), e.desc()),
        }
    }
}

/// State shared with the children (they run in our address space).
struct Shared<'a> {
    plan: &'a Plan,
    argv: Vec<*const c_char>,
    env: Vec<*const c_char>,
    fprog: Option<libc::sock_fprog>,
    /// Stack for the second child (top of its region).
    inner_stack: *mut c_void,
    pid: AtomicI32,
    stage: AtomicI32,
    errno: AtomicI32,
}

const NO_STAGE: i32 = -1;

fn encode(s: Stage) -> i32 {
    match s {
        Stage::Cgroup(i) => 1000 + i as i32,
        Stage::Setns(i) => 2000 + i as i32,
        Stage::Clone => 1,
        Stage::Setgroups => 2,
        Stage::Setgid => 3,
        Stage::Setuid => 4,
        Stage::Seccomp => 5,
        Stage::Exec => 6,
    }
}

fn decode(v: i32) -> Stage {
    match v {
        1 => Stage::Clone,
        2 => Stage::Setgroups,
        3 => Stage::Setgid,
        4 => Stage::Setuid,
        5 => Stage::Seccomp,
        6 => Stage::Exec,
        v if v >= 2000 => Stage::Setns((v - 2000) as usize),
        v => Stage::Cgroup((v - 1000).max(0) as usize),
    }
}

/// Two stacks in one mapping, each with a guard page below it.
struct Stacks {
    base: *mut c_void,
    len: usize,
}

const STACK: usize = 128 * 1024;
const PAGE: usize = 4096;

impl Stacks {
    fn new() -> std::io::Result<Self> {
        let len = 2 * (STACK + PAGE);
        // SAFETY: anonymous private mapping; checked for MAP_FAILED.
        let base = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK, -1, 0)
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let s = Stacks { base, len };
        for off in [0, STACK + PAGE] {
            // SAFETY: the guard page lies inside our mapping.
            if unsafe { libc::mprotect((base as *mut u8).add(off) as *mut c_void, PAGE, libc::PROT_NONE) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(s)
    }

    /// The top of stack `i` (0 or 1); stacks grow down.
    fn top(&self, i: usize) -> *mut c_void {
        // SAFETY: inside the mapping.
        unsafe { (self.base as *mut u8).add((i + 1) * (STACK + PAGE)) as *mut c_void }
    }
}

impl Drop for Stacks {
    fn drop(&mut self) {
        // SAFETY: our own mapping; no child runs on it any more (vfork semantics).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Starts the process. Ok(pid) is a child of the calling process that has exec'd (it may
/// already have exited: a zombie until reaped). On failure, any child is already reaped.
pub(super) fn spawn(plan: &Plan) -> Result<i32, SpawnError> {
    let stacks = Stacks::new().map_err(SpawnError::Io)?;
    let mut argv: Vec<*const c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut env: Vec<*const c_char> = plan.env.iter().map(|a| a.as_ptr()).collect();
    env.push(std::ptr::null());
    let fprog = plan.seccomp.as_ref().map(|p| libc::sock_fprog { len: p.len() as u16, filter: p.as_ptr() as *mut libc::sock_filter });
    let shared = Shared {
        plan,
        argv,
        env,
        fprog,
        inner_stack: stacks.top(1),
        pid: AtomicI32::new(0),
        stage: AtomicI32::new(NO_STAGE),
        errno: AtomicI32::new(0),
    };
    // No signal handler may run in the children: block everything around the clone.
    // SAFETY: sigset operations on local sets.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: `outer` only reads `shared` (alive until we return, since CLONE_VFORK
    // suspends us until the child exits) and uses its own stack.
    let c = unsafe {
        libc::clone(outer, stacks.top(0), libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD, &shared as *const Shared as *mut c_void)
    };
    let clone_err = std::io::Error::last_os_error();
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    if c < 0 {
        return Err(SpawnError::Io(clone_err));
    }
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(c), None);
    drop(stacks);
    let pid = shared.pid.load(Ordering::SeqCst);
    let stage = shared.stage.load(Ordering::SeqCst);
    if stage != NO_STAGE {
        if pid > 0 {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        return Err(SpawnError::Child(Failure { stage: decode(stage), errno: shared.errno.load(Ordering::SeqCst) }));
    }
    if pid <= 0 {
        return Err(SpawnError::Child(Failure { stage: Stage::Clone, errno: libc::ECHILD }));
    }
    Ok(pid)
}

#[derive(Debug)]
pub(super) enum SpawnError {
    Io(std::io::Error),
    Child(Failure),
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn fail(s: &Shared, stage: Stage, err: i32) {
    s.errno.store(err, Ordering::SeqCst);
    s.stage.store(encode(stage), Ordering::SeqCst);
}

/// First child: cgroups, namespaces, then the second child. Runs on the daemon's memory.
extern "C" fn outer(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the caller's `Shared`, alive while the caller is suspended.
    let s = unsafe { &*(arg as *const Shared) };
    let plan = s.plan;
    for (i, p) in plan.procs.iter().enumerate() {
        // SAFETY: raw open/write/close on a NUL-terminated path.
        let ok = unsafe {
            let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            let ok = fd >= 0 && libc::write(fd, b"0".as_ptr() as *const c_void, 1) == 1;
            let e = errno();
            if fd >= 0 {
                libc::close(fd);
            }
            if !ok {
                fail(s, Stage::Cgroup(i), e);
            }
            ok
        };
        if !ok {
            // SAFETY: leaves this child only.
            unsafe { libc::_exit(1) };
        }
    }
    for (i, (fd, t)) in plan.ns.iter().enumerate() {
        // SAFETY: plain syscall.
        if unsafe { libc::setns(*fd, *t) } < 0 {
            fail(s, Stage::Setns(i), errno());
            // SAFETY: leaves this child only.
            unsafe { libc::_exit(1) };
        }
    }
    // SAFETY: `inner` runs on its own stack over the same shared state; CLONE_VFORK keeps
    // this child suspended until it has exec'd or exited.
    let pid = unsafe { libc::clone(inner, s.inner_stack, libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PARENT | libc::SIGCHLD, arg) };
    if pid < 0 {
        fail(s, Stage::Clone, errno());
        // SAFETY: leaves this child only.
        unsafe { libc::_exit(1) };
    }
    s.pid.store(pid, Ordering::SeqCst);
    // SAFETY: leaves this child only.
    unsafe { libc::_exit(0) }
}

/// Second child: inside the pid namespace; stdio, ids, cwd, signals, seccomp, exec.
extern "C" fn inner(arg: *mut c_void) -> c_int {
    // SAFETY: as in `outer`.
    let s = unsafe { &*(arg as *const Shared) };
    let plan = s.plan;
    // SAFETY: raw syscalls on descriptors and memory owned by the plan.
    unsafe {
        match plan.stdio {
            Stdio::Pty(slave) => {
                libc::setsid();
                libc::ioctl(slave, libc::TIOCSCTTY, 0);
                for t in 0..3 {
                    libc::dup2(slave, t);
                }
            }
            Stdio::Pipes(i, o, e) => {
                libc::dup2(i, 0);
                libc::dup2(o, 1);
                libc::dup2(e, 2);
            }
        }
        if libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) < 0 {
            return die(s, Stage::Setgroups);
        }
        let g = plan.gid as libc::c_ulong;
        if libc::syscall(libc::SYS_setresgid, g, g, g) < 0 {
            return die(s, Stage::Setgid);
        }
        let u = plan.uid as libc::c_ulong;
        if libc::syscall(libc::SYS_setresuid, u, u, u) < 0 {
            return die(s, Stage::Setuid);
        }
        if libc::chdir(plan.cwd.as_ptr()) < 0 {
            libc::chdir(c"/".as_ptr());
        }
        // Default dispositions, then unblock everything (the caller blocked all).
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &none as *const libc::sigset_t, std::ptr::null_mut::<libc::sigset_t>(), 8usize);
        if let Some(f) = &s.fprog {
            if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, f as *const libc::sock_fprog) < 0 {
                return die(s, Stage::Seccomp);
            }
        }
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32);
        let mut last = libc::ENOENT;
        for c in &plan.candidates {
            libc::execve(c.as_ptr(), s.argv.as_ptr(), s.env.as_ptr());
            let e = errno();
            if e != libc::ENOENT || last == libc::ENOENT {
                last = e;
            }
        }
        fail(s, Stage::Exec, last);
        libc::_exit(127)
    }
}

fn die(s: &Shared, stage: Stage) -> c_int {
    fail(s, stage, errno());
    // SAFETY: leaves this child only.
    unsafe { libc::_exit(127) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_codes_round_trip() {
        for s in [Stage::Cgroup(0), Stage::Cgroup(7), Stage::Setns(3), Stage::Clone, Stage::Setgroups, Stage::Setgid, Stage::Setuid, Stage::Seccomp, Stage::Exec] {
            assert_eq!(decode(encode(s)), s);
        }
    }
}
