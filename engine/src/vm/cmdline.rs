//! The QEMU command line for one VM: a pure function of a [`VmSpec`] and its [`RunPaths`].
//!
//! One QEMU process per VM. It daemonizes (QEMU forks, `setsid`s and writes the pidfile
//! once its sockets are listening), so it outlives berthd and is adopted again through
//! the pidfile and the QMP socket. Control and guest I/O use unix sockets in the run dir:
//! QMP, the serial console (also logged to a file) and the agent's virtio-serial port.

use super::accel::Accel;
use super::units::{self, UnitsError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Default guest memory when `limits.memory` is unset (LXD's default for VMs).
pub const DEFAULT_MEMORY: u64 = 1 << 30;

/// Errors building a VM spec from config.
#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    /// A config value did not parse.
    #[error("config key {key}")]
    Value { key: &'static str, source: UnitsError },
    /// Memory below what QEMU can boot.
    #[error("limits.memory {bytes} bytes is below the 32MiB minimum")]
    TooLittleMemory { bytes: u64 },
}

/// The root disk image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// qcow2 (images, overlays).
    Qcow2,
    /// Raw block or file.
    Raw,
}

/// The root disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Image path.
    pub path: PathBuf,
    /// Its format.
    pub format: DiskFormat,
}

/// A host file or block device given to the guest as a virtio disk (LXD's `disk` device
/// with a host path `source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraDisk {
    /// The device name; the guest sees it as the disk's serial (at most 20 bytes).
    pub name: String,
    /// Host path, attached raw.
    pub path: PathBuf,
    /// Read-only for the guest.
    pub readonly: bool,
}

impl ExtraDisk {
    /// The serial the guest sees: the device name's id characters, at most 20 bytes.
    pub fn serial(&self) -> String {
        self.name.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).take(20).collect()
    }
}

/// Spare PCIe root ports for hotplug, besides one per nic and disk given at start.
pub const SPARE_PORTS: usize = 4;

/// The id of the `i`th PCIe root port (`hp0`, `hp1`, ...); nics and disks each sit on one,
/// so they can be unplugged, and hotplug takes the first free one.
pub fn port_id(i: usize) -> String {
    format!("hp{i}")
}

/// A QEMU id for an LXD device name: `kind-` and 12 hex digits (device names may hold
/// characters QEMU ids cannot). Kinds: `nic` and `net` (its netdev), `disk` and `blk`
/// (its block node).
pub fn qemu_id(kind: &str, device: &str) -> String {
    use sha2::Digest;
    format!("{kind}-{}", &hex::encode(sha2::Sha256::digest(device.as_bytes()))[..12])
}

/// Direct kernel boot (no firmware boot loader): from image metadata or `user.boot.*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectBoot {
    /// `-kernel`.
    pub kernel: PathBuf,
    /// `-initrd`.
    pub initrd: Option<PathBuf>,
    /// `-append`.
    pub append: Option<String>,
}

/// A virtio NIC on a tap device that QEMU creates (and that vanishes with QEMU); berthd
/// plugs it into its bridge once QEMU is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// The device name (QEMU ids derive from it, see [`qemu_id`]).
    pub device: String,
    /// Host-side tap name (`volatile.<dev>.host_name`).
    pub ifname: String,
    /// Guest MAC address (`volatile.<dev>.hwaddr`).
    pub mac: Option<String>,
}

/// Where the serial console goes (always also to `console.log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// A unix socket `console.sock` (what `lxc console` attaches to).
    Socket,
    /// A pty (QEMU reports its path in `query-chardev`).
    Pty,
}

/// Everything that shapes the QEMU process of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// Instance name (shown as the QEMU guest name).
    pub name: String,
    /// Accelerator (see `accel::select`).
    pub accel: Accel,
    /// vCPU count.
    pub cpus: u32,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// Root disk.
    pub root_disk: Option<Disk>,
    /// Direct kernel boot.
    pub boot: Option<DirectBoot>,
    /// Serial console sink.
    pub console: Console,
    /// Add a virtio-balloon device (live memory changes).
    pub balloon: bool,
    /// Network interfaces, in device order.
    pub nics: Vec<Nic>,
    /// Disks besides the root disk, in device order.
    pub disks: Vec<ExtraDisk>,
    /// `raw.qemu`, already split into words, appended last.
    pub raw_qemu: Vec<String>,
}

impl VmSpec {
    /// Builds a spec from expanded instance config. Reads `limits.cpu`, `limits.memory`,
    /// `raw.qemu` and the direct-boot overrides `user.boot.kernel`, `user.boot.initrd`,
    /// `user.boot.append` (falling back to `image_boot`, from the image metadata).
    pub fn from_config(
        name: &str,
        config: &BTreeMap<String, String>,
        accel: Accel,
        root_disk: Option<Disk>,
        image_boot: Option<DirectBoot>,
        host_memory: u64,
    ) -> Result<VmSpec, CmdlineError> {
        let get = |k: &str| config.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
        let cpus = match get("limits.cpu") {
            Some(v) => units::cpu_count(v).map_err(|source| CmdlineError::Value { key: "limits.cpu", source })?,
            None => 1,
        };
        let memory = match get("limits.memory") {
            Some(v) => units::parse_size(v, host_memory)
                .map_err(|source| CmdlineError::Value { key: "limits.memory", source })?,
            None => DEFAULT_MEMORY,
        };
        if memory < 32 << 20 {
            return Err(CmdlineError::TooLittleMemory { bytes: memory });
        }
        let raw_qemu = match get("raw.qemu") {
            Some(v) => units::shell_words(v).map_err(|source| CmdlineError::Value { key: "raw.qemu", source })?,
            None => Vec::new(),
        };
        let boot = match get("user.boot.kernel") {
            Some(k) => Some(DirectBoot {
                kernel: PathBuf::from(k),
                initrd: get("user.boot.initrd").map(PathBuf::from),
                append: get("user.boot.append").map(str::to_string),
            }),
            None => image_boot.map(|mut b| {
                if let Some(a) = get("user.boot.append") {
                    b.append = Some(a.to_string());
                }
                b
            }),
        };
        Ok(VmSpec {
            name: name.to_string(),
            accel,
            cpus,
            memory,
            root_disk,
            boot,
            console: Console::Socket,
            balloon: true,
            nics: Vec::new(),
            disks: Vec::new(),
            raw_qemu,
        })
    }
}

/// The files of one running VM, all in one run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    /// The run directory (kept short: unix socket paths are limited to 107 bytes).
    pub dir: PathBuf,
}

impl RunPaths {
    /// Paths under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> RunPaths {
        RunPaths { dir: dir.into() }
    }
    /// QMP socket.
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    /// Agent channel socket.
    pub fn agent(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }
    /// Serial console socket.
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
    /// Serial console log.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// QEMU pidfile.
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    /// QEMU's own stderr (errors before it daemonizes).
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
}

/// Escapes a value for a QEMU `key=value,…` option: commas are doubled.
pub fn opt_escape(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

/// Builds the argv (without the program name).
pub fn build_args(spec: &VmSpec, paths: &RunPaths) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    let name = spec.name.replace(',', ",,");
    push(&["-name", &format!("{name},debug-threads=on")]);
    // Q35, as LXD: under TCG its virtio PCI devices bind ~0.1 s faster each than on i440FX
    // (no ACPI interrupt-link routing), and its kernel boot is no slower (docs/benchmarks.md).
    push(&["-machine", "q35"]);
    push(&["-accel", spec.accel.as_str()]);
    if spec.accel == Accel::Kvm {
        push(&["-cpu", "host"]);
    }
    push(&["-smp", &spec.cpus.max(1).to_string()]);
    push(&["-m", &format!("{}M", (spec.memory >> 20).max(32))]);
    push(&["-nodefaults", "-no-user-config", "-nographic"]);

    let log = opt_escape(&paths.console_log());
    let console = match spec.console {
        Console::Socket => {
            format!("socket,id=console,path={},server=on,wait=off,logfile={log},logappend=on", opt_escape(&paths.console()))
        }
        Console::Pty => format!("pty,id=console,logfile={log},logappend=on"),
    };
    push(&["-chardev", &console, "-serial", "chardev:console"]);

    let qmp = format!("socket,id=qmp,path={},server=on,wait=off", opt_escape(&paths.qmp()));
    push(&["-chardev", &qmp, "-mon", "chardev=qmp,mode=control"]);

    let agent = format!("socket,id=agent,path={},server=on,wait=off", opt_escape(&paths.agent()));
    push(&["-device", "virtio-serial-pci,id=vserial0"]);
    push(&["-chardev", &agent]);
    push(&["-device", &format!("virtserialport,bus=vserial0.0,chardev=agent,name={}", berth_agent::PORT_NAME)]);

    if spec.balloon {
        push(&["-device", "virtio-balloon-pci,id=balloon0"]);
    }
    for i in 0..spec.nics.len() + spec.disks.len() + SPARE_PORTS {
        push(&["-device", &format!("pcie-root-port,id={},chassis={}", port_id(i), i + 1)]);
    }
    // Nics take the first ports, then disks (hp<nics + i>).
    for (i, nic) in spec.nics.iter().enumerate() {
        let net = qemu_id("net", &nic.device);
        let tap = format!("tap,id={net},ifname={},script=no,downscript=no", nic.ifname.replace(',', ",,"));
        let mut dev = format!("virtio-net-pci,netdev={net},id={},bus={}", qemu_id("nic", &nic.device), port_id(i));
        if let Some(mac) = &nic.mac {
            dev.push_str(&format!(",mac={}", mac.replace(',', ",,")));
        }
        push(&["-netdev", &tap, "-device", &dev]);
    }
    if let Some(disk) = &spec.root_disk {
        let fmt = match disk.format {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        };
        let drive = format!("file={},format={fmt},if=none,id=root,discard=unmap", opt_escape(&disk.path));
        push(&["-drive", &drive, "-device", "virtio-blk-pci,drive=root,id=root-disk,bootindex=1"]);
    }
    for (i, disk) in spec.disks.iter().enumerate() {
        let (node, ro) = (qemu_id("blk", &disk.name), if disk.readonly { "on" } else { "off" });
        let blockdev = format!("driver=raw,node-name={node},read-only={ro},file.driver=file,file.filename={}", opt_escape(&disk.path));
        let port = port_id(spec.nics.len() + i);
        let dev = format!("virtio-blk-pci,drive={node},id={},bus={port},serial={}", qemu_id("disk", &disk.name), disk.serial());
        push(&["-blockdev", &blockdev, "-device", &dev]);
    }
    if let Some(boot) = &spec.boot {
        push(&["-kernel", &boot.kernel.to_string_lossy()]);
        if let Some(initrd) = &boot.initrd {
            push(&["-initrd", &initrd.to_string_lossy()]);
        }
        if let Some(append) = &boot.append {
            push(&["-append", append]);
        }
    }
    push(&["-pidfile", &paths.pidfile().to_string_lossy(), "-daemonize"]);
    a.extend(spec.raw_qemu.iter().cloned());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        let mut cfg = BTreeMap::new();
        cfg.insert("limits.cpu".to_string(), "2".to_string());
        cfg.insert("limits.memory".to_string(), "512MiB".to_string());
        cfg.insert("raw.qemu".to_string(), "-rtc 'base=utc'".to_string());
        let disk = Disk { path: "/var/lib/berth/a,b.qcow2".into(), format: DiskFormat::Qcow2 };
        VmSpec::from_config("v1", &cfg, Accel::Tcg, Some(disk), None, 8 << 30).unwrap()
    }

    fn has_pair(a: &[String], k: &str, v: &str) -> bool {
        a.windows(2).any(|w| w[0] == k && w[1] == v)
    }

    #[test]
    fn core_flags() {
        let a = build_args(&spec(), &RunPaths::new("/run/berth/v1"));
        assert!(has_pair(&a, "-machine", "q35"));
        assert!(has_pair(&a, "-accel", "tcg"));
        assert!(has_pair(&a, "-smp", "2"));
        assert!(has_pair(&a, "-m", "512M"));
        assert!(!a.contains(&"-cpu".to_string()), "no -cpu host under tcg");
        for f in ["-nodefaults", "-nographic", "-daemonize"] {
            assert!(a.contains(&f.to_string()), "{f}");
        }
        assert!(has_pair(&a, "-pidfile", "/run/berth/v1/qemu.pid"));
        assert!(has_pair(&a, "-mon", "chardev=qmp,mode=control"));
        assert!(has_pair(&a, "-chardev", "socket,id=qmp,path=/run/berth/v1/qmp.sock,server=on,wait=off"));
        assert!(has_pair(&a, "-device", "virtserialport,bus=vserial0.0,chardev=agent,name=org.berth.agent.0"));
        assert!(has_pair(&a, "-serial", "chardev:console"));
        assert!(a.iter().any(|s| s.contains("logfile=/run/berth/v1/console.log")));
        // raw.qemu comes last, split into words.
        assert_eq!(&a[a.len() - 2..], ["-rtc", "base=utc"]);
    }

    #[test]
    fn nics_and_disks_sit_on_root_ports_with_spares() {
        let mut s = spec();
        s.nics = vec![
            Nic { device: "eth0".into(), ifname: "tap0a".into(), mac: Some("00:16:3e:00:00:01".into()) },
            Nic { device: "eth 1".into(), ifname: "tap,x".into(), mac: None },
        ];
        s.disks = vec![ExtraDisk { name: "a,b=c very-long-device-name".into(), path: "/srv/a,b.img".into(), readonly: true }];
        let a = build_args(&s, &RunPaths::new("/r"));
        let ports: Vec<&String> = a.iter().filter(|x| x.starts_with("pcie-root-port,")).collect();
        assert_eq!(ports.len(), 3 + SPARE_PORTS);
        assert_eq!(ports[0], "pcie-root-port,id=hp0,chassis=1");
        let (n0, n1, d0) = (qemu_id("net", "eth0"), qemu_id("net", "eth 1"), qemu_id("blk", &s.disks[0].name));
        assert!(n0.starts_with("net-") && n0.len() == 16 && n0 != n1);
        assert!(has_pair(&a, "-netdev", &format!("tap,id={n0},ifname=tap0a,script=no,downscript=no")));
        let nic0 = format!("virtio-net-pci,netdev={n0},id={},bus=hp0,mac=00:16:3e:00:00:01", qemu_id("nic", "eth0"));
        assert!(has_pair(&a, "-device", &nic0));
        assert!(has_pair(&a, "-netdev", &format!("tap,id={n1},ifname=tap,,x,script=no,downscript=no")));
        assert!(has_pair(&a, "-device", &format!("virtio-net-pci,netdev={n1},id={},bus=hp1", qemu_id("nic", "eth 1"))));
        let blockdev = format!("driver=raw,node-name={d0},read-only=on,file.driver=file,file.filename=/srv/a,,b.img");
        assert!(has_pair(&a, "-blockdev", &blockdev));
        let disk = format!("virtio-blk-pci,drive={d0},id={},bus=hp2,serial=abcvery-long-device-", qemu_id("disk", &s.disks[0].name));
        assert!(has_pair(&a, "-device", &disk));
        let none = build_args(&spec(), &RunPaths::new("/r"));
        assert!(!none.contains(&"-netdev".to_string()) && none.iter().filter(|x| x.starts_with("pcie-root-port,")).count() == SPARE_PORTS);
    }

    #[test]
    fn disk_path_commas_are_escaped() {
        let a = build_args(&spec(), &RunPaths::new("/r"));
        assert!(has_pair(&a, "-drive", "file=/var/lib/berth/a,,b.qcow2,format=qcow2,if=none,id=root,discard=unmap"));
        assert!(has_pair(&a, "-device", "virtio-blk-pci,drive=root,id=root-disk,bootindex=1"));
    }

    #[test]
    fn kvm_adds_host_cpu() {
        let mut s = spec();
        s.accel = Accel::Kvm;
        s.console = Console::Pty;
        let a = build_args(&s, &RunPaths::new("/r"));
        assert!(has_pair(&a, "-cpu", "host") && has_pair(&a, "-accel", "kvm") && has_pair(&a, "-machine", "q35"));
        assert!(has_pair(&a, "-chardev", "pty,id=console,logfile=/r/console.log,logappend=on"));
    }

    #[test]
    fn defaults_and_direct_boot() {
        let mut cfg = BTreeMap::new();
        let image = DirectBoot { kernel: "/img/vmlinuz".into(), initrd: Some("/img/initrd".into()), append: None };
        cfg.insert("user.boot.append".to_string(), "console=ttyS0".to_string());
        let s = VmSpec::from_config("d", &cfg, Accel::Tcg, None, Some(image), 0).unwrap();
        assert_eq!((s.cpus, s.memory), (1, DEFAULT_MEMORY));
        let a = build_args(&s, &RunPaths::new("/r"));
        assert!(has_pair(&a, "-m", "1024M"));
        assert!(has_pair(&a, "-kernel", "/img/vmlinuz") && has_pair(&a, "-initrd", "/img/initrd"));
        assert!(has_pair(&a, "-append", "console=ttyS0"));
        assert!(!a.contains(&"-drive".to_string()));

        cfg.insert("user.boot.kernel".to_string(), "/k".to_string());
        let s = VmSpec::from_config("d", &cfg, Accel::Tcg, None, None, 0).unwrap();
        assert_eq!(s.boot.unwrap().kernel, PathBuf::from("/k"));
    }

    #[test]
    fn bad_config_names_the_key() {
        for (k, v) in [("limits.cpu", "x"), ("limits.memory", "lots"), ("raw.qemu", "'x")] {
            let mut cfg = BTreeMap::new();
            cfg.insert(k.to_string(), v.to_string());
            let e = VmSpec::from_config("d", &cfg, Accel::Tcg, None, None, 0).unwrap_err();
            assert!(matches!(e, CmdlineError::Value { key, .. } if key == k), "{k}");
        }
        let mut cfg = BTreeMap::new();
        cfg.insert("limits.memory".to_string(), "1MiB".to_string());
        assert!(matches!(
            VmSpec::from_config("d", &cfg, Accel::Tcg, None, None, 0),
            Err(CmdlineError::TooLittleMemory { .. })
        ));
    }
}
