//! `/1.0/events`: the websocket every `lxc` operation waits on.

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::{protocol::Role, Message};
use tokio_tungstenite::WebSocketStream;

use super::{Ctx, Reply};
use crate::error::{Error, Result};

const KINDS: &[&str] = &["operation", "logging", "lifecycle"];

/// Upgrades the request to a websocket; replies 101 and streams events.
pub async fn events(mut ctx: Ctx) -> Result<Reply> {
    let kinds: Vec<String> = match ctx.query.get("type").filter(|t| !t.is_empty()) {
        Some(t) => t.split(',').map(str::to_string).collect(),
        None => KINDS.iter().map(|s| s.to_string()).collect(),
    };
    for k in &kinds {
        if !KINDS.contains(&k.as_str()) {
            return Err(Error::bad(format!("\"{k}\" isn't a supported event type")));
        }
    }
    let all_projects = ctx.query_bool("all-projects");
    if all_projects && ctx.query.contains_key("project") {
        return Err(Error::bad("Cannot specify a project when requesting all projects"));
    }
    let project = ctx.project().to_string();
    let key = ctx
        .header("sec-websocket-key")
        .map(str::to_string)
        .ok_or_else(|| Error::bad("Missing websocket upgrade (Sec-WebSocket-Key)"))?;
    let on_upgrade = ctx
        .parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| Error::bad("Connection can't be upgraded"))?;
    let mut rx = ctx.daemon.events.subscribe();
    let mut shutdown = ctx.daemon.shutdown_signal();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let mut ping = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let ev = match ev {
                        Ok(ev) => ev,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    };
                    if !kinds.iter().any(|k| k == ev.kind) {
                        continue;
                    }
                    if !all_projects && !ev.project.is_empty() && ev.project != project {
                        continue;
                    }
                    let Ok(text) = serde_json::to_string(&*ev) else { continue };
                    if ws.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    _ => {}
                },
                _ = ping.tick() => {
                    if ws.send(Message::Ping(Default::default())).await.is_err() {
                        break;
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        let _ = ws.close(None).await;
    });
    Ok(Reply::Raw(super::websocket::switching(&key)))
}
