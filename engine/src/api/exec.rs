//! `POST /1.0/instances/N/exec`: commands over websockets (interactive pty + control, or
//! binary stdin/stdout/stderr with the empty-text EOF barrier), in the background
//! (`wait-for-websocket: false`), and with `record-output`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::projects::blocking;
use super::websocket::{Control, Sockets, Ws, CONNECT_TIMEOUT};
use super::{Ctx, Reply};
use crate::daemon::{instance_error, Model, PowerState};
use crate::error::{Error, Result};
use crate::instance::{ExecArgs, ExecEvent, ExecSession, Instance};
use crate::operations::{Class, OpSpec, Operation};

#[derive(Deserialize)]
struct ExecPost {
    #[serde(default)]
    command: Vec<String>,
    #[serde(default, rename = "wait-for-websocket")]
    wait_for_websocket: bool,
    #[serde(default)]
    interactive: bool,
    #[serde(default)]
    environment: Option<BTreeMap<String, String>>,
    #[serde(default)]
    width: Option<u16>,
    #[serde(default)]
    height: Option<u16>,
    #[serde(default)]
    user: Option<u32>,
    #[serde(default)]
    group: Option<u32>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default, rename = "record-output")]
    record_output: bool,
}

/// Output files of a recorded exec.
struct Recorder {
    files: [Option<std::fs::File>; 2],
    urls: [String; 2],
}

impl Recorder {
    fn new(dir: PathBuf, url_base: &str, id: &str) -> Result<Recorder> {
        let dir = dir.join("exec-output");
        std::fs::create_dir_all(&dir).map_err(|e| Error::internal(format!("create {}: {e}", dir.display())))?;
        let open = |ext: &str| -> Result<std::fs::File> {
            let p = dir.join(format!("exec_{id}.{ext}"));
            std::fs::File::create(&p).map_err(|e| Error::internal(format!("create {}: {e}", p.display())))
        };
        Ok(Recorder {
            files: [Some(open("stdout")?), Some(open("stderr")?)],
            urls: [format!("{url_base}/logs/exec-output/exec_{id}.stdout"), format!("{url_base}/logs/exec-output/exec_{id}.stderr")],
        })
    }

    fn write(&mut self, idx: usize, data: &[u8]) {
        if let Some(f) = self.files[idx].as_mut() {
            let _ = f.write_all(data);
        }
    }

    fn metadata(&self) -> serde_json::Value {
        json!({"1": self.urls[0], "2": self.urls[1]})
    }
}

/// `POST /1.0/instances/N/exec`.
pub async fn exec(mut ctx: Ctx, name: &str) -> Result<Reply> {
    let project = ctx.project().to_string();
    let req: ExecPost = ctx.json().await?;
    if req.command.is_empty() {
        return Err(Error::bad("Command is required"));
    }
    match ctx.daemon.model().power(&project, name) {
        _ if ctx.daemon.model().instance(&project, name).is_none() => return Err(Error::not_found("Instance not found")),
        PowerState::Stopped | PowerState::Error => return Err(Error::bad("Instance is not running")),
        PowerState::Frozen => return Err(Error::bad("Instance is frozen")),
        PowerState::Running => {}
    }
    let d = ctx.daemon.clone();
    let (p, n) = (project.clone(), name.to_string());
    let inst = blocking(move || d.instance_runtime(&p, &n)).await?;
    let env = req.environment.clone().unwrap_or_default();
    let args = ExecArgs {
        command: req.command.clone(),
        env: env.clone().into_iter().collect(),
        uid: req.user.unwrap_or(0),
        gid: req.group.unwrap_or(0),
        cwd: req.cwd.clone().unwrap_or_default(),
        interactive: req.interactive && req.wait_for_websocket,
        width: req.width.filter(|w| *w > 0).unwrap_or(80),
        height: req.height.filter(|h| *h > 0).unwrap_or(24),
    };
    let url = Model::instance_url(&project, name);
    let url_base = format!("/1.0/instances/{name}");
    let log_dir = ctx.daemon.instance_log_dir(&project, name);
    let mut resources = BTreeMap::new();
    resources.insert("instances".to_string(), vec![url]);
    if !req.wait_for_websocket {
        let spec = OpSpec {
            class: Class::Task,
            description: "Executing command".into(),
            project,
            resources,
            metadata: json!({}),
            may_cancel: false,
        };
        let op = ctx.daemon.ops.start(spec, move |op| async move {
            let rec = if req.record_output { Some(Recorder::new(log_dir, &url_base, &op.id)?) } else { None };
            let (code, rec) = blocking(move || Ok(run_detached(inst, &args, rec))).await?;
            let mut meta = json!({"return": code});
            if let Some(r) = rec {
                meta["output"] = r.metadata();
            }
            op.merge_metadata(meta);
            Ok(())
        });
        return Ok(Reply::Async(op));
    }
    let fds: &[&str] = if args.interactive { &["0", "control"] } else { &["0", "1", "2", "control"] };
    let (sockets, fds_meta) = Sockets::new(fds);
    let spec = OpSpec {
        class: Class::Websocket,
        description: "Executing command".into(),
        project,
        resources,
        metadata: json!({"fds": fds_meta, "command": req.command, "environment": env, "interactive": args.interactive}),
        may_cancel: false,
    };
    let op = ctx.daemon.ops.register(spec);
    sockets.publish(&op.id);
    let rec = if req.record_output { Some(Recorder::new(log_dir, &url_base, &op.id)?) } else { None };
    let task_op = op.clone();
    tokio::spawn(async move {
        let res = run_ws(&task_op, &sockets, inst, args, rec).await;
        Sockets::unpublish(&task_op.id);
        task_op.finish(res.map_err(|e| e.to_string()));
    });
    Ok(Reply::Async(op))
}

/// Runs without websockets: no stdin, output only recorded.
fn run_detached(inst: Arc<dyn Instance>, args: &ExecArgs, mut rec: Option<Recorder>) -> (i32, Option<Recorder>) {
    let s = match inst.exec(args) {
        Ok(s) => s,
        Err(e) => {
            if let Some(r) = rec.as_mut() {
                r.write(1, format!("{e}\n").as_bytes());
            }
            return (spawn_failure_code(&e), rec);
        }
    };
    s.close_stdin();
    let mut code = -1;
    while let Some(ev) = s.next_event() {
        match ev {
            ExecEvent::Stdout(b) => rec.iter_mut().for_each(|r| r.write(0, &b)),
            ExecEvent::Stderr(b) => rec.iter_mut().for_each(|r| r.write(1, &b)),
            ExecEvent::Exit(c) => code = c,
        }
    }
    (code, rec)
}

/// Shell-style code for a command that could not be started.
fn spawn_failure_code(e: &crate::instance::Error) -> i32 {
    let m = e.to_string();
    if m.contains("No such file") {
        127
    } else if m.contains("ermission denied") {
        126
    } else {
        -1
    }
}

type Sink = futures_util::stream::SplitSink<Ws, Message>;

async fn send(sink: &mut Option<Sink>, msg: Message) {
    if let Some(s) = sink.as_mut() {
        if s.send(msg).await.is_err() {
            *sink = None;
        }
    }
}

async fn close(sink: &mut Option<Sink>) {
    if let Some(mut s) = sink.take() {
        let _ = s.send(Message::Close(None)).await;
        let _ = s.close().await;
    }
}

/// Feeds client input to the command's stdin (on a thread: writes may block).
fn stdin_writer(session: Arc<dyn ExecSession>) -> std::sync::mpsc::Sender<Option<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
    std::thread::spawn(move || {
        for m in rx {
            match m {
                Some(b) => {
                    let _ = session.write_stdin(&b);
                }
                None => session.close_stdin(),
            }
        }
    });
    tx
}

async fn run_ws(op: &Arc<Operation>, sockets: &Arc<Sockets>, inst: Arc<dyn Instance>, args: ExecArgs, mut rec: Option<Recorder>) -> Result<()> {
    let required: &[&str] = if args.interactive { &["0", "control"] } else { &["0", "1", "2"] };
    let mut conns: HashMap<String, Ws> = sockets.wait(required, CONNECT_TIMEOUT).await?;
    let a2 = args.clone();
    let started = tokio::task::spawn_blocking(move || inst.exec(&a2)).await.map_err(|e| Error::internal(e.to_string()))?;
    let (mut s0, r0) = split(conns.remove("0"));
    let (mut s1, r1) = split(conns.remove("1"));
    let (mut s2, _r2) = split(conns.remove("2"));
    let control = conns.remove("control");
    let session: Arc<dyn ExecSession> = match started {
        Ok(s) => Arc::from(s),
        Err(e) => {
            let code = spawn_failure_code(&e);
            let err_sink = if args.interactive { &mut s0 } else { &mut s2 };
            send(err_sink, Message::binary(format!("{e}\r\n").into_bytes())).await;
            for s in [&mut s0, &mut s1, &mut s2] {
                send(s, Message::text("")).await;
                close(s).await;
            }
            if code < 0 {
                return Err(instance_error(e));
            }
            op.merge_metadata(json!({"return": code}));
            return Ok(());
        }
    };
    let exited = Arc::new(AtomicBool::new(false));
    // Output events, from a thread (next_event blocks).
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let s = session.clone();
    std::thread::spawn(move || {
        while let Some(ev) = s.next_event() {
            if ev_tx.send(ev).is_err() {
                break;
            }
        }
    });
    let stdin = stdin_writer(session.clone());
    if let Some(mut r0) = r0 {
        tokio::spawn(async move {
            while let Some(m) = r0.next().await {
                let sent = match m {
                    Ok(Message::Binary(b)) => stdin.send(Some(b.to_vec())),
                    Ok(Message::Text(t)) if t.is_empty() => stdin.send(None),
                    Ok(Message::Text(t)) => stdin.send(Some(t.as_bytes().to_vec())),
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => Ok(()),
                };
                if sent.is_err() {
                    break;
                }
            }
            let _ = stdin.send(None);
        });
    }
    let control = match control {
        Some(c) => Some(c),
        None if !args.interactive => sockets.take_late("control", Duration::from_millis(0)).await,
        None => None,
    };
    if let (false, Some(r1)) = (args.interactive, r1) {
        watch_stdout(r1, session.clone(), exited.clone(), control.is_some());
    }
    let mut ctl_sink = None;
    if let Some(c) = control {
        let (sink, mut stream) = c.split();
        ctl_sink = Some(sink);
        let (session, exited) = (session.clone(), exited.clone());
        tokio::spawn(async move {
            loop {
                match stream.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let Ok(c) = serde_json::from_str::<Control>(&t) else { continue };
                        match c.command.as_str() {
                            "window-resize" => {
                                if let Some((w, h)) = c.size() {
                                    let _ = session.resize(w, h);
                                }
                            }
                            "signal" if c.signal > 0 => {
                                let _ = session.signal(c.signal);
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                }
            }
            if !exited.load(Ordering::SeqCst) {
                let _ = session.signal(libc::SIGKILL);
            }
        });
    }
    let mut ping = tokio::time::interval(Duration::from_secs(10));
    ping.tick().await;
    let code = loop {
        tokio::select! {
            ev = ev_rx.recv() => match ev {
                Some(ExecEvent::Stdout(b)) => {
                    rec.iter_mut().for_each(|r| r.write(0, &b));
                    let sink = if args.interactive { &mut s0 } else { &mut s1 };
                    send(sink, Message::binary(b)).await;
                }
                Some(ExecEvent::Stderr(b)) => {
                    rec.iter_mut().for_each(|r| r.write(1, &b));
                    send(&mut s2, Message::binary(b)).await;
                }
                Some(ExecEvent::Exit(c)) => break c,
                None => break -1,
            },
            _ = ping.tick() => {
                for s in [&mut s0, &mut s1, &mut s2, &mut ctl_sink] {
                    send(s, Message::Ping(Default::default())).await;
                }
            }
        }
    };
    exited.store(true, Ordering::SeqCst);
    if !args.interactive {
        for s in [&mut s1, &mut s2] {
            send(s, Message::text("")).await;
        }
    }
    let mut meta = json!({"return": code});
    if let Some(r) = &rec {
        meta["output"] = r.metadata();
    }
    op.merge_metadata(meta);
    for s in [&mut s0, &mut s1, &mut s2, &mut ctl_sink] {
        close(s).await;
    }
    Ok(())
}

/// LXD's rule for a non-interactive session: the client never writes on the stdout
/// socket, so anything read there (a message, a close, an error) means it went away;
/// without a control socket to do it, the command is then killed.
fn watch_stdout(mut r1: futures_util::stream::SplitStream<Ws>, session: Arc<dyn ExecSession>, exited: Arc<AtomicBool>, has_control: bool) {
    tokio::spawn(async move {
        while let Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) = r1.next().await {}
        if !has_control && !exited.load(Ordering::SeqCst) {
            let _ = session.signal(libc::SIGKILL);
        }
    });
}

fn split(ws: Option<Ws>) -> (Option<Sink>, Option<futures_util::stream::SplitStream<Ws>>) {
    match ws {
        Some(w) => {
            let (a, b) = w.split();
            (Some(a), Some(b))
        }
        None => (None, None),
    }
}

/// `GET|DELETE /1.0/instances/N/logs/exec-output/<file>`.
pub async fn output_log(ctx: Ctx, name: &str, file: &str) -> Result<Reply> {
    if file.contains('/') || file.starts_with('.') || !file.starts_with("exec_") {
        return Err(Error::bad("Invalid log file name"));
    }
    let project = ctx.project().to_string();
    if ctx.daemon.model().instance(&project, name).is_none() {
        return Err(Error::not_found("Instance not found"));
    }
    let path = ctx.daemon.instance_log_dir(&project, name).join("exec-output").join(file);
    match ctx.method {
        hyper::Method::DELETE => {
            std::fs::remove_file(&path).map_err(|_| Error::not_found("Log file not found"))?;
            Ok(Reply::Sync(json!({})))
        }
        hyper::Method::GET => {
            let data = std::fs::read(&path).map_err(|_| Error::not_found("Log file not found"))?;
            Ok(Reply::Raw(super::raw(200, "application/octet-stream", data)))
        }
        _ => Err(Error::NotImplemented),
    }
}
