//! Helpers: install plugins, create instances, read errors and events.

use std::time::{Duration, Instant};

use berth_tests::{Daemon, Resp};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Installs `wasm` (a path from `berth_tests::wasm`) as `name`; returns the response.
pub fn install_raw(d: &Daemon, name: &str, wasm: &str) -> Resp {
    let bytes = std::fs::read(wasm).expect("plugin built");
    d.raw("POST", &format!("/1.0/plugins?name={name}"), &[("content-type", "application/octet-stream")], bytes)
}

/// Installs and asserts success.
pub fn install(d: &Daemon, name: &str, wasm: &str) {
    let r = install_raw(d, name, wasm);
    assert_eq!(r.status, 201, "install {name}: {}", String::from_utf8_lossy(&r.body));
}

/// PATCHes a plugin's settings and asserts success.
pub fn set(d: &Daemon, name: &str, patch: Value) {
    let r = d.req("PATCH", &format!("/1.0/plugins/{name}"), Some(patch));
    assert_eq!(r.status, 200, "patch {name}: {}", String::from_utf8_lossy(&r.body));
}

/// A refused request (so `unwrap()` can print it).
pub struct Refused(pub Resp);

impl std::fmt::Debug for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.0.status, String::from_utf8_lossy(&self.0.body))
    }
}

impl std::ops::Deref for Refused {
    type Target = Resp;
    fn deref(&self) -> &Resp {
        &self.0
    }
}

/// `POST /1.0/instances` (source none): the synchronous error response, or the
/// finished operation.
pub fn create(d: &Daemon, name: &str, config: Value) -> Result<Value, Refused> {
    let r = d.req("POST", "/1.0/instances", Some(json!({"name": name, "source": {"type": "none"}, "config": config})));
    if r.status == 202 {
        Ok(d.wait_op(&r))
    } else {
        Err(Refused(r))
    }
}

/// Asserts an error envelope with `code` whose message contains `needle`.
pub fn assert_error(r: &Resp, code: u16, needle: &str) -> Value {
    let body = r.json();
    assert_eq!(r.status, code, "body: {body}");
    assert_eq!(body["error_code"], code);
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "error {msg:?} should mention {needle:?}");
    body
}

/// Runs `lxc` expecting failure; returns stderr.
pub fn lxc_err(d: &Daemon, args: &[&str]) -> String {
    let o = d.lxc(args);
    assert!(!o.status.success(), "lxc {args:?} should fail: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Names in `GET /1.0/instances?<query>` (recursion 0 URLs or recursion ≥1 objects).
pub fn names(d: &Daemon, query: &str) -> Vec<String> {
    let v = d.get(&format!("/1.0/instances?{query}"));
    let mut out: Vec<String> = v["metadata"]
        .as_array()
        .expect("list")
        .iter()
        .map(|i| match i {
            Value::String(u) => u.rsplit('/').next().unwrap_or_default().to_string(),
            o => o["name"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    out.sort();
    out
}

/// Runs `action` with an event listener attached and returns the events received until
/// `done` says the list is complete (or 10 s pass).
pub fn with_events(d: &Daemon, action: impl FnOnce(), done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let mut ws = rt.block_on(berth_tests::events(&d.socket, "?type=lifecycle,logging")).expect("events");
    action();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    rt.block_on(async {
        while Instant::now() < deadline && !done(&got) {
            match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
                Ok(Some(Ok(msg))) => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg.into_data()) {
                        got.push(v);
                    }
                }
                Ok(_) => break,
                Err(_) => {}
            }
        }
    });
    got
}

/// Lifecycle events with `action`.
pub fn lifecycle<'a>(events: &'a [Value], action: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == "lifecycle" && e["metadata"]["action"] == action).collect()
}

/// Plugin log lines (logging events with `context.plugin`), as (plugin, message).
pub fn plugin_logs(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["type"] == "logging" && e["metadata"]["context"]["plugin"].is_string())
        .map(|e| {
            (
                e["metadata"]["context"]["plugin"].as_str().unwrap_or_default().to_string(),
                e["metadata"]["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}
