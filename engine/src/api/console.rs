//! `/1.0/instances/N/console`: attach over websockets (fd 0 + control; closing control
//! detaches), the console log as text, and clearing it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::Method;
use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::projects::blocking;
use super::websocket::{Control, Sockets, CONNECT_TIMEOUT};
use super::{Ctx, Reply};
use crate::daemon::{instance_error, Model, PowerState};
use crate::error::{Error, Result};
use crate::instance::{ConsoleSession, Instance};
use crate::operations::{Class, OpSpec, Operation};

#[derive(Deserialize, Default)]
struct ConsolePost {
    #[serde(default)]
    width: Option<u16>,
    #[serde(default)]
    height: Option<u16>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// Routes `/1.0/instances/N/console`.
pub async fn route(mut ctx: Ctx, name: &str) -> Result<Reply> {
    let project = ctx.project().to_string();
    if ctx.daemon.model().instance(&project, name).is_none() {
        return Err(Error::not_found("Instance not found"));
    }
    let d = ctx.daemon.clone();
    let (p, n) = (project.clone(), name.to_string());
    let inst = blocking(move || d.instance_runtime(&p, &n)).await?;
    match ctx.method {
        Method::GET => {
            let log = blocking(move || inst.console_log().map_err(instance_error)).await?;
            Ok(Reply::Raw(super::raw(200, "text/plain", log)))
        }
        Method::DELETE => {
            blocking(move || inst.clear_console_log().map_err(instance_error)).await?;
            Ok(Reply::Sync(json!({})))
        }
        Method::POST => {
            let req: ConsolePost = ctx.json().await.unwrap_or_default();
            if req.kind.as_deref().is_some_and(|t| t != "console") {
                return Err(Error::bad("Only the \"console\" type is supported for containers"));
            }
            if ctx.daemon.model().power(&project, name) == PowerState::Stopped {
                return Err(Error::bad("Instance is not running"));
            }
            let (w, h) = (req.width.unwrap_or(0), req.height.unwrap_or(0));
            let (sockets, fds) = Sockets::new(&["0", "control"]);
            let mut resources = BTreeMap::new();
            resources.insert("instances".to_string(), vec![Model::instance_url(&project, name)]);
            let spec = OpSpec {
                class: Class::Websocket,
                description: "Showing console".into(),
                project,
                resources,
                metadata: json!({"fds": fds}),
                may_cancel: false,
            };
            let op = ctx.daemon.ops.register(spec);
            sockets.publish(&op.id);
            let task_op = op.clone();
            tokio::spawn(async move {
                let res = attach(&task_op, &sockets, inst, w, h).await;
                Sockets::unpublish(&task_op.id);
                task_op.finish(res.map_err(|e| e.to_string()));
            });
            Ok(Reply::Async(op))
        }
        _ => Err(Error::NotImplemented),
    }
}

async fn attach(_op: &Arc<Operation>, sockets: &Arc<Sockets>, inst: Arc<dyn Instance>, w: u16, h: u16) -> Result<()> {
    let mut conns = sockets.wait(&["0", "control"], CONNECT_TIMEOUT).await?;
    let (Some(data), Some(control)) = (conns.remove("0"), conns.remove("control")) else {
        return Err(Error::internal("console sockets missing"));
    };
    let session: Arc<dyn ConsoleSession> = Arc::from(
        tokio::task::spawn_blocking(move || inst.console(w, h))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(instance_error)?,
    );
    let (mut dsink, mut dstream) = data.split();
    let (mut csink, mut cstream) = control.split();
    // Console output, from a thread (read blocks).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let s = session.clone();
    std::thread::spawn(move || {
        while let Some(b) = s.read() {
            if tx.send(b).is_err() {
                break;
            }
        }
    });
    let mut ping = tokio::time::interval(Duration::from_secs(10));
    ping.tick().await;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(b) => {
                    if dsink.send(Message::binary(b)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            m = dstream.next() => match m {
                Some(Ok(Message::Binary(b))) => { let _ = session.write(&b); }
                Some(Ok(Message::Text(t))) if !t.is_empty() => { let _ = session.write(t.as_bytes()); }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            m = cstream.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(c) = serde_json::from_str::<Control>(&t) {
                        if let (true, Some((w, h))) = (c.command == "window-resize", c.size()) {
                            let _ = session.resize(w, h);
                        }
                    }
                }
                // Closing control is how the client detaches.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                let _ = dsink.send(Message::Ping(Default::default())).await;
                let _ = csink.send(Message::Ping(Default::default())).await;
            }
        }
    }
    session.close();
    let _ = dsink.send(Message::Close(None)).await;
    let _ = csink.send(Message::Close(None)).await;
    Ok(())
}
