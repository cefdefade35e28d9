//! `/1.0/plugins` (API extension `berth_plugins`): list, install (component bytes as
//! the body), get, replace/patch settings, remove. Changes apply to the next call: no
//! restart. Only fully trusted clients get here (restricted certificates are refused).

use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::projects::blocking;
use super::{etag_of, Ctx, Reply};
use crate::daemon::plugins::{plugin_url, PluginRecord, SettingsRecord, MAX_PLUGIN_BYTES};
use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::model::ConfigMap;

/// `PATCH` body: only the fields present change.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SettingsPatch {
    enabled: Option<bool>,
    priority: Option<i32>,
    failure_policy: Option<String>,
    /// Merged into the current map; an empty value removes the key.
    config: Option<ConfigMap>,
    #[serde(default, deserialize_with = "some_option")]
    hooks: Option<Option<Vec<String>>>,
    limits: Option<crate::daemon::plugins::record::LimitsRecord>,
    grants: Option<crate::daemon::plugins::record::GrantsRecord>,
}

/// Tells `"hooks": null` (every hook) from an absent field.
fn some_option<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<Vec<String>>>, D::Error> {
    Option::<Vec<String>>::deserialize(d).map(Some)
}

/// The API object for a plugin: stored settings plus what the host knows.
fn render(d: &Daemon, rec: &PluginRecord) -> Value {
    let info = d.plugins.host.get(&rec.name);
    let error = d.plugins.load_errors().get(&rec.name).cloned();
    let mut v = json!({
        "name": rec.name,
        "sha256": rec.sha256,
        "status": if info.is_some() { "Loaded" } else { "Error" },
        "error": error.unwrap_or_default(),
        "enabled": rec.settings.enabled,
        "priority": rec.settings.priority,
        "failure_policy": rec.settings.failure_policy,
        "config": rec.settings.config,
        "hooks": rec.settings.hooks,
        "limits": rec.settings.limits,
        "grants": rec.settings.grants,
    });
    if let (Some(i), Some(o)) = (info, v.as_object_mut()) {
        o.insert("version".into(), json!(i.metadata.version));
        o.insert("api_version".into(), json!(i.metadata.api_version));
        o.insert("description".into(), json!(i.metadata.description));
        o.insert("capabilities".into(), json!(i.capabilities.iter().map(|c| c.interface()).collect::<Vec<_>>()));
        o.insert("predicates".into(), json!(i.predicates));
        o.insert("from_cache".into(), json!(i.from_cache));
        o.insert("load_time_us".into(), json!(u64::try_from(i.load_time.as_micros()).unwrap_or(u64::MAX)));
        o.insert("calls".into(), json!(i.calls));
        o.insert("failures".into(), json!(i.failures));
        o.insert("reuses_verdicts".into(), json!(i.reuses_verdicts));
        o.insert("reused_verdicts".into(), json!(i.reused));
    }
    v
}

fn etag(rec: &PluginRecord) -> String {
    etag_of(&json!([rec.sha256, rec.settings]))
}

/// Routes `/1.0/plugins/...`.
pub async fn route(mut ctx: Ctx, rest: &[&str]) -> Result<Reply> {
    let d = ctx.daemon.clone();
    match (ctx.method.clone(), rest) {
        (Method::GET, []) => {
            let recs = d.plugin_records()?;
            let v: Vec<Value> = if ctx.recursion() > 0 {
                recs.iter().map(|r| render(&d, r)).collect()
            } else {
                recs.iter().map(|r| json!(plugin_url(&r.name))).collect()
            };
            Ok(Reply::Sync(Value::Array(v)))
        }
        (Method::POST, []) => {
            let name = ctx.query.get("name").cloned().filter(|n| !n.is_empty()).ok_or_else(|| {
                Error::bad("Missing plugin name: POST /1.0/plugins?name=NAME with the component as the body")
            })?;
            let body = ctx.body(MAX_PLUGIN_BYTES).await?;
            if body.is_empty() {
                return Err(Error::bad("Request body is empty: send the WebAssembly component bytes"));
            }
            let n = name.clone();
            blocking(move || d.install_plugin(&n, &body)).await?;
            Ok(Reply::Created(plugin_url(&name)))
        }
        (Method::GET, [name]) => {
            let rec = d.plugin_record(name)?;
            Ok(Reply::SyncEtag(render(&d, &rec), etag(&rec)))
        }
        (Method::PUT | Method::PATCH, [name]) => {
            let current = d.plugin_record(name)?;
            ctx.check_etag(&etag(&current))?;
            let settings = if ctx.method == Method::PUT {
                ctx.json::<SettingsRecord>().await?
            } else {
                patch(current.settings, ctx.json::<SettingsPatch>().await?)
            };
            let n = name.to_string();
            blocking(move || d.update_plugin(&n, settings)).await?;
            Ok(Reply::Sync(json!({})))
        }
        (Method::DELETE, [name]) => {
            let n = name.to_string();
            blocking(move || d.remove_plugin(&n)).await?;
            Ok(Reply::Sync(json!({})))
        }
        (_, [] | [_]) => Err(Error::NotImplemented),
        _ => Err(Error::not_found("not found")),
    }
}

fn patch(mut s: SettingsRecord, p: SettingsPatch) -> SettingsRecord {
    if let Some(v) = p.enabled {
        s.enabled = v;
    }
    if let Some(v) = p.priority {
        s.priority = v;
    }
    if let Some(v) = p.failure_policy {
        s.failure_policy = v;
    }
    for (k, v) in p.config.unwrap_or_default() {
        if v.is_empty() {
            s.config.remove(&k);
        } else {
            s.config.insert(k, v);
        }
    }
    if let Some(h) = p.hooks {
        s.hooks = h;
    }
    if let Some(l) = p.limits {
        s.limits = l;
    }
    if let Some(g) = p.grants {
        s.grants = g;
    }
    s
}
