//! Device validation: every type, the notable rules, and the host checks.

use super::*;
use crate::config::{parse_proxy_address, DeviceSpec, Scope, DEVICE_SPECS};

fn dev(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn devs(list: &[(&str, &[(&str, &str)])]) -> Devices {
    list.iter().map(|(n, p)| (n.to_string(), dev(p))).collect()
}

const CT: InstanceType = InstanceType::Container;
const VMT: InstanceType = InstanceType::VirtualMachine;
const ANY: InstanceType = InstanceType::Any;
const ROOT: &[(&str, &str)] = &[("type", "disk"), ("path", "/"), ("pool", "default")];

fn one(pairs: &[(&str, &str)], ty: InstanceType) -> Result<(), ConfigError> {
    validate_device("d0", &dev(pairs), ty)
}

fn reason(pairs: &[(&str, &str)], ty: InstanceType) -> String {
    match one(pairs, ty) {
        Err(ConfigError::Device { device, reason }) => {
            assert_eq!(device, "d0");
            reason
        }
        other => panic!("{pairs:?}: expected a device error, got {other:?}"),
    }
}

#[test]
fn valid_devices_of_every_type() {
    let cases: &[(&[(&str, &str)], InstanceType)] = &[
        (ROOT, CT),
        (&[("type", "disk"), ("path", "/"), ("pool", "default"), ("size", "10GiB")], VMT),
        (&[("type", "disk"), ("source", "/srv/data"), ("path", "/mnt"), ("readonly", "true"), ("propagation", "rslave")], CT),
        (&[("type", "disk"), ("pool", "default"), ("source", "vol1"), ("path", "/data")], CT),
        (&[("type", "disk"), ("pool", "default"), ("source", "blockvol")], VMT),
        (&[("type", "disk"), ("source", "/isos/x.iso"), ("boot.priority", "10")], VMT),
        (&[("type", "disk"), ("source", "ceph:pool/vol"), ("ceph.user_name", "admin"), ("path", "/c")], CT),
        (&[("type", "disk"), ("source", "cloud-init:config")], VMT),
        (&[("type", "nic"), ("nictype", "bridged"), ("parent", "lxdbr0"), ("name", "eth0"), ("hwaddr", "00:16:3e:00:00:01")], CT),
        (&[("type", "nic"), ("network", "lxdbr0"), ("ipv4.address", "169.254.0.5"), ("ipv4.routes", "169.254.8.0/24")], VMT),
        (&[("type", "nic"), ("nictype", "macvlan"), ("parent", "eth0"), ("vlan", "10"), ("gvrp", "true")], CT),
        (&[("type", "nic"), ("nictype", "sriov"), ("parent", "eth0"), ("security.mac_filtering", "on")], VMT),
        (&[("type", "nic"), ("nictype", "physical"), ("parent", "eth1")], CT),
        (&[("type", "nic"), ("nictype", "ipvlan"), ("parent", "eth0"), ("ipv4.address", "169.254.0.5,169.254.0.6"), ("mode", "l3s")], CT),
        (&[("type", "nic"), ("nictype", "p2p"), ("host_name", "vethX"), ("limits.max", "10Mbit")], CT),
        (&[("type", "nic"), ("nictype", "routed"), ("ipv4.address", "169.254.0.5"), ("ipv4.gateway", "auto")], CT),
        (&[("type", "nic"), ("nictype", "ovn"), ("network", "ovn0"), ("acceleration", "sriov")], VMT),
        (&[("type", "infiniband"), ("nictype", "physical"), ("parent", "ib0"), ("hwaddr", "00:11:22:33:44:55:66:77")], CT),
        (&[("type", "infiniband"), ("nictype", "sriov"), ("parent", "ib0")], VMT),
        (&[("type", "unix-char"), ("source", "/dev/fuse"), ("mode", "0666"), ("uid", "0")], CT),
        (&[("type", "unix-block"), ("path", "/dev/loop9"), ("major", "7"), ("minor", "9")], CT),
        (&[("type", "unix-hotplug"), ("vendorid", "1d6b")], CT),
        (&[("type", "usb"), ("vendorid", "1d6b"), ("productid", "0002"), ("mode", "0660")], CT),
        (&[("type", "usb"), ("productid", "0002")], VMT),
        (&[("type", "gpu")], CT),
        (&[("type", "gpu"), ("gputype", "physical"), ("pci", "0000:01:00.0")], VMT),
        (&[("type", "gpu"), ("gputype", "mdev"), ("mdev", "i915-GVTg_V5_4")], VMT),
        (&[("type", "gpu"), ("gputype", "mig"), ("mig.uuid", "MIG-x"), ("pci", "01:00.0")], CT),
        (&[("type", "gpu"), ("gputype", "mig"), ("mig.gi", "1"), ("mig.ci", "0")], CT),
        (&[("type", "gpu"), ("gputype", "sriov"), ("pci", "01:00.0")], VMT),
        (&[("type", "proxy"), ("listen", "tcp:0.0.0.0:80"), ("connect", "tcp:127.0.0.1:80")], CT),
        (&[("type", "proxy"), ("listen", "tcp:[::]:80-81,90"), ("connect", "tcp:127.0.0.1:8000-8002"), ("bind", "host")], CT),
        (&[("type", "proxy"), ("listen", "tcp:169.254.0.1:80-85"), ("connect", "tcp:169.254.0.2:80"), ("nat", "true")], VMT),
        (&[("type", "proxy"), ("listen", "unix:/run/x.sock"), ("connect", "unix:/run/y.sock"), ("mode", "0600"), ("uid", "1000")], CT),
        (&[("type", "proxy"), ("listen", "unix:@abstract"), ("connect", "udp:127.0.0.1:53"), ("bind", "instance")], CT),
        (&[("type", "tpm"), ("path", "/dev/tpm0"), ("pathrm", "/dev/tpmrm0")], CT),
        (&[("type", "tpm")], VMT),
        (&[("type", "pci"), ("address", "0000:00:1f.3")], VMT),
        (&[("type", "none")], CT),
        (&[("type", "none"), ("user.note", "masked")], VMT),
        (&[("type", "disk"), ("path", "/"), ("pool", "p"), ("user.comment", "x")], CT),
    ];
    for (pairs, ty) in cases {
        one(pairs, *ty).unwrap_or_else(|e| panic!("{pairs:?} on {ty:?}: {e}"));
        // A profile (type Any) accepts everything an instance of some type accepts.
        one(pairs, ANY).unwrap_or_else(|e| panic!("{pairs:?} on Any: {e}"));
    }
}

#[test]
fn generic_device_errors() {
    assert_eq!(reason(&[("path", "/")], CT), "Missing device type");
    assert_eq!(reason(&[("type", "floppy")], CT), "Unsupported device type \"floppy\"");
    assert_eq!(reason(&[("type", "none"), ("path", "/")], CT), "Invalid device option \"path\"");
    assert_eq!(reason(&[("type", "disk"), ("path", "/"), ("pool", "p"), ("bogus", "1")], CT), "Invalid device option \"bogus\"");
    assert_eq!(reason(&[("type", "disk"), ("path", "/"), ("pool", "p"), ("nictype", "bridged")], CT), "Invalid device option \"nictype\"");
    assert_eq!(reason(&[("type", "usb"), ("gputype", "physical")], CT), "Invalid device option \"gputype\"");
    assert!(reason(&[("type", "nic"), ("parent", "br0")], CT).contains("Missing nic type"));
    assert!(reason(&[("type", "nic"), ("nictype", "teleport"), ("parent", "br0")], CT).contains("Unsupported nictype"));
    assert!(reason(&[("type", "gpu"), ("gputype", "virtual")], CT).contains("Unsupported gputype"));
    let r = reason(&[("type", "nic"), ("nictype", "bridged"), ("parent", "br0"), ("mtu", "9")], CT);
    assert!(r.starts_with("Invalid value for device option \"mtu\""), "{r}");
    let e = validate_device(".bad", &dev(ROOT), CT).unwrap_err();
    assert!(e.to_string().contains(".bad"), "{e}");
}

#[test]
fn type_scope_is_enforced_for_instances_not_profiles() {
    for (pairs, ty) in [
        (&[("type", "unix-char"), ("path", "/dev/x")][..], VMT),
        (&[("type", "unix-hotplug"), ("vendorid", "1d6b")][..], VMT),
        (&[("type", "pci"), ("address", "00:1f.3")][..], CT),
        (&[("type", "nic"), ("nictype", "ipvlan"), ("parent", "eth0")][..], VMT),
        (&[("type", "gpu"), ("gputype", "mdev"), ("mdev", "x")][..], CT),
        (&[("type", "gpu"), ("gputype", "mig"), ("mig.uuid", "x")][..], VMT),
    ] {
        assert!(reason(pairs, ty).contains("is not supported on"), "{pairs:?}");
        one(pairs, ANY).unwrap();
    }
    let r = reason(&[("type", "gpu"), ("uid", "1000")], VMT);
    assert_eq!(r, "Invalid device option \"uid\" for virtual-machine instances");
    let r = reason(&[("type", "usb"), ("mode", "0600")], VMT);
    assert!(r.contains("\"mode\""), "{r}");
}

#[test]
fn disk_rules() {
    type Case<'a> = (&'a [(&'a str, &'a str)], InstanceType, &'a str);
    let cases: &[Case] = &[
        (&[("type", "disk"), ("path", "/"), ("pool", "p"), ("source", "/x")], CT, "Root disk entry may not have a \"source\""),
        (&[("type", "disk"), ("path", "/")], CT, "must have a \"pool\""),
        (&[("type", "disk"), ("path", "/mnt")], CT, "missing the required \"source\""),
        (&[("type", "disk"), ("source", "/srv")], CT, "missing the required \"path\""),
        (&[("type", "disk"), ("source", "/srv"), ("path", "/mnt"), ("size", "1GB")], CT, "Only the root disk may have a size quota"),
        (&[("type", "disk"), ("source", "/srv"), ("path", "/mnt"), ("size.state", "1GB")], VMT, "Only the root disk"),
        (&[("type", "disk"), ("path", "/"), ("pool", "p"), ("recursive", "true")], CT, "recursive option"),
        (&[("type", "disk"), ("source", "/srv"), ("path", "/m"), ("recursive", "true"), ("readonly", "true")], CT, "Recursive read-only"),
        (&[("type", "disk"), ("source", "/srv"), ("path", "/m"), ("required", "true"), ("optional", "false")], CT, "deprecated \"optional\""),
        (&[("type", "disk"), ("source", "/srv"), ("path", "/m"), ("ceph.user_name", "admin")], CT, "ceph.cluster_name/ceph.user_name"),
        (&[("type", "disk"), ("pool", "p"), ("source", "/abs"), ("path", "/m")], CT, "cannot be specified as absolute paths"),
        (&[("type", "disk"), ("pool", "p"), ("source", "a/b"), ("path", "/m")], CT, "Invalid storage volume name"),
        (&[("type", "disk"), ("source", "relative"), ("path", "/m")], CT, "must be absolute"),
        (&[("type", "disk"), ("source", "cloud-init:config"), ("path", "/m")], CT, "only supported by virtual machines"),
        (&[("type", "disk"), ("pool", "p"), ("source", "vol"), ("path", "/m"), ("shift", "true")], CT, "custom storage volumes"),
        (&[("type", "disk"), ("source", "/srv"), ("path", "/m"), ("propagation", "bind")], CT, "\"propagation\""),
        (&[("type", "disk"), ("path", "/"), ("pool", "p"), ("size", "big")], CT, "\"size\""),
        (&[("type", "disk"), ("path", "/"), ("pool", "p"), ("limits.read", "fast")], CT, "\"limits.read\""),
    ];
    for (pairs, ty, want) in cases {
        let r = reason(pairs, *ty);
        assert!(r.contains(want), "{pairs:?}: {r}");
    }
}

#[test]
fn nic_rules() {
    let r = reason(&[("type", "nic"), ("nictype", "bridged")], CT);
    assert!(r.contains("\"network\" or a \"parent\""), "{r}");
    let r = reason(&[("type", "nic"), ("nictype", "macvlan"), ("network", "n"), ("parent", "eth0")], CT);
    assert!(r.contains("in conjunction"), "{r}");
    assert!(reason(&[("type", "nic"), ("nictype", "physical")], CT).contains("\"network\" or a \"parent\""));
    for (sub, banned, v) in [
        ("bridged", "nictype", "bridged"),
        ("bridged", "parent", "br0"),
        ("bridged", "mtu", "1500"),
        ("bridged", "maas.subnet.ipv4", "x"),
        ("macvlan", "vlan", "5"),
        ("macvlan", "gvrp", "true"),
        ("sriov", "vlan", "5"),
        ("physical", "parent", "eth0"),
    ] {
        let nets: NetworkTypes = [("net0".to_string(), sub.to_string())].into();
        let cfg = dev(&[("type", "nic"), ("network", "net0"), (banned, v)]);
        let e = validate_device_with_networks("d0", &cfg, CT, Some(&nets)).unwrap_err().to_string();
        assert!(e.contains(&format!("Cannot use \"{banned}\" property in conjunction with \"network\"")), "{sub}/{banned}: {e}");
    }
    // Bridged networks allow vlan; macvlan does not.
    let nets: NetworkTypes = [("br".to_string(), "bridged".to_string()), ("mv".to_string(), "macvlan".to_string())].into();
    validate_device_with_networks("d0", &dev(&[("type", "nic"), ("network", "br"), ("vlan", "5")]), CT, Some(&nets)).unwrap();
    assert!(validate_device_with_networks("d0", &dev(&[("type", "nic"), ("network", "mv"), ("vlan", "5")]), CT, Some(&nets)).is_err());
    validate_device_with_networks("d0", &dev(&[("type", "nic"), ("network", "mv"), ("name", "eth1")]), VMT, Some(&nets)).unwrap();
    let e = validate_device_with_networks("d0", &dev(&[("type", "nic"), ("network", "nope")]), CT, Some(&nets)).unwrap_err();
    assert!(e.to_string().contains("Failed loading network"), "{e}");
    // Physical: mtu/hwaddr/vlan are container-only.
    assert!(reason(&[("type", "nic"), ("nictype", "physical"), ("parent", "eth1"), ("mtu", "1500")], VMT).contains("\"mtu\""));
    one(&[("type", "nic"), ("nictype", "physical"), ("parent", "eth1"), ("mtu", "1500")], CT).unwrap();
    assert_eq!(reason(&[("type", "nic"), ("nictype", "ovn")], CT), "Missing required device option \"network\"");
    assert_eq!(reason(&[("type", "infiniband"), ("nictype", "sriov")], CT), "Missing required device option \"parent\"");
    for (k, v) in [("hwaddr", "zz:16:3e:00:00:01"), ("vlan", "5000"), ("name", "a"), ("ipv4.address", "169.254.0.300"), ("ipv6.routes", "fe80::1/64"), ("security.port_isolation", "perhaps")] {
        let r = reason(&[("type", "nic"), ("nictype", "bridged"), ("parent", "br0"), (k, v)], CT);
        assert!(r.contains(&format!("\"{k}\"")), "{k}: {r}");
    }
    // Keys of another nictype are unknown here.
    assert_eq!(reason(&[("type", "nic"), ("nictype", "p2p"), ("parent", "br0")], CT), "Invalid device option \"parent\"");
    let r = reason(&[("type", "infiniband"), ("nictype", "physical"), ("parent", "ib0"), ("hwaddr", "00:16:3e:00:00:01")], CT);
    assert!(r.contains("\"hwaddr\""), "{r}");
}

#[test]
fn unix_gpu_tpm_pci_rules() {
    let r = reason(&[("type", "unix-char")], CT);
    assert!(r.contains("\"source\" or \"path\""), "{r}");
    let r = reason(&[("type", "unix-char"), ("source", "/tmp/fuse")], CT);
    assert!(r.contains("under /dev"), "{r}");
    assert!(reason(&[("type", "unix-block"), ("source", "/dev/../etc/x")], CT).contains("under /dev"));
    assert!(reason(&[("type", "unix-char"), ("path", "/dev/x"), ("major", "-1")], CT).contains("\"major\""));
    assert!(reason(&[("type", "unix-char"), ("path", "/dev/x"), ("mode", "0999")], CT).contains("\"mode\""));
    assert!(reason(&[("type", "unix-hotplug")], CT).contains("vendorid or a productid"));
    assert!(reason(&[("type", "unix-hotplug"), ("vendorid", "1D6B")], CT).contains("\"vendorid\""));
    assert!(reason(&[("type", "usb"), ("productid", "12345")], CT).contains("\"productid\""));
    for f in ["id", "vendorid", "productid"] {
        let v = if f == "id" { "0" } else { "10de" };
        let r = reason(&[("type", "gpu"), ("pci", "01:00.0"), (f, v)], CT);
        assert!(r.contains(&format!("\"{f}\"")) && r.contains("\"pci\""), "{r}");
    }
    assert!(reason(&[("type", "gpu"), ("pci", "1:0.0")], CT).contains("\"pci\""));
    assert_eq!(reason(&[("type", "gpu"), ("gputype", "mdev")], VMT), "Missing required device option \"mdev\"");
    assert!(reason(&[("type", "gpu"), ("gputype", "mig")], CT).contains("mig.uuid"));
    assert!(reason(&[("type", "gpu"), ("gputype", "mig"), ("mig.uuid", "u"), ("mig.gi", "1")], CT).contains("Cannot specify"));
    assert!(reason(&[("type", "gpu"), ("gputype", "mig"), ("mig.gi", "1")], CT).contains("mig.ci"));
    assert_eq!(reason(&[("type", "tpm")], CT), "Missing required device option \"path\"");
    assert_eq!(reason(&[("type", "tpm"), ("path", "/dev/tpm0")], CT), "Missing required device option \"pathrm\"");
    assert_eq!(reason(&[("type", "pci")], VMT), "Missing required device option \"address\"");
    assert!(reason(&[("type", "pci"), ("address", "nope")], VMT).contains("\"address\""));
}

#[test]
fn proxy_rules() {
    let p = |l: &str, c: &str, extra: &[(&str, &str)], ty| {
        let mut pairs = vec![("type", "proxy"), ("listen", l), ("connect", c)];
        pairs.extend_from_slice(extra);
        one(&pairs, ty).map_err(|e| e.to_string())
    };
    let err = |l, c, extra, ty, want: &str| {
        let e = p(l, c, extra, ty).unwrap_err();
        assert!(e.contains(want), "{l} -> {c} {extra:?}: {e}");
    };
    err("tcp:127.0.0.1:80", "tcp:127.0.0.1:80-81", &[], CT, "single port to multiple ports");
    err("tcp:127.0.0.1:80-82", "tcp:127.0.0.1:80-81", &[], CT, "Cannot map 3 ports to 2 ports");
    err("sctp:127.0.0.1:80", "tcp:127.0.0.1:80", &[], CT, "Unknown connection type");
    err("tcp:127.0.0.1", "tcp:127.0.0.1:80", &[], CT, "listen");
    err("tcp:localhost:80", "tcp:127.0.0.1:80", &[], CT, "Not an IP address");
    err("tcp:::1:80", "tcp:127.0.0.1:80", &[], CT, "brackets");
    err("tcp:127.0.0.1:90-80", "tcp:127.0.0.1:80", &[], CT, "port range");
    err("tcp:127.0.0.1:70000", "tcp:127.0.0.1:80", &[], CT, "Invalid port");
    err("tcp:127.0.0.1:80", "tcp:127.0.0.1:80", &[("uid", "1")], CT, "non-abstract unix");
    err("unix:@x", "tcp:127.0.0.1:80", &[("mode", "0600")], CT, "non-abstract unix");
    err("tcp:127.0.0.1:80", "tcp:127.0.0.1:80", &[], VMT, "Only NAT mode");
    err("tcp:169.254.0.1:80", "tcp:169.254.0.2:80", &[("nat", "true"), ("bind", "instance")], CT, "host-bound");
    err("tcp:169.254.0.1:80", "udp:169.254.0.2:80", &[("nat", "true")], CT, "tcp <-> udp");
    err("unix:/x", "unix:/y", &[("nat", "true")], CT, "unix <-> unix");
    err("tcp:0.0.0.0:80", "tcp:169.254.0.2:80", &[("nat", "true")], CT, "wildcard");
    err("tcp:[::]:80", "tcp:169.254.0.2:80", &[("nat", "true")], VMT, "wildcard");
    err("tcp::80", "tcp:169.254.0.2:80", &[("nat", "true")], CT, "wildcard");
    err("tcp:169.254.0.1:80", "tcp:169.254.0.2:80", &[("bind", "outside")], CT, "\"bind\"");
    err("tcp:169.254.0.1:80", "tcp:[fe80::2]:80", &[("nat", "true")], CT, "mix IP versions");
    err("unix:/run/a.sock", "tcp:127.0.0.1:80-81", &[], CT, "single port to multiple ports");
    err("tcp:127.0.0.1:80", "udp:127.0.0.1:80", &[("proxy_protocol", "true")], CT, "PROXY header");
    err("tcp:169.254.0.1:80", "tcp:169.254.0.2:80", &[("proxy_protocol", "true"), ("nat", "true")], CT, "PROXY header");
    assert!(p("tcp:127.0.0.1:80", "tcp:127.0.0.1:80", &[("proxy_protocol", "true")], CT).is_ok());
    assert!(p("unix:/run/a.sock", "tcp:127.0.0.1:80", &[], CT).is_ok());
    assert!(p("tcp:127.0.0.1:80-82", "unix:/run/b.sock", &[], CT).is_ok());
    assert!(p("tcp:169.254.0.1:80", "tcp:169.254.0.2:80", &[], CT).is_ok());
    let e = one(&[("type", "proxy"), ("listen", "tcp:127.0.0.1:80")], CT).unwrap_err().to_string();
    assert!(e.contains("\"connect\""), "{e}");
    let a = parse_proxy_address("tcp:[fe80::1]:80,90-91").unwrap();
    assert_eq!((a.address.as_str(), a.ports), ("fe80::1", vec![80, 90, 91]));
}

#[test]
fn device_sets() {
    let lvl = ConfigLevel::Instance;
    validate_devices(&devs(&[("root", ROOT), ("eth0", &[("type", "nic"), ("network", "lxdbr0")])]), CT, lvl).unwrap();
    let two = devs(&[
        ("a", &[("type", "disk"), ("source", "/srv/a"), ("path", "/mnt")]),
        ("b", &[("type", "disk"), ("source", "/srv/b"), ("path", "/mnt")]),
    ]);
    let e = validate_devices(&two, CT, lvl).unwrap_err();
    assert!(matches!(&e, ConfigError::Device { device, reason } if device == "b" && reason.contains("same path")), "{e}");
    assert!(validate_devices(&two, ANY, ConfigLevel::Profile).is_err());
    // Profiles validate as Any: a unix-char device in a profile is fine even for a VM.
    let prof = devs(&[("fuse", &[("type", "unix-char"), ("source", "/dev/fuse")])]);
    validate_devices(&prof, VMT, ConfigLevel::Profile).unwrap();
    assert!(validate_devices(&prof, VMT, lvl).is_err());
    // Expanded sets need a root disk and use the real type.
    let e = validate_devices(&prof, CT, ConfigLevel::Expanded).unwrap_err();
    assert!(e.to_string().contains("No root device"), "{e}");
    let mut with_root = prof.clone();
    with_root.insert("root".into(), dev(ROOT));
    validate_devices(&with_root, CT, ConfigLevel::Expanded).unwrap();
    assert!(validate_devices(&with_root, VMT, ConfigLevel::Expanded).is_err());
    let e = validate_devices(&devs(&[("", &[("type", "none")])]), CT, lvl).unwrap_err();
    assert!(e.to_string().contains("1-63"), "{e}");
}

#[test]
fn every_spec_is_reachable_and_documents_its_keys() {
    for spec in DEVICE_SPECS {
        let mut pairs = vec![("type".to_string(), spec.ty.to_string())];
        if let (Some(sub), Some(k)) = (spec.subtype, subtype_key(spec.ty)) {
            pairs.push((k.to_string(), sub.to_string()));
        }
        let config: BTreeMap<String, String> = pairs.into_iter().collect();
        let found: &DeviceSpec = find_spec(&config, None).unwrap();
        assert!(std::ptr::eq(found, spec), "{} {:?}", spec.ty, spec.subtype);
        assert!(!spec.doc.is_empty());
        for k in spec.keys {
            assert!(!k.doc.is_empty(), "{}.{}", spec.ty, k.key);
            assert!(k.validator.check("").is_ok() || k.required, "{}.{}", spec.ty, k.key);
        }
        let _ = Scope::Any;
    }
}

#[test]
fn host_path_checks() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("srv/data")).unwrap();
    std::fs::write(tmp.path().join("srv/file"), b"x").unwrap();
    std::fs::create_dir_all(tmp.path().join("dev")).unwrap();
    std::fs::write(tmp.path().join("dev/fake0"), b"").unwrap();
    let check = |list: &[(&str, &[(&str, &str)])]| check_host_paths_under(&devs(list), tmp.path());
    check(&[("root", ROOT), ("d", &[("type", "disk"), ("source", "/srv/data"), ("path", "/m"), ("recursive", "true")])]).unwrap();
    let e = check(&[("d", &[("type", "disk"), ("source", "/srv/missing"), ("path", "/m")])]).unwrap_err();
    assert!(matches!(&e, ConfigError::Device { device, reason } if device == "d" && reason.contains("/srv/missing")), "{e}");
    check(&[("d", &[("type", "disk"), ("source", "/srv/missing"), ("path", "/m"), ("required", "false")])]).unwrap();
    check(&[("d", &[("type", "disk"), ("source", "/srv/missing"), ("path", "/m"), ("optional", "true")])]).unwrap();
    check(&[("d", &[("type", "disk"), ("pool", "p"), ("source", "vol"), ("path", "/m")])]).unwrap();
    check(&[("c", &[("type", "disk"), ("source", "cloud-init:config")])]).unwrap();
    let e = check(&[("d", &[("type", "disk"), ("source", "/srv/file"), ("path", "/m"), ("recursive", "true")])]).unwrap_err();
    assert!(e.to_string().contains("recursive"), "{e}");
    check(&[("u", &[("type", "unix-char"), ("source", "/dev/fake0")])]).unwrap();
    check(&[("u", &[("type", "unix-char"), ("source", "/dev/nope"), ("major", "1"), ("minor", "3")])]).unwrap();
    check(&[("u", &[("type", "unix-block"), ("path", "/dev/nope"), ("required", "false")])]).unwrap();
    let e = check(&[("u", &[("type", "unix-block"), ("path", "/dev/nope")])]).unwrap_err();
    assert!(e.to_string().contains("major/minor"), "{e}");
    // The real-root variant sees /dev/null.
    check_host_paths(&devs(&[("n", &[("type", "unix-char"), ("source", "/dev/null")])]), CT).unwrap();
}
