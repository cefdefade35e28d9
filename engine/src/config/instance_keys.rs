//! The instance config key table (LXD 5.0.2 `InstanceConfigKeysAny/Container/VM` plus the
//! volatile rules of `ConfigKeyChecker`).

use super::validators::Validator as V;
use super::InstanceType;

/// Which instance types a key or device applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Containers and virtual machines.
    Any,
    /// Containers only.
    Container,
    /// Virtual machines only.
    Vm,
}

impl Scope {
    /// Whether a config of type `ty` may carry this key (`Any` accepts everything).
    pub fn allows(self, ty: InstanceType) -> bool {
        matches!(
            (self, ty),
            (Scope::Any, _)
                | (_, InstanceType::Any)
                | (Scope::Container, InstanceType::Container)
                | (Scope::Vm, InstanceType::VirtualMachine)
        )
    }

    /// `C`, `VM` or `C,VM` for the reference.
    pub fn label(self) -> &'static str {
        match self {
            Scope::Any => "C,VM",
            Scope::Container => "C",
            Scope::Vm => "VM",
        }
    }
}

/// How a change reaches a running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// Applied at once on every type the key applies to.
    Yes,
    /// Applied at once on containers; a running VM refuses the change.
    ContainerOnly,
    /// Takes effect at the next start on containers; a running VM refuses the change.
    No,
}

impl Live {
    /// `yes`, `C only` or `no` for the reference.
    pub fn label(self) -> &'static str {
        match self {
            Live::Yes => "yes",
            Live::ContainerOnly => "C only",
            Live::No => "no",
        }
    }
}

/// How a table entry matches a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Exactly this key.
    Exact,
    /// The key starts with this prefix and has something after it.
    Prefix,
    /// `volatile.<dev>.<suffix>`: the entry key is the `.suffix`.
    VolatileSuffix,
}

/// One row of the instance key table.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// The key, the prefix (ending in `.`) or the volatile `.suffix`.
    pub key: &'static str,
    /// How [`KeySpec::key`] matches.
    pub matching: Match,
    /// The value check.
    pub validator: V,
    /// Which instance types accept it.
    pub scope: Scope,
    /// Whether a running instance applies a change.
    pub live: Live,
    /// One doc line.
    pub doc: &'static str,
}

impl KeySpec {
    /// The key as shown in the reference (`user.*`, `volatile.<dev>.hwaddr`).
    pub fn display(&self) -> String {
        match self.matching {
            Match::Exact => self.key.to_string(),
            Match::Prefix => format!("{}*", self.key),
            Match::VolatileSuffix => format!("volatile.<dev>{}", self.key),
        }
    }
}

const fn k(key: &'static str, validator: V, scope: Scope, live: Live, doc: &'static str) -> KeySpec {
    KeySpec { key, matching: Match::Exact, validator, scope, live, doc }
}

const fn p(key: &'static str, validator: V, scope: Scope, live: Live, doc: &'static str) -> KeySpec {
    KeySpec { key, matching: Match::Prefix, validator, scope, live, doc }
}

const fn vd(suffix: &'static str, doc: &'static str) -> KeySpec {
    KeySpec { key: suffix, matching: Match::VolatileSuffix, validator: V::Any, scope: Scope::Any, live: Live::Yes, doc }
}

use Live::{ContainerOnly as LC, No as LN, Yes as LY};
use Scope::{Any as A, Container as C, Vm as VM};

/// Aliases `snapshots.schedule` accepts besides a cron spec.
pub const SCHEDULE_ALIASES: &[&str] =
    &["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@annually", "@yearly", "@startup", "@never"];

/// Every instance config key, prefix and volatile rule of LXD 5.0.2.
pub static INSTANCE_KEYS: &[KeySpec] = &[
    k("agent.nic_config", V::Bool, VM, LN, "Name and MTU of the guest NICs follow the instance devices (lxd-agent)."),
    k("boot.autostart", V::Bool, A, LY, "Start the instance when the daemon starts."),
    k("boot.autostart.delay", V::Int64, A, LY, "Seconds to wait after this instance autostarted before the next."),
    k("boot.autostart.priority", V::Int64, A, LY, "Autostart order; higher starts first."),
    k("boot.host_shutdown_timeout", V::Int64, A, LY, "Seconds to wait for a clean shutdown when the host stops."),
    k("boot.stop.priority", V::Int64, A, LY, "Shutdown order; higher stops first."),
    k("cloud-init.network-config", V::Yaml, A, LY, "cloud-init network configuration (replaces the default)."),
    k("cloud-init.user-data", V::CloudInitUserData, A, LY, "cloud-init user data."),
    k("cloud-init.vendor-data", V::CloudInitUserData, A, LY, "cloud-init vendor data."),
    k("cluster.evacuate", V::OneOf(&["auto", "migrate", "live-migrate", "stop"]), A, LY, "What to do with the instance on cluster evacuation."),
    k("limits.cpu", V::CpuLimit, A, LC, "CPUs: a count, or a cpuset to pin to."),
    k("limits.cpu.allowance", V::CpuAllowance, C, LY, "CPU time: a soft share (`50%`) or a hard quota (`25ms/100ms`)."),
    k("limits.cpu.priority", V::Range(0, 10), C, LY, "CPU scheduling priority under contention."),
    k("limits.disk.priority", V::Range(0, 10), A, LC, "Disk I/O priority under contention."),
    k("limits.hugepages.1GB", V::Size, C, LY, "Cap on 1 GB huge pages."),
    k("limits.hugepages.1MB", V::Size, C, LY, "Cap on 1 MB huge pages."),
    k("limits.hugepages.2MB", V::Size, C, LY, "Cap on 2 MB huge pages."),
    k("limits.hugepages.64KB", V::Size, C, LY, "Cap on 64 KB huge pages."),
    p("limits.kernel.", V::Any, A, LN, "Kernel resource limit (prlimit), e.g. `limits.kernel.nofile`."),
    k("limits.memory", V::MemoryLimit, A, LY, "Memory: a byte size or a percentage of the host."),
    k("limits.memory.enforce", V::OneOf(&["soft", "hard"]), C, LY, "Hard limit, or soft (only under host pressure)."),
    k("limits.memory.hugepages", V::Bool, VM, LN, "Back guest memory with huge pages."),
    k("limits.memory.swap", V::Bool, C, LY, "Allow swapping the container's memory."),
    k("limits.memory.swap.priority", V::Range(0, 10), C, LY, "Swap priority; higher swaps less."),
    k("limits.network.priority", V::Range(0, 10), A, LC, "Network priority under contention."),
    k("limits.processes", V::Int64, C, LY, "Maximum number of processes."),
    k("linux.kernel_modules", V::Any, C, LY, "Comma list of kernel modules to load before starting."),
    p("linux.sysctl.", V::Any, C, LN, "A sysctl set inside the container, e.g. `linux.sysctl.net.ipv4.ip_forward`."),
    k("migration.incremental.memory", V::Bool, C, LY, "Incremental memory transfer for live migration."),
    k("migration.incremental.memory.goal", V::Uint32, C, LY, "Percentage of memory left to stop iterating."),
    k("migration.incremental.memory.iterations", V::Uint32, C, LY, "Maximum pre-copy iterations."),
    k("migration.stateful", V::Bool, VM, LN, "Allow stateful stop/start and snapshots."),
    k("nvidia.driver.capabilities", V::Any, C, LN, "NVIDIA driver capabilities to expose."),
    k("nvidia.require.cuda", V::Any, C, LN, "Required CUDA version expression."),
    k("nvidia.require.driver", V::Any, C, LN, "Required driver version expression."),
    k("nvidia.runtime", V::Bool, C, LN, "Pass the host NVIDIA runtime libraries into the container."),
    k("raw.apparmor", V::Any, A, LC, "AppArmor rules appended to the generated profile."),
    k("raw.idmap", V::RawIdmap, A, LN, "Extra id mappings (`both|uid|gid HOST[-END] NS[-END]`)."),
    k("raw.lxc", V::RawLxc, C, LN, "Raw LXC configuration lines."),
    k("raw.qemu", V::Any, VM, LN, "Extra QEMU command-line arguments."),
    k("raw.qemu.conf", V::Any, VM, LN, "Overrides for the generated QEMU config file."),
    k("raw.seccomp", V::Any, C, LN, "Raw seccomp policy (excludes `security.syscalls.*`)."),
    k("security.agent.metrics", V::Bool, VM, LY, "Query the guest agent for state and metrics."),
    k("security.devlxd", V::Bool, A, LC, "Expose the /dev/lxd API to the instance."),
    k("security.devlxd.images", V::Bool, C, LY, "Allow /dev/lxd to serve images."),
    k("security.idmap.base", V::Uint32, C, LN, "Host id where the container's id map starts."),
    k("security.idmap.isolated", V::Bool, C, LN, "Give the container an id map of its own."),
    k("security.idmap.size", V::Uint32, C, LN, "Size of the container's id map."),
    k("security.nesting", V::Bool, C, LN, "Allow running containers inside the container."),
    k("security.privileged", V::Bool, C, LN, "Run without a user namespace (root is host root)."),
    k("security.protection.delete", V::Bool, A, LY, "Refuse DELETE while true."),
    k("security.protection.shift", V::Bool, C, LY, "Refuse filesystem shifting of the rootfs."),
    k("security.secureboot", V::Bool, VM, LY, "UEFI secure boot with the default Microsoft keys."),
    k("security.syscalls.allow", V::Any, C, LN, "Syscalls to allow (everything else denied)."),
    k("security.syscalls.blacklist", V::Any, C, LN, "Legacy alias of `security.syscalls.deny`."),
    k("security.syscalls.blacklist_compat", V::Bool, C, LN, "Legacy alias of `security.syscalls.deny_compat`."),
    k("security.syscalls.blacklist_default", V::Bool, C, LN, "Legacy alias of `security.syscalls.deny_default`."),
    k("security.syscalls.deny", V::Any, C, LN, "Syscalls to deny."),
    k("security.syscalls.deny_compat", V::Bool, C, LN, "Deny compat syscalls (x86_64/aarch64/ppc64 hosts)."),
    k("security.syscalls.deny_default", V::Bool, C, LN, "Enable the default syscall deny list."),
    k("security.syscalls.intercept.bpf", V::Bool, C, LN, "Intercept `bpf`."),
    k("security.syscalls.intercept.bpf.devices", V::Bool, C, LN, "Allow device cgroup BPF programs through interception."),
    k("security.syscalls.intercept.mknod", V::Bool, C, LN, "Intercept `mknod`/`mknodat`."),
    k("security.syscalls.intercept.mount", V::Bool, C, LN, "Intercept `mount`."),
    k("security.syscalls.intercept.mount.allowed", V::Any, C, LN, "Filesystems mountable through interception."),
    k("security.syscalls.intercept.mount.fuse", V::Any, C, LN, "Filesystems redirected to FUSE (`ext4=fuse2fs`)."),
    k("security.syscalls.intercept.mount.shift", V::Bool, C, LN, "Shift intercepted mounts."),
    k("security.syscalls.intercept.sched_setscheduler", V::Bool, C, LN, "Intercept `sched_setscheduler`."),
    k("security.syscalls.intercept.setxattr", V::Bool, C, LN, "Intercept `setxattr` for trusted xattrs."),
    k("security.syscalls.whitelist", V::Any, C, LN, "Legacy alias of `security.syscalls.allow`."),
    k("snapshots.expiry", V::Expiry, A, LY, "How long automatic snapshots live (`1d 2H`)."),
    k("snapshots.pattern", V::Any, A, LY, "Template for snapshot names (`snap%d`)."),
    k("snapshots.schedule", V::Cron(SCHEDULE_ALIASES), A, LY, "When to take automatic snapshots."),
    k("snapshots.schedule.stopped", V::Bool, A, LY, "Also snapshot stopped instances."),
    p("environment.", V::Any, A, LY, "Environment variable exported to exec'd processes."),
    p("image.", V::Any, A, LY, "Properties of the image the instance came from (instances only)."),
    p("user.", V::Any, A, LY, "Free-form user metadata."),
    k("volatile.apply_nvram", V::Bool, VM, LY, "Regenerate the NVRAM on next start."),
    k("volatile.apply_quota", V::Any, A, LY, "Disk quota to apply on next start."),
    k("volatile.apply_template", V::Any, A, LY, "Template trigger to run on next start."),
    k("volatile.base_image", V::Any, A, LY, "Fingerprint of the image the instance came from."),
    k("volatile.cloud-init.instance-id", V::Uuid, A, LY, "cloud-init instance id."),
    k("volatile.evacuate.origin", V::Any, A, LY, "Cluster member the instance was evacuated from."),
    k("volatile.idmap.base", V::Any, A, LY, "First host id of the current map."),
    k("volatile.idmap.current", V::Any, A, LY, "The id map in use."),
    k("volatile.idmap.next", V::Any, A, LY, "The id map to use on next start."),
    k("volatile.last_state.idmap", V::Any, A, LY, "The on-disk id map of the rootfs."),
    k("volatile.last_state.power", V::Any, A, LY, "Power state when the host last shut down."),
    k("volatile.uuid", V::Uuid, A, LY, "Instance UUID."),
    k("volatile.vsock_id", V::Int64, A, LY, "vsock context id."),
    vd(".apply_quota", "Disk quota to apply on next start."),
    vd(".ceph_rbd", "RBD device path of a ceph disk."),
    vd(".created", "Whether the NIC's host device was created by the daemon."),
    vd(".driver", "Original host driver of a passed-through device."),
    vd(".host_name", "Host-side interface name."),
    vd(".hwaddr", "Generated MAC address."),
    vd(".id", "SR-IOV VF id."),
    vd(".last_state.vf.parent", "Parent device of a VF."),
    vd(".mtu", "Original MTU of the parent."),
    vd(".name", "Generated interface name."),
    vd(".spoofcheck", "Original VF spoof check setting."),
    vd(".uuid", "mdev UUID."),
    vd(".vlan", "Original VF VLAN."),
];

/// Finds the table row for `key`: exact keys first, then prefixes and volatile suffixes.
pub fn lookup(key: &str) -> Option<&'static KeySpec> {
    INSTANCE_KEYS
        .iter()
        .find(|s| s.matching == Match::Exact && s.key == key)
        .or_else(|| {
            INSTANCE_KEYS.iter().find(|s| match s.matching {
                Match::Exact => false,
                Match::Prefix => key.len() > s.key.len() && key.starts_with(s.key),
                Match::VolatileSuffix => key
                    .strip_prefix("volatile.")
                    .and_then(|rest| rest.strip_suffix(s.key))
                    .is_some_and(|dev| !dev.is_empty()),
            })
        })
}

/// Whether `key` may change on a running instance of any type (LXD's VM live-update list;
/// unknown keys: false).
pub fn is_live_updatable(key: &str) -> bool {
    lookup(key).is_some_and(|s| s.live == Live::Yes)
}

/// Whether `key` may change on a running instance of type `ty`: running containers accept
/// every known key (a [`Live::No`] key then takes effect at the next start), running VMs
/// only [`Live::Yes`] keys (LXD: "Key cannot be updated when VM is running").
pub fn is_live_updatable_for(key: &str, ty: InstanceType) -> bool {
    lookup(key).is_some_and(|s| match ty {
        InstanceType::Container => true,
        InstanceType::VirtualMachine | InstanceType::Any => s.live == Live::Yes,
    })
}

/// Whether a change of `key` takes effect on a running instance of type `ty` at once
/// (rather than at the next start).
pub fn applies_live(key: &str, ty: InstanceType) -> bool {
    lookup(key).is_some_and(|s| match s.live {
        Live::Yes => true,
        Live::ContainerOnly => ty == InstanceType::Container,
        Live::No => false,
    })
}

/// InstanceIncludeWhenCopying: copies drop `volatile.*` except `volatile.base_image`, and
/// keep `volatile.last_state.idmap` on local copies.
pub fn include_when_copying(key: &str, remote_copy: bool) -> bool {
    if key == "volatile.base_image" {
        return true;
    }
    if key == "volatile.last_state.idmap" && !remote_copy {
        return true;
    }
    !key.starts_with("volatile.")
}
