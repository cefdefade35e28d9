//! `/1.0/instances/N/files?path=`: pull (GET/HEAD), push (POST: file, directory,
//! symlink; overwrite or append) and delete, on running and stopped instances. Paths are
//! resolved inside the instance's root by the driver; ids are container ids.

use hyper::{header, Method, Response};
use serde_json::json;

use super::projects::blocking;
use super::{response, Ctx, Reply};
use crate::daemon::instance_error;
use crate::error::{Error, Result};
use crate::instance::{FileStat, FileType};

/// Largest file accepted by a push.
const MAX_FILE: usize = 1 << 30;

fn kind_name(k: FileType) -> &'static str {
    match k {
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        _ => "file",
    }
}

fn with_headers(mut r: Response<response::Body>, st: &FileStat) -> Response<response::Body> {
    let h = r.headers_mut();
    for (k, v) in [
        ("x-lxd-uid", st.uid.to_string()),
        ("x-lxd-gid", st.gid.to_string()),
        ("x-lxd-mode", format!("{:04o}", st.mode & 0o7777)),
        ("x-lxd-type", kind_name(st.kind).to_string()),
    ] {
        if let Ok(v) = header::HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    r
}

/// Parses `X-LXD-mode` (base auto-detected like Go's ParseInt(s, 0, 0)).
fn parse_mode(s: &str) -> Result<u32> {
    let s = s.trim();
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16)
    } else if let Some(o) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0")).filter(|o| !o.is_empty()) {
        u32::from_str_radix(o, 8)
    } else {
        s.parse()
    };
    r.map(|m| m & 0o7777).map_err(|_| Error::bad(format!("Invalid mode \"{s}\"")))
}

fn parse_id(ctx: &Ctx, name: &str) -> Result<Option<u32>> {
    match ctx.header(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => {
            let n: i64 = v.parse().map_err(|_| Error::bad(format!("Invalid {name} \"{v}\"")))?;
            Ok(u32::try_from(n).ok())
        }
    }
}

/// Routes `/1.0/instances/N/files`.
pub async fn route(mut ctx: Ctx, name: &str) -> Result<Reply> {
    let project = ctx.project().to_string();
    let mut path = ctx.query.get("path").cloned().filter(|p| !p.is_empty()).ok_or_else(|| Error::bad("Missing path argument"))?;
    // `lxc file pull c1/etc/x` sends `etc/x`: paths are relative to the instance root.
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let d = ctx.daemon.clone();
    let (p, n) = (project.clone(), name.to_string());
    let inst = blocking(move || d.instance_runtime(&p, &n)).await?;
    match ctx.method.clone() {
        m @ (Method::GET | Method::HEAD) => {
            let head = m == Method::HEAD;
            let (st, body) = blocking(move || {
                let f = inst.files().map_err(instance_error)?;
                let st = f.stat(&path).map_err(instance_error)?.ok_or_else(|| Error::not_found("Path not found"))?;
                let body = match (head, st.kind) {
                    (true, _) => Vec::new(),
                    (false, FileType::Directory) => {
                        let names = f.list(&path).map_err(instance_error)?;
                        serde_json::to_vec(&json!({
                            "type": "sync", "status": "Success", "status_code": 200, "operation": "",
                            "error_code": 0, "error": "", "metadata": names,
                        }))
                        .unwrap_or_default()
                    }
                    (false, FileType::Symlink) => st.target.clone().unwrap_or_default().into_bytes(),
                    (false, _) => f.read(&path).map_err(instance_error)?,
                };
                Ok((st, body))
            })
            .await?;
            let ct = if st.kind == FileType::Directory { "application/json" } else { "application/octet-stream" };
            Ok(Reply::Raw(with_headers(super::raw(200, ct, body), &st)))
        }
        Method::POST => {
            let uid = parse_id(&ctx, "x-lxd-uid")?.unwrap_or(0);
            let gid = parse_id(&ctx, "x-lxd-gid")?.unwrap_or(0);
            let mode = ctx.header("x-lxd-mode").filter(|m| !m.trim().is_empty()).map(parse_mode).transpose()?;
            let kind = ctx.header("x-lxd-type").unwrap_or("file").to_string();
            let append = match ctx.header("x-lxd-write").unwrap_or("overwrite") {
                "" | "overwrite" => false,
                "append" => true,
                _ => return Err(Error::bad("Bad file write mode")),
            };
            let body = ctx.body(MAX_FILE).await?;
            let (d, p, n) = (ctx.daemon.clone(), project.clone(), name.to_string());
            blocking(move || {
                d.materialize_backups(&p, &n)?;
                let f = inst.files().map_err(instance_error)?;
                match kind.as_str() {
                    "" | "file" => f.write(&path, uid, gid, mode.unwrap_or(0o644), &body, append),
                    "directory" => f.mkdir(&path, uid, gid, mode.unwrap_or(0o750)),
                    "symlink" => f.symlink(&path, &String::from_utf8_lossy(&body), uid, gid),
                    other => return Err(Error::bad(format!("Bad file type \"{other}\""))),
                }
                .map_err(instance_error)
            })
            .await?;
            Ok(Reply::Sync(json!({})))
        }
        Method::DELETE => {
            let (d, p, n) = (ctx.daemon.clone(), project.clone(), name.to_string());
            blocking(move || {
                d.materialize_backups(&p, &n)?;
                inst.files().and_then(|f| f.delete(&path)).map_err(instance_error)
            })
            .await?;
            Ok(Reply::Sync(json!({})))
        }
        _ => Err(Error::NotImplemented),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_like_go() {
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("420").unwrap(), 0o644);
        assert_eq!(parse_mode("0x1a4").unwrap(), 0o644);
        assert_eq!(parse_mode("0").unwrap(), 0);
        assert!(parse_mode("zz").is_err());
    }
}
