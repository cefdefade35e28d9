//! Shared helpers for the root container tests: a busybox rootfs and spec builder.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_engine::container::{Container, ContainerSpec, Exec, ExecRequest};
use berth_engine::testsupport::{probe_program, probe_root, require, Tier};

pub fn can_run(test: &str) -> bool {
    let probe = probe_root().and_then(|_| probe_program("busybox")).and_then(|_| probe_program("ip"));
    require(test, Tier::Root, probe)
}

/// A temp dir with a busybox rootfs at `<dir>/rootfs` and runtime/log paths beside it.
pub struct Fixture {
    _tmp: Option<tempfile::TempDir>,
    pub path: PathBuf,
    pub name: String,
}

pub const INITTAB: &str = "::sysinit:/bin/echo BOOTED\n::respawn:/bin/sh\n::shutdown:/bin/echo SHUTDOWN\n";

impl Fixture {
    pub fn new(test: &str) -> Fixture {
        let tmp = tempfile::Builder::new().prefix("berth-ct-").tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        // The container's root (an unmapped host uid) must be able to traverse to the rootfs.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let r = dir.join("rootfs");
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
        std::fs::write(r.join("etc/inittab"), INITTAB).unwrap();
        std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n").unwrap();
        std::fs::write(r.join("etc/group"), "root:x:0:\ntty:x:5:\nuser:x:1000:\n").unwrap();
        let name = format!("t{}-{}", std::process::id() % 100000, test.chars().take(20).collect::<String>());
        Fixture { _tmp: Some(tmp), path: dir, name }
    }

    /// A fixture made by another process (no cleanup here).
    pub fn open(path: &Path, name: &str) -> Fixture {
        Fixture { _tmp: None, path: path.to_path_buf(), name: name.to_string() }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    pub fn spec(&self, config: &[(&str, &str)]) -> ContainerSpec {
        self.spec_with(config, Default::default())
    }

    pub fn spec_with(&self, config: &[(&str, &str)], devices: berth_engine::config::Devices) -> ContainerSpec {
        let config: BTreeMap<String, String> = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut s = ContainerSpec::from_config(
            &self.name,
            self.rootfs(),
            self.path.join("run"),
            self.path.join("console.log"),
            config,
            devices,
            &[],
        )
        .unwrap();
        s.console_helper = PathBuf::from(env!("CARGO_BIN_EXE_berth-console"));
        s
    }
}

fn which(p: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap()).map(|d| d.join(p)).find(|p| p.is_file()).unwrap()
}

pub fn read_fd(fd: &OwnedFd) -> Vec<u8> {
    let mut f = std::fs::File::from(fd.try_clone().unwrap());
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    v
}

/// Runs a command with pipes; returns (exit code, stdout, stderr).
pub fn run(ct: &Container, cmd: &[&str]) -> (i32, String, String) {
    let req = ExecRequest { command: cmd.iter().map(|s| s.to_string()).collect(), cwd: "/".into(), ..Default::default() };
    let ex = ct.exec(&req).unwrap();
    finish(ex)
}

pub fn finish(mut ex: Exec) -> (i32, String, String) {
    drop(ex.stdin.take());
    let out = ex.stdout.take().unwrap();
    let err = ex.stderr.take().unwrap();
    let t = std::thread::spawn(move || read_fd(&err));
    let o = read_fd(&out);
    let e = t.join().unwrap();
    let code = ex.wait().unwrap();
    (code, String::from_utf8_lossy(&o).into_owned(), String::from_utf8_lossy(&e).into_owned())
}

/// Reads from `fd` until `needle` shows up or the deadline passes.
pub fn read_until(fd: i32, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut acc = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd.
        let n = unsafe { libc::poll(&mut p, 1, 100) };
        if n > 0 {
            // SAFETY: read into a local buffer.
            let k = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if k <= 0 {
                break;
            }
            acc.extend_from_slice(&buf[..k as usize]);
            if String::from_utf8_lossy(&acc).contains(needle) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&acc).into_owned()
}

pub fn write_all(fd: &impl AsRawFd, data: &[u8]) {
    // SAFETY: write from a live buffer.
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    assert_eq!(n as usize, data.len());
}

pub use berth_engine::testsupport::eventually;

pub fn devices(list: &[(&str, &[(&str, &str)])]) -> berth_engine::config::Devices {
    list.iter()
        .map(|(n, kv)| (n.to_string(), kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
        .collect()
}

/// A started container that is force-stopped when a test panics.
pub struct Ct(pub Container);

impl std::ops::Deref for Ct {
    type Target = Container;
    fn deref(&self) -> &Container {
        &self.0
    }
}

impl Drop for Ct {
    fn drop(&mut self) {
        if self.0.is_running() {
            let _ = self.0.stop(&berth_engine::container::NoHooks);
        }
    }
}

pub fn start(spec: &ContainerSpec, hooks: &dyn berth_engine::container::Hooks) -> (Ct, berth_engine::container::StartInfo) {
    let (ct, info) = Container::start(spec, hooks).unwrap();
    (Ct(ct), info)
}
