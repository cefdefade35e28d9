//! A running guest command: stdin, resize, signals, and its output events.

use super::{recv, reply_error, AgentError, Inner};
use berth_agent::proto::{Frame, Msg};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One thing a running command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// Bytes on stdout (or the pty).
    Stdout(Vec<u8>),
    /// Bytes on stderr.
    Stderr(Vec<u8>),
    /// The command ended; always the last event.
    Exit {
        /// Exit code, when it exited normally.
        code: Option<i32>,
        /// Signal number, when a signal killed it.
        signal: Option<i32>,
    },
}

/// Collected output of a finished command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// All stdout.
    pub stdout: Vec<u8>,
    /// All stderr.
    pub stderr: Vec<u8>,
    /// Exit code.
    pub code: Option<i32>,
    /// Killing signal.
    pub signal: Option<i32>,
}

impl ExecOutput {
    /// LXD's convention: the exit code, or 128 + signal.
    pub fn return_code(&self) -> i32 {
        self.code.or(self.signal.map(|s| 128 + s)).unwrap_or(-1)
    }
}

/// A command running in the guest. Dropping it stops routing its frames (the command
/// keeps running until it ends or the session resets).
pub struct Exec {
    inner: Arc<Inner>,
    stream: u32,
    rx: Receiver<Frame>,
    pid: i32,
    exited: bool,
}

impl Exec {
    pub(super) fn new(inner: Arc<Inner>, stream: u32, rx: Receiver<Frame>, pid: i32) -> Exec {
        Exec { inner, stream, rx, pid, exited: false }
    }

    /// The guest pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A handle for stdin, resize and signals that works while another thread waits in
    /// [`Exec::next_event`].
    pub fn control(&self) -> ExecControl {
        ExecControl { inner: self.inner.clone(), stream: self.stream }
    }

    /// The next event, waiting up to `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Result<ExecEvent, AgentError> {
        if self.exited {
            return Err(AgentError::Closed);
        }
        let f = recv(&self.rx, "exec output", timeout)?;
        match f.msg {
            Msg::Stdout { .. } => Ok(ExecEvent::Stdout(f.payload)),
            Msg::Stderr { .. } => Ok(ExecEvent::Stderr(f.payload)),
            Msg::Exit { code, signal, .. } => {
                self.exited = true;
                self.inner.close(self.stream);
                Ok(ExecEvent::Exit { code, signal })
            }
            other => Err(reply_error("exec", other)),
        }
    }

    /// Collects all output until the command exits, or fails after `timeout` overall.
    pub fn wait_with_output(mut self, timeout: Duration) -> Result<ExecOutput, AgentError> {
        let deadline = Instant::now() + timeout;
        let mut out = ExecOutput::default();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AgentError::Timeout { what: "exec", timeout });
            }
            match self.next_event(left)? {
                ExecEvent::Stdout(b) => out.stdout.extend(b),
                ExecEvent::Stderr(b) => out.stderr.extend(b),
                ExecEvent::Exit { code, signal } => {
                    out.code = code;
                    out.signal = signal;
                    return Ok(out);
                }
            }
        }
    }
}

/// Input side of a running command, shareable between threads.
#[derive(Clone)]
pub struct ExecControl {
    inner: Arc<Inner>,
    stream: u32,
}

impl ExecControl {
    /// Sends stdin bytes.
    pub fn write_stdin(&self, data: &[u8]) -> Result<(), AgentError> {
        for chunk in data.chunks(berth_agent::proto::CHUNK) {
            self.inner.send(&Msg::Stdin { stream: self.stream }, chunk)?;
        }
        Ok(())
    }

    /// Closes stdin (a pty gets ^D).
    pub fn close_stdin(&self) -> Result<(), AgentError> {
        self.inner.send(&Msg::Stdin { stream: self.stream }, &[])
    }

    /// Resizes the pty.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), AgentError> {
        self.inner.send(&Msg::Resize { stream: self.stream, rows, cols }, &[])
    }

    /// Sends a signal to the command.
    pub fn signal(&self, signal: i32) -> Result<(), AgentError> {
        self.inner.send(&Msg::Signal { stream: self.stream, signal }, &[])
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        self.inner.close(self.stream);
    }
}
