//! Helpers for tests that drive berthd with the `lxc` client: instance status,
//! exec, polling, and a reaper for what a failed test leaves running.

use std::path::PathBuf;

use serde_json::Value;

use crate::Daemon;

/// The instance's `status` as the API reports it ("" if unknown).
pub fn status(d: &Daemon, name: &str) -> String {
    d.get(&format!("/1.0/instances/{name}"))["metadata"]["status"].as_str().unwrap_or("").to_string()
}

/// `lxc exec NAME -- CMD`: (exit code, stdout, stderr).
pub fn exec(d: &Daemon, name: &str, cmd: &[&str]) -> (i32, String, String) {
    let mut args = vec!["exec", name, "--"];
    args.extend_from_slice(cmd);
    let o = d.lxc(&args);
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

pub use berth_engine::testsupport::eventually;

/// Kills every container a test left running (a failed assertion skips its
/// stops): the pids come from the runtime state files under the data dir given,
/// so this works without the daemon.
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
