//! `/1.0/storage-pools/P/volumes/custom/V/backups`: create (frozen at once), list, get,
//! delete and export streamed from the frozen copy; and `POST .../volumes/custom` with a
//! tarball body (`lxc storage volume import`). API extension `custom_volume_backup`.

use chrono::Utc;
use hyper::Method;
use serde_json::{json, Value};

use super::backups::BackupPost;
use super::projects::blocking;
use super::{stream, Ctx, Reply};
use crate::daemon::VolumeBackupRecord;
use crate::error::{Error, Result};
use crate::model::{rfc3339nano, zero_time};
use crate::operations::OpSpec;

fn url(pool: &str, project: &str, volume: &str, name: &str) -> String {
    crate::daemon::with_project(format!("/1.0/storage-pools/{pool}/volumes/custom/{volume}/backups/{name}"), project)
}

fn render(b: &VolumeBackupRecord) -> Value {
    json!({
        "name": b.name, "created_at": rfc3339nano(&b.created_at),
        "expires_at": rfc3339nano(&b.expires_at.unwrap_or_else(zero_time)),
        "volume_only": b.volume_only, "optimized_storage": b.optimized_storage,
    })
}

/// Routes `.../volumes/custom/V/backups/...`.
pub async fn route(mut ctx: Ctx, pool: &str, volume: &str, rest: &[&str]) -> Result<Reply> {
    let project = ctx.project().to_string();
    if !ctx.daemon.model().volumes.contains_key(&crate::daemon::volume_key(pool, &project, volume, None)) {
        return Err(Error::not_found("Storage volume not found"));
    }
    let ops = ctx.daemon.ops.clone();
    let (d, p, pl, v) = (ctx.daemon.clone(), project.clone(), pool.to_string(), volume.to_string());
    match (ctx.method.clone(), rest) {
        (Method::GET, []) => {
            let m = ctx.daemon.model();
            let out: Vec<Value> = m
                .volume_backups_of(pool, &project, volume)
                .into_iter()
                .map(|b| if ctx.recursion() > 0 { render(b) } else { json!(url(pool, &project, volume, &b.name)) })
                .collect();
            Ok(Reply::Sync(Value::Array(out)))
        }
        (Method::POST, []) => {
            let (req, compression) = BackupPost::read(&mut ctx).await?;
            let rec = VolumeBackupRecord {
                name: req.name.unwrap_or_default(),
                pool: pool.to_string(),
                project: project.clone(),
                volume: volume.to_string(),
                created_at: Utc::now(),
                expires_at: req.expires_at.filter(|t| *t > zero_time()),
                volume_only: req.volume_only,
                optimized_storage: req.optimized_storage,
                compression,
                frozen: String::new(),
                records: Vec::new(),
            };
            let name = blocking(move || d.create_volume_backup(rec)).await?;
            let mut spec = OpSpec::task("Backing up storage volume", &project, "storage_volumes", vec![format!("/1.0/storage-pools/{pool}/volumes/custom/{volume}")]);
            // lxc 5.0.2 takes the name as what follows "/1.0/backups/" (as for instances).
            spec.resources.insert("backups".into(), vec![format!("/1.0/backups/{name}")]);
            Ok(Reply::Async(ops.completed(spec)))
        }
        (Method::GET, [name]) => {
            let m = ctx.daemon.model();
            let b = m.volume_backup(pool, &project, volume, name).ok_or_else(|| Error::not_found("Backup not found"))?;
            Ok(Reply::Sync(render(b)))
        }
        (Method::DELETE, [name]) => {
            let n = name.to_string();
            blocking(move || d.delete_volume_backup(&pl, &p, &v, &n)).await?;
            let spec = OpSpec::task("Deleting storage volume backup", &project, "backups", vec![url(pool, &project, volume, name)]);
            Ok(Reply::Async(ops.completed(spec)))
        }
        (Method::GET, [name, "export"]) => {
            if ctx.daemon.model().volume_backup(pool, &project, volume, name).is_none() {
                return Err(Error::not_found("Backup not found"));
            }
            let (mut w, body) = stream::channel_writer();
            let n = name.to_string();
            tokio::task::spawn_blocking(move || {
                let res = d.export_volume_backup(&pl, &p, &v, &n, &mut w).and_then(|_| std::io::Write::flush(&mut w).map_err(|e| Error::internal(e.to_string())));
                if let Err(e) = res {
                    tracing::error!(volume = %v, backup = %n, error = %e, "volume backup export");
                    w.fail(std::io::Error::other(e.to_string()));
                }
            });
            let mut resp = hyper::Response::new(body);
            resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/octet-stream"));
            Ok(Reply::Raw(resp))
        }
        (_, [] | [_] | [_, "export"]) => Err(Error::NotImplemented),
        _ => Err(Error::not_found("not found")),
    }
}

/// `POST /1.0/storage-pools/P/volumes/custom` with a backup tarball body.
pub async fn import(mut ctx: Ctx, pool: &str) -> Result<Reply> {
    let project = ctx.project().to_string();
    let name = ctx.header("x-lxd-name").map(str::to_string).filter(|n| !n.is_empty());
    let body = ctx.take_body()?;
    let (tx, mut reader) = stream::channel_reader();
    let (d, p, pl) = (ctx.daemon.clone(), project.clone(), pool.to_string());
    let job = tokio::task::spawn_blocking(move || {
        let res = d.import_volume_backup(&pl, &p, name.as_deref(), &mut reader);
        // Drain what the importer did not read so the client sees our answer.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        res
    });
    stream::feed(body, tx).await;
    let new = job.await.map_err(|e| Error::internal(format!("import task failed: {e}")))??;
    let spec = OpSpec::task("Importing storage volume", &project, "storage_volumes", vec![format!("/1.0/storage-pools/{pool}/volumes/custom/{new}")]);
    Ok(Reply::Async(ctx.daemon.ops.completed(spec)))
}
