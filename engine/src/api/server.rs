//! `GET/PUT/PATCH /1.0` (server info and config) and the internal shutdown call.

use hyper::Method;
use serde_json::{json, Value};

use super::{Ctx, Reply};
use crate::daemon::certificates::HTTPS_ADDRESS_KEY;
use crate::error::{Error, Result};
use crate::model::ConfigMap;

/// Every api_extension berth honours. Each name changes client code paths, so a name is
/// only listed once the feature behind it works.
pub const API_EXTENSIONS: &[&str] = &[
    "etag",
    "patch",
    "instances",
    "container_full",
    "instance_get_full",
    "api_filtering",
    "projects",
    "instance_all_projects",
    "certificate_update",
    "certificate_project",
    "certificate_token",
    "file_delete",
    "file_append",
    "directory_manipulation",
    "file_symlinks",
    "container_exec_recording",
    "container_exec_user_group_cwd",
    "console",
    "instance_bulk_state_change",
    "storage",
    "resources",
    "container_backup",
    "backup_compression",
    "container_backup_override_pool",
    "backup_override_name",
    "snapshot_expiry",
    "snapshot_expiry_creation",
    "storage_api_volume_snapshots",
    "storage_volume_state",
    "storage_api_volume_rename",
    "image_create_aliases",
    "container_only_migration",
    "container_incremental_copy",
    "instance_pool_move",
    "custom_volume_backup",
    "berth_plugins",
];

fn kernel_info() -> (String, String, String) {
    match nix::sys::utsname::uname() {
        Ok(u) => (
            u.sysname().to_string_lossy().into_owned(),
            u.release().to_string_lossy().into_owned(),
            u.version().to_string_lossy().into_owned(),
        ),
        Err(_) => ("Linux".into(), String::new(), String::new()),
    }
}

fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "berth".into())
}

fn render_config(cfg: &ConfigMap) -> Value {
    let mut out = serde_json::Map::new();
    for (k, v) in cfg {
        // Secrets are never shown back (LXD shows "true" when set).
        let shown = if k == "core.trust_password" { "true".to_string() } else { v.clone() };
        out.insert(k.clone(), Value::String(shown));
    }
    Value::Object(out)
}

/// What an untrusted client sees (LXD's api10Get for untrusted callers).
fn untrusted_info() -> Value {
    json!({
        "api_extensions": API_EXTENSIONS,
        "api_status": "stable",
        "api_version": "1.0",
        "auth": "untrusted",
        "auth_methods": ["tls"],
        "public": false,
    })
}

fn server_info(ctx: &Ctx) -> Value {
    let (kernel, kernel_version, kernel_release_v) = kernel_info();
    let m = ctx.daemon.model();
    json!({
        "api_extensions": API_EXTENSIONS,
        "api_status": "stable",
        "api_version": "1.0",
        "auth": "trusted",
        "auth_methods": ["tls"],
        "public": false,
        "config": render_config(&m.server),
        "environment": {
            "addresses": ctx.daemon.trust.addresses(),
            "architectures": [crate::daemon::host_architecture()],
            "certificate": ctx.daemon.trust.identity.cert_pem,
            "certificate_fingerprint": ctx.daemon.trust.identity.fingerprint,
            "driver": "berth",
            "driver_version": env!("CARGO_PKG_VERSION"),
            "firewall": "nftables",
            "kernel": kernel,
            "kernel_architecture": std::env::consts::ARCH,
            "kernel_features": {},
            "kernel_version": kernel_version,
            "kernel_release": kernel_release_v,
            "lxc_features": {},
            "os_name": "berth",
            "os_version": env!("CARGO_PKG_VERSION"),
            "project": ctx.project(),
            "server": "berth",
            "server_clustered": false,
            "server_event_mode": "full-mesh",
            "server_name": hostname(),
            "server_pid": std::process::id(),
            "server_version": "5.0.2",
            "storage": "dir",
            "storage_version": "1",
            "storage_supported_drivers": super::storage_pools::supported_drivers(),
        },
    })
}

/// `/1.0`.
pub async fn root(mut ctx: Ctx) -> Result<Reply> {
    match ctx.method {
        Method::GET if !ctx.trust.is_trusted() => Ok(Reply::Sync(untrusted_info())),
        Method::GET => {
            // Rendered once per model generation and project: the handshake every `lxc`
            // process starts with stays a memcpy.
            let generation = ctx.daemon.model().generation;
            let key = format!("/1.0?project={}", ctx.project());
            let idle = crate::daemon::PowerState::Stopped;
            let cache = &ctx.daemon.render_cache;
            let info = cache.get_or_render(&key, 0, generation, idle, || {
                serde_json::to_vec(&server_info(&ctx)).unwrap_or_default()
            });
            let etag = cache.get_or_render("/1.0#etag", 0, generation, idle, || {
                super::etag_of(&render_config(&ctx.daemon.model().server)).into_bytes()
            });
            Ok(Reply::SyncRawEtag(info.to_vec(), String::from_utf8_lossy(&etag).into_owned()))
        }
        Method::PUT | Method::PATCH => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct ServerPut {
                #[serde(default)]
                config: Option<ConfigMap>,
            }
            let current = ctx.daemon.model().server.clone();
            ctx.check_etag(&super::etag_of(&render_config(&current)))?;
            let body: ServerPut = ctx.json().await?;
            let mut config = body.config.unwrap_or_default();
            if ctx.method == Method::PATCH {
                let mut merged = current;
                merged.extend(config);
                config = merged;
            }
            config.retain(|_, v| !v.is_empty());
            let d = ctx.daemon.clone();
            let https = config.get(HTTPS_ADDRESS_KEY).cloned();
            let commit = async move {
                tokio::task::spawn_blocking(move || d.set_server_config(d.prepare_server_config(config)?))
                    .await
                    .map_err(|e| Error::internal(e.to_string()))?
            };
            super::tls::set_https_address(&ctx.daemon, https.as_deref(), commit).await?;
            Ok(Reply::Sync(json!({})))
        }
        _ => Err(Error::NotImplemented),
    }
}

/// `PUT /internal/shutdown` (unix socket only): what `berthd shutdown` calls. Stops the
/// running instances, then the daemon.
pub async fn shutdown(ctx: Ctx) -> Result<Reply> {
    if !ctx.local {
        return Err(Error::Forbidden("not authorized".into()));
    }
    if ctx.method != Method::PUT {
        return Err(Error::NotImplemented);
    }
    // As `lxd shutdown`: the instances stop first (see `Daemon::shutdown_instances`).
    let d = ctx.daemon.clone();
    super::projects::blocking(move || {
        d.shutdown_instances();
        Ok(())
    })
    .await?;
    ctx.daemon.request_shutdown();
    Ok(Reply::Sync(json!({})))
}
