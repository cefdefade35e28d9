//! The container console: a host pty whose slave is bind-mounted as /dev/console. The
//! master is held by the tiny `berth-console` helper, which appends everything to the
//! console log (so the log keeps growing while the daemon is down) and relays one
//! attached client over a unix socket.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{ioe, Container, Error};
use crate::sys;

/// A host pty pair for /dev/console.
pub(crate) struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub slave_path: PathBuf,
}

/// Opens a host pty and gives the slave to container root (`owner` = its host ids).
pub(crate) fn open_pty(owner: (u32, u32)) -> Result<Pty, Error> {
    use nix::fcntl::OFlag;
    let m = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| ioe("open /dev/ptmx")(e.into()))?;
    nix::pty::grantpt(&m).map_err(|e| ioe("grantpt")(e.into()))?;
    nix::pty::unlockpt(&m).map_err(|e| ioe("unlockpt")(e.into()))?;
    let name = nix::pty::ptsname_r(&m).map_err(|e| ioe("ptsname")(e.into()))?;
    let slave = nix::fcntl::open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .map_err(|e| ioe(format!("open {name}"))(e.into()))?;
    nix::unistd::fchown(&slave, Some(owner.0.into()), Some(owner.1.into())).map_err(|e| ioe("chown console")(e.into()))?;
    let master = OwnedFd::from(m);
    Ok(Pty { master, slave, slave_path: PathBuf::from(name) })
}

/// Starts the helper with the master as fd 3 and the slave as fd 4, in its own session.
pub(crate) fn spawn_holder(helper: &Path, pty: &Pty, init_pid: i32, log: &Path, socket: &Path) -> Result<(i32, OwnedFd), Error> {
    let (m, s) = (pty.master.as_raw_fd(), pty.slave.as_raw_fd());
    let mut cmd = Command::new(helper);
    cmd.arg(init_pid.to_string()).arg(log).arg(socket);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: only dup2/setsid (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Via fresh high copies: dup2(fd, fd) would keep close-on-exec, and the
            // two targets may collide with the sources.
            let a = libc::fcntl(m, libc::F_DUPFD, 10);
            let b = libc::fcntl(s, libc::F_DUPFD, 10);
            if a < 0 || b < 0 || libc::setsid() < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(a);
            libc::close(b);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(ioe(format!("start {}", helper.display())))?;
    let pid = child.id() as i32;
    // The Child handle is dropped without waiting: we reap through the pidfd.
    drop(child);
    let pidfd = sys::pidfd_open(pid).map_err(ioe("pidfd of console helper"))?;
    Ok((pid, pidfd))
}

/// An attached console: read and write `stream`; resize through the pty master.
pub struct ConsoleAttach {
    pub stream: UnixStream,
    master: OwnedFd,
}

impl ConsoleAttach {
    pub fn resize(&self, cols: u16, rows: u16) -> Result<(), Error> {
        set_winsize(&self.master, cols, rows)
    }
}

pub(crate) fn set_winsize(fd: &OwnedFd, cols: u16, rows: u16) -> Result<(), Error> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ with a valid winsize on a tty fd.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(ioe("resize pty")(std::io::Error::last_os_error()));
    }
    Ok(())
}

impl Container {
    /// Attaches to /dev/console (one client at a time; a new attach replaces the old one).
    pub fn console_attach(&self) -> Result<ConsoleAttach, Error> {
        self.ensure_running()?;
        let holder = self.holder_pidfd.as_ref().ok_or(Error::NotRunning)?;
        let master = sys::pidfd_getfd(holder.as_fd(), 3).map_err(ioe("fetch console master"))?;
        // Right after start the helper may not listen yet.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let stream = loop {
            match UnixStream::connect(&self.rt.console_socket) {
                Ok(s) => break s,
                Err(e) if std::time::Instant::now() < deadline && matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => return Err(ioe("connect console helper")(e)),
            }
        };
        Ok(ConsoleAttach { stream, master })
    }

    /// The console log file.
    pub fn console_log_path(&self) -> &Path {
        &self.rt.log_path
    }

    /// Empties the console log (the helper appends, so it continues at offset 0).
    pub fn clear_console_log(&self) -> Result<(), Error> {
        match std::fs::OpenOptions::new().write(true).truncate(true).open(&self.rt.log_path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ioe("truncate console log")(e)),
        }
    }
}
