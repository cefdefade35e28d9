//! Host side of the guest agent protocol (see `berth_agent::proto`).
//!
//! Blocking API, like the rest of `vm`: a reader thread demultiplexes frames into one
//! channel per stream, callers block on their stream with timeouts. [`AgentClient::connect`]
//! waits a bounded time for the agent to answer a hello, so an exec sent while the guest
//! still boots waits, then fails with [`AgentError::NotReady`].

mod exec;

pub use berth_agent::proto::{ExecSpec, FileKind, FileStat, Interface, WinSize};
pub use exec::{Exec, ExecControl, ExecEvent, ExecOutput};

use berth_agent::proto::{self, Frame, Msg, ProtoError, CHUNK};
use std::collections::HashMap;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default bound on waiting for the agent (configurable per call).
pub const DEFAULT_READY_WAIT: Duration = Duration::from_secs(30);
/// How often `connect` repeats its hello while the guest agent is not up. Rarely: a booting
/// guest's port is closed, so every hello waits in the socket and reaches the agent at once
/// when it opens the port (each one answered); the agent's `Ready` brings a fresh hello
/// without waiting, so the interval only matters for agents that do not send it.
const HELLO_INTERVAL: Duration = Duration::from_millis(500);
/// How long a request waits for its reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors talking to the guest agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent did not answer within the wait (guest still booting, or no agent).
    #[error("guest agent on {path} not ready after {waited:?}: is berth-agent running in the guest?")]
    NotReady { path: PathBuf, waited: Duration },
    /// Socket I/O.
    #[error("agent channel i/o")]
    Io(#[from] std::io::Error),
    /// Framing.
    #[error("agent protocol")]
    Proto(#[from] ProtoError),
    /// The channel closed (VM stopped, or another client took over).
    #[error("agent channel closed")]
    Closed,
    /// No reply in time.
    #[error("agent request {what} timed out after {timeout:?}")]
    Timeout { what: &'static str, timeout: Duration },
    /// The agent reported an error.
    #[error("guest: {message}")]
    Guest { message: String },
    /// The agent sent something unexpected.
    #[error("unexpected agent reply to {what}: {detail}")]
    Unexpected { what: &'static str, detail: String },
    /// A local reader or writer failed during a transfer.
    #[error("local file data")]
    Local { source: std::io::Error },
}

pub(crate) struct Inner {
    writer: Mutex<UnixStream>,
    routes: Mutex<HashMap<u32, Sender<Frame>>>,
    next_stream: AtomicU32,
    closed: AtomicBool,
}

impl Inner {
    pub(crate) fn send(&self, msg: &Msg, payload: &[u8]) -> Result<(), AgentError> {
        let buf = proto::encode(msg, payload)?;
        let mut w = self.writer.lock().map_err(|_| AgentError::Closed)?;
        w.write_all(&buf).map_err(|e| match e.kind() {
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => AgentError::Closed,
            _ => AgentError::Io(e),
        })
    }

    /// Opens a stream: a fresh id and the channel its frames go to.
    fn open(&self) -> Result<(u32, Receiver<Frame>), AgentError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(AgentError::Closed);
        }
        let id = self.next_stream.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        self.routes.lock().map_err(|_| AgentError::Closed)?.insert(id, tx);
        Ok((id, rx))
    }

    pub(crate) fn close(&self, id: u32) {
        if let Ok(mut r) = self.routes.lock() {
            r.remove(&id);
        }
    }
}

/// Receives the next frame of a stream.
pub(crate) fn recv(rx: &Receiver<Frame>, what: &'static str, timeout: Duration) -> Result<Frame, AgentError> {
    match rx.recv_timeout(timeout) {
        Ok(f) => Ok(f),
        Err(RecvTimeoutError::Timeout) => Err(AgentError::Timeout { what, timeout }),
        Err(RecvTimeoutError::Disconnected) => Err(AgentError::Closed),
    }
}

/// A connection to one guest's agent.
pub struct AgentClient {
    inner: Arc<Inner>,
    /// Guest hostname from the hello reply.
    pub hostname: String,
}

impl AgentClient {
    /// Connects to the agent socket and waits up to `wait` for the agent to answer.
    pub fn connect(path: &Path, wait: Duration) -> Result<AgentClient, AgentError> {
        Self::connect_every(path, wait, HELLO_INTERVAL)
    }

    /// [`AgentClient::connect`], repeating the hello every `interval` (and at once when the
    /// agent says it is ready).
    fn connect_every(path: &Path, wait: Duration, interval: Duration) -> Result<AgentClient, AgentError> {
        let start = Instant::now();
        let not_ready = || AgentError::NotReady { path: path.to_path_buf(), waited: start.elapsed() };
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if start.elapsed() < wait => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => return Err(not_ready()),
            }
        };
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        let nonce = nanos ^ u64::from(std::process::id()) << 32;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream.try_clone()?);
        // Short reads: the loop also watches the deadline and the hello interval.
        stream.set_read_timeout(Some((interval / 2).min(Duration::from_millis(25))))?;
        let mut last_hello: Option<Instant> = None;
        let hostname = loop {
            if start.elapsed() >= wait {
                return Err(not_ready());
            }
            if last_hello.is_none_or(|t| t.elapsed() >= interval) {
                proto::write_frame(&mut writer, &Msg::Hello { nonce, version: berth_agent::PROTOCOL_VERSION }, &[])?;
                last_hello = Some(Instant::now());
            }
            match proto::read_frame(&mut reader) {
                Ok(Frame { msg: Msg::HelloReply { nonce: n, hostname, .. }, .. }) if n == nonce => break hostname,
                // The agent just opened its port: say hello now.
                Ok(Frame { msg: Msg::Ready { .. }, .. }) => last_hello = None,
                Ok(_) => {} // stale frames from an earlier session
                Err(ProtoError::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(ProtoError::Json(_) | ProtoError::TooLarge { .. }) => {}
                Err(ProtoError::Eof) => return Err(AgentError::Closed),
                Err(e) => return Err(e.into()),
            }
        };
        stream.set_read_timeout(None)?;
        let inner = Arc::new(Inner {
            writer: Mutex::new(writer),
            routes: Mutex::new(HashMap::new()),
            // Stream ids start high and random-ish so late frames of an old session never
            // match a new stream.
            next_stream: AtomicU32::new((nonce as u32 & 0x7fff_ffff) | 1),
            closed: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("berth-agent-rx".into())
            .spawn(move || read_loop(reader, weak))
            .map_err(AgentError::Io)?;
        Ok(AgentClient { inner, hostname })
    }

    /// Starts a command; returns once the guest has spawned it.
    pub fn exec(&self, spec: ExecSpec) -> Result<Exec, AgentError> {
        let (stream, rx) = self.inner.open()?;
        self.inner.send(&Msg::Exec { stream, spec }, &[])?;
        match recv(&rx, "exec", REQUEST_TIMEOUT)?.msg {
            Msg::Started { pid, .. } => Ok(Exec::new(self.inner.clone(), stream, rx, pid)),
            other => {
                self.inner.close(stream);
                Err(reply_error("exec", other))
            }
        }
    }

    /// Writes a file in the guest from `data` (atomically replaced at the end).
    pub fn push_file(&self, path: &str, data: &mut dyn Read, mode: u32, uid: u32, gid: u32) -> Result<(), AgentError> {
        let (stream, rx) = self.inner.open()?;
        let guard = StreamGuard(&self.inner, stream);
        let push = Msg::Push { stream, path: path.to_string(), kind: FileKind::File, mode, uid, gid, target: None };
        self.inner.send(&push, &[])?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            // An early error reply (e.g. no such directory) ends the transfer.
            if let Ok(f) = rx.try_recv() {
                return Err(reply_error("push", f.msg));
            }
            let n = data.read(&mut buf).map_err(|source| AgentError::Local { source })?;
            self.inner.send(&Msg::Data { stream }, &buf[..n])?;
            if n == 0 {
                break;
            }
        }
        let r = expect_done("push", &rx);
        drop(guard);
        r
    }

    /// Creates a directory (or updates its mode and owner).
    pub fn mkdir(&self, path: &str, mode: u32, uid: u32, gid: u32) -> Result<(), AgentError> {
        let msg = |stream| Msg::Push { stream, path: path.to_string(), kind: FileKind::Directory, mode, uid, gid, target: None };
        self.simple("mkdir", msg, expect_done)
    }

    /// Creates (or replaces) a symlink.
    pub fn symlink(&self, path: &str, target: &str, uid: u32, gid: u32) -> Result<(), AgentError> {
        let msg = |stream| Msg::Push {
            stream,
            path: path.to_string(),
            kind: FileKind::Symlink,
            mode: 0o777,
            uid,
            gid,
            target: Some(target.to_string()),
        };
        self.simple("symlink", msg, expect_done)
    }

    /// Reads a path: a file's bytes go to `out`; directories and symlinks only return their stat.
    pub fn pull_file(&self, path: &str, out: &mut dyn Write) -> Result<FileStat, AgentError> {
        let (stream, rx) = self.inner.open()?;
        let _guard = StreamGuard(&self.inner, stream);
        self.inner.send(&Msg::Pull { stream, path: path.to_string() }, &[])?;
        let stat = match recv(&rx, "pull", REQUEST_TIMEOUT)?.msg {
            Msg::StatReply { stat, .. } => stat,
            other => return Err(reply_error("pull", other)),
        };
        if stat.kind != FileKind::File {
            return Ok(stat);
        }
        loop {
            let f = recv(&rx, "pull", REQUEST_TIMEOUT)?;
            match f.msg {
                Msg::Data { .. } if f.payload.is_empty() => return Ok(stat),
                Msg::Data { .. } => out.write_all(&f.payload).map_err(|source| AgentError::Local { source })?,
                other => return Err(reply_error("pull", other)),
            }
        }
    }

    /// Describes a path (directories list their entries).
    pub fn stat(&self, path: &str) -> Result<FileStat, AgentError> {
        self.simple("stat", |stream| Msg::Stat { stream, path: path.to_string() }, |what, rx| {
            match recv(rx, what, REQUEST_TIMEOUT)?.msg {
                Msg::StatReply { stat, .. } => Ok(stat),
                other => Err(reply_error(what, other)),
            }
        })
    }

    /// Removes a file, symlink or empty directory.
    pub fn delete(&self, path: &str) -> Result<(), AgentError> {
        self.simple("delete", |stream| Msg::Delete { stream, path: path.to_string() }, expect_done)
    }

    /// The guest's network interfaces, addresses and counters.
    pub fn network(&self) -> Result<Vec<Interface>, AgentError> {
        self.simple("network", |stream| Msg::Network { stream }, |what, rx| {
            match recv(rx, what, REQUEST_TIMEOUT)?.msg {
                Msg::NetworkReply { interfaces, .. } => Ok(interfaces),
                other => Err(reply_error(what, other)),
            }
        })
    }

    /// Whether the channel is still open.
    pub fn is_connected(&self) -> bool {
        !self.inner.closed.load(Ordering::SeqCst)
    }

    fn simple<T>(
        &self,
        what: &'static str,
        msg: impl FnOnce(u32) -> Msg,
        reply: impl FnOnce(&'static str, &Receiver<Frame>) -> Result<T, AgentError>,
    ) -> Result<T, AgentError> {
        let (stream, rx) = self.inner.open()?;
        let _guard = StreamGuard(&self.inner, stream);
        self.inner.send(&msg(stream), &[])?;
        reply(what, &rx)
    }
}

impl Drop for AgentClient {
    fn drop(&mut self) {
        // Unblocks the reader thread so the socket closes.
        if let Ok(w) = self.inner.writer.lock() {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Unregisters a stream when a request ends.
struct StreamGuard<'a>(&'a Inner, u32);

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        self.0.close(self.1);
    }
}

fn expect_done(what: &'static str, rx: &Receiver<Frame>) -> Result<(), AgentError> {
    match recv(rx, what, REQUEST_TIMEOUT)?.msg {
        Msg::Done { .. } => Ok(()),
        other => Err(reply_error(what, other)),
    }
}

pub(crate) fn reply_error(what: &'static str, msg: Msg) -> AgentError {
    match msg {
        Msg::Error { message, .. } => AgentError::Guest { message },
        other => AgentError::Unexpected { what, detail: format!("{other:?}") },
    }
}

fn read_loop(mut reader: BufReader<UnixStream>, inner: std::sync::Weak<Inner>) {
    loop {
        let frame = proto::read_frame(&mut reader);
        let Some(inner) = inner.upgrade() else { return };
        match frame {
            Ok(f) => {
                let Some(id) = f.msg.stream() else { continue };
                if let Ok(routes) = inner.routes.lock() {
                    if let Some(tx) = routes.get(&id) {
                        let _ = tx.send(f);
                    }
                }
            }
            Err(ProtoError::Json(_) | ProtoError::TooLarge { .. }) => continue,
            Err(_) => {
                inner.closed.store(true, Ordering::SeqCst);
                if let Ok(mut routes) = inner.routes.lock() {
                    routes.clear(); // receivers see Disconnected → Closed
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
