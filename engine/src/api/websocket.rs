//! Websocket operations (exec, console): per-fd secrets in the operation metadata, the
//! `GET /1.0/operations/<id>/websocket?secret=` upgrade, and waiting until the sockets a
//! session needs are connected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hyper::{header, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role};
use tokio_tungstenite::WebSocketStream;

use super::{response, Ctx, Reply};
use crate::error::{Error, Result};

/// An upgraded websocket.
pub type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// How long a session waits for its sockets (LXD: 5 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The sockets of one websocket operation.
pub struct Sockets {
    secrets: HashMap<String, String>,
    conns: Mutex<HashMap<String, Ws>>,
    notify: tokio::sync::Notify,
}

fn registry() -> &'static Mutex<HashMap<String, Arc<Sockets>>> {
    static R: OnceLock<Mutex<HashMap<String, Arc<Sockets>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn secret() -> String {
    use rand::Rng;
    let mut b = [0u8; 32];
    rand::rng().fill(&mut b);
    hex::encode(b)
}

impl Sockets {
    /// New secrets for `fds`; returns the sockets and the `fds` metadata map.
    pub fn new(fds: &[&str]) -> (Arc<Sockets>, serde_json::Value) {
        let secrets: HashMap<String, String> = fds.iter().map(|f| (f.to_string(), secret())).collect();
        let meta = serde_json::to_value(&secrets).unwrap_or_default();
        (Arc::new(Sockets { secrets, conns: Mutex::new(HashMap::new()), notify: tokio::sync::Notify::new() }), meta)
    }

    /// Makes the sockets reachable through operation `op_id`.
    pub fn publish(self: &Arc<Self>, op_id: &str) {
        registry().lock().unwrap_or_else(|p| p.into_inner()).insert(op_id.to_string(), self.clone());
    }

    /// Removes the operation's sockets from the registry.
    pub fn unpublish(op_id: &str) {
        registry().lock().unwrap_or_else(|p| p.into_inner()).remove(op_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ws>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until every fd in `required` is connected, then takes those plus whatever
    /// else is connected by then.
    pub async fn wait(&self, required: &[&str], timeout: Duration) -> Result<HashMap<String, Ws>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            {
                let mut c = self.lock();
                if required.iter().all(|r| c.contains_key(*r)) {
                    return Ok(c.drain().collect());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Error::bad("Timed out waiting for websockets to connect"));
            }
        }
    }

    /// Waits up to `timeout` for one more fd (a late control socket).
    pub async fn take_late(&self, fd: &str, timeout: Duration) -> Option<Ws> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if let Some(w) = self.lock().remove(fd) {
                return Some(w);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// `GET /1.0/operations/<id>/websocket?secret=`.
pub async fn connect(mut ctx: Ctx, id: &str) -> Result<Reply> {
    let secret = ctx.query.get("secret").cloned().ok_or_else(|| Error::bad("Missing secret"))?;
    let sockets = registry().lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
    let Some(sockets) = sockets else {
        return Err(match ctx.daemon.ops.get(id) {
            Some(_) => Error::Forbidden("Operation has no websockets".into()),
            None => Error::not_found("Operation not found"),
        });
    };
    let fd = sockets
        .secrets
        .iter()
        .find(|(_, s)| **s == secret)
        .map(|(f, _)| f.clone())
        .ok_or_else(|| Error::Forbidden("Wrong secret".into()))?;
    let key = ctx.header("sec-websocket-key").map(str::to_string).ok_or_else(|| Error::bad("Missing websocket upgrade"))?;
    let on_upgrade = ctx
        .parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| Error::bad("Connection can't be upgraded"))?;
    tokio::spawn(async move {
        let Ok(up) = on_upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await;
        sockets.lock().insert(fd, ws);
        sockets.notify.notify_waiters();
    });
    Ok(Reply::Raw(switching(&key)))
}

/// The 101 reply of a websocket upgrade.
pub fn switching(key: &str) -> Response<response::Body> {
    let mut r = Response::new(response::full(""));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, header::HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
    if let Ok(v) = header::HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// A control message (`api.InstanceExecControl`).
#[derive(Debug, serde::Deserialize)]
pub struct Control {
    pub command: String,
    #[serde(default)]
    pub args: HashMap<String, String>,
    #[serde(default)]
    pub signal: i32,
}

impl Control {
    /// `window-resize` dimensions (strings in LXD's protocol).
    pub fn size(&self) -> Option<(u16, u16)> {
        let w = self.args.get("width")?.parse().ok()?;
        let h = self.args.get("height")?.parse().ok()?;
        Some((w, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_parse() {
        let c: Control = serde_json::from_str(r#"{"command":"window-resize","args":{"width":"100","height":"30"}}"#).unwrap();
        assert_eq!(c.size(), Some((100, 30)));
        let s: Control = serde_json::from_str(r#"{"command":"signal","signal":15}"#).unwrap();
        assert_eq!((s.command.as_str(), s.signal), ("signal", 15));
    }

    #[test]
    fn secrets_are_distinct() {
        let (_, meta) = Sockets::new(&["0", "1", "control"]);
        let m = meta.as_object().unwrap();
        assert_eq!(m.len(), 3);
        assert_ne!(m["0"], m["1"]);
    }
}
