//! A blocking QMP client over the VM's unix socket.
//!
//! Synchronous by design (the driver's lifecycle methods run in `spawn_blocking`): one
//! command at a time, replies matched by `id`, and asynchronous events that arrive
//! meanwhile are queued for [`Qmp::next_event`] / [`Qmp::wait_event`].

use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long one command may take before it is reported as timed out.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be connected within the wait.
    #[error("connect {path} (waited {waited:?})")]
    Connect { path: PathBuf, waited: Duration, source: std::io::Error },
    /// I/O on the socket.
    #[error("qmp i/o")]
    Io(#[from] std::io::Error),
    /// QEMU closed the connection.
    #[error("qmp connection closed")]
    Closed,
    /// A line was not JSON, or not the expected shape.
    #[error("bad qmp message: {detail}")]
    Protocol { detail: String },
    /// QEMU answered with an error.
    #[error("qmp {command}: {class}: {desc}")]
    Command { command: String, class: String, desc: String },
    /// No reply in time.
    #[error("qmp {command}: no reply within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
}

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event name, e.g. `SHUTDOWN`, `STOP`, `RESUME`, `POWERDOWN`.
    pub name: String,
    /// Event data.
    pub data: Value,
}

/// `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Status {
    /// QEMU's run state: `running`, `paused`, `prelaunch`, `shutdown`, …
    pub status: String,
    /// Whether vCPUs run.
    pub running: bool,
}

/// One vCPU from `query-cpus-fast`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Cpu {
    /// vCPU index.
    #[serde(rename = "cpu-index")]
    pub index: u32,
    /// Host thread id running it (for CPU time from /proc).
    #[serde(rename = "thread-id")]
    pub thread_id: i32,
}

/// One device from `query-blockstats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockStats {
    /// Device or node name (`root` for the root disk).
    pub device: String,
    /// Bytes read.
    pub rd_bytes: u64,
    /// Bytes written.
    pub wr_bytes: u64,
    /// Read operations.
    pub rd_ops: u64,
    /// Write operations.
    pub wr_ops: u64,
}

/// A QMP connection in command mode.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    events: VecDeque<Event>,
    next_id: u64,
    /// The QEMU version from the greeting (`major.minor.micro`).
    pub version: String,
}

impl Qmp {
    /// Connects (retrying until `wait` passes, for a QEMU that is still starting), reads
    /// the greeting and negotiates capabilities.
    pub fn connect(path: &Path, wait: Duration) -> Result<Qmp, QmpError> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(source) if start.elapsed() >= wait => {
                    return Err(QmpError::Connect { path: path.to_path_buf(), waited: start.elapsed(), source })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp { reader: BufReader::new(stream), writer, events: VecDeque::new(), next_id: 1, version: String::new() };
        let greeting = qmp.read_message()?.ok_or(QmpError::Closed)?;
        let v = &greeting["QMP"]["version"]["qemu"];
        if v.is_null() {
            return Err(QmpError::Protocol { detail: format!("greeting without version: {greeting}") });
        }
        qmp.version = format!("{}.{}.{}", v["major"], v["minor"], v["micro"]);
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Reads one JSON line; `None` on a read timeout.
    fn read_message(&mut self) -> Result<Option<Value>, QmpError> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(QmpError::Closed),
            Ok(_) => serde_json::from_str(&line)
                .map(Some)
                .map_err(|e| QmpError::Protocol { detail: format!("{e}: {}", line.trim()) }),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Queues `msg` if it is an event; returns whether it was.
    fn stash_event(&mut self, msg: &Value) -> bool {
        match msg.get("event").and_then(Value::as_str) {
            Some(name) => {
                let data = msg.get("data").cloned().unwrap_or(Value::Null);
                self.events.push_back(Event { name: name.to_string(), data });
                true
            }
            None => false,
        }
    }

    /// Runs a command and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            req["arguments"] = args;
        }
        let mut line = req.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes())?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let Some(msg) = self.read_message()? else {
                if Instant::now() >= deadline {
                    return Err(QmpError::Timeout { command: command.to_string(), timeout: COMMAND_TIMEOUT });
                }
                continue;
            };
            if self.stash_event(&msg) {
                continue;
            }
            if msg.get("id").and_then(Value::as_u64) != Some(id) {
                continue; // a stale reply from a command that timed out
            }
            if let Some(err) = msg.get("error") {
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: err["class"].as_str().unwrap_or("GenericError").to_string(),
                    desc: err["desc"].as_str().unwrap_or("").to_string(),
                });
            }
            return Ok(msg.get("return").cloned().unwrap_or(Value::Null));
        }
    }

    /// The next event, waiting up to `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>, QmpError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.reader.get_ref().set_read_timeout(Some(left.min(COMMAND_TIMEOUT)))?;
            let msg = self.read_message();
            self.reader.get_ref().set_read_timeout(Some(COMMAND_TIMEOUT))?;
            if let Some(msg) = msg? {
                if self.stash_event(&msg) {
                    return Ok(self.events.pop_front());
                }
            }
        }
    }

    /// Waits for an event named `name`, dropping others.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<Option<Event>, QmpError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left)? {
                Some(e) if e.name == name => return Ok(Some(e)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// `query-status`.
    pub fn query_status(&mut self) -> Result<Status, QmpError> {
        let v = self.execute("query-status", None)?;
        serde_json::from_value(v).map_err(|e| QmpError::Protocol { detail: e.to_string() })
    }

    /// Pauses the vCPUs (freeze).
    pub fn stop(&mut self) -> Result<(), QmpError> {
        self.execute("stop", None).map(drop)
    }

    /// Resumes the vCPUs (unfreeze, or start after `-S`).
    pub fn cont(&mut self) -> Result<(), QmpError> {
        self.execute("cont", None).map(drop)
    }

    /// Presses the ACPI power button.
    pub fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).map(drop)
    }

    /// Makes QEMU exit now. A connection that closes before the reply counts as success.
    pub fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", None) {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(QmpError::Io(e)) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `query-cpus-fast`.
    pub fn query_cpus_fast(&mut self) -> Result<Vec<Cpu>, QmpError> {
        let v = self.execute("query-cpus-fast", None)?;
        serde_json::from_value(v).map_err(|e| QmpError::Protocol { detail: e.to_string() })
    }

    /// Guest memory as the balloon sees it, or `None` without a (guest-driven) balloon.
    pub fn query_balloon(&mut self) -> Result<Option<u64>, QmpError> {
        match self.execute("query-balloon", None) {
            Ok(v) => Ok(v["actual"].as_u64()),
            Err(QmpError::Command { class, .. }) if class == "DeviceNotActive" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets the balloon target (guest memory) in bytes.
    pub fn balloon(&mut self, bytes: u64) -> Result<(), QmpError> {
        self.execute("balloon", Some(json!({ "value": bytes }))).map(drop)
    }

    /// Boot memory (`base-memory`) from `query-memory-size-summary`.
    pub fn query_memory_size(&mut self) -> Result<u64, QmpError> {
        let v = self.execute("query-memory-size-summary", None)?;
        v["base-memory"].as_u64().ok_or_else(|| QmpError::Protocol { detail: format!("no base-memory in {v}") })
    }

    /// The host pty behind a `pty` chardev (the console with `Console::Pty`), if any.
    pub fn chardev_pty(&mut self, id: &str) -> Result<Option<String>, QmpError> {
        let v = self.execute("query-chardev", None)?;
        let dev = v.as_array().and_then(|a| a.iter().find(|c| c["label"] == id));
        Ok(dev.and_then(|c| c["filename"].as_str()).and_then(|f| f.strip_prefix("pty:")).map(str::to_string))
    }

    /// `query-blockstats`.
    pub fn query_blockstats(&mut self) -> Result<Vec<BlockStats>, QmpError> {
        let v = self.execute("query-blockstats", None)?;
        let items = v.as_array().ok_or_else(|| QmpError::Protocol { detail: format!("blockstats: {v}") })?;
        Ok(items
            .iter()
            .map(|d| {
                let s = &d["stats"];
                let name = d["device"].as_str().filter(|s| !s.is_empty()).or_else(|| d["qdev"].as_str());
                BlockStats {
                    device: name.unwrap_or("").to_string(),
                    rd_bytes: s["rd_bytes"].as_u64().unwrap_or(0),
                    wr_bytes: s["wr_bytes"].as_u64().unwrap_or(0),
                    rd_ops: s["rd_operations"].as_u64().unwrap_or(0),
                    wr_ops: s["wr_operations"].as_u64().unwrap_or(0),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake QEMU: greets, then answers each command from a script (also emitting events).
    fn fake(path: &Path, script: Vec<(&'static str, String)>) -> std::thread::JoinHandle<Vec<Value>> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            writeln!(w, r#"{{"QMP": {{"version": {{"qemu": {{"micro": 1, "minor": 2, "major": 7}}}}, "capabilities": []}}}}"#).unwrap();
            let mut seen = Vec::new();
            for (expect, reply) in script {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let v: Value = serde_json::from_str(&line).unwrap();
                assert_eq!(v["execute"], expect);
                let id = v["id"].clone();
                seen.push(v);
                for l in reply.replace("$ID", &id.to_string()).lines() {
                    writeln!(w, "{l}").unwrap();
                }
            }
            seen
        })
    }

    #[test]
    fn handshake_events_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("q.sock");
        let t = fake(
            &sock,
            vec![
                ("qmp_capabilities", r#"{"return": {}, "id": $ID}"#.into()),
                (
                    "query-status",
                    "{\"event\": \"STOP\", \"data\": {}}\n{\"return\": {\"status\": \"paused\", \"running\": false}, \"id\": $ID}".into(),
                ),
                ("query-balloon", r#"{"error": {"class": "DeviceNotActive", "desc": "No balloon"}, "id": $ID}"#.into()),
                ("cont", r#"{"error": {"class": "GenericError", "desc": "boom"}, "id": $ID}"#.into()),
                ("balloon", r#"{"return": {}, "id": $ID}"#.into()),
                (
                    "query-chardev",
                    r#"{"return": [{"label": "qmp", "filename": "unix:/q"}, {"label": "console", "filename": "pty:/dev/pts/7"}], "id": $ID}"#.into(),
                ),
            ],
        );
        let mut q = Qmp::connect(&sock, Duration::from_secs(2)).unwrap();
        assert_eq!(q.version, "7.2.1");
        assert_eq!(q.query_status().unwrap(), Status { status: "paused".into(), running: false });
        assert_eq!(q.query_balloon().unwrap(), None);
        let e = q.cont().unwrap_err();
        assert!(matches!(&e, QmpError::Command { class, desc, .. } if class == "GenericError" && desc == "boom"));
        q.balloon(1 << 30).unwrap();
        assert_eq!(q.chardev_pty("console").unwrap().as_deref(), Some("/dev/pts/7"));
        // The STOP event that arrived before the reply is queued.
        assert_eq!(q.next_event(Duration::ZERO).unwrap().unwrap().name, "STOP");
        let seen = t.join().unwrap();
        assert!(matches!(q.next_event(Duration::from_millis(50)), Ok(None) | Err(QmpError::Closed)));
        assert_eq!(seen[4]["arguments"]["value"], 1u64 << 30);
    }

    #[test]
    fn connect_gives_up_after_wait() {
        let dir = tempfile::tempdir().unwrap();
        let e = Qmp::connect(&dir.path().join("none.sock"), Duration::from_millis(100)).err().unwrap();
        assert!(matches!(e, QmpError::Connect { .. }));
    }
}
