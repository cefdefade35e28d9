//! berth-agent: runs in the guest, serves the host over the virtio-serial port.
//!
//! One reader loop decodes frames and dispatches them; execs and pulls run on their own
//! threads and write whole frames through a shared, locked port handle. A host that
//! disconnects makes reads return EOF: the agent then drops its streams and waits for the
//! next hello. Usage: `berth-agent [--port PATH]`.

mod exec;
mod files;
mod net;
mod port;

use berth_agent::proto::{self, Frame, Msg, ProtoError};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sends frames to the host; cheap to clone, shared by all threads.
#[derive(Clone)]
pub struct Sender(Arc<Mutex<File>>);

impl Sender {
    /// Sends one frame; a failure means the host went away, which the reader notices.
    pub fn send(&self, msg: &Msg, payload: &[u8]) {
        let Ok(buf) = proto::encode(msg, payload) else { return };
        if let Ok(mut f) = self.0.lock() {
            let _ = f.write_all(&buf);
        }
    }

    /// Reports an error on a stream.
    pub fn error(&self, stream: u32, message: impl Into<String>) {
        self.send(&Msg::Error { stream, message: message.into() }, &[]);
    }
}

/// Per-stream state kept by the reader loop.
enum Stream {
    Exec(exec::Handle),
    Push(files::PushState),
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let explicit = args.iter().position(|a| a == "--port").and_then(|i| args.get(i + 1)).cloned();
    loop {
        match port::open(explicit.as_deref()) {
            Ok(file) => serve(file),
            Err(e) => {
                eprintln!("berth-agent: {e}");
                // Short: the port may appear a moment after the agent starts (boot latency).
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Serves one opened port until it fails for good (then the caller reopens it).
fn serve(file: File) {
    let Ok(wfile) = file.try_clone() else { return };
    let tx = Sender(Arc::new(Mutex::new(wfile)));
    let mut reader = BufReader::new(file);
    let mut streams: HashMap<u32, Stream> = HashMap::new();
    tx.send(&Msg::Ready { version: berth_agent::PROTOCOL_VERSION }, &[]);
    loop {
        match proto::read_frame(&mut reader) {
            Ok(frame) => dispatch(frame, &tx, &mut streams),
            Err(ProtoError::Eof) => {
                // Host not connected (or it left mid-frame): forget the session.
                reset(&mut streams);
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(ProtoError::Json(e)) => eprintln!("berth-agent: bad header: {e}"),
            Err(ProtoError::TooLarge { .. }) => eprintln!("berth-agent: oversized frame skipped"),
            Err(ProtoError::Io(e)) => {
                eprintln!("berth-agent: port read: {e}");
                reset(&mut streams);
                return;
            }
        }
    }
}

/// Kills running commands and closes pending files of an old session.
fn reset(streams: &mut HashMap<u32, Stream>) {
    for (_, s) in streams.drain() {
        if let Stream::Exec(h) = s {
            h.kill();
        }
    }
}

fn dispatch(frame: Frame, tx: &Sender, streams: &mut HashMap<u32, Stream>) {
    let Frame { msg, payload } = frame;
    match msg {
        Msg::Hello { nonce, .. } => {
            reset(streams);
            let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            tx.send(
                &Msg::HelloReply { nonce, version: berth_agent::PROTOCOL_VERSION, hostname: hostname.trim().to_string() },
                &[],
            );
        }
        Msg::Exec { stream, spec } => match exec::spawn(stream, &spec, tx.clone()) {
            Ok(h) => {
                streams.insert(stream, Stream::Exec(h));
            }
            Err(e) => tx.error(stream, e),
        },
        Msg::Stdin { stream } => {
            if let Some(Stream::Exec(h)) = streams.get(&stream) {
                h.stdin(payload);
            }
        }
        Msg::Resize { stream, rows, cols } => {
            if let Some(Stream::Exec(h)) = streams.get(&stream) {
                h.resize(rows, cols);
            }
        }
        Msg::Signal { stream, signal } => {
            if let Some(Stream::Exec(h)) = streams.get(&stream) {
                h.signal(signal);
            }
        }
        Msg::Push { stream, path, kind, mode, uid, gid, target } => {
            match files::push_begin(&path, kind, mode, uid, gid, target.as_deref()) {
                Ok(Some(state)) => {
                    streams.insert(stream, Stream::Push(state));
                }
                Ok(None) => tx.send(&Msg::Done { stream }, &[]),
                Err(e) => tx.error(stream, e),
            }
        }
        Msg::Data { stream } => {
            if let Some(Stream::Push(state)) = streams.get_mut(&stream) {
                if payload.is_empty() {
                    let result = state.finish();
                    streams.remove(&stream);
                    match result {
                        Ok(()) => tx.send(&Msg::Done { stream }, &[]),
                        Err(e) => tx.error(stream, e),
                    }
                } else if let Err(e) = state.write(&payload) {
                    streams.remove(&stream);
                    tx.error(stream, e);
                }
            }
        }
        Msg::Pull { stream, path } => {
            let tx = tx.clone();
            std::thread::spawn(move || files::pull(stream, &path, &tx));
        }
        Msg::Stat { stream, path } => match files::stat(&path) {
            Ok(stat) => tx.send(&Msg::StatReply { stream, stat }, &[]),
            Err(e) => tx.error(stream, e),
        },
        Msg::Delete { stream, path } => match files::delete(&path) {
            Ok(()) => tx.send(&Msg::Done { stream }, &[]),
            Err(e) => tx.error(stream, e),
        },
        Msg::Network { stream } => match net::interfaces() {
            Ok(interfaces) => tx.send(&Msg::NetworkReply { stream, interfaces }, &[]),
            Err(e) => tx.error(stream, e),
        },
        // Exit messages reap finished execs from the table.
        other => {
            if let Some(stream) = other.stream() {
                tx.error(stream, format!("unexpected message for the agent: {other:?}"));
            }
        }
    }
    streams.retain(|_, s| match s {
        Stream::Exec(h) => !h.finished(),
        Stream::Push(_) => true,
    });
}
