//! Integration test harness: a real `berthd` on a temp data dir, an HTTP client over its
//! unix socket, the events websocket, and the real `lxc` client.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// `.wasm` files of every crate in `plugins/`, built for wasm32-wasip2 by `build.rs`.
pub mod lxc;
pub mod storage;

pub mod wasm {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

pub use berth_engine::testsupport::{probe_program, probe_root, require, Tier};

/// Path of the `berthd` binary built in the same target dir as this test.
pub fn berthd_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("berthd");
    assert!(bin.is_file(), "{} is missing: run `cargo build -p berth-engine` first", bin.display());
    bin
}

/// A response: status, headers and body.
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON (Null if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

/// A running berthd owned by a test; killed on drop.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
    extra_env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts berthd on a fresh data dir and waits until it answers.
    pub fn start() -> Daemon {
        Self::start_with_env(&[])
    }

    /// Same, with extra environment variables for the daemon.
    pub fn start_with_env(env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::Builder::new().prefix("berth-test-").tempdir().expect("tempdir");
        let socket = dir.path().join("unix.socket");
        let mut d = Daemon {
            dir,
            socket,
            child: None,
            extra_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        d.spawn();
        d
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// (Re)starts the daemon process on the same data dir.
    pub fn spawn(&mut self) {
        let mut cmd = Command::new(berthd_bin());
        cmd.arg("--data-dir").arg(self.dir.path()).env("BERTH_LOG", "warn");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
        self.child = Some(cmd.spawn().expect("spawn berthd"));
        self.wait_ready(Duration::from_secs(20));
    }

    /// Polls `GET /1.0` until it answers 200.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                if let Ok(r) = block_on(request(&self.socket, Method::GET, "/1.0", &[], Vec::new())) {
                    if r.status == 200 {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "berthd did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the daemon (no cleanup at all).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal and waits for the process to exit; returns its exit status.
    pub fn signal_and_wait(&mut self, sig: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).expect("pid"));
        nix::sys::signal::kill(pid, sig).expect("kill");
        c.wait().expect("wait")
    }

    /// Takes the child process handle (for tests that stop it themselves).
    pub fn take_child(&mut self) -> Option<Child> {
        self.child.take()
    }

    /// One request with a JSON body (or none).
    pub fn req(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let body = body.map(|b| serde_json::to_vec(&b).expect("json")).unwrap_or_default();
        self.raw(method, path, &[], body)
    }

    /// One request with explicit headers and raw body bytes.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        block_on(request(&self.socket, m, path, headers, body)).expect("request")
    }

    /// GET returning the JSON body, asserting 200.
    pub fn get(&self, path: &str) -> Value {
        let r = self.req("GET", path, None);
        assert_eq!(r.status, 200, "GET {path}: {}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    /// Waits for an async response's operation and returns the final operation.
    pub fn wait_op(&self, r: &Resp) -> Value {
        assert_eq!(r.status, 202, "expected 202, got {}: {}", r.status, String::from_utf8_lossy(&r.body));
        let op = r.json()["operation"].as_str().expect("operation url").to_string();
        let w = self.get(&format!("{op}/wait?timeout=30"));
        w["metadata"].clone()
    }

    /// Runs the real `lxc` client against this daemon with its own config dir.
    pub fn lxc(&self, args: &[&str]) -> Output {
        self.lxc_stdin(args, None)
    }

    /// Same, feeding `stdin`.
    pub fn lxc_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let conf = self.dir.path().join("lxc-conf");
        std::fs::create_dir_all(&conf).expect("lxc conf dir");
        let mut cmd = Command::new("lxc");
        cmd.args(args)
            .env("LXD_SOCKET", &self.socket)
            .env("LXD_CONF", &conf)
            .env_remove("LXD_DIR")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn lxc");
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(s.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("lxc output")
    }

    /// Runs `lxc` and asserts success; returns stdout.
    pub fn lxc_ok(&self, args: &[&str]) -> String {
        let o = self.lxc(args);
        assert!(
            o.status.success(),
            "lxc {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs a future on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

/// One HTTP/1.1 request over a unix socket.
pub async fn request(
    socket: &Path,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> anyhow::Result<Resp> {
    let stream = UnixStream::connect(socket).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut b = Request::builder().method(method).uri(path).header("host", "unix.socket");
    let mut has_ct = false;
    for (k, v) in headers {
        has_ct |= k.eq_ignore_ascii_case("content-type");
        b = b.header(*k, *v);
    }
    if !has_ct {
        b = b.header("content-type", "application/json");
    }
    let resp = sender.send_request(b.body(Full::new(Bytes::from(body)))?).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Resp { status, headers, body })
}

/// Connects to `/1.0/events` (with an optional query) and returns the websocket.
pub async fn events(
    socket: &Path,
    query: &str,
) -> anyhow::Result<tokio_tungstenite::WebSocketStream<UnixStream>> {
    let stream = UnixStream::connect(socket).await?;
    let url = format!("ws://unix.socket/1.0/events{query}");
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    Ok(ws)
}

/// The `lxc` client probe (tier LxcClient).
pub fn probe_lxc() -> Result<(), String> {
    probe_program("lxc")
}
