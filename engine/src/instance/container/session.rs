//! Exec and console sessions over the runtime's descriptors: reader threads turn the
//! pipes (or the pty) into [`ExecEvent`]s; the exit code comes last, after the output
//! was drained.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use crate::container::{ConsoleAttach, Exec};
use crate::instance::socket_console::SocketConsole;
use crate::instance::{ConsoleSession, Error, ExecEvent, ExecSession};

/// How long readers keep draining after the process exited (background children may
/// hold the pipes open forever).
const DRAIN_MS: i32 = 100;

pub(super) struct CtExec {
    ex: Arc<Exec>,
    stdin: Mutex<Option<std::fs::File>>,
    rx: Mutex<Receiver<ExecEvent>>,
    done: AtomicBool,
}

fn reader(fd: OwnedFd, tx: Sender<ExecEvent>, stderr: bool, exited: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(fd);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let mut p = libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let was_exited = exited.load(Ordering::SeqCst);
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut p, 1, if was_exited { DRAIN_MS } else { 200 }) };
            if n == 0 {
                if was_exited {
                    break;
                }
                continue;
            }
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    let data = buf[..k].to_vec();
                    let ev = if stderr { ExecEvent::Stderr(data) } else { ExecEvent::Stdout(data) };
                    if tx.send(ev).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

impl CtExec {
    pub(super) fn new(mut ex: Exec) -> CtExec {
        let (tx, rx) = channel();
        let exited = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        let stdin = if let Some(m) = ex.pty.as_ref() {
            let r = m.try_clone().ok();
            if let Some(r) = r {
                readers.push(reader(r, tx.clone(), false, exited.clone()));
            }
            m.try_clone().ok().map(std::fs::File::from)
        } else {
            if let Some(o) = ex.stdout.take() {
                readers.push(reader(o, tx.clone(), false, exited.clone()));
            }
            if let Some(e) = ex.stderr.take() {
                readers.push(reader(e, tx.clone(), true, exited.clone()));
            }
            ex.stdin.take().map(std::fs::File::from)
        };
        let ex = Arc::new(ex);
        let waiter = ex.clone();
        std::thread::spawn(move || {
            let code = waiter.wait().unwrap_or(-1);
            exited.store(true, Ordering::SeqCst);
            for r in readers {
                let _ = r.join();
            }
            let _ = tx.send(ExecEvent::Exit(code));
        });
        CtExec { ex, stdin: Mutex::new(stdin), rx: Mutex::new(rx), done: AtomicBool::new(false) }
    }
}

impl ExecSession for CtExec {
    fn write_stdin(&self, data: &[u8]) -> Result<(), Error> {
        let mut g = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_mut() {
            Some(f) => f.write_all(data).map_err(|e| Error::failed("write stdin", e)),
            None => Err(Error::Invalid("stdin is closed".into())),
        }
    }

    fn close_stdin(&self) {
        let mut g = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        if self.ex.pty.is_some() {
            // A pty has no half-close: send EOF (^D) like a terminal would.
            if let Some(f) = g.as_mut() {
                let _ = f.write_all(&[4]);
            }
            return;
        }
        *g = None;
    }

    fn resize(&self, width: u16, height: u16) -> Result<(), Error> {
        self.ex.resize(width, height).map_err(|e| Error::Invalid(e.to_string()))
    }

    fn signal(&self, sig: i32) -> Result<(), Error> {
        self.ex.signal(sig).map_err(|e| Error::failed("signal", e))
    }

    fn next_event(&self) -> Option<ExecEvent> {
        if self.done.load(Ordering::SeqCst) {
            return None;
        }
        let ev = self.rx.lock().unwrap_or_else(|p| p.into_inner()).recv().ok();
        if matches!(ev, Some(ExecEvent::Exit(_)) | None) {
            self.done.store(true, Ordering::SeqCst);
        }
        ev
    }
}

pub(super) struct CtConsole {
    att: ConsoleAttach,
    sock: SocketConsole,
}

impl CtConsole {
    pub(super) fn new(att: ConsoleAttach) -> Result<CtConsole, Error> {
        let sock = SocketConsole::new(&att.stream)?;
        Ok(CtConsole { att, sock })
    }
}

impl ConsoleSession for CtConsole {
    fn write(&self, data: &[u8]) -> Result<(), Error> {
        self.sock.write(data)
    }

    fn read(&self) -> Option<Vec<u8>> {
        self.sock.read()
    }

    fn resize(&self, width: u16, height: u16) -> Result<(), Error> {
        self.att.resize(width, height).map_err(|e| Error::Invalid(e.to_string()))
    }

    fn close(&self) {
        self.sock.close();
    }
}
