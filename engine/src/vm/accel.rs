//! Choosing the accelerator: KVM only when it really runs guests, else TCG.
//!
//! A `/dev/kvm` that opens and creates VMs is not enough: on kvm-pvm hosts the ioctls
//! succeed, a real-mode boot sector even runs, yet Linux guests hang. So the probe has three
//! stages, each must pass: (1) `KVM_GET_API_VERSION` == 12 and `KVM_CREATE_VM`, and the
//! provider is not kvm-pvm (`/sys/module/kvm_pvm` without `kvm_intel`/`kvm_amd`); (2) QEMU
//! `-accel kvm` boots a 512-byte boot sector that prints a marker on the serial port;
//! (3) if a probe kernel is configured, QEMU `-accel kvm` boots it to a marker printed by
//! its initramfs (the test image's `rdinit=/bare-init` prints `BERTH-BARE-BOOT`). Stage 3
//! is the real proof; the kvm-pvm check of stage 1 is a heuristic for hosts without a
//! probe kernel. Operators can always force `kvm` or `tcg` with the setting.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Marker the boot sector prints.
pub const BOOT_SECTOR_MARKER: &str = "BERTH-ACCEL-OK";
/// Marker the test image's `/bare-init` prints.
pub const BARE_BOOT_MARKER: &str = "BERTH-BARE-BOOT";

const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
const KVM_API_VERSION: libc::c_int = 12;

/// Errors of the accelerator probe; each names the stage that failed.
#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    /// `/dev/kvm` could not be opened.
    #[error("open {path}")]
    Open { path: PathBuf, source: std::io::Error },
    /// An ioctl failed or returned an unexpected API version.
    #[error("kvm ioctl {what}: {detail}")]
    Ioctl { what: &'static str, detail: String },
    /// QEMU could not be started.
    #[error("spawn {program}")]
    Spawn { program: PathBuf, source: std::io::Error },
    /// A file of the probe could not be written or read.
    #[error("probe file {path}")]
    File { path: PathBuf, source: std::io::Error },
    /// The guest did not print its marker in time.
    #[error("{accel} guest did not print {marker} within {secs}s ({detail})")]
    NoMarker { accel: &'static str, marker: &'static str, secs: u64, detail: String },
    /// KVM is provided by kvm-pvm, which runs only PVM-aware guest kernels.
    #[error("kvm is kvm-pvm ({path} exists, no kvm_intel/kvm_amd): stock guest kernels do not run on it")]
    Pvm { path: PathBuf },
    /// An unknown operator setting.
    #[error("unknown accelerator setting {value:?} (want auto, kvm or tcg)")]
    Setting { value: String },
}

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation (always available, slow).
    Tcg,
}

impl Accel {
    /// The `-accel` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The operator's choice (daemon setting, e.g. `berth.vm.accel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelSetting {
    /// Probe KVM, fall back to TCG.
    Auto,
    /// Use KVM without probing.
    Kvm,
    /// Use TCG without probing.
    Tcg,
}

impl std::str::FromStr for AccelSetting {
    type Err = AccelError;
    fn from_str(s: &str) -> Result<Self, AccelError> {
        match s.trim() {
            "" | "auto" => Ok(AccelSetting::Auto),
            "kvm" => Ok(AccelSetting::Kvm),
            "tcg" => Ok(AccelSetting::Tcg),
            other => Err(AccelError::Setting { value: other.to_string() }),
        }
    }
}

/// A kernel (+ initrd + cmdline) that prints a marker on ttyS0 when it reaches userspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeKernel {
    /// Kernel image.
    pub kernel: PathBuf,
    /// Initramfs.
    pub initrd: PathBuf,
    /// Command line (must send the marker to ttyS0).
    pub append: String,
    /// The marker to wait for.
    pub marker: &'static str,
}

/// What [`select`] decided and why.
#[derive(Debug)]
pub struct Selection {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why KVM was not chosen (None when it was, or when the operator chose).
    pub kvm_unusable: Option<AccelError>,
}

/// Stage 1: the KVM device answers the basic ioctls.
pub fn probe_kvm_device(dev: &Path) -> Result<(), AccelError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|source| AccelError::Open { path: dev.to_path_buf(), source })?;
    // SAFETY: KVM_GET_API_VERSION takes no argument and returns an int.
    let v = unsafe { libc::ioctl(f.as_raw_fd(), KVM_GET_API_VERSION as _, 0) };
    if v != KVM_API_VERSION {
        let detail = if v < 0 { std::io::Error::last_os_error().to_string() } else { format!("version {v}") };
        return Err(AccelError::Ioctl { what: "KVM_GET_API_VERSION", detail });
    }
    // SAFETY: KVM_CREATE_VM takes the machine type (0) and returns a new fd we close.
    let vm = unsafe { libc::ioctl(f.as_raw_fd(), KVM_CREATE_VM as _, 0) };
    if vm < 0 {
        return Err(AccelError::Ioctl { what: "KVM_CREATE_VM", detail: std::io::Error::last_os_error().to_string() });
    }
    // SAFETY: vm is a descriptor we own.
    unsafe { libc::close(vm) };
    Ok(())
}

/// Stage 1b: the KVM provider is hardware KVM, not kvm-pvm. `sys_module` is normally
/// `/sys/module` (a parameter so tests can use a fake tree).
pub fn probe_kvm_flavour(sys_module: &Path) -> Result<(), AccelError> {
    let pvm = sys_module.join("kvm_pvm");
    let hw = sys_module.join("kvm_intel").exists() || sys_module.join("kvm_amd").exists();
    if pvm.exists() && !hw {
        return Err(AccelError::Pvm { path: pvm });
    }
    Ok(())
}

/// The 512-byte boot sector: real mode, prints [`BOOT_SECTOR_MARKER`] on COM1, halts.
pub fn boot_sector() -> [u8; 512] {
    let code: [u8; 23] = [
        0x31, 0xC0, // xor ax, ax
        0x8E, 0xD8, // mov ds, ax
        0xFC, // cld
        0xBA, 0xF8, 0x03, // mov dx, 0x3f8
        0xBE, 0x17, 0x7C, // mov si, 0x7c17 (the message)
        0xAC, // lodsb
        0x84, 0xC0, // test al, al
        0x74, 0x03, // jz halt
        0xEE, // out dx, al
        0xEB, 0xF8, // jmp lodsb
        0xFA, // halt: cli
        0xF4, // hlt
        0xEB, 0xFD, // jmp hlt
    ];
    let mut s = [0u8; 512];
    s[..code.len()].copy_from_slice(&code);
    let msg = BOOT_SECTOR_MARKER.as_bytes();
    s[code.len()..code.len() + msg.len()].copy_from_slice(msg);
    s[code.len() + msg.len()] = b'\n';
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

/// Stage 2: QEMU with `accel` runs the boot sector to its marker.
pub fn probe_boot_sector(qemu: &Path, accel: Accel, workdir: &Path, timeout: Duration) -> Result<(), AccelError> {
    let img = workdir.join("accel-probe.img");
    std::fs::write(&img, boot_sector()).map_err(|source| AccelError::File { path: img.clone(), source })?;
    let drive = format!("file={},format=raw,if=ide,snapshot=on", super::cmdline::opt_escape(&img));
    run_to_marker(qemu, accel, workdir, &["-drive", &drive], BOOT_SECTOR_MARKER, timeout)
}

/// Stage 3: QEMU with `accel` boots a Linux kernel to its marker.
pub fn probe_kernel(
    qemu: &Path,
    accel: Accel,
    workdir: &Path,
    kernel: &ProbeKernel,
    timeout: Duration,
) -> Result<(), AccelError> {
    let k = kernel.kernel.to_string_lossy();
    let i = kernel.initrd.to_string_lossy();
    let args = ["-m", "256M", "-kernel", &k, "-initrd", &i, "-append", &kernel.append];
    run_to_marker(qemu, accel, workdir, &args, kernel.marker, timeout)
}

/// Runs a throw-away QEMU until `marker` shows up on its serial log, the process exits, or
/// `timeout` passes; the process is always killed.
fn run_to_marker(
    qemu: &Path,
    accel: Accel,
    workdir: &Path,
    extra: &[&str],
    marker: &'static str,
    timeout: Duration,
) -> Result<(), AccelError> {
    let serial = workdir.join(format!("accel-probe-{}.serial", accel.as_str()));
    let _ = std::fs::remove_file(&serial);
    let serial_arg = format!("file:{}", serial.to_string_lossy());
    let mut child = Command::new(qemu)
        .args(["-machine", "pc", "-accel", accel.as_str(), "-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-serial", &serial_arg])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| AccelError::Spawn { program: qemu.to_path_buf(), source })?;
    let start = Instant::now();
    let mut detail = "timed out".to_string();
    let mut exited = false;
    let found = loop {
        let text = std::fs::read(&serial).unwrap_or_default();
        if String::from_utf8_lossy(&text).contains(marker) {
            break true;
        }
        if let Ok(Some(status)) = child.try_wait() {
            detail = format!("qemu exited with {status}");
            exited = true;
            break String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).contains(marker);
        }
        if start.elapsed() >= timeout {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let out = child.wait_with_output();
    let _ = std::fs::remove_file(&serial);
    if found {
        return Ok(());
    }
    // On a timeout QEMU's stderr holds only warnings; after an early exit it says why.
    if let (true, Ok(out)) = (exited, out) {
        let err = String::from_utf8_lossy(&out.stderr);
        if let Some(line) = err.lines().rev().find(|l| l.contains("qemu") && !l.contains("terminating on signal")) {
            detail = format!("{detail}: {line}");
        }
    }
    Err(AccelError::NoMarker { accel: accel.as_str(), marker, secs: timeout.as_secs(), detail })
}

/// Picks the accelerator for new VMs. `Auto` runs the stages in order and falls back to TCG
/// at the first failure; `timeout` bounds each QEMU stage.
pub fn select(
    setting: AccelSetting,
    qemu: &Path,
    kvm_dev: &Path,
    workdir: &Path,
    kernel: Option<&ProbeKernel>,
    timeout: Duration,
) -> Selection {
    match setting {
        AccelSetting::Kvm => Selection { accel: Accel::Kvm, kvm_unusable: None },
        AccelSetting::Tcg => Selection { accel: Accel::Tcg, kvm_unusable: None },
        AccelSetting::Auto => {
            let probe = probe_kvm_device(kvm_dev)
                .and_then(|()| probe_kvm_flavour(Path::new("/sys/module")))
                .and_then(|()| probe_boot_sector(qemu, Accel::Kvm, workdir, timeout))
                .and_then(|()| match kernel {
                    Some(k) => probe_kernel(qemu, Accel::Kvm, workdir, k, timeout),
                    None => Ok(()),
                });
            match probe {
                Ok(()) => Selection { accel: Accel::Kvm, kvm_unusable: None },
                Err(e) => Selection { accel: Accel::Tcg, kvm_unusable: Some(e) },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_layout() {
        let s = boot_sector();
        assert_eq!(&s[510..], &[0x55, 0xAA]);
        // `mov si, imm16` must point at the message.
        let si = u16::from_le_bytes([s[9], s[10]]) as usize - 0x7c00;
        assert_eq!(&s[si..si + BOOT_SECTOR_MARKER.len()], BOOT_SECTOR_MARKER.as_bytes());
    }

    #[test]
    fn pvm_is_rejected_unless_hardware_kvm_is_there() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe_kvm_flavour(dir.path()).is_ok());
        std::fs::create_dir(dir.path().join("kvm_pvm")).unwrap();
        assert!(matches!(probe_kvm_flavour(dir.path()), Err(AccelError::Pvm { .. })));
        std::fs::create_dir(dir.path().join("kvm_intel")).unwrap();
        assert!(probe_kvm_flavour(dir.path()).is_ok());
    }

    #[test]
    fn settings_parse() {
        assert_eq!("auto".parse::<AccelSetting>().unwrap(), AccelSetting::Auto);
        assert_eq!("tcg".parse::<AccelSetting>().unwrap(), AccelSetting::Tcg);
        assert!("hvf".parse::<AccelSetting>().is_err());
    }

    #[test]
    fn missing_device_means_tcg() {
        let dir = tempfile::tempdir().unwrap();
        let sel = select(
            AccelSetting::Auto,
            Path::new("/nonexistent/qemu"),
            &dir.path().join("kvm"),
            dir.path(),
            None,
            Duration::from_secs(1),
        );
        assert_eq!(sel.accel, Accel::Tcg);
        assert!(matches!(sel.kvm_unusable, Some(AccelError::Open { .. })));
        let forced = select(AccelSetting::Kvm, Path::new("/x"), Path::new("/x"), dir.path(), None, Duration::ZERO);
        assert_eq!(forced.accel, Accel::Kvm);
    }
}
