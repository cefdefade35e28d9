//! Exec over the guest agent and the serial console over QEMU's console socket, as the
//! transport-neutral [`ExecSession`]/[`ConsoleSession`] the REST layer pumps.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::instance::socket_console::SocketConsole;
use crate::instance::{ConsoleSession, Error, ExecEvent, ExecSession};
use crate::vm::agent::{self, AgentError, Exec, ExecControl};

/// How long one wait for output lasts before it is retried (commands may be silent).
const POLL: Duration = Duration::from_secs(3600);

pub(super) struct VmExec {
    /// Only the output reader uses it.
    exec: Mutex<Exec>,
    control: ExecControl,
    interactive: bool,
    done: AtomicBool,
}

impl VmExec {
    pub(super) fn new(exec: Exec, interactive: bool) -> VmExec {
        let control = exec.control();
        VmExec { exec: Mutex::new(exec), control, interactive, done: AtomicBool::new(false) }
    }
}

fn agent_err(what: &str) -> impl FnOnce(AgentError) -> Error + '_ {
    move |e| Error::failed(what, super::chain(&e))
}

impl ExecSession for VmExec {
    fn write_stdin(&self, data: &[u8]) -> Result<(), Error> {
        self.control.write_stdin(data).map_err(agent_err("write stdin"))
    }

    fn close_stdin(&self) {
        let _ = self.control.close_stdin();
    }

    fn resize(&self, width: u16, height: u16) -> Result<(), Error> {
        if !self.interactive {
            return Ok(());
        }
        self.control.resize(height, width).map_err(agent_err("resize"))
    }

    fn signal(&self, sig: i32) -> Result<(), Error> {
        self.control.signal(sig).map_err(agent_err("signal"))
    }

    fn next_event(&self) -> Option<ExecEvent> {
        if self.done.load(Ordering::SeqCst) {
            return None;
        }
        let mut exec = self.exec.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match exec.next_event(POLL) {
                Ok(agent::ExecEvent::Stdout(b)) => return Some(ExecEvent::Stdout(b)),
                Ok(agent::ExecEvent::Stderr(b)) => return Some(ExecEvent::Stderr(b)),
                Ok(agent::ExecEvent::Exit { code, signal }) => {
                    self.done.store(true, Ordering::SeqCst);
                    let rc = code.or(signal.map(|s| 128 + s)).unwrap_or(-1);
                    return Some(ExecEvent::Exit(rc));
                }
                Err(AgentError::Timeout { .. }) => continue,
                Err(e) => {
                    // The channel went away (VM stopped or agent restarted): the command is gone.
                    tracing::debug!(error = %e, "exec stream ended without an exit");
                    self.done.store(true, Ordering::SeqCst);
                    return Some(ExecEvent::Exit(-1));
                }
            }
        }
    }
}

/// An attached serial console (QEMU's `console.sock`).
pub(super) struct VmConsole(SocketConsole);

impl VmConsole {
    pub(super) fn attach(socket: &Path) -> Result<VmConsole, Error> {
        let s = UnixStream::connect(socket).map_err(|e| Error::failed("Failed to attach to the console", e))?;
        Ok(VmConsole(SocketConsole::new(&s)?))
    }
}

impl ConsoleSession for VmConsole {
    fn write(&self, data: &[u8]) -> Result<(), Error> {
        self.0.write(data)
    }

    fn read(&self) -> Option<Vec<u8>> {
        self.0.read()
    }

    /// A serial line has no window size.
    fn resize(&self, _width: u16, _height: u16) -> Result<(), Error> {
        Ok(())
    }

    fn close(&self) {
        self.0.close();
    }
}
