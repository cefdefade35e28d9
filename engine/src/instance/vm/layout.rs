//! Where a VM's pieces live: the volume layout (root disk, optional direct-boot kernel),
//! the run directory of its QEMU, the QEMU binary and the accelerator.
//!
//! Volume layout contract (shared with VM image import in the storage layer):
//! `root.img` (qcow2, detected by its `QFI\xfb` magic, or raw), optionally `boot/vmlinuz`,
//! `boot/initrd.img` and `boot/cmdline` (one line). With `boot/vmlinuz` the VM boots it
//! directly; otherwise QEMU's firmware boots the disk.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::storage::vm_volume;
use crate::vm::{Accel, AccelSetting, DirectBoot, Disk, DiskFormat, RunPaths};

/// The QEMU binary looked up in `PATH` (or `BERTH_QEMU`).
pub const QEMU: &str = "qemu-system-x86_64";
/// Kernel command line when `boot/cmdline` is absent.
pub const DEFAULT_APPEND: &str = "console=ttyS0 quiet panic=-1";
/// Unix socket paths are limited to 108 bytes; longer run dirs move under /run.
const MAX_RUN_DIR: usize = 90;

/// The QEMU binary, if installed.
pub fn find_qemu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_QEMU").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(QEMU)).find(|p| p.is_file())
}

/// The root disk of a VM volume, if it is a regular file (never a symlink).
pub fn root_disk(volume: &Path) -> Option<Disk> {
    let path = vm_volume::root_disk(volume);
    if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file()) {
        return None;
    }
    let mut f = std::fs::File::open(&path).ok()?;
    let mut magic = [0u8; 4];
    let format = match f.read_exact(&mut magic) {
        Ok(()) if &magic == b"QFI\xfb" => DiskFormat::Qcow2,
        _ => DiskFormat::Raw,
    };
    Some(Disk { path, format })
}

/// What a VM boots from its volume: the root disk and, with `boot/vmlinuz`, a direct
/// kernel boot. The layout is checked first (regular files only, see `storage::vm_volume`).
pub fn boot_layout(volume: &Path) -> Result<(Disk, Option<DirectBoot>), vm_volume::Error> {
    let files = vm_volume::boot_files(volume)?;
    let disk = root_disk(volume).ok_or_else(|| vm_volume::Error::Layout {
        path: vm_volume::ROOT_DISK.into(),
        reason: "is not a regular file".into(),
    })?;
    let boot = files.map(|f| DirectBoot {
        kernel: f.kernel,
        initrd: f.initrd,
        append: Some(f.cmdline.filter(|c| !c.is_empty()).unwrap_or_else(|| DEFAULT_APPEND.to_string())),
    });
    Ok((disk, boot))
}

/// The run dir of a VM: the instance's runtime dir when its socket paths fit, else a
/// stable short dir under /run named after it (so an adopting daemon finds it again).
pub fn run_paths(runtime_dir: &Path) -> RunPaths {
    if runtime_dir.as_os_str().len() <= MAX_RUN_DIR {
        return RunPaths::new(runtime_dir);
    }
    use sha2::Digest;
    let h = hex::encode(&sha2::Sha256::digest(runtime_dir.as_os_str().as_encoded_bytes())[..8]);
    RunPaths::new(Path::new("/run/berth-vm").join(h))
}

/// Total host memory (for percentages in `limits.memory`).
pub fn host_memory() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The accelerator for this daemon, probed once: `BERTH_VM_ACCEL` = auto (default), kvm
/// or tcg. Auto uses KVM only when it really runs a guest (see `vm::accel`).
pub fn accel(qemu: &Path) -> Accel {
    static CHOSEN: OnceLock<Accel> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let setting = std::env::var("BERTH_VM_ACCEL").unwrap_or_default();
        let setting = setting.parse::<AccelSetting>().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring BERTH_VM_ACCEL");
            AccelSetting::Auto
        });
        let work = std::env::temp_dir().join(format!("berth-accel-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&work);
        let sel = crate::vm::accel::select(setting, qemu, Path::new("/dev/kvm"), &work, None, Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&work);
        if let Some(why) = &sel.kvm_unusable {
            tracing::info!(reason = %why, "KVM unusable; VMs run under TCG");
        }
        sel.accel
    })
}

/// QEMU's resident and peak memory (VmRSS, VmHWM) in bytes.
pub fn qemu_memory(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bytes the root disk occupies on the host.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_layout() {
        let d = tempfile::tempdir().unwrap();
        assert!(root_disk(d.path()).is_none() && boot_layout(d.path()).is_err());
        std::fs::write(d.path().join("root.img"), b"QFI\xfb\0\0\0\x03").unwrap();
        assert_eq!(root_disk(d.path()).unwrap().format, DiskFormat::Qcow2);
        std::fs::write(d.path().join("root.img"), vec![0u8; 512]).unwrap();
        let (disk, boot) = boot_layout(d.path()).unwrap();
        assert_eq!((disk.format, boot), (DiskFormat::Raw, None));
        std::fs::create_dir(d.path().join("boot")).unwrap();
        std::fs::write(d.path().join("boot/vmlinuz"), b"k").unwrap();
        let b = boot_layout(d.path()).unwrap().1.unwrap();
        assert_eq!((b.initrd, b.append.as_deref()), (None, Some(DEFAULT_APPEND)));
        std::fs::write(d.path().join("boot/initrd.img"), b"i").unwrap();
        std::fs::write(d.path().join("boot/cmdline"), "console=ttyS0 x=1\n").unwrap();
        let b = boot_layout(d.path()).unwrap().1.unwrap();
        assert_eq!(b.initrd, Some(d.path().join("boot/initrd.img")));
        assert_eq!(b.append.as_deref(), Some("console=ttyS0 x=1"));
        // A symlinked boot file is refused (it could hand a host file to the guest).
        std::fs::remove_file(d.path().join("boot/initrd.img")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("boot/initrd.img")).unwrap();
        assert!(boot_layout(d.path()).is_err());
    }

    #[test]
    fn long_run_dirs_move_under_run() {
        assert_eq!(run_paths(Path::new("/var/lib/berth/vms/default_v1")).dir, PathBuf::from("/var/lib/berth/vms/default_v1"));
        let long = PathBuf::from(format!("/{}/vms/default_v1", "x".repeat(100)));
        let p = run_paths(&long);
        assert!(p.dir.starts_with("/run/berth-vm") && p.console().as_os_str().len() < 108);
        assert_eq!(p, run_paths(&long), "stable across daemons");
    }
}
