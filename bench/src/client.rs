//! A kept-alive HTTP/1.1 connection to an LXD-API unix socket. The same code drives
//! berthd and LXD, so whatever the client costs is paid equally by both.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// One answer: status, raw body and the time from sending the request to the last
/// body byte (the connection is already open, so no connect cost is included).
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
    pub elapsed: Duration,
}

impl Reply {
    /// The body as JSON (Null when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A connection that reconnects lazily when the server closed it.
pub struct Conn {
    path: PathBuf,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// Connects now, so the first timed request does not pay for the connect.
    pub async fn open(path: &Path) -> anyhow::Result<Conn> {
        let mut c = Conn { path: path.to_path_buf(), sender: None };
        c.ensure().await?;
        Ok(c)
    }

    async fn ensure(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_some_and(|s| s.is_closed()) {
            self.sender = None;
        }
        if self.sender.is_none() {
            let stream = UnixStream::connect(&self.path)
                .await
                .with_context(|| format!("connecting to {}", self.path.display()))?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        let s = self.sender.as_mut().ok_or_else(|| anyhow!("no connection"))?;
        s.ready().await?;
        Ok(s)
    }

    /// Sends one request and reads the whole body.
    pub async fn request(&mut self, method: Method, uri: &str, body: Option<&Value>) -> anyhow::Result<Reply> {
        let bytes = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v)?),
            None => Bytes::new(),
        };
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "lxd")
            .header("content-type", "application/json")
            .body(Full::new(bytes))?;
        let sender = self.ensure().await?;
        let start = Instant::now();
        let result = async {
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        }
        .await;
        let elapsed = start.elapsed();
        match result {
            Ok((status, body)) => Ok(Reply { status, body, elapsed }),
            Err(e) => {
                self.sender = None;
                Err(anyhow!("{uri}: {e}"))
            }
        }
    }

    /// A GET that must answer 200.
    pub async fn get_ok(&mut self, uri: &str) -> anyhow::Result<Reply> {
        let r = self.request(Method::GET, uri, None).await?;
        if r.status != 200 {
            bail!("GET {uri}: status {} {}", r.status, String::from_utf8_lossy(&r.body));
        }
        Ok(r)
    }

    /// Sends a mutating request and, when the answer is an operation, waits for it to
    /// succeed. Returns the wall time of request plus wait.
    pub async fn mutate(&mut self, method: Method, uri: &str, body: Option<&Value>) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let r = self.request(method.clone(), uri, body).await?;
        let v = r.json();
        if r.status >= 400 {
            bail!("{method} {uri}: status {}: {}", r.status, v["error"]);
        }
        // An operation that is already final (berthd finishes record-only work before
        // answering) needs no wait; a running one (LXD) does.
        let final_already = v["metadata"]["status_code"].as_u64().is_some_and(|c| c >= 200);
        if final_already && v["metadata"]["status_code"] != 200 {
            bail!("{method} {uri}: operation failed: {}", v["metadata"]["err"]);
        }
        if v["type"] == "async" && !final_already {
            let op = v["operation"].as_str().ok_or_else(|| anyhow!("{method} {uri}: async reply without operation"))?;
            let w = self.get_ok(&format!("{op}/wait?timeout=120")).await?.json();
            if w["metadata"]["status_code"] != 200 {
                bail!("{method} {uri}: operation failed: {}", w["metadata"]["err"]);
            }
        }
        Ok(start.elapsed())
    }
}
