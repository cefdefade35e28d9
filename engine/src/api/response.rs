//! LXD's response envelopes: sync, async (202 + operation) and error, plus raw bodies.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{header, Response, StatusCode};
use serde_json::{json, Value};

use crate::error::Error;
use crate::operations::Operation;

/// The body type of every response.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A full in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// What a handler returns before it becomes an HTTP response.
pub enum Reply {
    /// 200 sync with metadata.
    Sync(Value),
    /// 200 sync whose metadata is already-serialized JSON.
    SyncRaw(Vec<u8>),
    /// The same with an ETag.
    SyncRawEtag(Vec<u8>, String),
    /// 200 sync with metadata and an ETag.
    SyncEtag(Value, String),
    /// 201 sync with a Location header (and empty metadata).
    Created(String),
    /// 202 with the operation.
    Async(Arc<Operation>),
    /// A prebuilt response (raw files, websockets upgrades).
    Raw(Response<Body>),
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(full(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

fn sync_body(metadata: Value) -> Value {
    json!({
        "type": "sync",
        "status": "Success",
        "status_code": 200,
        "operation": "",
        "error_code": 0,
        "error": "",
        "metadata": metadata,
    })
}

impl Reply {
    /// Renders the envelope.
    pub fn into_response(self) -> Response<Body> {
        match self {
            Reply::Sync(v) => {
                let b = sync_body(v);
                json_response(StatusCode::OK, &b)
            }
            Reply::SyncRawEtag(metadata, etag) => {
                let mut r = Reply::SyncRaw(metadata).into_response();
                if let Ok(h) = header::HeaderValue::from_str(&format!("\"{etag}\"")) {
                    r.headers_mut().insert(header::ETAG, h);
                }
                r
            }
            Reply::SyncRaw(metadata) => {
                let head = br#"{"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"","metadata":"#;
                let mut body = Vec::with_capacity(head.len() + metadata.len() + 1);
                body.extend_from_slice(head);
                body.extend_from_slice(&metadata);
                body.push(b'}');
                let mut r = Response::new(full(body));
                r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
                r
            }
            Reply::SyncEtag(v, etag) => {
                let b = sync_body(v);
                let mut r = json_response(StatusCode::OK, &b);
                if let Ok(h) = header::HeaderValue::from_str(&format!("\"{etag}\"")) {
                    r.headers_mut().insert(header::ETAG, h);
                }
                r
            }
            Reply::Created(location) => {
                let b = sync_body(json!({}));
                let mut r = json_response(StatusCode::CREATED, &b);
                if let Ok(h) = header::HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, h);
                }
                r
            }
            Reply::Async(op) => {
                let url = op.url();
                let b = json!({
                    "type": "async",
                    "status": "Operation created",
                    "status_code": 100,
                    "operation": url,
                    "error_code": 0,
                    "error": "",
                    "metadata": op.render(),
                });
                let mut r = json_response(StatusCode::ACCEPTED, &b);
                if let Ok(h) = header::HeaderValue::from_str(&url) {
                    r.headers_mut().insert(header::LOCATION, h);
                }
                r
            }
            Reply::Raw(r) => r,
        }
    }
}

/// The error envelope with the status of the error's kind.
pub fn error_response(err: &Error) -> Response<Body> {
    let code = err.kind().status();
    let body = json!({
        "type": "error",
        "status": "",
        "status_code": 0,
        "operation": "",
        "error_code": code,
        "error": err.to_string(),
        "metadata": err.metadata(),
    });
    json_response(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelope_has_every_key() {
        let r = error_response(&Error::not_found("Instance not found"));
        assert_eq!(r.status(), 404);
    }
}
