//! `/1.0/images`: upload (raw or multipart, unified or split), publish, list with filters,
//! get/put/patch/delete by fingerprint prefix, export of the original bytes, and aliases.

use std::io::Write;

use futures_util::StreamExt;
use http_body_util::BodyStream;
use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::projects::blocking;
use super::{etag_of, stream, Ctx, Reply};
use crate::daemon::{images::upload_path, ImageRecord, ImageUpdate, ImageUpload, Model};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::model::{rfc3339nano, zero_time, ConfigMap};
use crate::operations::OpSpec;

#[derive(Deserialize, Default)]
struct ImagePost {
    #[serde(default)]
    public: bool,
    #[serde(default)]
    properties: Option<ConfigMap>,
    #[serde(default)]
    aliases: Option<Vec<AliasEntry>>,
    #[serde(default)]
    source: Option<PostSource>,
}

#[derive(Deserialize)]
struct PostSource {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct AliasEntry {
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct ImagePut {
    #[serde(default)]
    public: Option<bool>,
    #[serde(default)]
    properties: Option<ConfigMap>,
    #[serde(default)]
    auto_update: Option<bool>,
    #[serde(default)]
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    profiles: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct AliasPost {
    name: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct AliasPut {
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// api.Image.
pub fn render_image(m: &Model, project: &str, i: &ImageRecord) -> Value {
    let aliases: Vec<Value> = m.aliases_of(project, &i.fingerprint).iter().map(|a| json!({"name": a.name, "description": a.description})).collect();
    json!({
        "fingerprint": i.fingerprint, "aliases": aliases, "architecture": i.architecture, "public": i.public,
        "properties": i.properties, "type": i.image_type.as_str(), "size": i.size, "filename": i.filename,
        "created_at": rfc3339nano(&i.created_at), "uploaded_at": rfc3339nano(&i.uploaded_at),
        "last_used_at": rfc3339nano(&i.last_used_at), "expires_at": rfc3339nano(&i.expires_at.unwrap_or_else(zero_time)),
        "auto_update": i.auto_update, "cached": false, "profiles": i.profiles, "update_source": null, "project": i.project,
    })
}

fn image_etag(i: &ImageRecord) -> String {
    etag_of(&json!([i.public, i.properties, i.auto_update, i.expires_at, i.profiles]))
}

/// Routes `/1.0/images/...`.
pub async fn route(mut ctx: Ctx, rest: &[&str]) -> Result<Reply> {
    let project = ctx.project().to_string();
    match (ctx.method.clone(), rest) {
        (Method::GET, []) => list(&ctx, &project),
        (Method::POST, []) => create(ctx, project).await,
        (Method::GET, ["aliases"]) => {
            let m = ctx.daemon.model();
            let ip = m.image_project(&project).to_string();
            let out: Vec<Value> = m
                .image_aliases
                .values()
                .filter(|a| a.project == ip)
                .map(|a| if ctx.recursion() > 0 { render_alias(&m, a) } else { json!(format!("/1.0/images/aliases/{}", a.name)) })
                .collect();
            Ok(Reply::Sync(Value::Array(out)))
        }
        (Method::POST, ["aliases"]) => {
            let req: AliasPost = ctx.json().await?;
            ctx.daemon.create_alias(&project, &req.name, &req.target, &req.description)?;
            Ok(Reply::Created(format!("/1.0/images/aliases/{}", req.name)))
        }
        (Method::GET, ["aliases", name]) => {
            let m = ctx.daemon.model();
            let a = m.image_alias(&project, name).ok_or_else(|| Error::not_found("Alias not found"))?;
            Ok(Reply::SyncEtag(render_alias(&m, a), etag_of(&json!([a.target, a.description]))))
        }
        (Method::PUT | Method::PATCH, ["aliases", name]) => {
            let req: AliasPut = ctx.json().await?;
            ctx.daemon.update_alias(&project, name, req.target.as_deref(), req.description.as_deref())?;
            Ok(Reply::Sync(json!({})))
        }
        (Method::POST, ["aliases", name]) => {
            let req: AliasPost = ctx.json().await?;
            ctx.daemon.rename_alias(&project, name, &req.name)?;
            Ok(Reply::Created(format!("/1.0/images/aliases/{}", req.name)))
        }
        (Method::DELETE, ["aliases", name]) => {
            ctx.daemon.delete_alias(&project, name)?;
            Ok(Reply::Sync(json!({})))
        }
        (Method::GET, [fp]) => {
            let m = ctx.daemon.model();
            let i = m.image(&project, fp)?;
            Ok(Reply::SyncEtag(render_image(&m, &project, i), image_etag(i)))
        }
        (Method::PUT | Method::PATCH, [fp]) => {
            let cur = ctx.daemon.model().image(&project, fp)?.clone();
            ctx.check_etag(&image_etag(&cur))?;
            let req: ImagePut = ctx.json().await?;
            let patch = ctx.method == Method::PATCH;
            let props = match (patch, req.properties) {
                (true, Some(p)) => {
                    let mut all = cur.properties.clone();
                    all.extend(p);
                    all
                }
                (true, None) => cur.properties.clone(),
                (false, p) => p.unwrap_or_default(),
            };
            let public = req.public.unwrap_or(if patch { cur.public } else { false });
            let auto = req.auto_update.unwrap_or(if patch { cur.auto_update } else { false });
            let expires = req.expires_at.filter(|e| *e > zero_time()).or(if patch { cur.expires_at } else { None });
            let upd = ImageUpdate { public, properties: props, auto_update: auto, expires_at: expires, profiles: req.profiles };
            ctx.daemon.update_image(&project, &cur.fingerprint, upd)?;
            Ok(Reply::Sync(json!({})))
        }
        (Method::DELETE, [fp]) => {
            let (d, p, f) = (ctx.daemon.clone(), project.clone(), fp.to_string());
            let full = ctx.daemon.model().image(&project, fp)?.fingerprint.clone();
            blocking(move || d.delete_image(&p, &f)).await?;
            let spec = OpSpec::task("Deleting image", &project, "images", vec![format!("/1.0/images/{full}")]);
            Ok(Reply::Async(ctx.daemon.ops.completed(spec)))
        }
        (Method::GET, [fp, "export"]) => export(&ctx, &project, fp),
        (_, ["aliases"] | ["aliases", _] | [_] | [_, "export"]) => Err(Error::NotImplemented),
        _ => Err(Error::not_found("not found")),
    }
}

fn render_alias(m: &Model, a: &crate::daemon::AliasRecord) -> Value {
    let kind = m.image(&a.project, &a.target).map(|i| i.image_type.as_str()).unwrap_or("container");
    json!({"name": a.name, "target": a.target, "description": a.description, "type": kind})
}

fn list(ctx: &Ctx, project: &str) -> Result<Reply> {
    let filter = match ctx.query.get("filter").filter(|f| !f.trim().is_empty()) {
        Some(f) => Some(Filter::parse(f)?),
        None => None,
    };
    let m = ctx.daemon.model();
    let ip = m.image_project(project).to_string();
    let mut out = Vec::new();
    for i in m.images.values().filter(|i| i.project == ip) {
        let r = render_image(&m, project, i);
        if filter.as_ref().is_some_and(|f| !f.matches(&r)) {
            continue;
        }
        out.push(if ctx.recursion() > 0 { r } else { json!(format!("/1.0/images/{}", i.fingerprint)) });
    }
    Ok(Reply::Sync(Value::Array(out)))
}

fn header_props(ctx: &Ctx) -> ConfigMap {
    let Some(raw) = ctx.header("x-lxd-properties") else { return ConfigMap::new() };
    url::form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

async fn create(mut ctx: Ctx, project: String) -> Result<Reply> {
    let ctype = ctx.header("content-type").unwrap_or("").to_string();
    if ctype.starts_with("application/json") {
        let req: ImagePost = ctx.json().await?;
        return publish(ctx, project, req).await;
    }
    let dir = ctx.daemon.images_dir();
    tokio::fs::create_dir_all(&dir).await.map_err(|e| Error::internal(format!("creating {}: {e}", dir.display())))?;
    let mut hasher = Sha256::new();
    let meta_tmp = upload_path(&dir, "");
    let mut rootfs_tmp = None;
    let mut vm_disk = false;
    let body = ctx.take_body()?;
    let written = if let Ok(boundary) = multer::parse_boundary(&ctype) {
        let stream = BodyStream::new(body).filter_map(|f| async move {
            match f {
                Ok(frame) => frame.into_data().ok().map(Ok::<_, hyper::Error>),
                Err(e) => Some(Err(e)),
            }
        });
        let mut mp = multer::Multipart::new(stream, boundary);
        let mut n = 0u64;
        let mut got_meta = false;
        let res: Result<()> = async {
            while let Some(mut field) = mp.next_field().await.map_err(|e| Error::bad(format!("Invalid multipart body: {e}")))? {
                let name = field.name().unwrap_or_default().to_string();
                let path = match name.as_str() {
                    "metadata" if !got_meta => meta_tmp.clone(),
                    "rootfs" | "rootfs.img" if got_meta && rootfs_tmp.is_none() => {
                        vm_disk = name == "rootfs.img";
                        let p = upload_path(&dir, ".rootfs");
                        rootfs_tmp = Some(p.clone());
                        p
                    }
                    other => return Err(Error::bad(format!("Unexpected multipart part \"{other}\""))),
                };
                got_meta = true;
                let mut f = tokio::fs::File::create(&path).await.map_err(|e| Error::internal(e.to_string()))?;
                while let Some(chunk) = field.chunk().await.map_err(|e| Error::bad(format!("Invalid multipart body: {e}")))? {
                    hasher.update(&chunk);
                    n += chunk.len() as u64;
                    tokio::io::AsyncWriteExt::write_all(&mut f, &chunk).await.map_err(|e| Error::internal(e.to_string()))?;
                }
                tokio::io::AsyncWriteExt::flush(&mut f).await.map_err(|e| Error::internal(e.to_string()))?;
            }
            if rootfs_tmp.is_none() {
                return Err(Error::bad("Multipart upload without a rootfs part"));
            }
            Ok(())
        }
        .await;
        res.map(|_| n)
    } else {
        stream::body_to_file(body, &meta_tmp, &mut hasher).await
    };
    let size = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&meta_tmp);
            if let Some(r) = &rootfs_tmp {
                let _ = std::fs::remove_file(r);
            }
            return Err(e);
        }
    };
    let up = ImageUpload {
        meta_tmp,
        rootfs_tmp,
        fingerprint: hex::encode(hasher.finalize()),
        size,
        expected: ctx.header("x-lxd-fingerprint").map(str::to_string),
        filename: ctx.header("x-lxd-filename").unwrap_or_default().to_string(),
        public: ctx.header("x-lxd-public").is_some_and(crate::config::is_true),
        properties: header_props(&ctx),
        profiles: ctx.header("x-lxd-profiles").map(|p| url::form_urlencoded::parse(p.as_bytes()).map(|(_, v)| v.into_owned()).collect()),
        aliases: Vec::new(),
        vm_disk,
    };
    let d = ctx.daemon.clone();
    let spec = OpSpec::task("Downloading image", &project, "images", vec![]);
    let op = ctx.daemon.ops.start(spec, move |op| async move {
        let op2 = op.clone();
        let rec = blocking(move || {
            let progress = |stage: &str| op2.merge_metadata(json!({"progress": {"stage": stage}, "create_image_from_container_pack_progress": stage}));
            d.import_image(&project, up, &progress)
        })
        .await?;
        op.set_metadata(json!({"fingerprint": rec.fingerprint, "size": rec.size}));
        Ok(())
    });
    Ok(Reply::Async(op))
}

async fn publish(ctx: Ctx, project: String, req: ImagePost) -> Result<Reply> {
    let src = req.source.ok_or_else(|| Error::bad("Missing image source"))?;
    let (instance, snapshot) = match src.kind.as_str() {
        "instance" | "container" | "virtual-machine" => (src.name.clone(), None),
        "snapshot" => {
            let (i, s) = src.name.split_once('/').ok_or_else(|| Error::bad("Snapshot source must be INSTANCE/SNAPSHOT"))?;
            (i.to_string(), Some(s.to_string()))
        }
        "url" | "image" => return Err(Error::Unsupported(format!("Image source \"{}\" needs network access and is not supported", src.kind))),
        other => return Err(Error::bad(format!("Unknown image source type \"{other}\""))),
    };
    ctx.daemon.model().instance(&project, &instance).ok_or_else(|| Error::not_found("Instance not found"))?;
    let d = ctx.daemon.clone();
    let aliases: Vec<(String, String)> = req.aliases.unwrap_or_default().into_iter().map(|a| (a.name, a.description)).collect();
    let spec = OpSpec::task("Creating image", &project, "images", vec![]);
    let op = ctx.daemon.ops.start(spec, move |op| async move {
        let rec = blocking(move || d.publish_image(&project, &instance, snapshot.as_deref(), req.public, req.properties.unwrap_or_default(), aliases)).await?;
        op.set_metadata(json!({"fingerprint": rec.fingerprint, "size": rec.size}));
        Ok(())
    });
    Ok(Reply::Async(op))
}

fn export(ctx: &Ctx, project: &str, fp: &str) -> Result<Reply> {
    let (rec, files) = ctx.daemon.image_files(project, fp)?;
    let (mut w, body) = stream::channel_writer();
    let mut resp = hyper::Response::new(body);
    let headers = resp.headers_mut();
    let boundary = format!("berth-{}", &rec.fingerprint[..16]);
    let split = files.rootfs.is_some();
    let ctype = if split { format!("multipart/form-data; boundary={boundary}") } else { "application/octet-stream".into() };
    let filename = if rec.filename.is_empty() { format!("{}.tar.gz", rec.fingerprint) } else { rec.filename.clone() };
    if let Ok(v) = hyper::header::HeaderValue::from_str(&ctype) {
        headers.insert(hyper::header::CONTENT_TYPE, v);
    }
    if !split {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("attachment; filename={filename}")) {
            headers.insert(hyper::header::CONTENT_DISPOSITION, v);
        }
        if let Ok(md) = std::fs::metadata(&files.meta) {
            headers.insert(hyper::header::CONTENT_LENGTH, md.len().into());
        }
    }
    let fp = rec.fingerprint.clone();
    // LXD names a VM image's disk part `rootfs.img`; the lxc client keeps the file name.
    let (rootfs_part, rootfs_file) = match rec.image_type {
        crate::image::ImageType::VirtualMachine => ("rootfs.img", format!("{fp}.qcow2")),
        crate::image::ImageType::Container => ("rootfs", format!("{fp}.squashfs")),
    };
    tokio::task::spawn_blocking(move || {
        let res = (|| -> std::io::Result<()> {
            if let Some(rootfs) = &files.rootfs {
                write!(w, "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"{fp}.tar.xz\"\r\nContent-Type: application/octet-stream\r\n\r\n")?;
                std::io::copy(&mut std::fs::File::open(&files.meta)?, &mut w)?;
                write!(w, "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{rootfs_part}\"; filename=\"{rootfs_file}\"\r\nContent-Type: application/octet-stream\r\n\r\n")?;
                std::io::copy(&mut std::fs::File::open(rootfs)?, &mut w)?;
                write!(w, "\r\n--{boundary}--\r\n")?;
            } else {
                crate::image::export_files(&files, &fp, &mut w, None).map_err(|e| std::io::Error::other(e.to_string()))?;
            }
            w.flush()
        })();
        if let Err(e) = res {
            tracing::error!(image = %fp, error = %e, "image export");
            w.fail(e);
        }
    });
    Ok(Reply::Raw(resp))
}
