//! Root tier: containers driven end to end by the real `lxc` 5.0.2 client against berthd.
//!
//! Instances are created empty (`lxc init --empty`) and their rootfs is filled with
//! busybox on disk (`<data>/storage-pools/default/containers/<name>/rootfs`). Once the
//! image API lands, `make_container` becomes `lxc init IMAGE NAME` and nothing else changes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use berth_tests::lxc::{eventually, exec, status, Reaper};
use berth_tests::{probe_program, probe_root, require, Daemon, Tier};

mod ct_support;
use ct_support::which;
use serde_json::{json, Value};

fn can_run(test: &str) -> bool {
    let probe = probe_root().and_then(|_| probe_program("busybox")).and_then(|_| probe_program("lxc")).and_then(|_| probe_program("ip"));
    require(test, Tier::Root, probe)
}

/// A busybox root filesystem whose init echoes BOOTED/SHUTDOWN on the console.
fn busybox_rootfs(r: &Path) {
    for d in ["bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "mnt", "usr/bin"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let bb = which("busybox");
    std::fs::copy(&bb, r.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(&bb).arg("--list").output().unwrap();
    for app in String::from_utf8_lossy(&list.stdout).lines() {
        if app != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(app));
        }
    }
    std::os::unix::fs::symlink("../bin/busybox", r.join("sbin/init")).unwrap();
    std::fs::write(r.join("etc/inittab"), "::sysinit:/bin/echo BOOTED\n::respawn:/bin/sh\n::shutdown:/bin/echo SHUTDOWN\n").unwrap();
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n").unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\ntty:x:5:\nuser:x:1000:\n").unwrap();
}

/// Creates a stopped busybox container through `lxc` (config as `-c k=v`).
fn make_container(d: &Daemon, name: &str, config: &[&str]) {
    ct_support::make_container_with(d, name, config, busybox_rootfs);
}


#[test]
fn lxc_lifecycle_exec_freeze_stop_delete() {
    if !can_run("lxc_lifecycle_exec_freeze_stop_delete") {
        return;
    }
    let d = Daemon::start();
    let _reaper = Reaper(d.data_dir().to_path_buf());
    make_container(&d, "c1", &["environment.FOO=bar"]);
    assert_eq!(status(&d, "c1"), "Stopped");
    d.lxc_ok(&["start", "c1"]);
    assert_eq!(status(&d, "c1"), "Running");

    // Unprivileged: the uid map inside is not the host's.
    let (code, out, _) = exec(&d, "c1", &["cat", "/proc/self/uid_map"]);
    assert_eq!(code, 0);
    let host = std::fs::read_to_string("/proc/self/uid_map").unwrap();
    assert_ne!(out.split_whitespace().collect::<Vec<_>>(), host.split_whitespace().collect::<Vec<_>>());
    assert_eq!(out.split_whitespace().next(), Some("0"));
    assert_ne!(out.split_whitespace().nth(1), Some("0"), "root inside maps to host root: {out}");

    assert_eq!(exec(&d, "c1", &["echo", "hi"]), (0, "hi\n".to_string(), String::new()));
    let (code, out, err) = exec(&d, "c1", &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!((code, out.as_str(), err.as_str()), (3, "out\n", "err\n"));
    let (code, out, _) = exec(&d, "c1", &["sh", "-c", "echo $FOO"]);
    assert_eq!((code, out.trim()), (0, "bar"));
    let o = d.lxc(&["exec", "c1", "--user", "1000", "--group", "1000", "--cwd", "/tmp", "--env", "X=y", "--", "sh", "-c", "id -u; id -g; pwd; echo $X"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1000\n1000\n/tmp\ny\n");
    // stdin reaches the command and EOF ends it.
    let o = d.lxc_stdin(&["exec", "c1", "--", "cat"], Some("piped input\n"));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped input\n");
    let (code, _, _) = exec(&d, "c1", &["no-such-command"]);
    assert_eq!(code, 127);

    // Volatile keys and last_used_at.
    let inst = d.get("/1.0/instances/c1")["metadata"].clone();
    assert_eq!(inst["config"]["volatile.last_state.power"], "RUNNING");
    assert!(inst["config"]["volatile.idmap.current"].as_str().unwrap().contains("Hostid"));
    assert!(inst["config"].get("volatile.last_state.idmap").is_some());
    assert!(!inst["last_used_at"].as_str().unwrap().starts_with("1970"));

    // State.
    let st = d.get("/1.0/instances/c1/state")["metadata"].clone();
    assert_eq!(st["status"], "Running");
    assert!(st["pid"].as_i64().unwrap() > 0 && st["processes"].as_i64().unwrap() >= 1);
    assert!(st["memory"]["usage"].as_i64().unwrap() > 0);
    assert!(st["network"]["lo"].is_object());
    let list = d.get("/1.0/instances?recursion=2")["metadata"].clone();
    assert_eq!(list[0]["state"]["status"], "Running");
    assert!(list[0]["state"]["pid"].as_i64().unwrap() > 0);

    // Freeze; `lxc start` on a frozen container unfreezes it.
    d.lxc_ok(&["pause", "c1"]);
    assert_eq!(status(&d, "c1"), "Frozen");
    assert_eq!(d.get("/1.0/instances/c1/state")["metadata"]["status"], "Frozen");
    d.lxc_ok(&["start", "c1"]);
    assert_eq!(status(&d, "c1"), "Running");

    // Deleting a running instance is refused; `lxc delete -f` stops first.
    let o = d.lxc(&["delete", "c1"]);
    assert!(!o.status.success());

    // Clean stop: init runs its shutdown actions.
    d.lxc_ok(&["stop", "c1"]);
    assert_eq!(status(&d, "c1"), "Stopped");
    let log = d.lxc_ok(&["console", "c1", "--show-log"]);
    assert!(log.contains("BOOTED") && log.contains("SHUTDOWN"), "{log}");
    assert_eq!(d.get("/1.0/instances/c1")["metadata"]["config"]["volatile.last_state.power"], "STOPPED");
    let o = d.lxc(&["stop", "c1"]);
    assert!(!o.status.success(), "stopping a stopped instance must fail");

    // Forced stop and restart.
    d.lxc_ok(&["start", "c1"]);
    d.lxc_ok(&["restart", "--force", "c1"]);
    assert_eq!(status(&d, "c1"), "Running");
    d.lxc_ok(&["stop", "--force", "c1"]);
    assert_eq!(status(&d, "c1"), "Stopped");
    d.lxc_ok(&["start", "c1"]);
    d.lxc_ok(&["delete", "-f", "c1"]);
    assert_eq!(d.req("GET", "/1.0/instances/c1", None).status, 404);

    // Unknown action.
    make_container(&d, "c2", &[]);
    let r = d.req("PUT", "/1.0/instances/c2/state", Some(json!({"action": "dance"})));
    assert_eq!(r.status, 400);

    // Bulk state change (lxc start --all / stop --all).
    d.lxc_ok(&["start", "--all"]);
    assert_eq!(status(&d, "c2"), "Running");
    d.lxc_ok(&["stop", "--all", "--force"]);
    assert_eq!(status(&d, "c2"), "Stopped");

    // Ephemeral: deleted when stopped.
    d.lxc_ok(&["init", "--empty", "--ephemeral", "e1"]);
    busybox_rootfs(&d.data_dir().join("storage-pools/default/containers/e1/rootfs"));
    d.lxc_ok(&["start", "e1"]);
    d.lxc_ok(&["stop", "-f", "e1"]);
    eventually("ephemeral deletion", Duration::from_secs(10), || d.req("GET", "/1.0/instances/e1", None).status == 404);
}

#[test]
fn lxc_limits_oom_pids_live_update() {
    if !can_run("lxc_limits_oom_pids_live_update") {
        return;
    }
    let d = Daemon::start();
    let _reaper = Reaper(d.data_dir().to_path_buf());
    make_container(&d, "lim", &["limits.memory=64MB", "limits.memory.swap=false", "limits.processes=12"]);
    d.lxc_ok(&["start", "lim"]);
    // 200 MB in a 64 MB cgroup: only the command inside is killed.
    let (code, _, _) = exec(&d, "lim", &["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"]);
    assert_eq!(code, 137);
    assert_eq!(status(&d, "lim"), "Running");
    assert_eq!(exec(&d, "lim", &["echo", "alive"]).1, "alive\n");
    // pids.max from limits.processes.
    let (_, _, err) = exec(&d, "lim", &["sh", "-c", "for i in $(seq 20); do sleep 3 & done; wait; echo done"]);
    assert!(err.contains("can't fork") || err.contains("Resource temporarily unavailable"), "{err}");
    // Live update applies at once; a non-live key is refused while running.
    d.lxc_ok(&["config", "set", "lim", "limits.processes", "40"]);
    let (_, _, err) = exec(&d, "lim", &["sh", "-c", "for i in $(seq 20); do sleep 1 & done; wait; echo done"]);
    assert!(!err.contains("can't fork"), "{err}");
    let o = d.lxc(&["config", "set", "lim", "security.privileged", "true"]);
    assert!(!o.status.success(), "non-live key accepted on a running instance");
    d.lxc_ok(&["stop", "-f", "lim"]);
}

#[test]
fn lxc_adoption_after_daemon_kill() {
    if !can_run("lxc_adoption_after_daemon_kill") {
        return;
    }
    let mut d = Daemon::start();
    let _reaper = Reaper(d.data_dir().to_path_buf());
    make_container(&d, "ad", &[]);
    d.lxc_ok(&["start", "ad"]);
    let pid = d.get("/1.0/instances/ad/state")["metadata"]["pid"].as_i64().unwrap();
    d.kill9();
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "container died with the daemon");
    d.spawn();
    assert_eq!(status(&d, "ad"), "Running");
    assert_eq!(d.get("/1.0/instances/ad/state")["metadata"]["pid"].as_i64().unwrap(), pid);
    assert_eq!(exec(&d, "ad", &["echo", "again"]).1, "again\n");
    let log = d.lxc_ok(&["console", "ad", "--show-log"]);
    assert!(log.contains("BOOTED"), "{log}");
    d.lxc_ok(&["stop", "-f", "ad"]);
    assert_eq!(status(&d, "ad"), "Stopped");
    // Gone, or a zombie waiting for whoever inherited it when the old daemon died.
    eventually("init exit", Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
    });
    // boot.autostart: started when the daemon starts.
    d.lxc_ok(&["config", "set", "ad", "boot.autostart", "true"]);
    d.kill9();
    d.spawn();
    eventually("autostart", Duration::from_secs(10), || status(&d, "ad") == "Running");
    d.lxc_ok(&["stop", "-f", "ad"]);
}

#[test]
fn lxc_files_push_pull_symlinks() {
    if !can_run("lxc_files_push_pull_symlinks") {
        return;
    }
    let d = Daemon::start();
    let _reaper = Reaper(d.data_dir().to_path_buf());
    make_container(&d, "f", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.txt");
    std::fs::write(&src, "pushed\n").unwrap();
    // Stopped container.
    d.lxc_ok(&["file", "push", src.to_str().unwrap(), "f/root/a.txt"]);
    let dst = tmp.path().join("out.txt");
    d.lxc_ok(&["file", "pull", "f/root/a.txt", dst.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&dst).unwrap(), "pushed\n");
    d.lxc_ok(&["start", "f"]);
    // Owned by container root, which is not host root.
    assert_eq!(exec(&d, "f", &["stat", "-c", "%u:%g", "/root/a.txt"]).1.trim(), "0:0");
    // Running container: push with ownership, mkdir -p, delete.
    d.lxc_ok(&["file", "push", "--uid", "1000", "--gid", "1000", "--mode", "0600", src.to_str().unwrap(), "f/tmp/u.txt"]);
    assert_eq!(exec(&d, "f", &["stat", "-c", "%u:%g:%a", "/tmp/u.txt"]).1.trim(), "1000:1000:600");
    d.lxc_ok(&["file", "push", "-p", src.to_str().unwrap(), "f/x/y/z.txt"]);
    assert_eq!(exec(&d, "f", &["cat", "/x/y/z.txt"]).1, "pushed\n");
    d.lxc_ok(&["file", "delete", "f/x/y/z.txt"]);
    assert_ne!(exec(&d, "f", &["test", "-e", "/x/y/z.txt"]).0, 0);
    // Headers and directory listing.
    let r = d.raw("GET", "/1.0/instances/f/files?path=/tmp/u.txt", &[], vec![]);
    assert_eq!((r.header("x-lxd-uid").as_deref(), r.header("x-lxd-mode").as_deref(), r.header("x-lxd-type").as_deref()), (Some("1000"), Some("0600"), Some("file")));
    let r = d.raw("GET", "/1.0/instances/f/files?path=/x", &[], vec![]);
    assert_eq!(r.json()["metadata"], json!(["y"]));
    // Append.
    let r = d.raw("POST", "/1.0/instances/f/files?path=/tmp/u.txt", &[("X-LXD-write", "append")], b"more\n".to_vec());
    assert_eq!(r.status, 200);
    assert_eq!(exec(&d, "f", &["cat", "/tmp/u.txt"]).1, "pushed\nmore\n");
    let r = d.raw("POST", "/1.0/instances/f/files?path=/tmp/u.txt", &[("X-LXD-write", "bogus")], vec![]);
    assert_eq!(r.status, 400);
    // Symlinks: created and reported as such; an escaping link stays inside the root.
    let r = d.raw("POST", "/1.0/instances/f/files?path=/escape", &[("X-LXD-type", "symlink")], b"/../../../../../../tmp".to_vec());
    assert_eq!(r.status, 200);
    let r = d.raw("GET", "/1.0/instances/f/files?path=/escape", &[], vec![]);
    assert_eq!((r.header("x-lxd-type").as_deref(), &r.body[..]), (Some("symlink"), &b"/../../../../../../tmp"[..]));
    let marker = format!("berth-escape-{}", std::process::id());
    d.lxc_ok(&["file", "push", src.to_str().unwrap(), &format!("f/escape/{marker}")]);
    assert!(!Path::new("/tmp").join(&marker).exists(), "push escaped the container root");
    assert_eq!(exec(&d, "f", &["cat", &format!("/tmp/{marker}")]).1, "pushed\n");
    let r = d.raw("GET", "/1.0/instances/f/files?path=/escape/../../etc/hostname", &[], vec![]);
    assert_ne!(r.status, 200, "read outside the root");
    d.lxc_ok(&["stop", "-f", "f"]);
}

#[test]
fn lxc_interactive_exec_and_websocket_protocol() {
    if !can_run("lxc_interactive_exec_and_websocket_protocol") || !require("lxc_interactive", Tier::Root, probe_program("script")) {
        return;
    }
    let d = Daemon::start();
    let _reaper = Reaper(d.data_dir().to_path_buf());
    make_container(&d, "i", &[]);
    d.lxc_ok(&["start", "i"]);
    // `script` gives lxc a tty, so it asks for an interactive session with a pty.
    let conf = d.data_dir().join("lxc-conf");
    let o = std::process::Command::new("script")
        .args(["-qec", "lxc exec i -- sh -c 'tty; stty size; exit 5'", "/dev/null"])
        .env("LXD_SOCKET", &d.socket)
        .env("LXD_CONF", &conf)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("/dev/pts/"), "{out}");
    assert_eq!(o.status.code(), Some(5), "{out}");

    // Background exec with recorded output.
    let r = d.req("POST", "/1.0/instances/i/exec", Some(json!({"command": ["sh", "-c", "echo rec; echo rerr >&2; exit 4"], "wait-for-websocket": false, "record-output": true, "interactive": false, "environment": null, "user": null, "group": null, "cwd": null})));
    let op = d.wait_op(&r);
    assert_eq!(op["metadata"]["return"], 4, "{op}");
    let url = op["metadata"]["output"]["1"].as_str().unwrap().to_string();
    let r = d.raw("GET", &url, &[], vec![]);
    assert_eq!(&r.body[..], b"rec\n");

    // Websocket op: secrets.
    let r = d.req("POST", "/1.0/instances/i/exec", Some(json!({"command": ["true"], "wait-for-websocket": true, "interactive": false})));
    assert_eq!(r.status, 202);
    let body: Value = r.json();
    assert_eq!(body["metadata"]["class"], "websocket");
    let fds = body["metadata"]["metadata"]["fds"].clone();
    assert!(fds["0"].is_string() && fds["1"].is_string() && fds["2"].is_string() && fds["control"].is_string());
    let id = body["metadata"]["id"].as_str().unwrap();
    assert_eq!(d.req("GET", &format!("/1.0/operations/{id}/websocket?secret=wrong"), None).status, 403);
    assert_eq!(d.req("GET", &format!("/1.0/operations/{id}/websocket"), None).status, 400);
    assert_eq!(d.req("GET", "/1.0/operations/00000000-0000-0000-0000-000000000000/websocket?secret=x", None).status, 404);
    // Nobody connects: the operation fails after the timeout.
    let op = d.wait_op(&r);
    assert_eq!(op["status"], "Failure");

    // Many execs at once.
    let hs: Vec<_> = (0..6)
        .map(|n| {
            let sock = d.socket.clone();
            let conf = conf.clone();
            std::thread::spawn(move || {
                let o = std::process::Command::new("lxc")
                    .args(["exec", "i", "--", "sh", "-c", &format!("sleep 0.3; echo {n}")])
                    .env("LXD_SOCKET", sock)
                    .env("LXD_CONF", conf)
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&o.stdout).trim().to_string()
            })
        })
        .collect();
    for (n, h) in hs.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), n.to_string());
    }
    // Console over websockets: type into fd 0, see the echo, detach by closing control.
    console_roundtrip(&d, "i");
    // Console log API.
    let r = d.raw("GET", "/1.0/instances/i/console", &[], vec![]);
    assert!(String::from_utf8_lossy(&r.body).contains("BOOTED"));
    assert_eq!(d.req("DELETE", "/1.0/instances/i/console", None).status, 200);
    let r = d.raw("GET", "/1.0/instances/i/console", &[], vec![]);
    assert!(!String::from_utf8_lossy(&r.body).contains("BOOTED"));
    d.lxc_ok(&["stop", "-f", "i"]);
}

#[test]
fn lxc_bridge_ping_and_devices() {
    if !can_run("lxc_bridge_ping_and_devices") {
        return;
    }
    let br = format!("btbr{}", std::process::id() % 100000);
    let ip = |args: &[&str]| std::process::Command::new("ip").args(args).status().unwrap().success();
    assert!(ip(&["link", "add", &br, "type", "bridge"]));
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
    let _c = Cleanup(br.clone());
    assert!(ip(&["link", "set", &br, "up"]));
    let d = Daemon::start();
    let _reaper = Reaper(d.data_dir().to_path_buf());
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(shared.path().join("hello"), "from host\n").unwrap();
    for (n, addr) in [("n1", "169.254.88.1"), ("n2", "169.254.88.2")] {
        make_container(&d, n, &[]);
        d.lxc_ok(&["config", "device", "add", n, "eth0", "nic", "nictype=bridged", &format!("parent={br}")]);
        d.lxc_ok(&["start", n]);
        let (code, _, err) = exec(&d, n, &["sh", "-c", &format!("ip link set lo up && ip addr add {addr}/24 dev eth0 && ip link set eth0 up")]);
        assert_eq!(code, 0, "{err}");
        let host = d.get(&format!("/1.0/instances/{n}"))["metadata"]["config"]["volatile.eth0.host_name"].as_str().unwrap_or("").to_string();
        assert!(!host.is_empty(), "volatile.eth0.host_name not written");
    }
    let (code, out, err) = exec(&d, "n1", &["ping", "-c", "2", "-W", "5", "169.254.88.2"]);
    assert_eq!(code, 0, "{out}{err}");
    let st = d.get("/1.0/instances/n1/state")["metadata"].clone();
    assert!(st["network"]["eth0"]["counters"]["packets_sent"].as_u64().unwrap() >= 2, "{st}");
    // Hotplug a read-only host path disk into the running container.
    d.lxc_ok(&["config", "device", "add", "n1", "shared", "disk", &format!("source={}", shared.path().display()), "path=/mnt/shared", "readonly=true"]);
    assert_eq!(exec(&d, "n1", &["cat", "/mnt/shared/hello"]).1, "from host\n");
    assert_ne!(exec(&d, "n1", &["touch", "/mnt/shared/x"]).0, 0, "read-only disk is writable");
    d.lxc_ok(&["config", "device", "remove", "n1", "shared"]);
    // A device the running container cannot take is refused and not kept (as LXD).
    let o = d.lxc(&["config", "device", "add", "n1", "bad", "unix-char", "source=/dev/berth-no-such-node"]);
    assert!(!o.status.success(), "a missing device node was accepted");
    assert!(d.get("/1.0/instances/n1")["metadata"]["devices"].get("bad").is_none(), "a refused device stays in the record");
    assert_ne!(exec(&d, "n1", &["test", "-e", "/mnt/shared/hello"]).0, 0);
    for n in ["n1", "n2"] {
        d.lxc_ok(&["stop", "-f", n]);
    }
}

async fn ws_connect(d: &Daemon, id: &str, secret: &str) -> tokio_tungstenite::WebSocketStream<tokio::net::UnixStream> {
    let stream = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let url = format!("ws://unix.socket/1.0/operations/{id}/websocket?secret={secret}");
    tokio_tungstenite::client_async(url, stream).await.unwrap().0
}

fn console_roundtrip(d: &Daemon, name: &str) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let r = d.req("POST", &format!("/1.0/instances/{name}/console"), Some(json!({"width": 80, "height": 24, "type": "console"})));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let meta = r.json()["metadata"].clone();
    let id = meta["id"].as_str().unwrap().to_string();
    let fds = meta["metadata"]["fds"].clone();
    berth_tests::block_on(async {
        let mut control = ws_connect(d, &id, fds["control"].as_str().unwrap()).await;
        let mut data = ws_connect(d, &id, fds["0"].as_str().unwrap()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        data.send(Message::binary(b"echo CONSOLE$((40+2))\r".to_vec())).await.unwrap();
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&seen).contains("CONSOLE42") {
            match tokio::time::timeout_at(deadline, data.next()).await.expect("console output in time") {
                Some(Ok(Message::Binary(b))) => seen.extend_from_slice(&b),
                Some(Ok(_)) => {}
                other => panic!("console closed: {other:?} after {:?}", String::from_utf8_lossy(&seen)),
            }
        }
        control.close(None).await.unwrap();
    });
    let w = d.get(&format!("/1.0/operations/{id}/wait?timeout=10"))["metadata"].clone();
    assert_eq!(w["status"], "Success", "{w}");
}

#[test]
fn lxc_launch_from_busybox_image() {
    if !can_run("lxc_launch_from_busybox_image") {
        return;
    }
    let d = Daemon::start();
    let _reaper = Reaper(d.data_dir().to_path_buf());
    // A unified image tarball: metadata.yaml + rootfs/.
    let tmp = tempfile::tempdir().unwrap();
    busybox_rootfs(&tmp.path().join("rootfs"));
    std::fs::write(tmp.path().join("metadata.yaml"), "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: busybox\n").unwrap();
    let tarball = tmp.path().join("bb.tar.gz");
    let ok = std::process::Command::new("tar")
        .arg("-C")
        .arg(tmp.path())
        .arg("-czf")
        .arg(&tarball)
        .args(["metadata.yaml", "rootfs"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar failed");
    d.lxc_ok(&["image", "import", tarball.to_str().unwrap(), "--alias", "bb"]);
    d.lxc_ok(&["launch", "bb", "l1"]);
    assert_eq!(status(&d, "l1"), "Running");
    assert_eq!(exec(&d, "l1", &["echo", "from-image"]).1, "from-image\n");
    let (_, map, _) = exec(&d, "l1", &["cat", "/proc/self/uid_map"]);
    assert_ne!(map.split_whitespace().nth(1), Some("0"), "{map}");
    d.lxc_ok(&["delete", "-f", "l1"]);
}

/// Lifecycle hooks through a real compiled plugin: `max-running` (pre-start, using the
/// host query) refuses a second running container, and the hook order is
/// pre-start, onstart, pre-stop, onstopns, onstop.
#[test]
fn lxc_plugin_pre_start_denies_and_hooks_fire_in_order() {
    if !can_run("lxc_plugin_pre_start_denies_and_hooks_fire_in_order") {
        return;
    }
    use futures_util::StreamExt;
    let d = Daemon::start();
    let _reaper = Reaper(d.data_dir().to_path_buf());
    let wasm = std::fs::read(berth_tests::wasm::MAX_RUNNING).expect("max-running built");
    let r = d.raw("POST", "/1.0/plugins?name=max-running", &[("content-type", "application/octet-stream")], wasm);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = d.req("PATCH", "/1.0/plugins/max-running", Some(json!({"config": {"max": "1"}})));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    make_container(&d, "h1", &[]);
    make_container(&d, "h2", &[]);

    let actions = berth_tests::block_on(async {
        let mut ws = berth_tests::events(&d.socket, "?type=lifecycle").await.unwrap();
        let lxc = |args: Vec<&'static str>| {
            let d = &d;
            let o = d.lxc(&args);
            (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
        };
        assert!(lxc(vec!["start", "h1"]).0);
        let (ok, err) = lxc(vec!["start", "h2"]);
        assert!(!ok, "a second running instance is refused");
        assert!(err.contains("max-running") && err.contains("limit 1"), "the plugin and its reason are shown: {err}");
        assert!(lxc(vec!["stop", "h1", "--force"]).0);
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !seen.iter().any(|a: &String| a == "instance-hook-onstop") {
            let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await else { break };
            if !msg.is_text() {
                continue;
            }
            let ev: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
            let action = ev["metadata"]["action"].as_str().unwrap_or_default().to_string();
            let source = ev["metadata"]["source"].as_str().unwrap_or_default();
            if action.starts_with("instance-hook-") && source.ends_with("/h1") {
                seen.push(action);
            }
        }
        seen
    });
    assert_eq!(
        actions,
        ["instance-hook-pre-start", "instance-hook-onstart", "instance-hook-pre-stop", "instance-hook-onstopns", "instance-hook-onstop"]
    );
    assert_eq!(status(&d, "h2"), "Stopped");
    d.lxc_ok(&["start", "h2"]);
    assert_eq!(status(&d, "h2"), "Running");
    d.lxc_ok(&["stop", "h2", "--force"]);
}

/// Exec (non-interactive and interactive) and the console over wss: the same websocket
/// protocol through the HTTPS listener, with the real `lxc` client on a trusted remote.
#[test]
fn lxc_exec_and_console_over_wss() {
    if !can_run("lxc_exec_and_console_over_wss") || !require("lxc_exec_and_console_over_wss", Tier::Root, probe_program("script")) {
        return;
    }
    let d = Daemon::start();
    let _reaper = Reaper(d.data_dir().to_path_buf());
    make_container(&d, "w", &[]);
    d.lxc_ok(&["start", "w"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    d.lxc_ok(&["config", "set", "core.https_address", &addr]);
    d.lxc_ok(&["config", "set", "core.trust_password", "sekrit"]);
    eventually("https listener", Duration::from_secs(10), || std::net::TcpStream::connect(&addr).is_ok());
    d.lxc_ok(&["remote", "add", "r", &format!("https://{addr}"), "--password", "sekrit", "--accept-certificate"]);

    // Non-interactive exec over wss: binary-safe stdout and stderr, exit code.
    let o = d.lxc(&["exec", "r:w", "--", "sh", "-c", "echo out-over-wss; echo err-over-wss >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out-over-wss\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("err-over-wss"));

    let conf = d.data_dir().join("lxc-conf");
    // Interactive exec over wss: `script` gives lxc a tty, so it asks for a pty.
    let o = std::process::Command::new("script")
        .args(["-qec", "lxc exec r:w -- sh -c 'tty; exit 6'", "/dev/null"])
        .env("LXD_CONF", &conf)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("/dev/pts/"), "{out}");
    assert_eq!(o.status.code(), Some(6), "{out}");

    // The console over wss: type a command into the container's console shell, detach
    // with Ctrl-a q, and find its output in the console log.
    let mut child = std::process::Command::new("script")
        .args(["-qec", "lxc console r:w", "/dev/null"])
        .env("LXD_CONF", &conf)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        std::thread::sleep(Duration::from_millis(800));
        stdin.write_all(b"echo CONSOLE-OVER-$((6*7))\r").unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(800));
        stdin.write_all(b"\x01q").unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    eventually("console output in the log", Duration::from_secs(10), || {
        d.lxc_ok(&["console", "r:w", "--show-log"]).contains("CONSOLE-OVER-42")
    });
    let _ = child.kill();
    let _ = child.wait();
    d.lxc_ok(&["stop", "-f", "w"]);
}

/// `berthd shutdown` (as `lxd shutdown`) and SIGPWR stop the running instances (clean, then killed
/// after `boot.host_shutdown_timeout`) before the daemon exits; the next start brings back
/// those that were running, except with `boot.autostart=false`.
#[test]
fn daemon_shutdown_stops_instances_and_the_next_start_restores_them() {
    if !can_run("daemon_shutdown_stops_instances_and_the_next_start_restores_them") {
        return;
    }
    let mut d = Daemon::start();
    let _reaper = Reaper(d.data_dir().to_path_buf());
    make_container(&d, "s1", &["boot.host_shutdown_timeout=1"]);
    make_container(&d, "s2", &["boot.host_shutdown_timeout=1", "boot.autostart=false"]);
    make_container(&d, "s3", &[]);
    let mut pids = Vec::new();
    for n in ["s1", "s2"] {
        d.lxc_ok(&["start", n]);
        pids.push(d.get(&format!("/1.0/instances/{n}/state"))["metadata"]["pid"].as_i64().unwrap());
    }
    let r = d.req("PUT", "/internal/shutdown", None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let exit = d.take_child().unwrap().wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    for pid in &pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "init {pid} still runs after the daemon shutdown");
    }
    d.spawn();
    assert_eq!(status(&d, "s1"), "Running", "running before the shutdown: started again");
    assert_eq!(status(&d, "s2"), "Stopped", "boot.autostart=false");
    assert_eq!(status(&d, "s3"), "Stopped", "was not running");
    // SIGPWR (the host going down) does the same.
    let pid = d.get("/1.0/instances/s1/state")["metadata"]["pid"].as_i64().unwrap();
    let exit = d.signal_and_wait(nix::sys::signal::Signal::SIGPWR);
    assert!(exit.success(), "{exit:?}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "init {pid} still runs after SIGPWR");
    d.spawn();
    assert_eq!(status(&d, "s1"), "Running", "started again after SIGPWR");
    d.lxc_ok(&["stop", "-f", "s1"]);
}
