//! Root tier: the non-interactive exec rules of lxd-api.md §1.7 that the `lxc` client
//! does not exercise by itself — the control socket is optional (only used when it is
//! connected when the command starts), and a client that writes on, closes or drops
//! its stdout socket has gone away: the command is killed unless a control socket
//! is there to do that (closing control kills it).

mod ct_support;

use std::time::Duration;

use berth_tests::{block_on, request, Daemon};
use ct_support::{can_run, make_container, ws_connect, Reaper};
use futures_util::{SinkExt, StreamExt};
use hyper::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::UnixStream>;

struct Session {
    id: String,
    fds: Value,
}

async fn post_exec(d: &Daemon, cmd: &[&str]) -> Session {
    let body = json!({"command": cmd, "wait-for-websocket": true, "interactive": false, "environment": {}});
    let r = request(&d.socket, Method::POST, "/1.0/instances/x/exec", &[], body.to_string().into_bytes()).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.json());
    let j = r.json();
    Session { id: j["metadata"]["id"].as_str().unwrap().to_string(), fds: j["metadata"]["metadata"]["fds"].clone() }
}

async fn connect(d: &Daemon, s: &Session, fd: &str) -> Ws {
    ws_connect(d, &s.id, s.fds[fd].as_str().unwrap()).await
}

async fn op(d: &Daemon, s: &Session, wait: bool) -> Value {
    let path = if wait { format!("/1.0/operations/{}/wait?timeout=10", s.id) } else { format!("/1.0/operations/{}", s.id) };
    let r = request(&d.socket, Method::GET, &path, &[], vec![]).await.unwrap();
    r.json()["metadata"].clone()
}

/// Reads a stream socket until the empty-text barrier (or close); returns the bytes.
async fn drain(ws: &mut Ws) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        match m {
            Message::Binary(b) => out.extend_from_slice(&b),
            Message::Text(t) if t.is_empty() => break,
            Message::Close(_) => break,
            _ => {}
        }
    }
    out
}

const KILLED: i64 = 128 + 9;

#[test]
fn lxc_exec_noninteractive_disconnect_rules() {
    if !can_run("lxc_exec_noninteractive_disconnect_rules") {
        return;
    }
    let d = Daemon::start();
    let _reaper = Reaper(d.data_dir().to_path_buf());
    make_container(&d, "x", &[]);
    d.lxc_ok(&["start", "x"]);
    block_on(async {
        // No control socket at all: the command runs and its output and code arrive.
        let s = post_exec(&d, &["sh", "-c", "echo out; echo err >&2; exit 3"]).await;
        let (mut w0, mut w1, mut w2) = (connect(&d, &s, "0").await, connect(&d, &s, "1").await, connect(&d, &s, "2").await);
        assert_eq!(drain(&mut w1).await, b"out\n");
        assert_eq!(drain(&mut w2).await, b"err\n");
        let o = op(&d, &s, true).await;
        assert_eq!((o["status"].as_str(), o["metadata"]["return"].as_i64()), (Some("Success"), Some(3)), "{o}");
        let _ = w0.close(None).await;

        // Without control, a message on the stdout socket means the client left: killed.
        let s = post_exec(&d, &["sleep", "1000"]).await;
        let (_w0, mut w1, _w2) = (connect(&d, &s, "0").await, connect(&d, &s, "1").await, connect(&d, &s, "2").await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(op(&d, &s, false).await["status"], "Running");
        w1.send(Message::binary(b"x".to_vec())).await.unwrap();
        let o = op(&d, &s, true).await;
        assert_eq!(o["metadata"]["return"].as_i64(), Some(KILLED), "{o}");

        // Without control, dropping the stdout connection: killed too.
        let s = post_exec(&d, &["sleep", "1000"]).await;
        let (_w0, w1, _w2) = (connect(&d, &s, "0").await, connect(&d, &s, "1").await, connect(&d, &s, "2").await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(w1);
        let o = op(&d, &s, true).await;
        assert_eq!(o["metadata"]["return"].as_i64(), Some(KILLED), "{o}");

        // With control connected at the start, stdout chatter is not a disconnect;
        // closing control is, and kills the command.
        let s = post_exec(&d, &["sleep", "1000"]).await;
        let mut wc = connect(&d, &s, "control").await;
        let (_w0, mut w1, _w2) = (connect(&d, &s, "0").await, connect(&d, &s, "1").await, connect(&d, &s, "2").await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        w1.send(Message::binary(b"x".to_vec())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(op(&d, &s, false).await["status"], "Running");
        // Signals go through control.
        wc.send(Message::text(r#"{"command":"signal","signal":0}"#)).await.unwrap();
        wc.close(None).await.unwrap();
        let o = op(&d, &s, true).await;
        assert_eq!(o["metadata"]["return"].as_i64(), Some(KILLED), "{o}");

        // Control connected only after the command started is not used: closing it
        // does not kill; the command ends on its own.
        let s = post_exec(&d, &["sleep", "1"]).await;
        let (_w0, _w1, _w2) = (connect(&d, &s, "0").await, connect(&d, &s, "1").await, connect(&d, &s, "2").await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(mut late) = tokio::time::timeout(Duration::from_secs(2), connect(&d, &s, "control")).await {
            let _ = late.close(None).await;
        }
        let o = op(&d, &s, true).await;
        assert_eq!(o["metadata"]["return"].as_i64(), Some(0), "{o}");
    });
    d.lxc_ok(&["stop", "-f", "x"]);
}
