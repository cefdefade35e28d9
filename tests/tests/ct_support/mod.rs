//! Helpers shared by the root-tier container tests that drive berthd with `lxc`.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use berth_tests::{probe_program, probe_root, require, Daemon, Tier};
use serde_json::Value;

pub fn can_run(test: &str) -> bool {
    let probe = probe_root().and_then(|_| probe_program("busybox")).and_then(|_| probe_program("lxc"));
    require(test, Tier::Root, probe)
}

pub fn which(p: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap()).map(|d| d.join(p)).find(|p| p.is_file()).unwrap()
}

pub fn busybox_rootfs(r: &Path) {
    for d in ["bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy(which("busybox"), r.join("bin/busybox")).unwrap();
    for app in ["sh", "echo", "hostname", "sleep", "cat", "true", "init"] {
        std::os::unix::fs::symlink("busybox", r.join("bin").join(app)).unwrap();
    }
    std::os::unix::fs::symlink("../bin/busybox", r.join("sbin/init")).unwrap();
    std::fs::write(r.join("etc/inittab"), "::respawn:/bin/sleep 100000\n").unwrap();
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
}

pub fn make_container(d: &Daemon, name: &str, config: &[&str]) {
    let mut args = vec!["init", "--empty", name];
    for c in config {
        args.push("-c");
        args.push(c);
    }
    d.lxc_ok(&args);
    busybox_rootfs(&d.data_dir().join("storage-pools/default/containers").join(name).join("rootfs"));
}

/// Kills what a failed test left running (the pids come from the runtime state files).
pub struct Reaper(pub PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        let Ok(dirs) = std::fs::read_dir(self.0.join("containers")) else { return };
        for dir in dirs.flatten() {
            let Ok(text) = std::fs::read_to_string(dir.path().join("state.json")) else { continue };
            let Ok(st) = serde_json::from_str::<Value>(&text) else { continue };
            for key in ["pid", "holder_pid"] {
                if let Some(pid) = st[key].as_i64().filter(|p| *p > 1) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
    }
}

pub fn exec(d: &Daemon, name: &str, cmd: &[&str]) -> (i32, String, String) {
    let mut args = vec!["exec", name, "--"];
    args.extend_from_slice(cmd);
    let o = d.lxc(&args);
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}


/// Connects a websocket of operation `id` over the daemon's unix socket.
pub async fn ws_connect(d: &Daemon, id: &str, secret: &str) -> tokio_tungstenite::WebSocketStream<tokio::net::UnixStream> {
    let stream = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let url = format!("ws://unix.socket/1.0/operations/{id}/websocket?secret={secret}");
    tokio_tungstenite::client_async(url, stream).await.unwrap().0
}
