//! The LXD REST API over hyper. This layer only parses requests into calls on the
//! [`Daemon`](crate::daemon::Daemon) and renders replies; one file per resource.

pub mod auth;
mod backups;
mod certificates;
mod console;
mod events;
mod exec;
mod files;
mod instance_state;
mod images;
mod instances;
mod operations;
mod plugins;
mod profiles;
mod projects;
pub mod response;
mod server;
mod snapshots;
mod storage_pools;
pub mod stream;
mod volumes;
mod volume_backups;
pub mod listener;
pub mod tls;
pub mod websocket;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response};

pub use response::Body as ResponseBody;
use serde::de::DeserializeOwned;

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use response::{error_response, Body, Reply};

/// Largest JSON body accepted.
pub const MAX_JSON_BODY: usize = 4 << 20;

/// Everything a handler needs about one request.
pub struct Ctx {
    pub daemon: Arc<Daemon>,
    pub method: Method,
    pub query: HashMap<String, String>,
    pub parts: hyper::http::request::Parts,
    body: Option<Incoming>,
    /// Whether the request came over the unix socket (root/group only).
    pub local: bool,
    /// What the caller may do.
    pub trust: auth::Trust,
    /// The HTTPS peer (None on the unix socket).
    pub remote: Option<auth::Remote>,
}

impl Ctx {
    /// `?project=`, defaulting to `default`.
    pub fn project(&self) -> &str {
        self.query.get("project").map(String::as_str).filter(|p| !p.is_empty()).unwrap_or("default")
    }

    /// `?recursion=` as a number (0 when absent or garbage, as LXD does).
    pub fn recursion(&self) -> u32 {
        self.query.get("recursion").and_then(|r| r.split(';').next()?.parse().ok()).unwrap_or(0)
    }

    /// A query parameter that LXD reads as a boolean.
    pub fn query_bool(&self, key: &str) -> bool {
        self.query.get(key).is_some_and(|v| crate::config::is_true(v))
    }

    /// A request header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Reads the whole body up to `limit` bytes; more is a 413.
    pub async fn body(&mut self, limit: usize) -> Result<Bytes> {
        let mut body = self.body.take().ok_or_else(|| Error::internal("request body read twice"))?;
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Error::bad(format!("Failed to read request body: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            if buf.len() + data.len() > limit {
                drain(body).await;
                return Err(Error::TooLarge(limit));
            }
            buf.extend_from_slice(&data);
        }
        Ok(buf.freeze())
    }

    /// Takes the raw body for streaming handlers (uploads, imports).
    pub fn take_body(&mut self) -> Result<Incoming> {
        self.body.take().ok_or_else(|| Error::internal("request body read twice"))
    }

    /// Reads and decodes a JSON body; errors name the offending field.
    pub async fn json<T: DeserializeOwned>(&mut self) -> Result<T> {
        let bytes = self.body(MAX_JSON_BODY).await?;
        if bytes.is_empty() {
            return Err(Error::bad("Request body is empty"));
        }
        decode_json(&bytes)
    }

    /// Checks `If-Match` against the current ETag (412 on a mismatch).
    pub fn check_etag(&self, current: &str) -> Result<()> {
        match self.header("if-match") {
            Some(v) if !v.is_empty() && v.trim_matches('"') != current => {
                Err(Error::PreconditionFailed(format!("expected \"{current}\"")))
            }
            _ => Ok(()),
        }
    }
}

/// Reads and drops the rest of an oversized body (bounded in size and time): closing a
/// TCP connection with unread input resets it, and the client would lose the 413.
async fn drain(mut body: Incoming) {
    const MAX: usize = 64 << 20;
    let mut left = MAX;
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(d) = frame.into_data() {
                if d.len() >= left {
                    break;
                }
                left -= d.len();
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
}

/// Decodes JSON, naming the path of the offending field in the error.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path.is_empty() || path == "." {
            Error::bad(format!("Invalid request body: {}", e.inner()))
        } else {
            Error::bad(format!("Invalid request body: field \"{path}\": {}", e.inner()))
        }
    })
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        out.insert(k.into_owned(), v.into_owned());
    }
    out
}

/// The hash LXD clients send back in `If-Match`.
pub fn etag_of(v: &serde_json::Value) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(serde_json::to_vec(v).unwrap_or_default()))
}

/// Serves one request from the unix socket (`local`, always trusted) or from an
/// unidentified peer (untrusted).
pub async fn handle(daemon: Arc<Daemon>, req: Request<Incoming>, local: bool) -> Response<Body> {
    let trust = if local { auth::Trust::Trusted { projects: None } } else { auth::Trust::Untrusted };
    dispatch(daemon, req, local, trust, None).await
}

/// Serves one request from an HTTPS client, trusted by its certificate's fingerprint.
pub async fn handle_remote(daemon: Arc<Daemon>, req: Request<Incoming>, remote: auth::Remote) -> Response<Body> {
    let trust = auth::Trust::of_fingerprint(&daemon.model(), remote.fingerprint.as_deref());
    dispatch(daemon, req, false, trust, Some(remote)).await
}

async fn dispatch(
    daemon: Arc<Daemon>,
    req: Request<Incoming>,
    local: bool,
    trust: auth::Trust,
    remote: Option<auth::Remote>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    let ctx = Ctx { daemon, method, query, parts, body: Some(body), local, trust, remote };
    let res = route(ctx, &segs).await;
    match res {
        Ok(r) => r.into_response(),
        Err(e) => {
            if e.kind() == crate::error::ErrorKind::Internal {
                tracing::error!(path = %path, error = %e, "request failed");
            }
            error_response(&e)
        }
    }
}

async fn route(ctx: Ctx, segs: &[String]) -> Result<Reply> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let listing_filter = auth::authorize(&ctx, &s)?;
    let reply = match s.as_slice() {
        [] => Ok(Reply::Sync(serde_json::json!(["/1.0"]))),
        ["1.0"] => server::root(ctx).await,
        ["internal", "shutdown"] => server::shutdown(ctx).await,
        ["1.0", "events"] => events::events(ctx).await,
        ["1.0", "operations", rest @ ..] => operations::route(ctx, rest).await,
        ["1.0", "projects", rest @ ..] => projects::route(ctx, rest).await,
        ["1.0", "profiles", rest @ ..] => profiles::route(ctx, rest).await,
        ["1.0", "instances", rest @ ..] => instances::route(ctx, rest).await,
        ["1.0", "certificates", rest @ ..] => certificates::route(ctx, rest).await,
        ["1.0", "images", rest @ ..] => images::route(ctx, rest).await,
        ["1.0", "storage-pools", pool, "volumes", rest @ ..] => {
            let pool = pool.to_string();
            volumes::route(ctx, &pool, rest).await
        }
        ["1.0", "storage-pools", rest @ ..] => storage_pools::route(ctx, rest).await,
        ["1.0", "plugins", rest @ ..] => plugins::route(ctx, rest).await,
        _ => Err(Error::not_found("not found")),
    }?;
    Ok(auth::filter_listing(reply, listing_filter))
}

/// Builds a response with a content type.
pub fn raw(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(response::full(body));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}
