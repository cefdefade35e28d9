//! Devices plugged into and out of a running VM over QMP: a nic is a tap netdev and a
//! virtio-net device, a disk a raw block node and a virtio-blk device, each on a free PCIe
//! root port (`hp*`, made at start: one per device given then, and spares). The ids come
//! from the device names ([`qemu_id`]), so a berthd that adopted the VM finds them again.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cmdline::{port_id, qemu_id, ExtraDisk, Nic};
use super::machine::{Machine, MachineError};
use super::qmp::{Qmp, QmpError};

/// How long an unplug waits for the guest to let the device go.
const UNPLUG_TIMEOUT: Duration = Duration::from_secs(20);

/// What kind of device to unplug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pluggable {
    Nic,
    Disk,
}

impl Machine {
    /// Plugs a nic; its tap is created by QEMU (plug it into the bridge afterwards).
    pub fn plug_nic(&self, nic: &Nic) -> Result<(), MachineError> {
        let mut q = self.qmp()?;
        let net = qemu_id("net", &nic.device);
        let tap = json!({"type": "tap", "id": net, "ifname": nic.ifname, "script": "no", "downscript": "no"});
        q.execute("netdev_add", Some(tap))?;
        let mut dev = json!({"driver": "virtio-net-pci", "id": qemu_id("nic", &nic.device), "netdev": net});
        if let Some(mac) = &nic.mac {
            dev["mac"] = json!(mac);
        }
        add_on_free_port(&mut q, dev).inspect_err(|_| {
            let _ = q.execute("netdev_del", Some(json!({"id": net})));
        })
    }

    /// Plugs a host file or block device as a raw virtio disk.
    pub fn plug_disk(&self, disk: &ExtraDisk) -> Result<(), MachineError> {
        let mut q = self.qmp()?;
        let node = qemu_id("blk", &disk.name);
        let blk = json!({
            "driver": "raw", "node-name": node, "read-only": disk.readonly,
            "file": {"driver": "file", "filename": disk.path.to_string_lossy()},
        });
        q.execute("blockdev-add", Some(blk))?;
        let dev = json!({"driver": "virtio-blk-pci", "id": qemu_id("disk", &disk.name), "drive": node, "serial": disk.serial()});
        add_on_free_port(&mut q, dev).inspect_err(|_| {
            let _ = q.execute("blockdev-del", Some(json!({"node-name": node})));
        })
    }

    /// Unplugs device `device`: asks the guest to let it go, waits until QEMU has removed
    /// it, then drops its backend. A device that is not there is fine.
    pub fn unplug(&self, kind: Pluggable, device: &str) -> Result<(), MachineError> {
        let (id, backend) = match kind {
            Pluggable::Nic => (qemu_id("nic", device), qemu_id("net", device)),
            Pluggable::Disk => (qemu_id("disk", device), qemu_id("blk", device)),
        };
        {
            let mut q = self.qmp()?;
            match q.execute("device_del", Some(json!({"id": id}))) {
                Ok(_) => {}
                Err(QmpError::Command { class, .. }) if class == "DeviceNotFound" => {}
                Err(e) => return Err(e.into()),
            }
        }
        let deadline = Instant::now() + UNPLUG_TIMEOUT;
        // The lock is released between polls: the guest's answer takes a while under TCG.
        while self.has_device(&id)? {
            if Instant::now() >= deadline {
                return Err(MachineError::Hotplug { detail: format!("the guest did not release {device} within {UNPLUG_TIMEOUT:?}") });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut q = self.qmp()?;
        let _ = match kind {
            Pluggable::Nic => q.execute("netdev_del", Some(json!({"id": backend}))),
            Pluggable::Disk => q.execute("blockdev-del", Some(json!({"node-name": backend}))),
        };
        Ok(())
    }
}

impl Machine {
    /// Whether QEMU still has a user-created device with this id.
    fn has_device(&self, id: &str) -> Result<bool, MachineError> {
        let list = self.qmp()?.execute("qom-list", Some(json!({"path": "/machine/peripheral"})))?;
        Ok(list.as_array().is_some_and(|l| l.iter().any(|p| p["name"] == id)))
    }
}

/// `device_add` on the first root port that takes it. A port holds one device, in slot 0
/// (the only one a guest scans behind a PCIe port), so an occupied port refuses it.
fn add_on_free_port(q: &mut Qmp, mut dev: Value) -> Result<(), MachineError> {
    let mut last = None;
    dev["addr"] = json!("0");
    for i in 0.. {
        let port = port_id(i);
        dev["bus"] = json!(port);
        match q.execute("device_add", Some(dev.clone())) {
            Ok(_) => return Ok(()),
            Err(QmpError::Command { desc, .. }) if desc.contains(&format!("'{port}' not found")) => break,
            // "PCI: slot 0 function 0 not available for …, in use by …": taken, try the next.
            Err(e @ QmpError::Command { .. }) if e.to_string().contains("not available") => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(MachineError::Hotplug {
        detail: match last {
            Some(_) => "no free PCIe port left for hotplug (restart the VM: every device gets one then)".into(),
            None => "no PCIe ports for hotplug (the VM was started before they existed: restart it)".into(),
        },
    })
}
