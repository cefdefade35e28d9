//! `/1.0/storage-pools`: list, create, get, put, patch, delete, resources; and the driver
//! registry as `GET /1.0` reports it.

use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::projects::blocking;
use super::{etag_of, Ctx, Reply};
use crate::daemon::{LoadedPool, PoolRecord};
use crate::error::{Error, Result};
use crate::model::ConfigMap;
use crate::storage::drivers;

/// `environment.storage_supported_drivers`: operational drivers only, as LXD lists them.
pub fn supported_drivers() -> Value {
    let list: Vec<Value> = drivers::statuses()
        .into_iter()
        .filter_map(|(name, st)| match st {
            drivers::DriverStatus::Operational { version } => Some(json!({"Name": name, "Version": version, "Remote": false})),
            drivers::DriverStatus::NotOperational { .. } => None,
        })
        .collect();
    Value::Array(list)
}

#[derive(Deserialize)]
struct PoolPost {
    name: String,
    driver: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: ConfigMap,
}

#[derive(Deserialize)]
struct PoolPut {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    config: Option<ConfigMap>,
}

fn render(ctx: &Ctx, rec: &PoolRecord, lp: &LoadedPool) -> Value {
    let mut used_by = ctx.daemon.model().pool_used_by(&rec.name);
    // An image uses the pool only once it is unpacked there.
    used_by.retain(|u| match (u.strip_prefix("/1.0/images/"), lp) {
        (Some(fp), LoadedPool::Ready(d)) => d.volume_exists(&crate::storage::Volume::new(crate::storage::VolumeType::Image, fp)),
        (Some(_), LoadedPool::Unavailable(_)) => false,
        (None, _) => true,
    });
    json!({
        "name": rec.name,
        "driver": rec.driver,
        "description": rec.description,
        "config": rec.config,
        "used_by": used_by,
        "status": match lp { LoadedPool::Ready(_) => "Created", LoadedPool::Unavailable(_) => "Unavailable" },
        "locations": ["none"],
    })
}

fn pool_etag(rec: &PoolRecord) -> String {
    etag_of(&json!([rec.description, rec.config]))
}

fn find(ctx: &Ctx, name: &str) -> Result<(PoolRecord, LoadedPool)> {
    ctx.daemon.pools().into_iter().find(|(r, _)| r.name == name).ok_or_else(|| Error::not_found("Storage pool not found"))
}

/// Routes `/1.0/storage-pools/...` (volumes are routed separately).
pub async fn route(mut ctx: Ctx, rest: &[&str]) -> Result<Reply> {
    match (ctx.method.clone(), rest) {
        (Method::GET, []) => {
            let pools = ctx.daemon.pools();
            let out: Vec<Value> = if ctx.recursion() > 0 {
                pools.iter().map(|(r, lp)| render(&ctx, r, lp)).collect()
            } else {
                pools.iter().map(|(r, _)| json!(format!("/1.0/storage-pools/{}", r.name))).collect()
            };
            Ok(Reply::Sync(Value::Array(out)))
        }
        (Method::POST, []) => {
            let req: PoolPost = ctx.json().await?;
            let d = ctx.daemon.clone();
            let name = req.name.clone();
            blocking(move || d.create_pool(&req.name, &req.driver, &req.description, req.config)).await?;
            Ok(Reply::Created(format!("/1.0/storage-pools/{name}")))
        }
        (Method::GET, [name]) => {
            let (rec, lp) = find(&ctx, name)?;
            Ok(Reply::SyncEtag(render(&ctx, &rec, &lp), pool_etag(&rec)))
        }
        (Method::PUT | Method::PATCH, [name]) => {
            let (rec, _) = find(&ctx, name)?;
            ctx.check_etag(&pool_etag(&rec))?;
            let req: PoolPut = ctx.json().await?;
            let (description, config) = if ctx.method == Method::PATCH {
                let mut c = rec.config.clone();
                c.extend(req.config.unwrap_or_default());
                (req.description.unwrap_or(rec.description.clone()), c)
            } else {
                (req.description.unwrap_or_default(), req.config.unwrap_or_default())
            };
            let d = ctx.daemon.clone();
            let n = name.to_string();
            blocking(move || d.update_pool(&n, description, config)).await?;
            Ok(Reply::Sync(json!({})))
        }
        (Method::DELETE, [name]) => {
            let d = ctx.daemon.clone();
            let n = name.to_string();
            blocking(move || d.delete_pool(&n)).await?;
            Ok(Reply::Sync(json!({})))
        }
        (Method::GET, [name, "resources"]) => {
            let d = ctx.daemon.pool_driver(name)?;
            let u = blocking(move || d.usage().map_err(Error::from)).await?;
            Ok(Reply::Sync(json!({
                "space": {"used": u.space_used, "total": u.space_total},
                "inodes": {"used": u.inodes_used, "total": u.inodes_total},
            })))
        }
        (_, [] | [_] | [_, "resources"]) => Err(Error::NotImplemented),
        _ => Err(Error::not_found("not found")),
    }
}
