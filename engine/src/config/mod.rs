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

use std::collections::{BTreeMap, HashSet};

/// The instance type a key or device applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum InstanceType {
    #[serde(rename = "container")]
    Container,
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
    #[error("Unknown configuration key: {0}")]
    UnknownKey(String),
    #[error("Invalid value for configuration key \"{key}\": {reason}")]
    InvalidValue { key: String, reason: String },
    #[error("Device validation failed for \"{device}\": {reason}")]
    Device { device: String, reason: String },
    #[error("{0}")]
    Other(String),
}

/// Validates an instance, profile or expanded config map.
pub fn validate_instance_config(
    _config: &BTreeMap<String, String>,
    _ty: InstanceType,
    _level: ConfigLevel,
) -> Result<(), ConfigError> {
    Ok(())
}

/// Validates every device of an instance or profile.
pub fn validate_devices(_devices: &Devices, _ty: InstanceType, _level: ConfigLevel) -> Result<(), ConfigError> {
    Ok(())
}

/// Validates the server config map (`PUT /1.0`).
pub fn validate_server_config(_config: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    Ok(())
}

/// ValidName for instances (hostname rules).
pub fn valid_instance_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::Other("Name is required".into()));
    }
    Ok(())
}

/// Snapshot names: anything but space and `/`.
pub fn valid_snapshot_name(_name: &str) -> Result<(), ConfigError> {
    Ok(())
}

/// Device names: 1–63 of `[/.\-:_A-Za-z0-9]`, not starting with `.`.
pub fn valid_device_name(_name: &str) -> Result<(), ConfigError> {
    Ok(())
}

/// ParseCpuset: "0-3,5" → [0,1,2,3,5].
pub fn parse_cpuset(_value: &str) -> Result<Vec<u32>, ConfigError> {
    Ok(vec![])
}

/// One `raw.idmap` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdmapEntry {
    pub is_uid: bool,
    pub is_gid: bool,
    pub host_id: u64,
    pub ns_id: u64,
    pub range: u64,
}

/// ParseRawIdmap.
pub fn parse_raw_idmap(_value: &str) -> Result<Vec<IdmapEntry>, ConfigError> {
    Ok(vec![])
}

/// AllowedUnprivilegedOnlyMap: refuses a raw.idmap that maps host id 0.
pub fn allowed_unprivileged_only_map(_value: &str) -> Result<(), ConfigError> {
    Ok(())
}

/// DeviceNextInterfaceHWAddr: a random `00:16:3e:xx:xx:xx` not in `taken`.
pub fn next_interface_hwaddr(_taken: &HashSet<String>) -> String {
    "00:16:3e:00:00:00".into()
}

/// Whether a key may change on a running instance.
pub fn is_live_updatable(_key: &str) -> bool {
    true
}

/// Parses an LXD byte size ("512MB", "1GiB", "100kB", plain bytes).
pub fn parse_byte_size(value: &str) -> Result<u64, ConfigError> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().map_err(|_| ConfigError::Other(format!("Invalid size \"{value}\"")))?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "kB" => 1000,
        "MB" => 1000u64.pow(2),
        "GB" => 1000u64.pow(3),
        "TB" => 1000u64.pow(4),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(ConfigError::Other(format!("Invalid size \"{value}\""))),
    };
    n.checked_mul(mult).ok_or_else(|| ConfigError::Other(format!("Invalid size \"{value}\"")))
}

/// LXD's boolean truth: true, 1, yes, on (case-insensitive).
pub fn is_true(value: &str) -> bool {
    matches!(value.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
}
