//! Thin wrappers over syscalls that nix does not cover: openat2, the new mount API
//! (open_tree, mount_setattr, move_mount), pidfds, and small /proc readers.
//!
//! Everything here is a direct `libc::syscall` with the struct layouts from the kernel
//! uapi headers; callers get `io::Error`s and attach context themselves.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

pub mod proc;

/// `struct open_how` for openat2(2).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Do not follow magic links (/proc/<pid>/fd/*) while resolving.
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// Treat the dirfd as the root: `..` and absolute symlinks stay inside it.
pub const RESOLVE_IN_ROOT: u64 = 0x10;
/// Refuse to cross into another mount.
pub const RESOLVE_NO_XDEV: u64 = 0x01;

fn cpath(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// openat2(2): resolves `path` below `dir` with `resolve` flags.
pub fn openat2(dir: BorrowedFd<'_>, path: &Path, flags: i32, mode: u32, resolve: u64) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    let how = OpenHow { flags: (flags | libc::O_CLOEXEC) as u64, mode: mode as u64, resolve };
    // SAFETY: `c` is a valid NUL-terminated string and `how` a properly sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Opens `path` inside the tree rooted at `root` so that nothing escapes it.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    openat2(root, rel, flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
}

/// Opens a directory (O_PATH) on the host.
pub fn open_path(path: &Path) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: valid C string; result checked below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC | libc::O_DIRECTORY) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const OPEN_TREE_CLONE: u32 = 1;
const AT_RECURSIVE: u32 = 0x8000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x04;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Makes a detached, recursive copy of the mount tree at `path` (open_tree CLONE).
pub fn open_tree_clone(path: &Path) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | AT_RECURSIVE;
    // SAFETY: valid C string, flags per uapi.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;

/// A syscall's `-1 means errno` convention, as a `Result`.
fn check(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// mount_setattr(2) on the whole detached tree `mnt`.
fn mount_setattr(mnt: BorrowedFd<'_>, attr: &MountAttr) -> io::Result<()> {
    let empty = c"";
    // SAFETY: valid pointers and sizes per uapi mount_setattr(2).
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as u32 | AT_RECURSIVE,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// move_mount(2) of the detached mount `mnt` onto `to_path` relative to `to_dir`.
fn move_mount(mnt: BorrowedFd<'_>, to_dir: RawFd, to_path: &std::ffi::CStr, flags: u32) -> io::Result<()> {
    let empty = c"";
    // SAFETY: valid C strings and descriptors; flags per uapi move_mount(2).
    check(unsafe {
        libc::syscall(libc::SYS_move_mount, mnt.as_raw_fd(), empty.as_ptr(), to_dir, to_path.as_ptr(), flags)
    })
}

/// Applies an idmapping (from the user namespace `userns`) to a detached mount.
pub fn mount_setattr_idmap(mnt: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> io::Result<()> {
    let attr = MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns.as_raw_fd() as u64 };
    mount_setattr(mnt, &attr)
}

/// Makes a detached mount tree read-only.
pub fn mount_setattr_rdonly(mnt: BorrowedFd<'_>) -> io::Result<()> {
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
    mount_setattr(mnt, &attr)
}

/// Attaches the detached mount `mnt` on top of the path `target`.
pub fn move_mount_to(mnt: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let c = cpath(target)?;
    move_mount(mnt, libc::AT_FDCWD, &c, MOVE_MOUNT_F_EMPTY_PATH)
}

/// Attaches the detached mount `mnt` on top of the file or directory open as `target`.
pub fn move_mount_to_fd(mnt: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    move_mount(mnt, target.as_raw_fd(), c"", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_send_signal(2).
pub fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: plain arguments, null siginfo.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, std::ptr::null::<u8>(), 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// pidfd_getfd(2): a copy of descriptor `fd` of the process behind `pidfd`.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain arguments.
    let nfd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if nfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(nfd as RawFd) })
}

/// Waits until the process behind `pidfd` exits, at most `timeout_ms` (-1 = forever).
/// Returns true if it has exited.
pub fn pidfd_wait_exit(pidfd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(rc > 0);
    }
}

/// Reaps our child behind `pidfd` (waitid P_PIDFD); returns a shell-style exit code
/// (128+signal when killed). `nohang` returns None while it still runs.
pub fn pidfd_reap(pidfd: BorrowedFd<'_>, nohang: bool) -> io::Result<Option<i32>> {
    // SAFETY: zeroed siginfo is a valid out-parameter.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let mut flags = libc::WEXITED;
    if nohang {
        flags |= libc::WNOHANG;
    }
    loop {
        // SAFETY: P_PIDFD (3) with a valid fd and out-pointer.
        let rc = unsafe { libc::waitid(3 as libc::idtype_t, pidfd.as_raw_fd() as libc::id_t, &mut info, flags) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        break;
    }
    // SAFETY: the kernel filled the union for a CLD_* event.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(if info.si_code == libc::CLD_EXITED { status } else { 128 + status }))
}

/// Closes every descriptor from `first` upward (close_range).
pub fn close_from(first: u32) {
    // SAFETY: close_range only closes descriptors.
    unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) };
}

/// Clears FD_CLOEXEC so the descriptor survives exec.
pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd number; errors reported.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// fork(2) through glibc so its atfork handlers keep malloc usable in the child.
pub fn fork() -> io::Result<i32> {
    // SAFETY: the caller only runs single-threaded-safe code in the child and exits or execs.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// A fork-like clone whose child becomes a child of our parent (CLONE_PARENT), so the
/// daemon can reap the container init / exec process directly. Returns 0 in the child.
pub fn clone_parent() -> io::Result<i32> {
    // SAFETY: raw clone without a new stack behaves like fork; the caller is single-threaded.
    let pid = unsafe {
        libc::syscall(libc::SYS_clone, (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong, 0usize, 0usize, 0usize, 0usize)
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid as i32)
}

/// setns(2) on an fd with the given CLONE_NEW* type (0 = any).
pub fn setns(fd: BorrowedFd<'_>, nstype: i32) -> io::Result<()> {
    // SAFETY: plain arguments.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), nstype) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Resets the signal mask and all handlers to defaults (before exec of foreign code).
pub fn reset_signals() {
    // SAFETY: sigset operations on a local set, then restoring default dispositions.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

/// Exits immediately without running Rust/libc teardown (for forked children).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns.
    unsafe { libc::_exit(code) }
}
