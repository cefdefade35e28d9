//! Running commands: three pipes, or one pty for interactive sessions.
//!
//! Output readers send stdout/stderr frames; a waiter joins them before it sends the exit
//! frame, so the host sees every byte before the exit code. Stdin goes through a channel
//! to a writer thread, so a command that does not read cannot stall the reader loop.

use crate::Sender;
use berth_agent::proto::{ExecSpec, Msg, WinSize, CHUNK};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A running command.
pub struct Handle {
    pid: i32,
    stdin: Option<mpsc::Sender<Vec<u8>>>,
    master: Option<Arc<File>>,
    done: Arc<AtomicBool>,
}

impl Handle {
    /// Queues stdin bytes; empty closes stdin (for a pty: sends ^D).
    pub fn stdin(&self, data: Vec<u8>) {
        if let Some(tx) = &self.stdin {
            let _ = tx.send(data);
        }
    }

    /// Resizes the pty (no-op for pipes).
    pub fn resize(&self, rows: u16, cols: u16) {
        if let Some(m) = &self.master {
            set_winsize(m.as_raw_fd(), WinSize { rows, cols });
        }
    }

    /// Sends a signal to the command.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) takes plain integers; a stale pid at worst gets ESRCH.
        unsafe { libc::kill(self.pid, sig) };
    }

    /// Kills the command (session ended).
    pub fn kill(&self) {
        if !self.finished() {
            self.signal(libc::SIGKILL);
        }
    }

    /// Whether the exit frame has been sent.
    pub fn finished(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}

/// Starts `spec` for `stream`.
pub fn spawn(stream: u32, spec: &ExecSpec, tx: Sender) -> Result<Handle, String> {
    let Some((prog, args)) = spec.argv.split_first() else {
        return Err("empty command".into());
    };
    let mut cmd = Command::new(prog);
    cmd.args(args).env_clear().envs(&spec.env).current_dir(spec.cwd.as_deref().unwrap_or("/"));
    if !spec.env.contains_key("PATH") {
        cmd.env("PATH", DEFAULT_PATH);
    }
    if spec.uid != 0 || spec.gid != 0 {
        cmd.uid(spec.uid).gid(spec.gid);
    }
    let done = Arc::new(AtomicBool::new(false));
    match spec.pty {
        Some(size) => spawn_pty(stream, cmd, size, tx, done),
        None => spawn_pipes(stream, cmd, tx, done),
    }
}

fn spawn_pipes(stream: u32, mut cmd: Command, tx: Sender, done: Arc<AtomicBool>) -> Result<Handle, String> {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("exec {:?}: {e}", cmd.get_program()))?;
    let pid = child.id() as i32;
    tx.send(&Msg::Started { stream, pid }, &[]);
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(pump(out, tx.clone(), move || Msg::Stdout { stream }));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(pump(err, tx.clone(), move || Msg::Stderr { stream }));
    }
    let stdin = child.stdin.take().map(|w| stdin_writer(w, false));
    let d = done.clone();
    std::thread::spawn(move || {
        let status = child.wait();
        for r in readers {
            let _ = r.join();
        }
        let (code, signal) = match status {
            Ok(s) => (s.code(), s.signal()),
            Err(_) => (None, None),
        };
        tx.send(&Msg::Exit { stream, code, signal }, &[]);
        d.store(true, Ordering::SeqCst);
    });
    Ok(Handle { pid, stdin, master: None, done })
}

fn spawn_pty(stream: u32, mut cmd: Command, size: WinSize, tx: Sender, done: Arc<AtomicBool>) -> Result<Handle, String> {
    let (master, slave) = openpty(size)?;
    let slave_io = |f: &OwnedFd| f.try_clone().map(Stdio::from).map_err(|e| format!("pty: {e}"));
    cmd.stdin(slave_io(&slave)?).stdout(slave_io(&slave)?).stderr(slave_io(&slave)?);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("exec {:?}: {e}", cmd.get_program()))?;
    drop(cmd);
    drop(slave);
    let pid = child.id() as i32;
    tx.send(&Msg::Started { stream, pid }, &[]);
    let master = Arc::new(File::from(master));
    let reader_file = master.try_clone().map_err(|e| format!("pty: {e}"))?;
    let reader = pump(reader_file, tx.clone(), move || Msg::Stdout { stream });
    let writer_file = master.try_clone().map_err(|e| format!("pty: {e}"))?;
    let stdin = Some(stdin_writer(writer_file, true));
    let d = done.clone();
    std::thread::spawn(move || {
        let status = child.wait();
        // The reader ends with EIO once the last slave holder is gone.
        let _ = reader.join();
        let (code, signal) = match status {
            Ok(s) => (s.code(), s.signal()),
            Err(_) => (None, None),
        };
        tx.send(&Msg::Exit { stream, code, signal }, &[]);
        d.store(true, Ordering::SeqCst);
    });
    Ok(Handle { pid, stdin, master: Some(master), done })
}

/// Copies a reader into frames made by `mk` until EOF or error.
fn pump<R: Read + Send + 'static>(
    mut r: R,
    tx: Sender,
    mk: impl Fn() -> Msg + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => tx.send(&mk(), &buf[..n]),
            }
        }
    })
}

/// Feeds stdin from a channel; an empty chunk closes it (pty: writes EOT instead).
fn stdin_writer<W: Write + Send + 'static>(mut w: W, pty: bool) -> mpsc::Sender<Vec<u8>> {
    let (txc, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        for chunk in rx {
            if chunk.is_empty() {
                if pty {
                    let _ = w.write_all(&[4]);
                    continue;
                }
                break;
            }
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    txc
}

fn openpty(size: WinSize) -> Result<(OwnedFd, OwnedFd), String> {
    let mut master = -1;
    let mut slave = -1;
    let mut ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: out-pointers are valid locals; name and termios may be null.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &raw mut ws) };
    if rc < 0 {
        return Err(format!("openpty: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: openpty returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) })
}

fn set_winsize(fd: i32, size: WinSize) {
    let ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ as _, &ws) };
}
