//! Helpers shared by the root-tier container tests that drive berthd with `lxc`.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[allow(unused_imports)] // each test binary uses a different subset
pub use berth_tests::lxc::{exec, Reaper};
use berth_tests::{probe_program, probe_root, require, Daemon, Tier};

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
    make_container_with(d, name, config, busybox_rootfs);
}

/// Creates a stopped container through `lxc init --empty` (config as `-c k=v`) and
/// fills its rootfs with `fill`.
pub fn make_container_with(d: &Daemon, name: &str, config: &[&str], fill: fn(&Path)) {
    let mut args = vec!["init", "--empty", name];
    for c in config {
        args.push("-c");
        args.push(c);
    }
    d.lxc_ok(&args);
    fill(&d.data_dir().join("storage-pools/default/containers").join(name).join("rootfs"));
}



/// Connects a websocket of operation `id` over the daemon's unix socket.
pub async fn ws_connect(d: &Daemon, id: &str, secret: &str) -> tokio_tungstenite::WebSocketStream<tokio::net::UnixStream> {
    let stream = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let url = format!("ws://unix.socket/1.0/operations/{id}/websocket?secret={secret}");
    tokio_tungstenite::client_async(url, stream).await.unwrap().0
}
