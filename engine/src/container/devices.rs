//! Turns the expanded devices into setup work: bind mounts (disk, unix-char,
//! unix-block), veth plans (nic bridged) and device cgroup rules.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use super::init::Bind;
use super::net::NicPlan;
use super::spec::{is_true, ContainerSpec};
use super::Error;

/// Setup work derived from the devices.
#[derive(Debug, Default)]
pub(crate) struct DevicePlan {
    pub binds: Vec<Bind>,
    pub nics: Vec<NicPlan>,
    pub cgroup_rules: Vec<String>,
}

fn dev_err(device: &str, reason: impl Into<String>) -> Error {
    Error::Device { device: device.to_string(), reason: reason.into() }
}

pub(crate) fn plan(spec: &ContainerSpec) -> Result<DevicePlan, Error> {
    let mut out = DevicePlan::default();
    for (name, d) in &spec.devices {
        plan_one(&spec.config, name, d, &mut out)?;
    }
    Ok(out)
}

/// The source node and cgroup rule of a `unix-char`/`unix-block` device.
fn device_rule(name: &str, d: &BTreeMap<String, String>) -> Result<(String, String), Error> {
    let get = |k: &str| d.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let kind = get("type").unwrap_or("");
    let source = get("source").or(get("path")).ok_or_else(|| dev_err(name, "missing source or path"))?;
    let md = std::fs::metadata(source).map_err(|e| dev_err(name, format!("source {source}: {e}")))?;
    let ft = md.file_type();
    let (want_char, c) = (kind == "unix-char", if kind == "unix-char" { 'c' } else { 'b' });
    if (want_char && !ft.is_char_device()) || (!want_char && !ft.is_block_device()) {
        return Err(dev_err(name, format!("{source} is not a {kind} device")));
    }
    let rdev = md.rdev();
    Ok((source.to_string(), format!("{c} {}:{} rwm", libc::major(rdev), libc::minor(rdev))))
}

/// The cgroup device rules of a whole device list (for `Cgroup::set_device_rules`). A
/// device whose host node is gone is left out (plugging a new one reports that).
pub(crate) fn cgroup_rules(devices: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    let unix = devices.iter().filter(|(_, d)| matches!(d.get("type").map(String::as_str), Some("unix-char" | "unix-block")));
    unix.filter_map(|(name, d)| match device_rule(name, d) {
        Ok((_, rule)) => Some(rule),
        Err(e) => {
            tracing::debug!(device = %name, error = %e, "no device rule");
            None
        }
    })
    .collect()
}

/// Adds the work for one device to `out`.
pub(crate) fn plan_one(
    config: &std::collections::BTreeMap<String, String>,
    name: &str,
    d: &std::collections::BTreeMap<String, String>,
    out: &mut DevicePlan,
) -> Result<(), Error> {
    {
        let get = |k: &str| d.get(k).map(String::as_str).filter(|v| !v.is_empty());
        match get("type").unwrap_or("") {
            "none" => {}
            "disk" => {
                let path = get("path").ok_or_else(|| dev_err(name, "missing path"))?;
                if path == "/" {
                    return Ok(()); // the root disk is the rootfs itself
                }
                let source = get("source").ok_or_else(|| dev_err(name, "missing source"))?;
                let sp = PathBuf::from(source);
                if !sp.is_absolute() {
                    return Err(dev_err(name, "only host paths are supported as disk source"));
                }
                let md = std::fs::metadata(&sp).map_err(|e| dev_err(name, format!("source {source}: {e}")))?;
                out.binds.push(Bind {
                    source: sp,
                    target: PathBuf::from(path),
                    readonly: get("readonly").is_some_and(is_true),
                    file: !md.is_dir(),
                    shift: get("shift").is_some_and(is_true),
                });
            }
            "unix-char" | "unix-block" => {
                let (source, rule) = device_rule(name, d)?;
                let target = get("path").unwrap_or(&source);
                out.cgroup_rules.push(rule);
                out.binds.push(Bind { source: PathBuf::from(&source), target: PathBuf::from(target), readonly: false, file: true, shift: false });
            }
            "nic" => out.nics.push(NicPlan::from_device(config, name, d)?),
            other => return Err(dev_err(name, format!("device type {other:?} is not supported by the container runtime"))),
        }
    }
    Ok(())
}
