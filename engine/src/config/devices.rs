//! Device validation over the tables of `device_tables`, plus the optional host checks.

use std::collections::BTreeMap;
use std::path::Path;

use super::device_rules::{is_root_disk, DeviceCtx};
use super::device_tables::{subtype_key, DeviceSpec, DEVICE_SPECS};
use super::validators::{is_false, is_true};
use super::{names, ConfigError, ConfigLevel, Devices, InstanceType};

fn dev_err(device: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Device { device: device.to_string(), reason: reason.into() }
}

fn type_label(ty: InstanceType) -> &'static str {
    match ty {
        InstanceType::Container => "container",
        InstanceType::VirtualMachine => "virtual-machine",
        InstanceType::Any => "any",
    }
}

/// Managed networks: name → the nictype their NICs get (`bridged`, `macvlan`, `sriov`,
/// `ovn`, `physical`).
pub type NetworkTypes = BTreeMap<String, String>;

/// Finds the spec for a device config. A `nic` without `nictype` takes it from its
/// `network` through `networks`; without a map it is taken as bridged (the managed
/// networks berth creates are bridges). A `gpu` defaults to physical.
pub fn find_spec(
    config: &BTreeMap<String, String>,
    networks: Option<&NetworkTypes>,
) -> Result<&'static DeviceSpec, String> {
    let ty = config.get("type").map(String::as_str).unwrap_or("");
    if ty.is_empty() {
        return Err("Missing device type".into());
    }
    let sub_key = subtype_key(ty);
    let sub = sub_key.and_then(|k| config.get(k)).map(String::as_str).unwrap_or("");
    let network = config.get("network").map(String::as_str).unwrap_or("");
    let sub = match (ty, sub) {
        ("gpu", "") => "physical",
        ("nic", "") if !network.is_empty() => match networks {
            None => "bridged",
            Some(map) => map
                .get(network)
                .map(String::as_str)
                .ok_or_else(|| format!("Failed loading network {network:?}: not found"))?,
        },
        ("nic" | "infiniband", "") => return Err("Missing nic type (set \"nictype\" or \"network\")".into()),
        (_, s) => s,
    };
    let candidates: Vec<&DeviceSpec> = DEVICE_SPECS.iter().filter(|s| s.ty == ty).collect();
    if candidates.is_empty() {
        return Err(format!("Unsupported device type {ty:?}"));
    }
    candidates
        .into_iter()
        .find(|s| s.subtype.is_none_or(|st| st == sub))
        .ok_or_else(|| format!("Unsupported {} {sub:?} for device type {ty:?}", sub_key.unwrap_or("subtype")))
}

/// Validates one device (name, options, rules) for instance type `ty`.
pub fn validate_device(name: &str, config: &BTreeMap<String, String>, ty: InstanceType) -> Result<(), ConfigError> {
    validate_device_with_networks(name, config, ty, None)
}

/// [`validate_device`] resolving `network` NICs through `networks`.
pub fn validate_device_with_networks(
    name: &str,
    config: &BTreeMap<String, String>,
    ty: InstanceType,
    networks: Option<&NetworkTypes>,
) -> Result<(), ConfigError> {
    names::valid_device_name(name).map_err(|e| dev_err(name, e.reason()))?;
    let spec = find_spec(config, networks).map_err(|r| dev_err(name, r))?;
    if !spec.scope.allows(ty) {
        return Err(dev_err(
            name,
            format!("Device type {:?} is not supported on {} instances", spec.ty, type_label(ty)),
        ));
    }
    let sub_key = subtype_key(spec.ty);
    for (key, value) in config {
        if key == "type" || Some(key.as_str()) == sub_key || key.starts_with("user.") {
            continue;
        }
        let dk = spec
            .keys
            .iter()
            .find(|k| k.key == key)
            .ok_or_else(|| dev_err(name, format!("Invalid device option {key:?}")))?;
        if !dk.scope.allows(ty) {
            return Err(dev_err(
                name,
                format!("Invalid device option {key:?} for {} instances", type_label(ty)),
            ));
        }
        dk.validator
            .check(value)
            .map_err(|r| dev_err(name, format!("Invalid value for device option {key:?}: {r}")))?;
    }
    for dk in spec.keys.iter().filter(|k| k.required) {
        if config.get(dk.key).is_none_or(|v| v.is_empty()) {
            return Err(dev_err(name, format!("Missing required device option {:?}", dk.key)));
        }
    }
    if let Some(rule) = spec.rule {
        let subtype = spec.subtype.unwrap_or("");
        rule(&DeviceCtx { name, config, ty, subtype }).map_err(|r| dev_err(name, r))?;
    }
    Ok(())
}

/// [`super::validate_devices`]: every device, then the rules across devices. Profiles are
/// checked as type Any; an expanded device set must also hold exactly one root disk.
pub fn validate_devices(devices: &Devices, ty: InstanceType, level: ConfigLevel) -> Result<(), ConfigError> {
    validate_devices_with_networks(devices, ty, level, None)
}

/// [`validate_devices`] resolving `network` NICs through `networks` (unknown networks fail).
pub fn validate_devices_with_networks(
    devices: &Devices,
    ty: InstanceType,
    level: ConfigLevel,
    networks: Option<&NetworkTypes>,
) -> Result<(), ConfigError> {
    let ty = if level == ConfigLevel::Profile { InstanceType::Any } else { ty };
    let mut paths: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, config) in devices {
        validate_device_with_networks(name, config, ty, networks)?;
        if config.get("type").map(String::as_str) == Some("disk") {
            if let Some(path) = config.get("path").filter(|p| !p.is_empty()) {
                if let Some(other) = paths.insert(path, name) {
                    return Err(dev_err(
                        name,
                        format!("More than one disk device uses the same path {path:?} (also {other:?})"),
                    ));
                }
            }
        }
    }
    if level == ConfigLevel::Expanded && !devices.values().any(is_root_disk) {
        return Err(ConfigError::Other(
            "Failed detecting root disk device: No root device could be found".into(),
        ));
    }
    Ok(())
}

/// Host checks LXD makes at validation time, kept apart so profile and unit-test
/// validation stay pure: a host disk `source` must exist (unless `required=false` or
/// `optional=true`), `recursive` needs a directory, and a required unix-char/block device
/// without `major`/`minor` must exist on the host.
pub fn check_host_paths(devices: &Devices, _ty: InstanceType) -> Result<(), ConfigError> {
    check_host_paths_under(devices, Path::new("/"))
}

/// [`check_host_paths`] with host paths resolved under `root` (for tests).
pub fn check_host_paths_under(devices: &Devices, root: &Path) -> Result<(), ConfigError> {
    let host = |p: &str| root.join(p.trim_start_matches('/'));
    let get = |c: &BTreeMap<String, String>, k: &str| c.get(k).cloned().unwrap_or_default();
    for (name, config) in devices {
        let required = !is_false(&get(config, "required")) && !is_true(&get(config, "optional"));
        match get(config, "type").as_str() {
            "disk" => {
                let source = get(config, "source");
                let skip = source.is_empty()
                    || !get(config, "pool").is_empty()
                    || source.starts_with("ceph:")
                    || source.starts_with("cephfs:")
                    || source == super::device_rules::DISK_SOURCE_CLOUD_INIT;
                if skip {
                    continue;
                }
                let path = host(&source);
                if required && !path.exists() {
                    return Err(dev_err(name, format!("Missing source {source:?} for disk {name:?}")));
                }
                if !get(config, "recursive").is_empty() && !path.is_dir() {
                    return Err(dev_err(
                        name,
                        "The recursive option is only supported for additional bind-mounted paths",
                    ));
                }
            }
            "unix-char" | "unix-block" => {
                if !required || (!get(config, "major").is_empty() && !get(config, "minor").is_empty()) {
                    continue;
                }
                let src = match get(config, "source") {
                    s if s.is_empty() => get(config, "path"),
                    s => s,
                };
                if !host(&src).exists() {
                    return Err(dev_err(
                        name,
                        format!("The device path {src:?} doesn't exist on the server and major/minor numbers are not specified"),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
