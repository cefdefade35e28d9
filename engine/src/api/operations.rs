//! `/1.0/operations`: list (a map by status), get, wait, cancel.

use std::time::Duration;

use hyper::Method;
use serde_json::{json, Value};

use super::{Ctx, Reply};
use crate::error::{Error, Result};

/// Routes `/1.0/operations/...`.
pub async fn route(ctx: Ctx, rest: &[&str]) -> Result<Reply> {
    match (&ctx.method, rest) {
        (&Method::GET, []) => list(&ctx),
        (&Method::GET, [id]) => {
            let op = find(&ctx, id)?;
            Ok(Reply::Sync(op.render()))
        }
        (&Method::DELETE, [id]) => {
            let op = find(&ctx, id)?;
            op.cancel()?;
            Ok(Reply::Sync(json!({})))
        }
        (&Method::GET, [id, "websocket"]) => super::websocket::connect(ctx, id).await,
        (&Method::GET, [id, "wait"]) => {
            let op = find(&ctx, id)?;
            let timeout = match ctx.query.get("timeout") {
                None => None,
                Some(t) => {
                    let n: i64 = t.parse().map_err(|_| Error::bad(format!("Invalid timeout \"{t}\"")))?;
                    u64::try_from(n).ok().map(Duration::from_secs)
                }
            };
            op.wait(timeout).await;
            Ok(Reply::Sync(op.render()))
        }
        (_, [] | [_] | [_, "wait"]) => Err(Error::NotImplemented),
        _ => Err(Error::not_found("not found")),
    }
}

fn find(ctx: &Ctx, id: &str) -> Result<std::sync::Arc<crate::operations::Operation>> {
    ctx.daemon.ops.get(id).ok_or_else(|| Error::not_found("Operation not found"))
}

fn list(ctx: &Ctx) -> Result<Reply> {
    let all_projects = ctx.query_bool("all-projects");
    let project = if all_projects { None } else { Some(ctx.project()) };
    let recursion = ctx.recursion();
    let mut map = serde_json::Map::new();
    for op in ctx.daemon.ops.list(project) {
        let key = op.status().name().to_lowercase();
        let item = if recursion > 0 { op.render() } else { Value::String(op.url()) };
        if let Some(Value::Array(v)) = map.get_mut(&key) {
            v.push(item);
        } else {
            map.insert(key, Value::Array(vec![item]));
        }
    }
    Ok(Reply::Sync(Value::Object(map)))
}
