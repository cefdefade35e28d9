//! The validation catalogue: every instance config key, server key and device type as a
//! table of key → validator, scope, live-update flag and one doc line (LXD 5.0.2 rules).
//!
//! CONTRACT (used by the API layer; keep these signatures):
//! - `validate_instance_config(config, ty, ConfigLevel)`
//! - `validate_devices(devices, ty, ConfigLevel)`
//! - `validate_server_config(config)`
//! - `valid_instance_name`, `valid_snapshot_name`, `valid_device_name`
//! - `parse_cpuset`, `parse_raw_idmap`, `allowed_unprivileged_only_map`
//! - `next_interface_hwaddr`, `is_live_updatable`
//!
//! Layout: `validators` (value checks as data), `instance_keys` + `instance` (instance
//! keys and cross-key rules), `device_tables` + `device_rules` + `devices` (devices),
//! `server_keys`, `names`, `cpuset`, `idmap`, `raw_lxc`, `units`, `hwaddr`, `reference`
//! (docs/config-keys.md generated from the tables).

use std::collections::{BTreeMap, HashSet};

mod cpuset;
mod device_order;
mod device_rules;
mod device_tables;
mod devices;
mod hwaddr;
mod idmap;
mod instance;
mod instance_keys;
mod names;
mod raw_lxc;
mod reference;
mod schedule;
mod server_keys;
mod units;
mod validators;

pub use cpuset::{limits_cpu, CpuLimit};
pub use device_order::{reversed_devices, sorted_devices, NamedDevice};
pub use device_rules::{is_root_disk, parse_proxy_address, ProxyAddress};
pub use device_tables::{DeviceKey, DeviceSpec, DEVICE_SPECS};
pub use devices::{
    check_host_paths, check_host_paths_under, find_spec, validate_device, validate_device_with_networks,
    validate_devices_with_networks, NetworkTypes,
};
pub use idmap::unprivileged_only;
pub use instance::{validate_instance_config_with, Policy};
pub use instance_keys::{applies_live, include_when_copying, is_live_updatable_for, KeySpec, Live, Match, Scope, INSTANCE_KEYS, SCHEDULE_ALIASES};
pub use raw_lxc::{parse_raw_lxc_line, validate_raw_lxc};
pub use reference::render_reference_markdown;
pub use server_keys::{lookup_server_key, ServerKey, ServerScope, SERVER_KEYS};
pub use units::{is_false, is_true, parse_byte_size};
pub use validators::Validator;

/// The instance type a key or device applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum InstanceType {
    /// A container (namespaces and cgroups).
    #[serde(rename = "container")]
    Container,
    /// A QEMU virtual machine.
    #[serde(rename = "virtual-machine")]
    VirtualMachine,
    /// Profiles and expanded configs are checked as "any".
    #[serde(rename = "any")]
    Any,
}

/// Where a config map comes from: it decides which keys are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigLevel {
    /// An instance's own config: volatile.* and image.* allowed, type-specific keys checked.
    Instance,
    /// The expanded config (profiles merged, then instance); validated as type Any.
    Expanded,
    /// A profile: volatile.* and image.* are refused.
    Profile,
}

/// Devices: name → (key → value).
pub type Devices = BTreeMap<String, BTreeMap<String, String>>;

/// A validation failure that names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A key no table knows (or a key of the other instance type).
    #[error("Unknown configuration key: {0}")]
    UnknownKey(String),
    /// A known key with a value its validator refuses.
    #[error("Invalid value for configuration key \"{key}\": {reason}")]
    InvalidValue {
        /// The config key.
        key: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// A device that fails its type's rules; the reason names the option.
    #[error("Device validation failed for \"{device}\": {reason}")]
    Device {
        /// The device name.
        device: String,
        /// What is wrong, naming the option.
        reason: String,
    },
    /// A rule across keys (mutual exclusions, profile restrictions) or a parse error.
    #[error("{0}")]
    Other(String),
}

impl ConfigError {
    /// The message without the key/device prefix (for nesting into another error).
    pub fn reason(&self) -> String {
        match self {
            ConfigError::InvalidValue { reason, .. } | ConfigError::Device { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }
}

/// Validates an instance, profile or expanded config map. Expanded and profile configs are
/// checked as type Any; profiles refuse `volatile.*` and `image.*`. The unprivileged-only
/// policy comes from `BERTH_UNPRIVILEGED_ONLY` (see [`validate_instance_config_with`]).
pub fn validate_instance_config(
    config: &BTreeMap<String, String>,
    ty: InstanceType,
    level: ConfigLevel,
) -> Result<(), ConfigError> {
    instance::validate_instance_config_with(config, ty, level, Policy::from_env())
}

/// Validates every device of an instance or profile. Profiles are checked as type Any;
/// `Expanded` device sets must contain a root disk. Host paths are not looked at (see
/// [`check_host_paths`]).
pub fn validate_devices(devices: &Devices, ty: InstanceType, level: ConfigLevel) -> Result<(), ConfigError> {
    devices::validate_devices(devices, ty, level)
}

/// Validates the server config map (`PUT /1.0`).
pub fn validate_server_config(config: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    server_keys::validate_server_config(config)
}

/// ValidName for instances (hostname rules).
pub fn valid_instance_name(name: &str) -> Result<(), ConfigError> {
    names::valid_instance_name(name)
}

/// Snapshot names: anything but space and `/`.
pub fn valid_snapshot_name(name: &str) -> Result<(), ConfigError> {
    names::valid_snapshot_name(name)
}

/// Device names: 1–63 of `[/.\-:_A-Za-z0-9]`, not starting with `.`.
pub fn valid_device_name(name: &str) -> Result<(), ConfigError> {
    names::valid_device_name(name)
}

/// ParseCpuset: "0-3,5" → [0,1,2,3,5].
pub fn parse_cpuset(value: &str) -> Result<Vec<u32>, ConfigError> {
    cpuset::parse_cpuset(value)
}

/// One `raw.idmap` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdmapEntry {
    /// Maps user ids.
    pub is_uid: bool,
    /// Maps group ids.
    pub is_gid: bool,
    /// First id on the host.
    pub host_id: u64,
    /// First id inside the instance.
    pub ns_id: u64,
    /// Number of ids mapped.
    pub range: u64,
}

/// ParseRawIdmap.
pub fn parse_raw_idmap(value: &str) -> Result<Vec<IdmapEntry>, ConfigError> {
    idmap::parse_raw_idmap(value)
}

/// AllowedUnprivilegedOnlyMap: refuses a raw.idmap that maps host id 0.
pub fn allowed_unprivileged_only_map(value: &str) -> Result<(), ConfigError> {
    idmap::allowed_unprivileged_only_map(value)
}

/// DeviceNextInterfaceHWAddr: a random `00:16:3e:xx:xx:xx` not in `taken`.
pub fn next_interface_hwaddr(taken: &HashSet<String>) -> String {
    hwaddr::next_interface_hwaddr(taken)
}

/// Whether a key may change on a running instance of any type (LXD's VM live-update list;
/// running containers accept more, see [`is_live_updatable_for`] and [`applies_live`]).
/// Unknown keys are not.
pub fn is_live_updatable(key: &str) -> bool {
    instance_keys::is_live_updatable(key)
}
