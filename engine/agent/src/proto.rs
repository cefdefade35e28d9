//! Frames and messages of the agent protocol.
//!
//! A frame is `MAGIC | header_len: u32 BE | payload_len: u32 BE | header JSON | payload`.
//! The magic lets a reader that joined mid-stream (a host that reconnected while the guest
//! was still writing) skip garbage up to the next frame start. Every message except the
//! hello pair carries a `stream` id chosen by the host; replies reuse it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};

/// Marks the start of every frame.
pub const MAGIC: [u8; 4] = *b"BRTH";
/// Largest accepted JSON header.
pub const MAX_HEADER: usize = 1 << 20;
/// Largest accepted payload; senders chunk data below this.
pub const MAX_PAYLOAD: usize = 16 << 20;
/// Chunk size senders use for stream and file data.
pub const CHUNK: usize = 64 << 10;

/// Errors reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The peer closed the channel at a frame boundary.
    #[error("channel closed")]
    Eof,
    /// An I/O error on the channel.
    #[error("channel i/o")]
    Io(#[from] io::Error),
    /// A frame announced a header or payload above the limits.
    #[error("frame too large: header {header} bytes, payload {payload} bytes")]
    TooLarge { header: usize, payload: usize },
    /// The header was not a known message.
    #[error("bad frame header")]
    Json(#[from] serde_json::Error),
}

/// What an exec should run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// Program and arguments; `argv[0]` is looked up on `PATH`.
    pub argv: Vec<String>,
    /// Environment; the agent adds a default `PATH` when it is missing.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (default `/`).
    #[serde(default)]
    pub cwd: Option<String>,
    /// User id to run as.
    #[serde(default)]
    pub uid: u32,
    /// Group id to run as.
    #[serde(default)]
    pub gid: u32,
    /// Run on a new pty of this size (interactive) instead of three pipes.
    #[serde(default)]
    pub pty: Option<WinSize>,
}

/// A terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// The kind of a file system entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// Anything else (device, fifo, socket).
    Other,
}

/// What `stat` and `pull` report about a path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileStat {
    /// Entry kind (symlinks are not followed).
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Directory entries (names only), for directories.
    #[serde(default)]
    pub entries: Option<Vec<String>>,
    /// Link target, for symlinks.
    #[serde(default)]
    pub target: Option<String>,
}

/// One address on a guest interface (LXD's `InstanceStateNetworkAddress`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// `inet` or `inet6`.
    pub family: String,
    /// The address text.
    pub address: String,
    /// Prefix length as text (LXD's `netmask`).
    pub netmask: String,
    /// `global`, `link` or `local`.
    pub scope: String,
}

/// Interface counters (LXD's `InstanceStateNetworkCounters`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub errors_received: u64,
    pub errors_sent: u64,
    pub packets_dropped_inbound: u64,
    pub packets_dropped_outbound: u64,
}

/// One guest network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name in the guest.
    pub name: String,
    /// MAC address.
    pub hwaddr: String,
    /// MTU.
    pub mtu: u32,
    /// `up` or `down`.
    pub state: String,
    /// `loopback` or `broadcast` (LXD's `type`).
    pub kind: String,
    /// Addresses.
    pub addresses: Vec<Address>,
    /// Counters.
    pub counters: Counters,
}

/// Every message of the protocol. Data-carrying messages use the frame payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Msg {
    /// Host → guest: start a session; the agent drops every older stream.
    Hello { nonce: u64, version: u32 },
    /// Guest → host: answer to [`Msg::Hello`].
    HelloReply { nonce: u64, version: u32, hostname: String },
    /// Guest → host: the agent has just opened its port. A waiting host sends its hello at
    /// once instead of at its next interval (QEMU may hold a hello written before the port
    /// was open until more data arrives). Hosts that do not know it skip it.
    Ready { version: u32 },
    /// Host → guest: run a command on `stream`.
    Exec { stream: u32, spec: ExecSpec },
    /// Guest → host: the command runs with this pid.
    Started { stream: u32, pid: i32 },
    /// Host → guest: stdin bytes in the payload; an empty payload closes stdin.
    Stdin { stream: u32 },
    /// Guest → host: stdout (or pty) bytes in the payload.
    Stdout { stream: u32 },
    /// Guest → host: stderr bytes in the payload.
    Stderr { stream: u32 },
    /// Host → guest: resize the pty.
    Resize { stream: u32, rows: u16, cols: u16 },
    /// Host → guest: send a signal to the command.
    Signal { stream: u32, signal: i32 },
    /// Guest → host: the command ended, after all of its output.
    Exit { stream: u32, code: Option<i32>, signal: Option<i32> },
    /// Host → guest: create a file (then [`Msg::Data`] frames), directory or symlink.
    Push { stream: u32, path: String, kind: FileKind, mode: u32, uid: u32, gid: u32, target: Option<String> },
    /// Either way: file data in the payload; an empty payload ends the file.
    Data { stream: u32 },
    /// Host → guest: send a path: a [`Msg::StatReply`], then data frames for a file.
    Pull { stream: u32, path: String },
    /// Host → guest: describe a path.
    Stat { stream: u32, path: String },
    /// Guest → host: a path's description.
    StatReply { stream: u32, stat: FileStat },
    /// Host → guest: remove a file, symlink or empty directory.
    Delete { stream: u32, path: String },
    /// Host → guest: report network interfaces.
    Network { stream: u32 },
    /// Guest → host: the network interfaces.
    NetworkReply { stream: u32, interfaces: Vec<Interface> },
    /// Guest → host: the request on `stream` succeeded.
    Done { stream: u32 },
    /// Guest → host: the request on `stream` failed.
    Error { stream: u32, message: String },
}

impl Msg {
    /// The stream a message belongs to (hello and ready messages have none).
    pub fn stream(&self) -> Option<u32> {
        use Msg::*;
        match self {
            Hello { .. } | HelloReply { .. } | Ready { .. } => None,
            Exec { stream, .. }
            | Started { stream, .. }
            | Stdin { stream }
            | Stdout { stream }
            | Stderr { stream }
            | Resize { stream, .. }
            | Signal { stream, .. }
            | Exit { stream, .. }
            | Push { stream, .. }
            | Data { stream }
            | Pull { stream, .. }
            | Stat { stream, .. }
            | StatReply { stream, .. }
            | Delete { stream, .. }
            | Network { stream }
            | NetworkReply { stream, .. }
            | Done { stream }
            | Error { stream, .. } => Some(*stream),
        }
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The header.
    pub msg: Msg,
    /// The payload (often empty).
    pub payload: Vec<u8>,
}

/// Encodes one frame into a single buffer, so one `write_all` under a lock keeps frames whole.
pub fn encode(msg: &Msg, payload: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let header = serde_json::to_vec(msg)?;
    if header.len() > MAX_HEADER || payload.len() > MAX_PAYLOAD {
        return Err(ProtoError::TooLarge { header: header.len(), payload: payload.len() });
    }
    let mut buf = Vec::with_capacity(12 + header.len() + payload.len());
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&(header.len() as u32).to_be_bytes());
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(payload);
    Ok(buf)
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, msg: &Msg, payload: &[u8]) -> Result<(), ProtoError> {
    let buf = encode(msg, payload)?;
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame, skipping bytes until the magic. Returns [`ProtoError::Eof`] when the
/// channel ends before a frame starts.
pub fn read_frame(r: &mut impl Read) -> Result<Frame, ProtoError> {
    let mut win = [0u8; 4];
    let mut have = 0usize;
    loop {
        let mut b = [0u8; 1];
        if r.read(&mut b)? == 0 {
            return Err(ProtoError::Eof);
        }
        if have < 4 {
            win[have] = b[0];
            have += 1;
        } else {
            win.rotate_left(1);
            win[3] = b[0];
        }
        if have == 4 && win == MAGIC {
            break;
        }
    }
    let mut lens = [0u8; 8];
    read_exact(r, &mut lens)?;
    let hlen = u32::from_be_bytes([lens[0], lens[1], lens[2], lens[3]]) as usize;
    let plen = u32::from_be_bytes([lens[4], lens[5], lens[6], lens[7]]) as usize;
    if hlen > MAX_HEADER || plen > MAX_PAYLOAD {
        return Err(ProtoError::TooLarge { header: hlen, payload: plen });
    }
    let mut header = vec![0u8; hlen];
    read_exact(r, &mut header)?;
    let mut payload = vec![0u8; plen];
    read_exact(r, &mut payload)?;
    Ok(Frame { msg: serde_json::from_slice(&header)?, payload })
}

/// `read_exact` that reports a mid-frame end as [`ProtoError::Eof`].
fn read_exact(r: &mut impl Read, buf: &mut [u8]) -> Result<(), ProtoError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ProtoError::Eof,
        _ => ProtoError::Io(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_payload() {
        let msg = Msg::Stdout { stream: 7 };
        let buf = encode(&msg, b"hello").unwrap();
        let f = read_frame(&mut &buf[..]).unwrap();
        assert_eq!(f.msg, msg);
        assert_eq!(f.payload, b"hello");
    }

    #[test]
    fn resyncs_after_garbage() {
        let mut buf = b"xxBRgarbage".to_vec();
        buf.extend(encode(&Msg::Done { stream: 3 }, b"").unwrap());
        let f = read_frame(&mut &buf[..]).unwrap();
        assert_eq!(f.msg, Msg::Done { stream: 3 });
    }

    #[test]
    fn eof_and_truncation() {
        assert!(matches!(read_frame(&mut &b""[..]), Err(ProtoError::Eof)));
        let buf = encode(&Msg::Done { stream: 1 }, b"abc").unwrap();
        assert!(matches!(read_frame(&mut &buf[..buf.len() - 1]), Err(ProtoError::Eof)));
    }

    #[test]
    fn rejects_oversized_lengths() {
        let mut buf = MAGIC.to_vec();
        buf.extend_from_slice(&(u32::MAX).to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        assert!(matches!(read_frame(&mut &buf[..]), Err(ProtoError::TooLarge { .. })));
    }

    #[test]
    fn exec_header_shape() {
        let msg = Msg::Exec { stream: 1, spec: ExecSpec { argv: vec!["uname".into()], ..Default::default() } };
        let v: serde_json::Value = serde_json::to_value(&msg).unwrap();
        assert_eq!(v["op"], "exec");
        assert_eq!(v["spec"]["argv"][0], "uname");
        assert_eq!(msg.stream(), Some(1));
        assert_eq!(Msg::Hello { nonce: 1, version: 1 }.stream(), None);
        assert_eq!(Msg::Ready { version: 1 }.stream(), None);
    }
}
