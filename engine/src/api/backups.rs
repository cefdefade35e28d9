//! `/1.0/instances/N/backups`: create, list, get, rename, delete, and export streamed
//! straight from the volume into the response (no temporary tarball).

use chrono::{DateTime, Utc};
use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::projects::blocking;
use super::{stream, Ctx, Reply};
use crate::daemon::BackupRecord;
use crate::error::{Error, Result};
use crate::model::{rfc3339nano, zero_time};
use crate::operations::OpSpec;

/// The body of a backup create, for instances and custom volumes alike.
#[derive(Deserialize, Default)]
pub(super) struct BackupPost {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub instance_only: bool,
    #[serde(default)]
    pub container_only: bool,
    #[serde(default)]
    pub volume_only: bool,
    #[serde(default)]
    pub optimized_storage: bool,
    #[serde(default)]
    pub compression_algorithm: Option<String>,
}

impl BackupPost {
    /// Reads the body (empty = defaults) and resolves the compression: the request's, else
    /// `backups.compression_algorithm`, else gzip.
    pub(super) async fn read(ctx: &mut Ctx) -> Result<(BackupPost, String)> {
        let body = ctx.body(super::MAX_JSON_BODY).await?;
        let req: BackupPost = if body.is_empty() { BackupPost::default() } else { super::decode_json(&body)? };
        let compression = match req.compression_algorithm.clone().filter(|c| !c.is_empty()) {
            Some(c) => c,
            None => ctx.daemon.model().server.get("backups.compression_algorithm").cloned().unwrap_or_else(|| "gzip".into()),
        };
        Ok((req, compression))
    }
}

#[derive(Deserialize)]
struct BackupRename {
    name: String,
}

fn render(b: &BackupRecord) -> Value {
    json!({
        "name": b.name, "created_at": rfc3339nano(&b.created_at),
        "expires_at": rfc3339nano(&b.expires_at.unwrap_or_else(zero_time)),
        "instance_only": b.instance_only, "container_only": b.instance_only,
        "optimized_storage": b.optimized_storage,
    })
}

fn url(project: &str, instance: &str, name: &str) -> String {
    crate::daemon::with_project(format!("/1.0/instances/{instance}/backups/{name}"), project)
}

/// Routes `/1.0/instances/N/backups/...`.
pub async fn route(mut ctx: Ctx, instance: &str, rest: &[&str]) -> Result<Reply> {
    let project = ctx.project().to_string();
    if ctx.daemon.model().instance(&project, instance).is_none() {
        return Err(Error::not_found("Instance not found"));
    }
    let ops = ctx.daemon.ops.clone();
    match (ctx.method.clone(), rest) {
        (Method::GET, []) => {
            let m = ctx.daemon.model();
            let out: Vec<Value> = m
                .backups_of(&project, instance)
                .into_iter()
                .map(|b| if ctx.recursion() > 0 { render(b) } else { json!(url(&project, instance, &b.name)) })
                .collect();
            Ok(Reply::Sync(Value::Array(out)))
        }
        (Method::POST, []) => {
            let (req, compression) = BackupPost::read(&mut ctx).await?;
            let rec = BackupRecord {
                name: req.name.unwrap_or_default(),
                instance: instance.to_string(),
                project: project.clone(),
                created_at: Utc::now(),
                expires_at: req.expires_at.filter(|t| *t > zero_time()),
                instance_only: req.instance_only || req.container_only,
                optimized_storage: req.optimized_storage,
                compression,
                captured: None,
            };
            let (d, p, i) = (ctx.daemon.clone(), project.clone(), instance.to_string());
            let name = blocking(move || d.create_backup(&p, &i, rec)).await?;
            let mut spec = OpSpec::task("Backing up instance", &project, "instances", vec![crate::daemon::Model::instance_url(&project, instance)]);
            spec.resources.insert("backups".into(), vec![format!("/1.0/backups/{name}")]);
            Ok(Reply::Async(ops.completed(spec)))
        }
        (Method::GET, [name]) => {
            let m = ctx.daemon.model();
            let b = m.backup(&project, instance, name).ok_or_else(|| Error::not_found("Backup not found"))?;
            Ok(Reply::Sync(render(b)))
        }
        (Method::POST, [name]) => {
            let req: BackupRename = ctx.json().await?;
            let (d, p, i, n) = (ctx.daemon.clone(), project.clone(), instance.to_string(), name.to_string());
            let new = req.name.clone();
            blocking(move || d.rename_backup(&p, &i, &n, &new)).await?;
            let spec = OpSpec::task("Renaming backup", &project, "backups", vec![format!("/1.0/backups/{}", req.name)]);
            Ok(Reply::Async(ops.completed(spec)))
        }
        (Method::DELETE, [name]) => {
            let (d, p, i, n) = (ctx.daemon.clone(), project.clone(), instance.to_string(), name.to_string());
            blocking(move || d.delete_backup(&p, &i, &n)).await?;
            let spec = OpSpec::task("Deleting backup", &project, "backups", vec![format!("/1.0/backups/{name}")]);
            Ok(Reply::Async(ops.completed(spec)))
        }
        (Method::GET, [name, "export"]) => {
            if ctx.daemon.model().backup(&project, instance, name).is_none() {
                return Err(Error::not_found("Backup not found"));
            }
            let (mut w, body) = stream::channel_writer();
            let (d, p, i, n) = (ctx.daemon.clone(), project.clone(), instance.to_string(), name.to_string());
            tokio::task::spawn_blocking(move || {
                let res = d.export_backup(&p, &i, &n, &mut w).and_then(|_| std::io::Write::flush(&mut w).map_err(|e| Error::internal(e.to_string())));
                if let Err(e) = res {
                    tracing::error!(instance = %i, backup = %n, error = %e, "backup export");
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

/// `POST /1.0/instances` with a backup tarball body: streams it into the import.
pub async fn import(mut ctx: Ctx) -> Result<Reply> {
    let project = ctx.project().to_string();
    let pool = ctx.header("x-lxd-pool").map(str::to_string);
    let name = ctx.header("x-lxd-name").map(str::to_string).filter(|n| !n.is_empty());
    let body = ctx.take_body()?;
    let (tx, mut reader) = stream::channel_reader();
    let (d, p) = (ctx.daemon.clone(), project.clone());
    let job = tokio::task::spawn_blocking(move || {
        let res = d.import_backup(&p, pool.as_deref(), name.as_deref(), &mut reader);
        // Drain what the importer did not read so the client sees our answer.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        res
    });
    stream::feed(body, tx).await;
    let new = job.await.map_err(|e| Error::internal(format!("import task failed: {e}")))??;
    let spec = OpSpec::task("Restoring backup", &project, "instances", vec![crate::daemon::Model::instance_url(&project, &new)]);
    Ok(Reply::Async(ctx.daemon.ops.completed(spec)))
}
