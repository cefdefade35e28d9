//! `/1.0/profiles`.

use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::projects::blocking;
use super::{etag_of, Ctx, Reply};
use crate::config::Devices;
use crate::daemon::with_project;
use crate::error::{Error, Result};
use crate::model::{scoped_key, ConfigMap, Profile};

#[derive(Deserialize)]
struct ProfilePost {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    config: Option<ConfigMap>,
    #[serde(default)]
    devices: Option<Devices>,
}

#[derive(Deserialize)]
struct ProfilePut {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    config: Option<ConfigMap>,
    #[serde(default)]
    devices: Option<Devices>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileRename {
    name: String,
}

fn etag(p: &Profile) -> String {
    etag_of(&json!([p.description, p.config, p.devices]))
}

/// Routes `/1.0/profiles/...`.
pub async fn route(mut ctx: Ctx, rest: &[&str]) -> Result<Reply> {
    let d = ctx.daemon.clone();
    let project = ctx.project().to_string();
    d.require_project(&project)?;
    match (ctx.method.clone(), rest) {
        (Method::GET, []) => {
            let m = d.model();
            let prefix = format!("{}/", m.profile_project(&project));
            let profiles = m.profiles.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, p)| p);
            let v: Vec<Value> = if ctx.recursion() > 0 {
                profiles.map(|p| m.render_profile(&project, p)).collect()
            } else {
                profiles.map(|p| json!(with_project(format!("/1.0/profiles/{}", p.name), &project))).collect()
            };
            Ok(Reply::Sync(Value::Array(v)))
        }
        (Method::POST, []) => {
            let req: ProfilePost = ctx.json().await?;
            let name = req.name.clone();
            let p = Profile {
                name: req.name,
                description: req.description.unwrap_or_default(),
                config: req.config.unwrap_or_default(),
                devices: req.devices.unwrap_or_default(),
            };
            let pr = project.clone();
            blocking(move || d.create_profile(&pr, p)).await?;
            Ok(Reply::Created(with_project(format!("/1.0/profiles/{name}"), &project)))
        }
        (Method::GET, [name]) => {
            let m = d.model();
            let p = m.profile(&project, name).ok_or_else(|| Error::not_found(format!("Profile \"{name}\" not found")))?;
            Ok(Reply::SyncEtag(m.render_profile(&project, p), etag(p)))
        }
        (Method::PUT | Method::PATCH, [name]) => {
            let current = {
                let m = d.model();
                m.profiles
                    .get(&scoped_key(m.profile_project(&project), name))
                    .cloned()
                    .ok_or_else(|| Error::not_found(format!("Profile \"{name}\" not found")))?
            };
            ctx.check_etag(&etag(&current))?;
            let req: ProfilePut = ctx.json().await?;
            let (desc, config, devices) = if ctx.method == Method::PATCH {
                let mut c = current.config.clone();
                c.extend(req.config.unwrap_or_default());
                let mut dv = current.devices.clone();
                dv.extend(req.devices.unwrap_or_default());
                (req.description.unwrap_or(current.description.clone()), c, dv)
            } else {
                (req.description.unwrap_or_default(), req.config.unwrap_or_default(), req.devices.unwrap_or_default())
            };
            let name = name.to_string();
            blocking(move || d.update_profile(&project, &name, desc, config, devices)).await?;
            Ok(Reply::Sync(json!({})))
        }
        (Method::POST, [name]) => {
            let req: ProfileRename = ctx.json().await?;
            let old = name.to_string();
            let new = req.name.clone();
            let pr = project.clone();
            blocking(move || d.rename_profile(&pr, &old, &req.name)).await?;
            Ok(Reply::Created(with_project(format!("/1.0/profiles/{new}"), &project)))
        }
        (Method::DELETE, [name]) => {
            let name = name.to_string();
            blocking(move || d.delete_profile(&project, &name)).await?;
            Ok(Reply::Sync(json!({})))
        }
        (_, [] | [_]) => Err(Error::NotImplemented),
        _ => Err(Error::not_found("not found")),
    }
}
