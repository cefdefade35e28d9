//! `/1.0/storage-pools/P/volumes[/TYPE[/NAME[/snapshots[/S]]]]`: instance and image volumes
//! are listed; custom volumes have CRUD, rename, snapshots and restore.

use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::projects::blocking;
use super::{Ctx, Reply};
use crate::daemon::{Model, VolumeRecord, VolumeUpdate};
use crate::error::{Error, Result};
use crate::model::{rfc3339nano, zero_time, ConfigMap};
use crate::operations::OpSpec;

#[derive(Deserialize)]
struct VolumePost {
    name: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: ConfigMap,
    #[serde(default)]
    source: Option<VolumeSource>,
}

#[derive(Deserialize)]
struct VolumeSource {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct VolumePut {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    config: Option<ConfigMap>,
    #[serde(default)]
    restore: Option<String>,
    #[serde(default)]
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Deserialize)]
struct Rename {
    name: String,
}

#[derive(Deserialize, Default)]
struct SnapPost {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn render(m: &Model, v: &VolumeRecord) -> Value {
    let name = match &v.snapshot {
        Some(s) => format!("{}/{s}", v.name),
        None => v.name.clone(),
    };
    let mut out = json!({
        "name": name, "type": "custom", "config": v.config, "description": v.description,
        "used_by": if v.snapshot.is_none() { m.volume_used_by(&v.pool, &v.name) } else { vec![] },
        "location": "none", "content_type": v.content_type, "project": v.project,
        "created_at": rfc3339nano(&v.created_at),
    });
    if v.snapshot.is_some() {
        out["expires_at"] = json!(rfc3339nano(&v.expires_at.unwrap_or_else(zero_time)));
    }
    out
}

fn custom_url(pool: &str, project: &str, name: &str) -> String {
    crate::daemon::with_project(format!("/1.0/storage-pools/{pool}/volumes/custom/{name}"), project)
}

/// Routes the volumes of `pool`.
pub async fn route(mut ctx: Ctx, pool: &str, rest: &[&str]) -> Result<Reply> {
    let project = ctx.project().to_string();
    let driver = ctx.daemon.pool_driver(pool)?;
    match (ctx.method.clone(), rest) {
        (_, ["custom", name, "backups", more @ ..]) => {
            let (name, more) = (name.to_string(), more.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            let more: Vec<&str> = more.iter().map(String::as_str).collect();
            super::volume_backups::route(ctx, pool, &name, &more).await
        }
        (Method::POST, [] | ["custom"]) if ctx.header("content-type").is_some_and(|c| c.starts_with("application/octet-stream")) => {
            super::volume_backups::import(ctx, pool).await
        }
        (Method::GET, [] | ["custom"]) => {
            let only_custom = !rest.is_empty();
            let m = ctx.daemon.model();
            let rec = ctx.recursion() > 0;
            let mut out = Vec::new();
            if !only_custom {
                for i in m.instances.values().filter(|i| i.project == project) {
                    if m.root_pool(i).ok().as_deref() == Some(pool) {
                        let kind = crate::daemon::instance_volume(i).vtype.as_str();
                        out.push(if rec {
                            json!({"name": i.name, "type": kind, "config": {}, "description": "", "used_by": [Model::instance_url(&i.project, &i.name)],
                                   "location": "none", "content_type": "filesystem", "project": i.project, "created_at": rfc3339nano(&i.created_at)})
                        } else {
                            json!(format!("/1.0/storage-pools/{pool}/volumes/{kind}/{}", i.name))
                        });
                    }
                }
                let vols = driver.list_volumes().unwrap_or_default();
                for v in vols.iter().filter(|v| v.vtype == crate::storage::VolumeType::Image && !v.name.starts_with('.')) {
                    out.push(if rec {
                        json!({"name": v.name, "type": "image", "config": {}, "description": "", "used_by": [], "location": "none",
                               "content_type": "filesystem", "project": project, "created_at": rfc3339nano(&zero_time())})
                    } else {
                        json!(format!("/1.0/storage-pools/{pool}/volumes/image/{}", v.name))
                    });
                }
            }
            for v in m.custom_volumes(pool, &project) {
                out.push(if rec { render(&m, v) } else { json!(custom_url(pool, &project, &v.name)) });
            }
            Ok(Reply::Sync(Value::Array(out)))
        }
        (Method::POST, [] | ["custom"]) => {
            let req: VolumePost = ctx.json().await?;
            if !req.kind.is_empty() && req.kind != "custom" {
                return Err(Error::bad(format!("Only custom volumes can be created, not \"{}\"", req.kind)));
            }
            let copy = req.source.as_ref().filter(|s| s.kind == "copy").map(|s| s.name.clone());
            let (d, p, po) = (ctx.daemon.clone(), project.clone(), pool.to_string());
            let name = req.name.clone();
            let is_copy = copy.is_some();
            blocking(move || d.create_custom_volume(&po, &p, &req.name, req.description, req.config, copy.as_deref())).await?;
            let spec = OpSpec::task("Creating storage volume", &project, "storage_volumes", vec![custom_url(pool, &project, &name)]);
            if is_copy {
                return Ok(Reply::Async(ctx.daemon.ops.completed(spec)));
            }
            Ok(Reply::Sync(json!({})))
        }
        (Method::GET, ["custom", name]) => {
            let m = ctx.daemon.model();
            let v = m.volumes.get(&crate::daemon::volume_key(pool, &project, name, None)).ok_or_else(|| Error::not_found("Storage volume not found"))?;
            Ok(Reply::SyncEtag(render(&m, v), super::etag_of(&json!([v.description, v.config]))))
        }
        (Method::GET, ["custom", name, "state"]) => {
            let path = ctx.daemon.custom_volume_path(pool, &project, name)?;
            let used = blocking(move || crate::storage::drivers::util::disk_usage(&path).map_err(Error::from)).await.unwrap_or(0);
            Ok(Reply::Sync(json!({"usage": {"used": used, "total": -1}})))
        }
        (Method::PUT | Method::PATCH, ["custom", name]) => {
            let req: VolumePut = ctx.json().await?;
            let (d, p, po, n) = (ctx.daemon.clone(), project.clone(), pool.to_string(), name.to_string());
            if let Some(snap) = req.restore.filter(|r| !r.is_empty()) {
                blocking(move || d.restore_custom_volume(&po, &p, &n, &snap)).await?;
            } else {
                blocking(move || d.update_custom_volume(&po, &p, &n, None, VolumeUpdate { description: req.description, config: req.config, expires_at: None })).await?;
            }
            Ok(Reply::Sync(json!({})))
        }
        (Method::POST, ["custom", name]) => {
            let req: Rename = ctx.json().await?;
            let (d, p, po, n) = (ctx.daemon.clone(), project.clone(), pool.to_string(), name.to_string());
            let new = req.name.clone();
            blocking(move || d.rename_custom_volume(&po, &p, &n, None, &new)).await?;
            let spec = OpSpec::task("Renaming storage volume", &project, "storage_volumes", vec![custom_url(pool, &project, &req.name)]);
            Ok(Reply::Async(ctx.daemon.ops.completed(spec)))
        }
        (Method::DELETE, ["custom", name]) => {
            let (d, p, po, n) = (ctx.daemon.clone(), project.clone(), pool.to_string(), name.to_string());
            blocking(move || d.delete_custom_volume(&po, &p, &n, None)).await?;
            Ok(Reply::Sync(json!({})))
        }
        (Method::GET, ["custom", name, "snapshots"]) => {
            let m = ctx.daemon.model();
            let snaps = m.volume_snapshots(pool, &project, name);
            let out: Vec<Value> = if ctx.recursion() > 0 {
                snaps.iter().map(|s| render(&m, s)).collect()
            } else {
                snaps.iter().map(|s| json!(format!("{}/snapshots/{}", custom_url(pool, &project, name).split('?').next().unwrap_or_default(), s.snapshot.clone().unwrap_or_default()))).collect()
            };
            Ok(Reply::Sync(Value::Array(out)))
        }
        (Method::POST, ["custom", name, "snapshots"]) => {
            let body = ctx.body(super::MAX_JSON_BODY).await?;
            let req: SnapPost = if body.is_empty() { SnapPost::default() } else { super::decode_json(&body)? };
            let (d, p, po, n) = (ctx.daemon.clone(), project.clone(), pool.to_string(), name.to_string());
            let snap = blocking(move || d.snapshot_custom_volume(&po, &p, &n, req.name.as_deref(), req.expires_at)).await?;
            let spec = OpSpec::task("Creating storage volume snapshot", &project, "storage_volume_snapshots", vec![format!("/1.0/storage-pools/{pool}/volumes/custom/{name}/snapshots/{snap}")]);
            Ok(Reply::Async(ctx.daemon.ops.completed(spec)))
        }
        (Method::GET, ["custom", name, "snapshots", snap]) => {
            let m = ctx.daemon.model();
            let v = m.volumes.get(&crate::daemon::volume_key(pool, &project, name, Some(snap))).ok_or_else(|| Error::not_found("Storage volume snapshot not found"))?;
            Ok(Reply::SyncEtag(render(&m, v), super::etag_of(&json!([v.description, v.expires_at]))))
        }
        (Method::PUT | Method::PATCH, ["custom", name, "snapshots", snap]) => {
            let req: VolumePut = ctx.json().await?;
            let (d, p, po, n, s) = (ctx.daemon.clone(), project.clone(), pool.to_string(), name.to_string(), snap.to_string());
            blocking(move || d.update_custom_volume(&po, &p, &n, Some(&s), VolumeUpdate { description: req.description, config: None, expires_at: Some(req.expires_at) })).await?;
            Ok(Reply::Sync(json!({})))
        }
        (Method::POST, ["custom", name, "snapshots", snap]) => {
            let req: Rename = ctx.json().await?;
            let (d, p, po, n, s) = (ctx.daemon.clone(), project.clone(), pool.to_string(), name.to_string(), snap.to_string());
            blocking(move || d.rename_custom_volume(&po, &p, &n, Some(&s), &req.name)).await?;
            let spec = OpSpec::task("Renaming storage volume snapshot", &project, "storage_volume_snapshots", vec![]);
            Ok(Reply::Async(ctx.daemon.ops.completed(spec)))
        }
        (Method::DELETE, ["custom", name, "snapshots", snap]) => {
            let (d, p, po, n, s) = (ctx.daemon.clone(), project.clone(), pool.to_string(), name.to_string(), snap.to_string());
            blocking(move || d.delete_custom_volume(&po, &p, &n, Some(&s))).await?;
            let spec = OpSpec::task("Deleting storage volume snapshot", &project, "storage_volume_snapshots", vec![]);
            Ok(Reply::Async(ctx.daemon.ops.completed(spec)))
        }
        (Method::GET, [kind @ ("container" | "virtual-machine" | "image"), name]) => {
            Ok(Reply::Sync(json!({"name": name, "type": kind, "config": {}, "description": "", "used_by": [], "location": "none",
                                   "content_type": "filesystem", "project": project, "created_at": rfc3339nano(&zero_time())})))
        }
        _ => Err(Error::not_found("not found")),
    }
}
