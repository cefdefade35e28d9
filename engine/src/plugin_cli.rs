//! `berthd plugin ...`: a client of `/1.0/plugins` over the unix socket.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berth_engine::client;
use clap::Subcommand;
use hyper::Method;
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum PluginCommand {
    /// List installed plugins.
    List,
    /// Install (or replace the code of) a plugin from a .wasm component.
    Install {
        /// The component file.
        file: PathBuf,
        /// Plugin name (default: the file name without `.wasm`, `_` as `-`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a plugin.
    Remove { name: String },
    /// Change settings: enabled, priority, failure_policy, hooks, deadline_ms,
    /// memory_bytes, config.<key> (empty value removes it).
    Set {
        name: String,
        /// `key=value` pairs.
        #[arg(required = true)]
        settings: Vec<String>,
    },
}

fn check(status: u16, body: &Value) -> anyhow::Result<()> {
    if status >= 400 {
        bail!("{} (HTTP {status})", body["error"].as_str().unwrap_or("request failed"));
    }
    Ok(())
}

pub async fn run(data_dir: &Path, cmd: &PluginCommand) -> anyhow::Result<()> {
    let socket = data_dir.join("unix.socket");
    match cmd {
        PluginCommand::List => {
            let (status, body) = client::request(&socket, Method::GET, "/1.0/plugins?recursion=1", None).await?;
            check(status, &body)?;
            println!("{:<20} {:<8} {:>8} {:<12} {:<30}", "NAME", "STATUS", "PRIORITY", "POLICY", "CAPABILITIES");
            for p in body["metadata"].as_array().into_iter().flatten() {
                let caps: Vec<&str> =
                    p["capabilities"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                let status = if p["enabled"] == json!(false) { "Disabled" } else { p["status"].as_str().unwrap_or("") };
                println!(
                    "{:<20} {:<8} {:>8} {:<12} {:<30}",
                    p["name"].as_str().unwrap_or(""),
                    status,
                    p["priority"],
                    p["failure_policy"].as_str().unwrap_or(""),
                    caps.join(",")
                );
            }
        }
        PluginCommand::Install { file, name } => {
            let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let name = match name {
                Some(n) => n.clone(),
                None => file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(|s| s.replace('_', "-"))
                    .context("cannot derive a plugin name from the file name; use --name")?,
            };
            let path = format!("/1.0/plugins?name={}", percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC));
            let (status, body) = client::request(&socket, Method::POST, &path, Some(bytes)).await?;
            check(status, &body)?;
            println!("Plugin {name} installed");
        }
        PluginCommand::Remove { name } => {
            let (status, body) = client::request(&socket, Method::DELETE, &format!("/1.0/plugins/{name}"), None).await?;
            check(status, &body)?;
            println!("Plugin {name} removed");
        }
        PluginCommand::Set { name, settings } => {
            let mut patch = serde_json::Map::new();
            let mut config = serde_json::Map::new();
            let mut limits: Option<Value> = None;
            for kv in settings {
                let (k, v) = kv.split_once('=').with_context(|| format!("{kv:?} is not key=value"))?;
                match k {
                    "enabled" => {
                        patch.insert(k.into(), json!(matches!(v, "true" | "1" | "yes" | "on")));
                    }
                    "priority" => {
                        patch.insert(k.into(), json!(v.parse::<i32>().context("priority must be an integer")?));
                    }
                    "failure_policy" => {
                        patch.insert(k.into(), json!(v));
                    }
                    "hooks" if v == "all" => {
                        patch.insert(k.into(), Value::Null);
                    }
                    "hooks" => {
                        patch.insert(k.into(), json!(v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>()));
                    }
                    "deadline_ms" | "memory_bytes" => {
                        let current = match limits.take() {
                            Some(l) => l,
                            None => {
                                let (s, b) = client::request(&socket, Method::GET, &format!("/1.0/plugins/{name}"), None).await?;
                                check(s, &b)?;
                                b["metadata"]["limits"].clone()
                            }
                        };
                        let mut l = current;
                        l[k] = json!(v.parse::<u64>().with_context(|| format!("{k} must be a number"))?);
                        limits = Some(l);
                    }
                    _ => match k.strip_prefix("config.") {
                        Some(ck) => {
                            config.insert(ck.into(), json!(v));
                        }
                        None => bail!("unknown setting {k:?} (enabled, priority, failure_policy, hooks, deadline_ms, memory_bytes, config.<key>)"),
                    },
                }
            }
            if !config.is_empty() {
                patch.insert("config".into(), Value::Object(config));
            }
            if let Some(l) = limits {
                patch.insert("limits".into(), l);
            }
            let body = serde_json::to_vec(&Value::Object(patch))?;
            let (status, resp) = client::request(&socket, Method::PATCH, &format!("/1.0/plugins/{name}"), Some(body)).await?;
            check(status, &resp)?;
            println!("Plugin {name} updated");
        }
    }
    Ok(())
}
