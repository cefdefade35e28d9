//! `/1.0/instances`: list with recursion and filters, create, get (InstanceFull), put,
//! patch, rename, delete, state, and the empty snapshot/backup/log lists.

use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::projects::blocking;
use super::{etag_of, Ctx, Reply};
use crate::config::{Devices, InstanceType};
use crate::daemon::{InstanceCreate, InstanceUpdate, Model, RootSource};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::model::{rfc3339nano, ConfigMap, InstanceRecord};
use crate::operations::OpSpec;

#[derive(Deserialize, Default)]
struct Source {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    alias: String,
    #[serde(default)]
    fingerprint: String,
    /// copy: `instance` or `instance/snapshot`.
    #[serde(default)]
    source: String,
    #[serde(default)]
    instance_only: bool,
    #[serde(default)]
    container_only: bool,
    #[serde(default)]
    refresh: bool,
}

#[derive(Deserialize)]
struct InstancesPost {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    instance_type: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    config: Option<ConfigMap>,
    #[serde(default)]
    devices: Option<Devices>,
    #[serde(default)]
    profiles: Option<Vec<String>>,
    #[serde(default)]
    ephemeral: bool,
    #[serde(default)]
    stateful: bool,
    #[serde(default)]
    description: String,
    #[serde(default)]
    source: Option<Source>,
}

#[derive(Deserialize)]
struct InstancePut {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    config: Option<ConfigMap>,
    #[serde(default)]
    devices: Option<Devices>,
    #[serde(default)]
    ephemeral: Option<bool>,
    #[serde(default)]
    profiles: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    restore: Option<String>,
    #[serde(default)]
    stateful: Option<bool>,
}

#[derive(Deserialize)]
struct InstanceRename {
    name: String,
    #[serde(default)]
    migration: bool,
    /// Local move into another pool (`instance_pool_move`).
    #[serde(default)]
    pool: String,
    #[serde(default)]
    instance_only: bool,
}

fn parse_type(t: &str) -> Result<InstanceType> {
    match t {
        "" | "container" => Ok(InstanceType::Container),
        "virtual-machine" => Ok(InstanceType::VirtualMachine),
        other => Err(Error::bad(format!("Unknown instance type \"{other}\""))),
    }
}

fn type_name(t: InstanceType) -> &'static str {
    match t {
        InstanceType::VirtualMachine => "virtual-machine",
        _ => "container",
    }
}

/// The stopped-instance state (drivers fill in the rest for running ones).
fn render_state(m: &Model, i: &InstanceRecord) -> Value {
    let p = m.power(&i.project, &i.name);
    json!({
        "status": p.name(), "status_code": p.code(),
        "disk": {}, "memory": {"usage": 0, "usage_peak": 0, "swap_usage": 0, "swap_usage_peak": 0},
        "network": null, "pid": 0, "processes": 0, "cpu": {"usage": 0},
    })
}

/// api.Instance (recursion 1) or api.InstanceFull (recursion 2).
pub fn render_instance(m: &Model, i: &InstanceRecord, full: bool) -> Value {
    let (ec, ed) = m.expand(i).unwrap_or_else(|_| (i.config.clone(), i.devices.clone()));
    let p = m.power(&i.project, &i.name);
    let mut v = json!({
        "architecture": i.architecture,
        "config": i.config,
        "devices": i.devices,
        "ephemeral": i.ephemeral,
        "profiles": i.profiles,
        "stateful": i.stateful,
        "description": i.description,
        "created_at": rfc3339nano(&i.created_at),
        "expanded_config": ec,
        "expanded_devices": ed,
        "name": i.name,
        "status": p.name(),
        "status_code": p.code(),
        "last_used_at": rfc3339nano(&i.last_used_at),
        "location": "none",
        "type": type_name(i.instance_type),
        "project": i.project,
    });
    if full {
        if let Some(o) = v.as_object_mut() {
            o.insert("state".into(), render_state(m, i));
            o.insert("snapshots".into(), super::snapshots::full_snapshots(m, &i.project, &i.name));
            let backups: Vec<Value> = m.backups_of(&i.project, &i.name).iter().map(|b| json!({"name": b.name, "created_at": rfc3339nano(&b.created_at)})).collect();
            o.insert("backups".into(), if backups.is_empty() { Value::Null } else { Value::Array(backups) });
        }
    }
    v
}

fn instance_etag(i: &InstanceRecord) -> String {
    etag_of(&json!([i.architecture, i.config, i.devices, i.ephemeral, i.profiles, i.description]))
}

fn get_record(ctx: &Ctx, name: &str) -> Result<InstanceRecord> {
    ctx.daemon
        .model()
        .instance(ctx.project(), name)
        .cloned()
        .ok_or_else(|| Error::not_found("Instance not found"))
}

/// Routes `/1.0/instances/...`.
pub async fn route(ctx: Ctx, rest: &[&str]) -> Result<Reply> {
    let project = ctx.project().to_string();
    if !ctx.query_bool("all-projects") {
        ctx.daemon.require_project(&project)?;
    }
    match (ctx.method.clone(), rest) {
        (Method::GET, []) => {
            let live = if ctx.recursion() > 1 {
                let all = ctx.query_bool("all-projects");
                let running: Vec<(String, String)> = {
                    let m = ctx.daemon.model();
                    m.power
                        .keys()
                        .filter_map(|k| k.split_once('/'))
                        .filter(|(p, _)| all || *p == project)
                        .map(|(p, n)| (p.to_string(), n.to_string()))
                        .collect()
                };
                super::instance_state::live_states(&ctx.daemon, running).await
            } else {
                Default::default()
            };
            list(&ctx, &live).await
        }
        (Method::PUT, []) => super::instance_state::bulk(ctx).await,
        (Method::POST, []) => create(ctx).await,
        (Method::GET, [name]) => {
            hidden_check(&ctx, &project, name).await?;
            let (mut v, etag) = {
                let m = ctx.daemon.model();
                let i = m.instance(&project, name).ok_or_else(|| Error::not_found("Instance not found"))?;
                (render_instance(&m, i, ctx.recursion() > 0), instance_etag(i))
            };
            if ctx.recursion() > 0 {
                super::instance_state::fill_live(&ctx.daemon, std::slice::from_mut(&mut v)).await;
            }
            Ok(Reply::SyncEtag(v, etag))
        }
        (Method::PUT | Method::PATCH, [name]) => update(ctx, name).await,
        (Method::DELETE, [name]) => {
            let d = ctx.daemon.clone();
            let (p, n) = (project.clone(), name.to_string());
            blocking(move || d.delete_instance(&p, &n).map(|_| d.forget_instance(&p, &n))).await?;
            let spec = OpSpec::task("Deleting instance", &project, "instances", vec![Model::instance_url(&project, name)]);
            Ok(Reply::Async(ctx.daemon.ops.completed(spec)))
        }
        (Method::POST, [name]) => rename(ctx, name).await,
        (Method::GET, [name, "state"]) => {
            get_record(&ctx, name)?;
            let (d, n) = (ctx.daemon.clone(), name.to_string());
            Ok(Reply::Sync(blocking(move || super::instance_state::state_of(&d, &project, &n)).await?))
        }
        (Method::PUT, [name, "state"]) => super::instance_state::put(ctx, name).await,
        (Method::POST, [name, "exec"]) => super::exec::exec(ctx, name).await,
        (_, [name, "console"]) => super::console::route(ctx, name).await,
        (_, [name, "files"]) => {
            get_record(&ctx, name)?;
            super::files::route(ctx, name).await
        }
        (Method::GET | Method::DELETE, [name, "logs", "exec-output", file]) => super::exec::output_log(ctx, name, file).await,
        (_, [name, "snapshots", rest @ ..]) => {
            let name = name.to_string();
            super::snapshots::route(ctx, &name, rest).await
        }
        (_, [name, "backups", rest @ ..]) => {
            let name = name.to_string();
            super::backups::route(ctx, &name, rest).await
        }
        (Method::GET, [name, "logs"]) => {
            get_record(&ctx, name)?;
            Ok(Reply::Sync(json!([])))
        }
        (_, [] | [_] | [_, "state"]) => Err(Error::NotImplemented),
        _ => Err(Error::not_found("not found")),
    }
}

/// A 404 for an instance the filter plugins hide (as if it did not exist).
async fn hidden_check(ctx: &Ctx, project: &str, name: &str) -> Result<()> {
    let d = ctx.daemon.clone();
    if !d.has_filter_plugins() {
        return Ok(());
    }
    let view = {
        let m = d.model();
        let Some(i) = m.instance(project, name) else { return Ok(()) };
        crate::daemon::plugins::instance_view(&m, i)
    };
    if blocking(move || Ok(d.plugin_visible(&view))).await? {
        Ok(())
    } else {
        Err(Error::not_found("Instance not found"))
    }
}

async fn list(ctx: &Ctx, live: &std::collections::HashMap<String, Value>) -> Result<Reply> {
    let filter = match ctx.query.get("filter").filter(|f| !f.trim().is_empty()) {
        Some(f) => Some(Filter::parse(f)?),
        None => None,
    };
    let type_filter = match ctx.query.get("instance-type").filter(|t| !t.is_empty()) {
        Some(t) => Some(parse_type(t)?),
        None => None,
    };
    let all = ctx.query_bool("all-projects");
    let project = ctx.project();
    let recursion = ctx.recursion();
    let wanted = |i: &InstanceRecord| (all || i.project == project) && type_filter.is_none_or(|t| t == i.instance_type);
    // Filter plugins (visibility and `plugin.*` clauses) decide on a blocking thread,
    // once per listing, before the model is read for rendering.
    let d = ctx.daemon.clone();
    let sel = if d.has_filter_plugins() || filter.as_ref().is_some_and(|f| !f.predicates().is_empty()) {
        let views = d.listing_views(&d.model(), wanted);
        let f = filter.clone();
        blocking(move || d.plugin_select(&views, f.as_ref())).await?
    } else {
        crate::daemon::plugins::PluginSelection::default()
    };
    let m = ctx.daemon.model();
    if filter.is_none() && recursion > 0 {
        // The common `lxc list` path: splice cached renderings of unchanged instances.
        let full = recursion > 1;
        let mut out = Vec::with_capacity(m.instances.len() * 1024);
        out.push(b'[');
        for (key, i) in &m.instances {
            if !wanted(i) || !sel.visible(&i.project, &i.name) {
                continue;
            }
            let power = m.power(&i.project, &i.name);
            let render = || {
                let mut v = render_instance(&m, i, full);
                if let (true, Some(st)) = (full, live.get(key)) {
                    super::instance_state::apply_live(&mut v, st);
                }
                serde_json::to_vec(&v).unwrap_or_default()
            };
            if out.len() > 1 {
                out.push(b',');
            }
            // A running instance's full state is live: never cached.
            if full && power != crate::daemon::PowerState::Stopped {
                out.extend_from_slice(&render());
            } else {
                let bytes = ctx.daemon.render_cache.get_or_render(key, u8::from(full), m.generation, power, render);
                out.extend_from_slice(&bytes);
            }
        }
        out.push(b']');
        return Ok(Reply::SyncRaw(out));
    }
    let mut out = Vec::new();
    for i in m.instances.values() {
        if !wanted(i) || !sel.visible(&i.project, &i.name) {
            continue;
        }
        let rendered = if recursion > 0 || filter.is_some() {
            let mut v = render_instance(&m, i, recursion > 1);
            if let (true, Some(st)) = (recursion > 1, live.get(&crate::model::scoped_key(&i.project, &i.name))) {
                super::instance_state::apply_live(&mut v, st);
            }
            Some(v)
        } else {
            None
        };
        if let (Some(f), Some(r)) = (&filter, &rendered) {
            if !f.matches_with(r, &sel.resolver(&i.project, &i.name)) {
                continue;
            }
        }
        match (recursion, rendered) {
            (0, _) | (_, None) => out.push(json!(Model::instance_url(&i.project, &i.name))),
            (_, Some(r)) => out.push(r),
        }
    }
    Ok(Reply::Sync(Value::Array(out)))
}

async fn create(mut ctx: Ctx) -> Result<Reply> {
    let project = ctx.project().to_string();
    if ctx.header("content-type").is_some_and(|c| c.starts_with("application/octet-stream")) {
        return super::backups::import(ctx).await;
    }
    let req: InstancesPost = ctx.json().await?;
    let source = req.source.unwrap_or_default();
    let root = match source.kind.as_str() {
        "" | "none" => RootSource::Empty,
        "image" => {
            let d = ctx.daemon.clone();
            RootSource::Image(d.resolve_image(&project, Some(&source.alias), Some(&source.fingerprint))?)
        }
        "copy" => {
            let (inst, snap) = match source.source.split_once('/') {
                Some((i, s)) => (i.to_string(), Some(s.to_string())),
                None => (source.source.clone(), None),
            };
            if source.refresh && !req.name.is_empty() && ctx.daemon.model().instance(&project, &req.name).is_some() {
                let (d, p, n) = (ctx.daemon.clone(), project.clone(), req.name.clone());
                let only = source.instance_only || source.container_only;
                blocking(move || d.refresh_instance(&p, &n, &inst, only)).await?;
                let spec = OpSpec::task("Refreshing instance", &project, "instances", vec![Model::instance_url(&project, &req.name)]);
                return Ok(Reply::Async(ctx.daemon.ops.completed(spec)));
            }
            RootSource::Copy { instance: inst, snapshot: snap, instance_only: source.instance_only || source.container_only }
        }
        "migration" | "backup" => {
            return Err(Error::Unsupported(format!("Source type \"{}\" is not supported", source.kind)))
        }
        other => return Err(Error::bad(format!("Unknown source type \"{other}\""))),
    };
    let mut config = req.config.unwrap_or_default();
    if !req.instance_type.is_empty() {
        for (k, v) in crate::daemon::instance_type_limits(&req.instance_type)? {
            config.entry(k).or_insert(v);
        }
    }
    let create = InstanceCreate {
        name: Some(req.name).filter(|n| !n.is_empty()),
        instance_type: parse_type(&req.kind)?,
        architecture: Some(req.architecture).filter(|a| !a.is_empty()),
        config,
        devices: req.devices.unwrap_or_default(),
        profiles: req.profiles,
        ephemeral: req.ephemeral,
        stateful: req.stateful,
        description: req.description,
    };
    let d = ctx.daemon.clone();
    let p = project.clone();
    let name = blocking(move || d.create_instance_from(&p, create, &root)).await?;
    let url = Model::instance_url(&project, &name);
    let spec = OpSpec::task("Creating instance", &project, "instances", vec![url]);
    Ok(Reply::Async(ctx.daemon.ops.completed(spec)))
}

async fn update(mut ctx: Ctx, name: &str) -> Result<Reply> {
    let project = ctx.project().to_string();
    let current = get_record(&ctx, name)?;
    ctx.check_etag(&instance_etag(&current))?;
    let req: InstancePut = ctx.json().await?;
    if let Some(r) = req.restore.filter(|r| !r.is_empty()) {
        if req.stateful == Some(true) {
            return Err(Error::bad("Stateful restore is not supported: CRIU is not available on this server"));
        }
        let snap = match r.split_once('/') {
            Some((i, s)) if i == name => s.to_string(),
            Some(_) => return Err(Error::bad(format!("Snapshot \"{r}\" is not a snapshot of \"{name}\""))),
            None => r,
        };
        let (d, p, n) = (ctx.daemon.clone(), project.clone(), name.to_string());
        blocking(move || d.restore_snapshot(&p, &n, &snap)).await?;
        let spec = OpSpec::task("Restoring snapshot", &project, "instances", vec![Model::instance_url(&project, name)]);
        return Ok(Reply::Async(ctx.daemon.ops.completed(spec)));
    }
    let upd = if ctx.method == Method::PATCH {
        let mut config = current.config.clone();
        config.extend(req.config.unwrap_or_default());
        let mut devices = current.devices.clone();
        devices.extend(req.devices.unwrap_or_default());
        InstanceUpdate {
            architecture: req.architecture,
            config,
            devices,
            profiles: req.profiles.unwrap_or(current.profiles.clone()),
            ephemeral: req.ephemeral.unwrap_or(current.ephemeral),
            description: req.description.unwrap_or(current.description.clone()),
        }
    } else {
        InstanceUpdate {
            architecture: req.architecture,
            config: req.config.unwrap_or_default(),
            devices: req.devices.unwrap_or_default(),
            profiles: req.profiles.unwrap_or_default(),
            ephemeral: req.ephemeral.unwrap_or(false),
            description: req.description.unwrap_or_default(),
        }
    };
    // As LXD: a change the running instance refuses (a device that cannot be plugged) is
    // not kept; the previous record is written back and applied again.
    let revert = InstanceUpdate {
        architecture: Some(current.architecture.clone()),
        config: current.config.clone(),
        devices: current.devices.clone(),
        profiles: current.profiles.clone(),
        ephemeral: current.ephemeral,
        description: current.description.clone(),
    };
    let d = ctx.daemon.clone();
    let (p, n) = (project.clone(), name.to_string());
    blocking(move || {
        d.update_instance(&p, &n, upd)?;
        if let Err(e) = d.apply_instance_update(&p, &n) {
            match d.update_instance(&p, &n, revert) {
                Ok(_) => {
                    if let Err(e2) = d.apply_instance_update(&p, &n) {
                        tracing::warn!(instance = %n, error = %e2, "re-applying the previous config");
                    }
                }
                Err(e2) => tracing::warn!(instance = %n, error = %e2, "restoring the previous config"),
            }
            return Err(e);
        }
        Ok(())
    })
    .await?;
    let spec = OpSpec::task("Updating instance", &project, "instances", vec![Model::instance_url(&project, name)]);
    Ok(Reply::Async(ctx.daemon.ops.completed(spec)))
}

async fn rename(mut ctx: Ctx, name: &str) -> Result<Reply> {
    let project = ctx.project().to_string();
    get_record(&ctx, name)?;
    let req: InstanceRename = ctx.json().await?;
    if req.migration && !req.pool.is_empty() {
        let d = ctx.daemon.clone();
        let new = if req.name.is_empty() { name.to_string() } else { req.name.clone() };
        let (p, n, pool, only, target) = (project.clone(), name.to_string(), req.pool.clone(), req.instance_only, new.clone());
        blocking(move || d.move_instance_pool(&p, &n, &target, &pool, only)).await?;
        let spec = OpSpec::task("Moving instance", &project, "instances", vec![Model::instance_url(&project, &new)]);
        return Ok(Reply::Async(ctx.daemon.ops.completed(spec)));
    }
    if req.migration {
        return Err(Error::Unsupported("Migration is not supported".into()));
    }
    let d = ctx.daemon.clone();
    let (p, n, new) = (project.clone(), name.to_string(), req.name.clone());
    blocking(move || d.rename_instance(&p, &n, &new).map(|_| d.forget_instance(&p, &n))).await?;
    let spec = OpSpec::task("Renaming instance", &project, "instances", vec![Model::instance_url(&project, &req.name)]);
    Ok(Reply::Async(ctx.daemon.ops.completed(spec)))
}
