//! Virtual-machine images and volumes in the daemon: the checks at upload, the match of an
//! image's type with the instance made from it, and the empty VM root disk.

use super::Model;
use crate::config::{self, InstanceType};
use crate::error::{Error, Result};
use crate::image::{self, vm, ImageFiles, ImageType, UnpackOptions};
use crate::model::InstanceRecord;
use crate::storage::drivers::util::parse_size;
use crate::storage::drivers::Driver;
use crate::storage::{vm_volume, Volume, VolumeType};

use super::ImageRecord;

/// Decides an upload's type and, for a split VM image, checks its disk before anything is
/// unpacked. `vm_disk` is the client's word (the `rootfs.img` part): such a rootfs must
/// be a qcow2 disk, so a wrong one is named as such rather than as a broken tarball.
pub(super) fn check_upload(files: &ImageFiles, vm_disk: bool, opts: &UnpackOptions) -> Result<ImageType> {
    let detected = image::detect_type(files)?;
    let image_type = if vm_disk { ImageType::VirtualMachine } else { detected };
    if image_type == ImageType::VirtualMachine {
        if let Some(rootfs) = &files.rootfs {
            vm::check_disk(rootfs, opts.max_disk_size)?;
        }
    }
    Ok(image_type)
}

/// Refuses a container image for a VM and a VM image for a container.
pub(super) fn check_instance_type(img: &ImageRecord, inst: &InstanceRecord) -> Result<()> {
    let wanted = match inst.instance_type {
        InstanceType::VirtualMachine => ImageType::VirtualMachine,
        _ => ImageType::Container,
    };
    if img.image_type == wanted {
        return Ok(());
    }
    let short = &img.fingerprint[..img.fingerprint.len().min(12)];
    Err(Error::bad(match wanted {
        ImageType::VirtualMachine => {
            format!("Image \"{short}\" is a container image; a virtual machine needs a virtual-machine image")
        }
        ImageType::Container => {
            format!("Image \"{short}\" is a virtual-machine image; use --vm (type virtual-machine) to create an instance from it")
        }
    }))
}

/// A VM volume restored from an (untrusted) backup must have the layout the VM driver
/// trusts: `root.img` and the boot files regular files, in the volume and every snapshot.
pub(super) fn check_imported_volume(driver: &dyn Driver, vol: &Volume, snapshots: &[String]) -> Result<()> {
    if vol.vtype != VolumeType::VirtualMachine {
        return Ok(());
    }
    let check = |path: &std::path::Path, what: &str| {
        vm_volume::check_layout(path).map_err(|e| Error::bad(format!("Invalid backup: {what}: {e}")))
    };
    check(&driver.volume_path(vol), "the instance")?;
    for s in snapshots {
        check(&driver.snapshot_path(vol, s), &format!("snapshot \"{s}\""))?;
    }
    Ok(())
}

/// The size of an empty VM's root disk: the root disk device's `size`, else 10GiB.
pub(super) fn empty_root_size(m: &Model, inst: &InstanceRecord) -> Result<u64> {
    Ok(root_size(m, inst)?.unwrap_or(vm_volume::DEFAULT_ROOT_SIZE))
}

/// The root disk device's `size`, when set.
fn root_size(m: &Model, inst: &InstanceRecord) -> Result<Option<u64>> {
    let (_, devices) = m.expand(inst)?;
    let size = devices.values().find(|d| config::is_root_disk(d)).and_then(|d| d.get("size").cloned());
    match size.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => match parse_size(&s) {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(Error::bad(format!("Invalid root disk size \"{s}\""))),
        },
    }
}

/// A VM made from an image gets the root disk device's `size` when that is larger than
/// the image's disk (`qemu-img resize`, grow only; the guest grows its filesystem).
pub(super) fn grow_root_disk(m: &Model, inst: &InstanceRecord, volume: &std::path::Path) -> Result<()> {
    if inst.instance_type != InstanceType::VirtualMachine {
        return Ok(());
    }
    let Some(size) = root_size(m, inst)? else { return Ok(()) };
    let disk = vm_volume::root_disk(volume);
    let info = vm::check_disk(&disk, u64::MAX)?;
    if size <= info.virtual_size {
        return Ok(());
    }
    let out = std::process::Command::new("qemu-img")
        .args(["resize", "-q", "-f", "qcow2"])
        .arg(&disk)
        .arg(size.to_string())
        .output()
        .map_err(|e| Error::internal(format!("running qemu-img resize: {e}")))?;
    if !out.status.success() {
        return Err(Error::internal(format!("qemu-img resize: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{zero_time, ConfigMap};

    fn img(t: ImageType) -> ImageRecord {
        ImageRecord {
            fingerprint: "ab".repeat(32),
            project: "default".into(),
            filename: String::new(),
            size: 1,
            public: false,
            architecture: "x86_64".into(),
            properties: ConfigMap::new(),
            created_at: chrono::Utc::now(),
            uploaded_at: chrono::Utc::now(),
            last_used_at: zero_time(),
            expires_at: None,
            auto_update: false,
            profiles: vec![],
            image_type: t,
        }
    }

    fn inst(t: InstanceType) -> InstanceRecord {
        InstanceRecord {
            name: "v1".into(),
            project: "default".into(),
            instance_type: t,
            architecture: "x86_64".into(),
            config: ConfigMap::new(),
            devices: Default::default(),
            profiles: vec![],
            ephemeral: false,
            stateful: false,
            description: String::new(),
            created_at: chrono::Utc::now(),
            last_used_at: zero_time(),
        }
    }

    #[test]
    fn image_and_instance_types_must_match() {
        assert!(check_instance_type(&img(ImageType::VirtualMachine), &inst(InstanceType::VirtualMachine)).is_ok());
        assert!(check_instance_type(&img(ImageType::Container), &inst(InstanceType::Container)).is_ok());
        let e = check_instance_type(&img(ImageType::Container), &inst(InstanceType::VirtualMachine)).unwrap_err();
        assert_eq!(e.kind().status(), 400);
        assert!(e.to_string().contains("container image"), "{e}");
        let e = check_instance_type(&img(ImageType::VirtualMachine), &inst(InstanceType::Container)).unwrap_err();
        assert!(e.to_string().contains("virtual-machine image"), "{e}");
    }

    #[test]
    fn old_image_records_read_as_container_images() {
        let mut v = serde_json::to_value(img(ImageType::VirtualMachine)).unwrap();
        assert_eq!(v["image_type"], "virtual-machine");
        v.as_object_mut().unwrap().remove("image_type");
        let old: ImageRecord = serde_json::from_value(v).unwrap();
        assert_eq!(old.image_type, ImageType::Container);
    }
}
