//! What the daemon hands the runtime to start a container: built from an instance's
//! expanded config and devices plus the paths the daemon owns.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::Devices;
use crate::idmap::{HostRange, IdmapConfig, IdmapSet};

use super::Error;

/// Everything needed to start one container.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Instance name: cgroup name and default hostname.
    pub name: String,
    /// The instance's root filesystem directory on the host.
    pub rootfs: PathBuf,
    /// Per-instance runtime dir (state file, console socket); survives daemon restarts.
    pub runtime_dir: PathBuf,
    /// Console log file (appended to, kept across daemon restarts).
    pub log_path: PathBuf,
    /// The expanded config (limits.*, security.*, environment.*, volatile.*).
    pub config: BTreeMap<String, String>,
    /// The expanded devices.
    pub devices: Devices,
    /// The id map; None runs privileged (no user namespace).
    pub idmap: Option<IdmapSet>,
    /// How the rootfs on disk is shifted now (`volatile.last_state.idmap`); None = unshifted.
    pub disk_idmap: Option<IdmapSet>,
    /// argv of the init process.
    pub init: Vec<String>,
    /// cgroup parent relative to the daemon's own cgroup (None = directly in it).
    pub cgroup_parent: Option<String>,
    /// The `berth-console` helper binary (holds the console pty, writes the log).
    pub console_helper: PathBuf,
    /// Signal for a clean shutdown (SIGPWR like LXC unless configured).
    pub halt_signal: i32,
}

impl ContainerSpec {
    /// Builds a spec from an expanded config. `used_maps` are the id maps of the other
    /// instances (for `security.idmap.isolated`).
    pub fn from_config(
        name: &str,
        rootfs: PathBuf,
        runtime_dir: PathBuf,
        log_path: PathBuf,
        config: BTreeMap<String, String>,
        devices: Devices,
        used_maps: &[IdmapSet],
    ) -> Result<Self, Error> {
        let privileged = config.get("security.privileged").is_some_and(|v| is_true(v));
        let idmap = if privileged {
            None
        } else {
            let cfg = IdmapConfig::from_config(&config)?;
            Some(IdmapSet::allocate(&cfg, &HostRange::from_host(), used_maps)?)
        };
        let disk_idmap = match config.get("volatile.last_state.idmap") {
            Some(j) => Some(IdmapSet::from_json(j)?).filter(|m| !m.entries.is_empty()),
            None => None,
        };
        Ok(Self {
            name: name.to_string(),
            rootfs,
            runtime_dir,
            log_path,
            config,
            devices,
            idmap,
            disk_idmap,
            init: vec!["/sbin/init".into()],
            cgroup_parent: None,
            console_helper: default_helper(),
            halt_signal: libc::SIGPWR,
        })
    }

    pub fn privileged(&self) -> bool {
        self.idmap.is_none()
    }

    pub fn nesting(&self) -> bool {
        self.config.get("security.nesting").is_some_and(|v| is_true(v))
    }

    /// Hostname: the instance name.
    pub fn hostname(&self) -> &str {
        &self.name
    }

    /// Init environment: LXD's defaults plus `environment.*`.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        env.insert("container".into(), "lxc".into());
        for (k, v) in &self.config {
            if let Some(var) = k.strip_prefix("environment.") {
                env.insert(var.to_string(), v.clone());
            }
        }
        env.into_iter().collect()
    }

    /// Host uid/gid of container root (0/0 when privileged).
    pub fn root_host_ids(&self) -> (u32, u32) {
        match &self.idmap {
            Some(m) => (
                m.to_host(true, 0).unwrap_or(0) as u32,
                m.to_host(false, 0).unwrap_or(0) as u32,
            ),
            None => (0, 0),
        }
    }
}

/// `berth-console` next to the running executable (or on PATH).
pub fn default_helper() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("berth-console")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("berth-console"))
}

pub(crate) fn is_true(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
}
