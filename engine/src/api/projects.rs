//! `/1.0/projects`.

use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{etag_of, Ctx, Reply};
use crate::error::{Error, Result};
use crate::model::ConfigMap;
use crate::operations::OpSpec;

#[derive(Deserialize)]
struct ProjectPost {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    config: Option<ConfigMap>,
}

#[derive(Deserialize)]
struct ProjectPut {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    config: Option<ConfigMap>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectRename {
    name: String,
}

fn etag(p: &Value) -> String {
    etag_of(&json!([p["description"], p["config"]]))
}

/// Routes `/1.0/projects/...`.
pub async fn route(mut ctx: Ctx, rest: &[&str]) -> Result<Reply> {
    let d = ctx.daemon.clone();
    match (ctx.method.clone(), rest) {
        (Method::GET, []) => {
            let m = d.model();
            let v: Vec<Value> = if ctx.recursion() > 0 {
                m.projects.values().map(|p| m.render_project(p)).collect()
            } else {
                m.projects.keys().map(|n| json!(format!("/1.0/projects/{n}"))).collect()
            };
            Ok(Reply::Sync(Value::Array(v)))
        }
        (Method::POST, []) => {
            let req: ProjectPost = ctx.json().await?;
            let name = req.name.clone();
            let (desc, config) = (req.description.unwrap_or_default(), req.config.unwrap_or_default());
            blocking(move || d.create_project(&req.name, &desc, config)).await?;
            Ok(Reply::Created(format!("/1.0/projects/{name}")))
        }
        (Method::GET, [name]) => {
            let m = d.model();
            let p = m.projects.get(*name).ok_or_else(|| Error::not_found(format!("Project \"{name}\" not found")))?;
            let v = m.render_project(p);
            let tag = etag(&v);
            Ok(Reply::SyncEtag(v, tag))
        }
        (Method::PUT | Method::PATCH, [name]) => {
            let current = {
                let m = d.model();
                let p = m.projects.get(*name).ok_or_else(|| Error::not_found(format!("Project \"{name}\" not found")))?;
                p.clone()
            };
            ctx.check_etag(&etag(&json!({"description": current.description, "config": current.config})))?;
            let req: ProjectPut = ctx.json().await?;
            let (mut desc, mut config) = (req.description.unwrap_or_default(), req.config.unwrap_or_default());
            if ctx.method == Method::PATCH {
                let mut merged = current.config.clone();
                merged.extend(config);
                config = merged;
                if desc.is_empty() {
                    desc = current.description.clone();
                }
            }
            let name = name.to_string();
            blocking(move || d.update_project(&name, &desc, config)).await?;
            Ok(Reply::Sync(json!({})))
        }
        (Method::POST, [name]) => {
            let req: ProjectRename = ctx.json().await?;
            let old = name.to_string();
            // Validate up front so a client mistake is a 4xx, not a failed operation.
            d.require_project(&old)?;
            // Renamed before replying: clients (pylxd) read the new name without waiting.
            let new = req.name.clone();
            let (d2, o2) = (d.clone(), old.clone());
            blocking(move || d2.rename_project(&o2, &new)).await?;
            let spec = OpSpec::task("Renaming project", &req.name, "projects", vec![format!("/1.0/projects/{}", req.name)]);
            Ok(Reply::Async(d.ops.completed(spec)))
        }
        (Method::DELETE, [name]) => {
            let name = name.to_string();
            blocking(move || d.delete_project(&name)).await?;
            Ok(Reply::Sync(json!({})))
        }
        (Method::GET, [name, "state"]) => {
            d.require_project(name)?;
            let m = d.model();
            let count = m.instances.values().filter(|i| i.project == *name).count();
            Ok(Reply::Sync(json!({"resources": {
                "instances": {"limit": -1, "usage": count},
                "containers": {"limit": -1, "usage": m.instances.values().filter(|i| i.project == *name && i.instance_type == crate::config::InstanceType::Container).count()},
                "virtual-machines": {"limit": -1, "usage": m.instances.values().filter(|i| i.project == *name && i.instance_type == crate::config::InstanceType::VirtualMachine).count()},
            }})))
        }
        (_, [] | [_]) => Err(Error::NotImplemented),
        _ => Err(Error::not_found("not found")),
    }
}

/// Runs a daemon mutation (which may fsync) off the reactor.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal(format!("task failed: {e}")))?
}
