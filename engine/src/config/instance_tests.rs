//! Instance/profile/expanded config validation.

use super::*;
use crate::config::{is_live_updatable, is_live_updatable_for, validate_instance_config, Match, Scope, INSTANCE_KEYS};

fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn check(pairs: &[(&str, &str)], ty: InstanceType, level: ConfigLevel) -> Result<(), ConfigError> {
    validate_instance_config_with(&cfg(pairs), ty, level, Policy::default())
}

const CT: InstanceType = InstanceType::Container;
const VMT: InstanceType = InstanceType::VirtualMachine;
const ANY: InstanceType = InstanceType::Any;
const I: ConfigLevel = ConfigLevel::Instance;

#[test]
fn typical_configs_pass() {
    check(
        &[
            ("boot.autostart", "true"),
            ("limits.cpu", "2"),
            ("limits.memory", "512MB"),
            ("limits.memory.enforce", "soft"),
            ("limits.kernel.nofile", "1024"),
            ("linux.sysctl.net.ipv4.ip_forward", "1"),
            ("security.nesting", "true"),
            ("snapshots.schedule", "@daily"),
            ("snapshots.expiry", "2w"),
            ("user.foo", "bar"),
            ("environment.HTTP_PROXY", "x"),
            ("image.os", "debian"),
            ("volatile.base_image", "abc"),
            ("volatile.uuid", "9f3c1b8e-4b0f-4a57-9b43-2c5d0e0f1a2b"),
            ("volatile.eth0.hwaddr", "00:16:3e:00:00:01"),
            ("volatile.eth0.last_state.hwaddr", "00:16:3e:00:00:01"),
            ("volatile.root.apply_quota", "true"),
            ("raw.idmap", "both 1000 1000"),
            ("raw.lxc", "lxc.apparmor.profile = unconfined"),
        ],
        CT,
        I,
    )
    .unwrap();
    check(&[("limits.memory.hugepages", "true"), ("security.secureboot", "false"), ("raw.qemu", "-m 1G")], VMT, I)
        .unwrap();
}

#[test]
fn every_table_entry_accepts_empty_and_its_type() {
    for spec in INSTANCE_KEYS {
        let key = match spec.matching {
            Match::Exact => spec.key.to_string(),
            Match::Prefix => format!("{}x", spec.key),
            Match::VolatileSuffix => format!("volatile.eth0{}", spec.key),
        };
        let ty = match spec.scope {
            Scope::Container => CT,
            Scope::Vm => VMT,
            Scope::Any => ANY,
        };
        let deny_compat = key.ends_with("_compat");
        if !deny_compat {
            check(&[(&key, "")], ty, I).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
        assert!(lookup(&key).is_some(), "{key}");
    }
}

#[test]
fn unknown_keys() {
    for key in ["bogus", "limits.kernel.", "user", "volatile.hwaddr", "volatile..hwaddr", "volatile.eth0.bogus", "linux.sysctl."] {
        let e = check(&[(key, "1")], CT, I).unwrap_err();
        assert_eq!(e, ConfigError::UnknownKey(key.into()), "{key}");
        assert_eq!(e.to_string(), format!("Unknown configuration key: {key}"));
    }
}

#[test]
fn type_specific_keys_refused_on_the_other_type_only_for_instance_level() {
    let e = check(&[("security.privileged", "true")], VMT, I).unwrap_err();
    assert_eq!(e, ConfigError::UnknownKey("security.privileged".into()));
    let e = check(&[("raw.qemu", "-m 1G")], CT, I).unwrap_err();
    assert_eq!(e, ConfigError::UnknownKey("raw.qemu".into()));
    assert!(check(&[("limits.memory.hugepages", "1")], CT, I).is_err());
    // Expanded and profile configs validate as Any.
    for level in [ConfigLevel::Expanded, ConfigLevel::Profile] {
        check(&[("security.privileged", "true"), ("raw.qemu", "-m 1G")], VMT, level).unwrap();
        check(&[("security.privileged", "true"), ("raw.qemu", "-m 1G")], CT, level).unwrap();
    }
    // An instance-level check with type Any accepts both too.
    check(&[("security.privileged", "true"), ("raw.qemu", "x")], ANY, I).unwrap();
}

#[test]
fn profiles_refuse_volatile_and_image() {
    let p = ConfigLevel::Profile;
    let e = check(&[("volatile.base_image", "x")], ANY, p).unwrap_err();
    assert_eq!(e.to_string(), "Volatile keys can only be set on instances");
    let e = check(&[("image.os", "x")], ANY, p).unwrap_err();
    assert_eq!(e.to_string(), "Image keys can only be set on instances");
    check(&[("volatile.base_image", "x"), ("image.os", "y")], CT, ConfigLevel::Expanded).unwrap();
}

#[test]
fn values_name_the_key() {
    for (k, v, ty) in [
        ("boot.autostart", "maybe", CT),
        ("boot.autostart.delay", "soon", CT),
        ("limits.cpu", "1,1", CT),
        ("limits.cpu", "0", CT),
        ("limits.cpu.allowance", "lots", CT),
        ("limits.cpu.priority", "11", CT),
        ("limits.memory", "0%", CT),
        ("limits.memory", "1.5GB", VMT),
        ("limits.memory.enforce", "medium", CT),
        ("limits.hugepages.2MB", "x", CT),
        ("migration.incremental.memory.goal", "-1", CT),
        ("security.idmap.size", "4294967296", CT),
        ("snapshots.schedule", "every day", CT),
        ("snapshots.expiry", "1q", VMT),
        ("cluster.evacuate", "teleport", CT),
        ("cloud-init.network-config", "a: [", CT),
        ("cloud-init.user-data", "#cloud-config\na: [", CT),
        ("volatile.uuid", "nope", CT),
        ("volatile.vsock_id", "x", VMT),
        ("volatile.apply_nvram", "x", VMT),
        ("raw.idmap", "both 1000", CT),
        ("raw.lxc", "lxc.logfile = /x", CT),
        ("raw.lxc", "lxc.prlimit.nofile=1", CT),
    ] {
        let e = check(&[(k, v)], ty, I).unwrap_err();
        match &e {
            ConfigError::InvalidValue { key, .. } => assert_eq!(key, k),
            other => panic!("{k}={v}: {other:?}"),
        }
        assert!(e.to_string().contains(&format!("\"{k}\"")), "{e}");
    }
}

#[test]
fn syscall_exclusions() {
    let bad: &[&[(&str, &str)]] = &[
        &[("raw.seccomp", "2\nblacklist"), ("security.syscalls.deny", "mount")],
        &[("raw.seccomp", "x"), ("security.syscalls.allow", "read")],
        &[("raw.seccomp", "x"), ("security.syscalls.deny_default", "true")],
        &[("raw.seccomp", "x"), ("security.syscalls.blacklist", "mount")],
        &[("security.syscalls.allow", "read"), ("security.syscalls.deny", "mount")],
        &[("security.syscalls.allow", "read"), ("security.syscalls.deny_default", "false")],
        &[("security.syscalls.whitelist", "read"), ("security.syscalls.blacklist_default", "true")],
        &[("security.syscalls.whitelist", "read"), ("security.syscalls.allow", "read")],
        &[("security.syscalls.blacklist", "a"), ("security.syscalls.deny", "a")],
        &[("security.syscalls.blacklist_default", "1"), ("security.syscalls.deny_default", "1")],
    ];
    for pairs in bad {
        let e = check(pairs, CT, I).unwrap_err();
        assert!(e.to_string().contains("mutually exclusive"), "{pairs:?}: {e}");
    }
    check(&[("raw.seccomp", "x"), ("security.syscalls.intercept.mknod", "true")], CT, I).unwrap();
    check(&[("security.syscalls.deny", "mount"), ("security.syscalls.deny_default", "true")], CT, I).unwrap();
    check(&[("security.syscalls.allow", "read"), ("security.syscalls.deny", "")], CT, I).unwrap();
}

#[test]
fn privileged_and_nvidia_runtime() {
    let e = check(&[("security.privileged", "true"), ("nvidia.runtime", "true")], CT, ConfigLevel::Expanded).unwrap_err();
    assert!(e.to_string().contains("nvidia.runtime"), "{e}");
    check(&[("security.privileged", "false"), ("nvidia.runtime", "true")], CT, I).unwrap();
}

#[test]
fn unprivileged_only_policy() {
    let strict = Policy { unprivileged_only: true };
    let run = |pairs: &[(&str, &str)], p: Policy| validate_instance_config_with(&cfg(pairs), CT, I, p);
    let e = run(&[("security.privileged", "true")], strict).unwrap_err();
    assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "security.privileged"), "{e}");
    run(&[("security.privileged", "false")], strict).unwrap();
    run(&[("security.privileged", "true")], Policy::default()).unwrap();
    let e = run(&[("raw.idmap", "both 0 0")], strict).unwrap_err();
    assert!(e.to_string().contains("raw.idmap") && e.to_string().contains("root"), "{e}");
    run(&[("raw.idmap", "both 0 0")], Policy::default()).unwrap();
    run(&[("raw.idmap", "both 1000 0")], strict).unwrap();
    let e = run(&[("raw.lxc", "lxc.include = /x")], strict).unwrap_err();
    assert!(e.to_string().contains("raw.lxc"), "{e}");
    run(&[("raw.lxc", "lxc.include = /x")], Policy::default()).unwrap();
}

#[test]
fn unprivileged_only_reads_the_environment() {
    // The only test touching this variable; validations elsewhere pass an explicit Policy.
    std::env::set_var("BERTH_UNPRIVILEGED_ONLY", "true");
    let on = crate::config::unprivileged_only();
    std::env::set_var("BERTH_UNPRIVILEGED_ONLY", "no");
    let off = crate::config::unprivileged_only();
    std::env::remove_var("BERTH_UNPRIVILEGED_ONLY");
    assert!(on && !off && !crate::config::unprivileged_only());
}

#[test]
fn public_entry_point_validates() {
    let e = validate_instance_config(&cfg(&[("nope", "1")]), CT, I).unwrap_err();
    assert_eq!(e.to_string(), "Unknown configuration key: nope");
    validate_instance_config(&cfg(&[("limits.cpu", "0-1")]), CT, I).unwrap();
}

#[test]
fn live_update_flags() {
    use crate::config::applies_live;
    for k in ["limits.memory", "user.x", "boot.autostart", "snapshots.schedule", "volatile.eth0.hwaddr", "security.protection.delete"] {
        assert!(is_live_updatable(k), "{k}");
        assert!(is_live_updatable_for(k, VMT), "{k}");
        assert!(applies_live(k, VMT) && applies_live(k, CT), "{k}");
    }
    for k in ["security.privileged", "raw.lxc", "raw.qemu", "raw.idmap", "limits.kernel.nofile", "bogus"] {
        assert!(!is_live_updatable(k), "{k}");
        assert!(!is_live_updatable_for(k, VMT), "{k}");
        assert!(!applies_live(k, CT), "{k}");
    }
    // Running containers accept every known key; some apply at next start.
    assert!(is_live_updatable_for("security.privileged", CT));
    assert!(!is_live_updatable_for("bogus", CT));
    assert!(!is_live_updatable("limits.cpu"));
    assert!(is_live_updatable_for("limits.cpu", CT) && applies_live("limits.cpu", CT));
    assert!(!is_live_updatable_for("limits.cpu", VMT) && !applies_live("limits.cpu", VMT));
}

/// Every key of lxd-api.md §2.2, with the scope the doc gives it.
#[test]
fn covers_every_documented_key() {
    let any = [
        "boot.autostart", "boot.autostart.delay", "boot.autostart.priority", "boot.stop.priority",
        "boot.host_shutdown_timeout", "cloud-init.network-config", "cloud-init.user-data", "cloud-init.vendor-data",
        "cluster.evacuate", "limits.cpu", "limits.disk.priority", "limits.network.priority", "limits.memory",
        "limits.kernel.nofile", "raw.apparmor", "raw.idmap", "security.devlxd", "security.protection.delete",
        "snapshots.schedule", "snapshots.schedule.stopped", "snapshots.pattern", "snapshots.expiry", "user.a",
        "environment.A", "image.os", "volatile.apply_template", "volatile.base_image", "volatile.evacuate.origin",
        "volatile.last_state.idmap", "volatile.last_state.power", "volatile.idmap.base", "volatile.idmap.current",
        "volatile.idmap.next", "volatile.apply_quota", "volatile.uuid", "volatile.cloud-init.instance-id",
        "volatile.vsock_id",
    ];
    let container = [
        "limits.cpu.allowance", "limits.cpu.priority", "limits.memory.swap.priority", "limits.memory.enforce",
        "limits.memory.swap", "limits.hugepages.64KB", "limits.hugepages.1MB", "limits.hugepages.2MB",
        "limits.hugepages.1GB", "limits.processes", "linux.kernel_modules", "linux.sysctl.net.ipv4.ip_forward",
        "migration.incremental.memory", "migration.incremental.memory.iterations", "migration.incremental.memory.goal",
        "nvidia.runtime", "nvidia.driver.capabilities", "nvidia.require.cuda", "nvidia.require.driver", "raw.lxc",
        "raw.seccomp", "security.devlxd.images", "security.protection.shift", "security.privileged",
        "security.nesting", "security.idmap.isolated", "security.idmap.base", "security.idmap.size",
        "security.syscalls.allow", "security.syscalls.deny", "security.syscalls.whitelist",
        "security.syscalls.blacklist", "security.syscalls.intercept.mount.allowed",
        "security.syscalls.intercept.mount.fuse", "security.syscalls.deny_default", "security.syscalls.deny_compat",
        "security.syscalls.blacklist_default", "security.syscalls.blacklist_compat", "security.syscalls.intercept.bpf",
        "security.syscalls.intercept.bpf.devices", "security.syscalls.intercept.mknod",
        "security.syscalls.intercept.mount", "security.syscalls.intercept.mount.shift",
        "security.syscalls.intercept.sched_setscheduler", "security.syscalls.intercept.setxattr",
    ];
    let vm = [
        "limits.memory.hugepages", "migration.stateful", "raw.qemu", "raw.qemu.conf", "security.secureboot",
        "security.agent.metrics", "agent.nic_config", "volatile.apply_nvram",
    ];
    for k in any {
        assert_eq!(lookup(k).map(|s| s.scope), Some(Scope::Any), "{k}");
    }
    for k in container {
        assert_eq!(lookup(k).map(|s| s.scope), Some(Scope::Container), "{k}");
    }
    for k in vm {
        assert_eq!(lookup(k).map(|s| s.scope), Some(Scope::Vm), "{k}");
    }
    for suffix in [
        "hwaddr", "name", "host_name", "mtu", "created", "id", "vlan", "spoofcheck", "last_state.vf.parent",
        "apply_quota", "ceph_rbd", "driver", "uuid",
    ] {
        let k = format!("volatile.eth0.{suffix}");
        assert!(lookup(&k).is_some(), "{k}");
    }
}

#[test]
fn copy_rule() {
    use crate::config::include_when_copying;
    assert!(include_when_copying("volatile.base_image", true));
    assert!(include_when_copying("volatile.last_state.idmap", false));
    assert!(!include_when_copying("volatile.last_state.idmap", true));
    assert!(!include_when_copying("volatile.eth0.hwaddr", false));
    assert!(include_when_copying("limits.cpu", true));
}

#[test]
fn mount_intercept_rules() {
    let on = ("security.syscalls.intercept.mount", "true");
    check(&[on, ("security.syscalls.intercept.mount.allowed", "ext4"), ("security.syscalls.intercept.mount.fuse", "xfs=xfs-fuse")], CT, I).unwrap();
    let e = check(&[on, ("security.syscalls.intercept.mount.fuse", "ext4")], CT, I).unwrap_err();
    assert!(e.to_string().contains("filesystem=fuse-binary"), "{e}");
    let e = check(&[on, ("security.syscalls.intercept.mount.allowed", "ext4,xfs"), ("security.syscalls.intercept.mount.fuse", "ext4=fuse2fs")], CT, I).unwrap_err();
    assert!(e.to_string().contains("same filesystem ext4"), "{e}");
    // Not checked while interception is off, as in LXD.
    check(&[("security.syscalls.intercept.mount.fuse", "ext4")], CT, I).unwrap();
}
