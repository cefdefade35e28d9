//! `/1.0/instances/N/snapshots`: create (pattern names, expiry), list, get, rename,
//! update expiry, delete.

use chrono::{DateTime, Utc};
use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::projects::blocking;
use super::{etag_of, Ctx, Reply};
use crate::daemon::{Model, SnapshotRecord};
use crate::error::{Error, Result};
use crate::model::{rfc3339nano, zero_time};
use crate::operations::OpSpec;

#[derive(Deserialize, Default)]
struct SnapshotPost {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    stateful: bool,
    /// Absent or null: `snapshots.expiry` applies; the zero time (`--no-expiry`): never.
    #[serde(default, deserialize_with = "expiry")]
    expires_at: Option<Option<DateTime<Utc>>>,
}

fn expiry<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<DateTime<Utc>>>, D::Error> {
    let v: Option<DateTime<Utc>> = Option::deserialize(d)?;
    Ok(v.map(|t| Some(t).filter(|t| *t > zero_time())))
}

#[derive(Deserialize)]
struct SnapshotRename {
    #[serde(default)]
    name: String,
    #[serde(default)]
    migration: bool,
}

#[derive(Deserialize)]
struct SnapshotPut {
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    description: Option<String>,
}

/// api.InstanceSnapshot.
pub fn render_snapshot(m: &Model, s: &SnapshotRecord) -> Value {
    let inst = s.as_instance();
    let (ec, ed) = m.expand(&inst).unwrap_or_else(|_| (s.config.clone(), s.devices.clone()));
    let size = -1;
    json!({
        "name": s.name, "architecture": s.architecture, "config": s.config, "devices": s.devices,
        "ephemeral": s.ephemeral, "expanded_config": ec, "expanded_devices": ed, "profiles": s.profiles,
        "stateful": s.stateful, "description": s.description,
        "created_at": rfc3339nano(&s.created_at), "last_used_at": rfc3339nano(&s.last_used_at),
        "expires_at": rfc3339nano(&s.expires_at.unwrap_or_else(zero_time)), "size": size,
    })
}

fn url(project: &str, instance: &str, snap: &str) -> String {
    crate::daemon::with_project(format!("/1.0/instances/{instance}/snapshots/{snap}"), project)
}

/// The snapshots of an instance for InstanceFull (null when there are none, as LXD).
pub fn full_snapshots(m: &Model, project: &str, instance: &str) -> Value {
    let v: Vec<Value> = m.snapshots_of(project, instance).into_iter().map(|s| render_snapshot(m, s)).collect();
    if v.is_empty() {
        Value::Null
    } else {
        Value::Array(v)
    }
}

/// Routes `/1.0/instances/N/snapshots/...`.
pub async fn route(mut ctx: Ctx, instance: &str, rest: &[&str]) -> Result<Reply> {
    let project = ctx.project().to_string();
    if ctx.daemon.model().instance(&project, instance).is_none() {
        return Err(Error::not_found("Instance not found"));
    }
    let ops = ctx.daemon.ops.clone();
    let inst_url = Model::instance_url(&project, instance);
    match (ctx.method.clone(), rest) {
        (Method::GET, []) => {
            let m = ctx.daemon.model();
            let snaps = m.snapshots_of(&project, instance);
            let out: Vec<Value> = if ctx.recursion() > 0 {
                snaps.into_iter().map(|s| render_snapshot(&m, s)).collect()
            } else {
                snaps.into_iter().map(|s| json!(url(&project, instance, &s.name))).collect()
            };
            Ok(Reply::Sync(Value::Array(out)))
        }
        (Method::POST, []) => {
            let body = ctx.body(super::MAX_JSON_BODY).await?;
            let req: SnapshotPost = if body.is_empty() { SnapshotPost::default() } else { super::decode_json(&body)? };
            if req.stateful {
                return Err(Error::bad("Stateful snapshots are not supported: CRIU is not available on this server"));
            }
            let (d, p, i) = (ctx.daemon.clone(), project.clone(), instance.to_string());
            let name = req.name.clone().filter(|n| !n.is_empty());
            let snap = blocking(move || d.create_snapshot(&p, &i, name.as_deref(), req.expires_at)).await?;
            let mut spec = OpSpec::task("Snapshotting instance", &project, "instances", vec![inst_url]);
            spec.resources.insert("instances_snapshots".into(), vec![url(&project, instance, &snap)]);
            Ok(Reply::Async(ops.completed(spec)))
        }
        (Method::GET, [snap]) => {
            let m = ctx.daemon.model();
            let s = m.snapshot(&project, instance, snap).ok_or_else(|| Error::not_found("Snapshot not found"))?;
            Ok(Reply::SyncEtag(render_snapshot(&m, s), etag_of(&json!([s.expires_at]))))
        }
        (Method::POST, [snap]) => {
            let req: SnapshotRename = ctx.json().await?;
            if req.migration {
                return Err(Error::Unsupported("Snapshot migration is not supported".into()));
            }
            let (d, p, i, s) = (ctx.daemon.clone(), project.clone(), instance.to_string(), snap.to_string());
            let new = req.name.clone();
            blocking(move || d.rename_snapshot(&p, &i, &s, &new)).await?;
            let spec = OpSpec::task("Renaming snapshot", &project, "instances", vec![inst_url]);
            Ok(Reply::Async(ops.completed(spec)))
        }
        (Method::PUT | Method::PATCH, [snap]) => {
            let cur = ctx.daemon.model().snapshot(&project, instance, snap).cloned().ok_or_else(|| Error::not_found("Snapshot not found"))?;
            let req: SnapshotPut = ctx.json().await?;
            let expires = match (ctx.method == Method::PATCH, req.expires_at) {
                (_, Some(t)) => Some(t).filter(|t| *t > zero_time()),
                (true, None) => cur.expires_at,
                (false, None) => None,
            };
            let (d, p, i, s) = (ctx.daemon.clone(), project.clone(), instance.to_string(), snap.to_string());
            blocking(move || d.update_snapshot(&p, &i, &s, expires, req.description)).await?;
            let spec = OpSpec::task("Updating snapshot", &project, "instances", vec![inst_url]);
            Ok(Reply::Async(ops.completed(spec)))
        }
        (Method::DELETE, [snap]) => {
            let (d, p, i, s) = (ctx.daemon.clone(), project.clone(), instance.to_string(), snap.to_string());
            blocking(move || d.delete_snapshot(&p, &i, &s)).await?;
            let spec = OpSpec::task("Deleting snapshot", &project, "instances", vec![inst_url]);
            Ok(Reply::Async(ops.completed(spec)))
        }
        (_, [] | [_]) => Err(Error::NotImplemented),
        _ => Err(Error::not_found("not found")),
    }
}
