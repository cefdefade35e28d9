//! A VM's devices besides the root disk: bridged nics (taps QEMU creates, plugged into
//! their bridge) and disks backed by a host file or block device, given at start and
//! plugged into or out of a running VM (`crate::vm::hotplug`).

use std::collections::BTreeMap;

use super::super::container::chain;
use super::super::{Error, LoadArgs};
use crate::config::Devices;
use crate::container::net::{self, NicPlan};
use crate::vm::{ExtraDisk, Machine, Nic, Pluggable};

type Device = BTreeMap<String, String>;

/// The nics and disks to give QEMU at start. Disks that would need a share (directories)
/// or a custom volume are refused; other device types are not attached to VMs yet (logged).
pub(super) fn plans(instance: &str, config: &Device, devices: &Devices) -> Result<(Vec<NicPlan>, Vec<ExtraDisk>), Error> {
    let (mut nics, mut disks, mut ignored) = (Vec::new(), Vec::new(), Vec::new());
    for (name, d) in devices {
        match kind(d) {
            Some(Pluggable::Nic) => nics.push(nic_plan(instance, config, name, d)?),
            Some(Pluggable::Disk) => disks.push(extra_disk(name, d)?),
            None if crate::config::is_root_disk(d) || d.get("type").is_some_and(|t| t == "none") => {}
            None => ignored.push(name.as_str()),
        }
    }
    if !ignored.is_empty() {
        tracing::warn!(instance, devices = ?ignored, "VM devices other than disks and nics are not attached yet");
    }
    Ok((nics, disks))
}

/// What QEMU is told about a nic.
pub(super) fn qemu_nic(plan: &NicPlan) -> Nic {
    Nic { device: plan.device.clone(), ifname: plan.host_name.clone(), mac: plan.hwaddr.clone() }
}

/// Plugs and unplugs what changed between `old` and `new` on a running VM; returns the
/// volatile keys to record (a plugged nic's `host_name`, cleared for an unplugged one).
pub(super) fn apply_changes(m: &Machine, instance: &str, config: &Device, old: &Devices, new: &Devices) -> Result<Device, Error> {
    // QEMU refusing a device (an image in use, no free port) answers the request (400);
    // a broken QMP connection is the server's failure.
    let hot = |e: crate::vm::MachineError| {
        use crate::vm::{qmp::QmpError, MachineError as M};
        match e {
            M::Qmp(QmpError::Command { .. }) | M::Hotplug { .. } => {
                Error::Invalid(format!("Failed to update the VM's devices: {}", chain(&e)))
            }
            e => Error::failed("Failed to update the VM's devices", chain(&e)),
        }
    };
    let mut volatile = Device::new();
    for (name, d) in old.iter().filter(|(n, d)| new.get(*n) != Some(*d)) {
        let Some(k) = kind(d) else { continue };
        m.unplug(k, name).map_err(hot)?;
        if k == Pluggable::Nic {
            volatile.insert(format!("volatile.{name}.host_name"), String::new());
        }
    }
    for (name, d) in new.iter().filter(|(n, d)| old.get(*n) != Some(*d)) {
        match kind(d) {
            Some(Pluggable::Nic) => {
                let plan = nic_plan(instance, config, name, d)?;
                m.plug_nic(&qemu_nic(&plan)).map_err(hot)?;
                if let Err(e) = net::plug(&plan) {
                    let _ = m.unplug(Pluggable::Nic, name);
                    return Err(Error::failed("Failed to plug the VM's nic", format!("{name}: {}", chain(&e))));
                }
                volatile.insert(format!("volatile.{name}.host_name"), plan.host_name);
            }
            Some(Pluggable::Disk) => m.plug_disk(&extra_disk(name, d)?).map_err(hot)?,
            None => tracing::info!(instance, device = %name, "VM device change applies at the next start"),
        }
    }
    Ok(volatile)
}

/// Plugs an adopted VM's taps into their bridges again: a berthd that died between QEMU's
/// start and the plug left them out (plugging twice is harmless).
pub(super) fn replug_nics(args: &LoadArgs) {
    for (name, d) in args.devices.iter().filter(|(_, d)| kind(d) == Some(Pluggable::Nic)) {
        let plugged = match nic_plan(&args.name, &args.config, name, d) {
            Ok(n) => net::plug(&n).map_err(|e| chain(&e)),
            Err(e) => Err(chain(&e)),
        };
        if let Err(error) = plugged {
            tracing::warn!(instance = %args.name, device = %name, %error, "plugging an adopted VM's nic");
        }
    }
}

fn kind(d: &Device) -> Option<Pluggable> {
    match d.get("type").map(String::as_str) {
        Some("nic") => Some(Pluggable::Nic),
        Some("disk") if !crate::config::is_root_disk(d) => Some(Pluggable::Disk),
        _ => None,
    }
}

/// A nic's plan. Without `host_name` (or its volatile record) the tap is named from the
/// instance (`volatile.uuid`, name) and the device, so a berthd that died before recording
/// the name still finds it.
fn nic_plan(instance: &str, config: &Device, dev: &str, d: &Device) -> Result<NicPlan, Error> {
    use sha2::Digest;
    let set = |v: Option<&String>| v.is_some_and(|h| !h.is_empty());
    let mut d = d.clone();
    if !set(d.get("host_name")) && !set(config.get(&format!("volatile.{dev}.host_name"))) {
        let uuid = config.get("volatile.uuid").map(String::as_str).unwrap_or("");
        let digest = sha2::Sha256::digest(format!("{uuid}/{instance}/{dev}").as_bytes());
        d.insert("host_name".into(), format!("tap{}", &hex::encode(digest)[..8]));
    }
    NicPlan::from_device(config, dev, &d).map_err(|e| Error::Invalid(chain(&e)))
}

/// A `disk` device with a host file or block device as `source`.
fn extra_disk(name: &str, d: &Device) -> Result<ExtraDisk, Error> {
    let bad = |reason: String| Error::Invalid(format!("Device \"{name}\": {reason}"));
    let source = d.get("source").map(String::as_str).unwrap_or("");
    if d.get("pool").is_some_and(|p| !p.is_empty()) || !source.starts_with('/') {
        return Err(bad("custom volumes are not attached to VMs yet (only host files and block devices)".into()));
    }
    let md = std::fs::metadata(source).map_err(|e| bad(format!("source {source}: {e}")))?;
    if md.is_dir() {
        return Err(bad(format!("source {source} is a directory: directory shares are not supported for VMs yet")));
    }
    let readonly = d.get("readonly").is_some_and(|v| crate::config::is_true(v));
    Ok(ExtraDisk { name: name.to_string(), path: source.into(), readonly })
}
