//! The device tables of LXD 5.0.2 (`lxd/device/*.go` validateConfig): one spec per type
//! (and nictype/gputype), with its keys, scope and extra rule.

use super::device_rules as rules;
use super::instance_keys::Scope;
use super::validators::Validator as V;

/// One device option.
#[derive(Debug, Clone, Copy)]
pub struct DeviceKey {
    /// The option name.
    pub key: &'static str,
    /// The value check.
    pub validator: V,
    /// Instance types that accept the option.
    pub scope: Scope,
    /// Must be present and non-empty.
    pub required: bool,
    /// One doc line.
    pub doc: &'static str,
}

/// An extra rule over a whole device (returns the reason on failure).
pub type Rule = fn(&rules::DeviceCtx<'_>) -> Result<(), String>;

/// One device type (or nictype/gputype variant).
#[derive(Debug, Clone, Copy)]
pub struct DeviceSpec {
    /// The `type` value.
    pub ty: &'static str,
    /// The `nictype`/`gputype` value this row is for.
    pub subtype: Option<&'static str>,
    /// Instance types that accept the device.
    pub scope: Scope,
    /// The allowed options (besides `type`, the subtype key and `user.*`).
    pub keys: &'static [DeviceKey],
    /// Rules across options.
    pub rule: Option<Rule>,
    /// One doc line, listing the notable rules.
    pub doc: &'static str,
}

const fn key(key: &'static str, validator: V, doc: &'static str) -> DeviceKey {
    DeviceKey { key, validator, scope: Scope::Any, required: false, doc }
}

const fn req(key: &'static str, validator: V, doc: &'static str) -> DeviceKey {
    DeviceKey { key, validator, scope: Scope::Any, required: true, doc }
}

const fn ckey(key: &'static str, validator: V, doc: &'static str) -> DeviceKey {
    DeviceKey { key, validator, scope: Scope::Container, required: false, doc }
}

// Options shared by several NIC types.
const NETWORK: DeviceKey = key("network", V::Any, "Managed network to join (instead of `parent`).");
const PARENT: DeviceKey = key("parent", V::InterfaceName, "Host interface.");
const PARENT_REQ: DeviceKey = req("parent", V::InterfaceName, "Host interface.");
const NAME: DeviceKey = key("name", V::InterfaceName, "Interface name inside the instance.");
const MTU: DeviceKey = key("mtu", V::Mtu, "MTU of the new interface.");
const HWADDR: DeviceKey = key("hwaddr", V::Mac, "MAC address of the new interface.");
const HOST_NAME: DeviceKey = key("host_name", V::InterfaceName, "Host-side interface name.");
const VLAN: DeviceKey = key("vlan", V::Vlan, "VLAN id to attach to.");
const VLAN_TAGGED: DeviceKey = key("vlan.tagged", V::ListOf(&V::Vlan), "Tagged VLANs to join.");
const GVRP: DeviceKey = key("gvrp", V::Bool, "Register the VLAN with GARP VLAN Registration Protocol.");
const LIMITS_IN: DeviceKey = key("limits.ingress", V::Any, "Incoming traffic limit (bit/s).");
const LIMITS_OUT: DeviceKey = key("limits.egress", V::Any, "Outgoing traffic limit (bit/s).");
const LIMITS_MAX: DeviceKey = key("limits.max", V::Any, "Both ingress and egress limit.");
const IPV4_ADDR: DeviceKey = key("ipv4.address", V::Ipv4, "Static IPv4 address (DHCP reservation).");
const IPV6_ADDR: DeviceKey = key("ipv6.address", V::Ipv6, "Static IPv6 address.");
const IPV4_ADDRS: DeviceKey = key("ipv4.address", V::ListOf(&V::Ipv4), "IPv4 addresses (comma list).");
const IPV6_ADDRS: DeviceKey = key("ipv6.address", V::ListOf(&V::Ipv6), "IPv6 addresses (comma list).");
const IPV4_ROUTES: DeviceKey = key("ipv4.routes", V::ListOf(&V::NetV4), "IPv4 routes to the instance.");
const IPV6_ROUTES: DeviceKey = key("ipv6.routes", V::ListOf(&V::NetV6), "IPv6 routes to the instance.");
const IPV4_ROUTES_EXT: DeviceKey =
    key("ipv4.routes.external", V::ListOf(&V::NetV4), "IPv4 routes published on the uplink.");
const IPV6_ROUTES_EXT: DeviceKey =
    key("ipv6.routes.external", V::ListOf(&V::NetV6), "IPv6 routes published on the uplink.");
const IPV4_GW: DeviceKey = key("ipv4.gateway", V::OneOf(&["auto", "none"]), "Add a default IPv4 gateway.");
const IPV6_GW: DeviceKey = key("ipv6.gateway", V::OneOf(&["auto", "none"]), "Add a default IPv6 gateway.");
const IPV4_TABLE: DeviceKey = key("ipv4.host_table", V::Uint32, "Host routing table for the IPv4 routes.");
const IPV6_TABLE: DeviceKey = key("ipv6.host_table", V::Uint32, "Host routing table for the IPv6 routes.");
const MAC_FILTER: DeviceKey = key("security.mac_filtering", V::Bool, "Block MAC spoofing.");
const MAAS4: DeviceKey = key("maas.subnet.ipv4", V::Any, "MAAS IPv4 subnet.");
const MAAS6: DeviceKey = key("maas.subnet.ipv6", V::Any, "MAAS IPv6 subnet.");
const BOOT_PRIO: DeviceKey = key("boot.priority", V::Uint32, "VM boot order; higher boots first.");

const BRIDGED: &[DeviceKey] = &[
    NETWORK, PARENT, NAME, MTU, HWADDR, HOST_NAME, VLAN, VLAN_TAGGED, LIMITS_IN, LIMITS_OUT, LIMITS_MAX, IPV4_ADDR,
    IPV6_ADDR, IPV4_ROUTES, IPV6_ROUTES, IPV4_ROUTES_EXT, IPV6_ROUTES_EXT, MAC_FILTER,
    key("security.ipv4_filtering", V::Bool, "Block IPv4 spoofing."),
    key("security.ipv6_filtering", V::Bool, "Block IPv6 spoofing."),
    key("security.port_isolation", V::Bool, "Isolate from other isolated ports of the bridge."),
    MAAS4, MAAS6, BOOT_PRIO,
];
const MACVLAN: &[DeviceKey] = &[NETWORK, PARENT, NAME, MTU, HWADDR, VLAN, GVRP, MAAS4, MAAS6, BOOT_PRIO];
const SRIOV: &[DeviceKey] = &[NETWORK, PARENT, NAME, MTU, HWADDR, VLAN, MAC_FILTER, MAAS4, MAAS6, BOOT_PRIO];
const PHYSICAL: &[DeviceKey] = &[
    NETWORK, PARENT, NAME,
    ckey("mtu", V::Mtu, "MTU of the interface (containers)."),
    ckey("hwaddr", V::Mac, "MAC address of the interface (containers)."),
    ckey("vlan", V::Vlan, "VLAN id to attach to (containers)."),
    GVRP, MAAS4, MAAS6, BOOT_PRIO,
];
const IPVLAN: &[DeviceKey] = &[
    PARENT_REQ, NAME, MTU, HWADDR, VLAN, GVRP, IPV4_ADDRS, IPV6_ADDRS, IPV4_GW, IPV6_GW, IPV4_TABLE, IPV6_TABLE,
    key("mode", V::OneOf(&["l2", "l3s"]), "ipvlan mode."),
];
const P2P: &[DeviceKey] =
    &[NAME, MTU, HWADDR, HOST_NAME, LIMITS_IN, LIMITS_OUT, LIMITS_MAX, IPV4_ROUTES, IPV6_ROUTES, BOOT_PRIO];
const ROUTED: &[DeviceKey] = &[
    PARENT, NAME, MTU, HWADDR, HOST_NAME, VLAN, GVRP, LIMITS_IN, LIMITS_OUT, LIMITS_MAX, IPV4_ADDRS, IPV6_ADDRS,
    IPV4_GW, IPV6_GW, IPV4_ROUTES, IPV6_ROUTES, IPV4_TABLE, IPV6_TABLE,
    key("ipv4.host_address", V::Ipv4, "Host-side IPv4 address of the veth."),
    key("ipv6.host_address", V::Ipv6, "Host-side IPv6 address of the veth."),
    key("ipv4.neighbor_probe", V::Bool, "Probe the parent for address reuse."),
    key("ipv6.neighbor_probe", V::Bool, "Probe the parent for address reuse."),
];
const ACL_ACTION: V = V::OneOf(&["allow", "reject", "drop"]);
const OVN: &[DeviceKey] = &[
    req("network", V::NotEmpty, "Managed OVN network."),
    NAME, MTU, HWADDR, HOST_NAME, VLAN, IPV4_ADDR, IPV6_ADDR, IPV4_ROUTES, IPV6_ROUTES, IPV4_ROUTES_EXT,
    IPV6_ROUTES_EXT,
    key("security.acls", V::Any, "Comma list of network ACLs."),
    key("security.acls.default.ingress.action", ACL_ACTION, "Default ACL ingress action."),
    key("security.acls.default.egress.action", ACL_ACTION, "Default ACL egress action."),
    key("security.acls.default.ingress.logged", V::Bool, "Log the default ingress action."),
    key("security.acls.default.egress.logged", V::Bool, "Log the default egress action."),
    key("acceleration", V::OneOf(&["none", "sriov"]), "Hardware offload."),
    key("nested", V::Any, "Parent NIC for a nested VLAN NIC."),
    BOOT_PRIO,
];
const INFINIBAND: &[DeviceKey] =
    &[PARENT_REQ, NAME, MTU, key("hwaddr", V::InfinibandMac, "InfiniBand address (8 or 20 bytes).")];

const DEV_SOURCE: V = V::Custom("absolute path under `/dev`", rules::dev_source);
const UID: DeviceKey = key("uid", V::Uint32, "Owner uid inside the instance.");
const GID: DeviceKey = key("gid", V::Uint32, "Owner gid inside the instance.");
const MODE: DeviceKey = key("mode", V::FileMode, "Mode inside the instance.");
const CUID: DeviceKey = ckey("uid", V::Uint32, "Owner uid inside the container.");
const CGID: DeviceKey = ckey("gid", V::Uint32, "Owner gid inside the container.");
const CMODE: DeviceKey = ckey("mode", V::FileMode, "Mode inside the container.");
const REQUIRED: DeviceKey = key("required", V::Bool, "Whether the device must exist to start.");
const VENDOR: DeviceKey = key("vendorid", V::DeviceId, "Vendor id.");
const PRODUCT: DeviceKey = key("productid", V::DeviceId, "Product id.");
const GPU_ID: DeviceKey = key("id", V::Any, "DRM card id.");
const PCI: DeviceKey = key("pci", V::PciAddress, "PCI address (excludes id/vendorid/productid).");

const UNIX: &[DeviceKey] = &[
    key("source", DEV_SOURCE, "Host device path."),
    key("path", V::Any, "Path inside the container."),
    key("major", V::Uint32, "Device major number."),
    key("minor", V::Uint32, "Device minor number."),
    UID, GID, MODE, REQUIRED,
];

const DISK: &[DeviceKey] = &[
    key("path", V::Any, "Mount point inside the instance (`/` for the root disk)."),
    key("source", V::Any, "Host path, custom volume name (with `pool`), or `ceph:`/`cephfs:`."),
    key("pool", V::Any, "Storage pool of the root disk or the custom volume."),
    key("readonly", V::Bool, "Mount read-only."),
    key("required", V::Bool, "Fail if the source is missing."),
    key("optional", V::Bool, "Deprecated inverse of `required` (not both)."),
    key("recursive", V::Bool, "Recursive bind mount (not with readonly)."),
    key("shift", V::Bool, "Shift ownership with idmapped mounts/shiftfs."),
    key("size", V::Size, "Root disk quota."),
    key("size.state", V::Size, "Root disk quota of the VM state volume."),
    key("limits.read", V::IoLimit, "Read limit (bytes/s or iops)."),
    key("limits.write", V::IoLimit, "Write limit (bytes/s or iops)."),
    key("limits.max", V::IoLimit, "Read and write limit."),
    key(
        "propagation",
        V::OneOf(&["private", "shared", "slave", "unbindable", "rprivate", "rshared", "rslave", "runbindable"]),
        "Bind mount propagation.",
    ),
    key("raw.mount.options", V::Any, "Extra mount options."),
    key("ceph.cluster_name", V::Any, "Ceph cluster (ceph sources only)."),
    key("ceph.user_name", V::Any, "Ceph user (ceph sources only)."),
    BOOT_PRIO,
];

const PROXY: &[DeviceKey] = &[
    req("listen", V::NotEmpty, "`tcp|udp|unix:<addr>[:port[-port][,...]]` to listen on."),
    req("connect", V::NotEmpty, "`tcp|udp|unix:<addr>[:port[-port][,...]]` to connect to."),
    key("bind", V::OneOf(&["host", "instance", "guest", "container"]), "Side that listens."),
    key("nat", V::Bool, "Use NAT rules instead of a proxy process."),
    UID, GID, MODE,
    key("security.uid", V::Uint32, "uid the proxy process drops to."),
    key("security.gid", V::Uint32, "gid the proxy process drops to."),
    key("proxy_protocol", V::Bool, "Send the HAProxy PROXY header."),
];

/// Every device type LXD 5.0.2 knows.
pub static DEVICE_SPECS: &[DeviceSpec] = &[
    DeviceSpec { ty: "disk", subtype: None, scope: Scope::Any, keys: DISK, rule: Some(rules::disk),
        doc: "Root disk: `path=/`, needs `pool`, no `source`; only it may have `size`. `path` unique, required on containers. Host source absolute (or `cloud-init:config` on VMs). recursive not with readonly; shift not with pool." },
    DeviceSpec { ty: "nic", subtype: Some("bridged"), scope: Scope::Any, keys: BRIDGED, rule: Some(rules::nic_network_or_parent),
        doc: "Veth on a host bridge. Needs `parent`, or `network` (then not nictype/parent/mtu/maas.*); a `network` NIC without nictype is bridged unless the network map says otherwise." },
    DeviceSpec { ty: "nic", subtype: Some("macvlan"), scope: Scope::Any, keys: MACVLAN, rule: Some(rules::nic_network_or_parent),
        doc: "macvlan on a host interface. Needs `parent`, or `network` (then not nictype/parent/mtu/vlan/gvrp/maas.*)." },
    DeviceSpec { ty: "nic", subtype: Some("sriov"), scope: Scope::Any, keys: SRIOV, rule: Some(rules::nic_network_or_parent),
        doc: "SR-IOV virtual function. Needs `parent`, or `network` (then not nictype/parent/mtu/vlan/maas.*)." },
    DeviceSpec { ty: "nic", subtype: Some("physical"), scope: Scope::Any, keys: PHYSICAL, rule: Some(rules::nic_network_or_parent),
        doc: "Passes a host interface through. Needs `network` or `parent`." },
    DeviceSpec { ty: "nic", subtype: Some("ipvlan"), scope: Scope::Container, keys: IPVLAN, rule: None,
        doc: "ipvlan on a host interface. Needs `parent`." },
    DeviceSpec { ty: "nic", subtype: Some("p2p"), scope: Scope::Any, keys: P2P, rule: None,
        doc: "Veth pair without a bridge." },
    DeviceSpec { ty: "nic", subtype: Some("routed"), scope: Scope::Any, keys: ROUTED, rule: None,
        doc: "Veth with static routes and proxy neighbours on `parent`." },
    DeviceSpec { ty: "nic", subtype: Some("ovn"), scope: Scope::Any, keys: OVN, rule: None,
        doc: "Port on a managed OVN network. Needs `network`." },
    DeviceSpec { ty: "infiniband", subtype: Some("physical"), scope: Scope::Any, keys: INFINIBAND, rule: None,
        doc: "InfiniBand device passthrough. Needs `parent`." },
    DeviceSpec { ty: "infiniband", subtype: Some("sriov"), scope: Scope::Any, keys: INFINIBAND, rule: None,
        doc: "InfiniBand SR-IOV virtual function. Needs `parent`." },
    DeviceSpec { ty: "unix-char", subtype: None, scope: Scope::Container, keys: UNIX, rule: Some(rules::unix_source_or_path),
        doc: "Character device node. Needs `source` or `path`; `source` under /dev." },
    DeviceSpec { ty: "unix-block", subtype: None, scope: Scope::Container, keys: UNIX, rule: Some(rules::unix_source_or_path),
        doc: "Block device node. Needs `source` or `path`; `source` under /dev." },
    DeviceSpec { ty: "unix-hotplug", subtype: None, scope: Scope::Container,
        keys: &[VENDOR, PRODUCT, UID, GID, MODE, REQUIRED], rule: Some(rules::hotplug_ids),
        doc: "Hotplugged unix devices by USB ids. Needs `vendorid` or `productid`." },
    DeviceSpec { ty: "usb", subtype: None, scope: Scope::Any, keys: &[VENDOR, PRODUCT, CUID, CGID, CMODE, REQUIRED], rule: None,
        doc: "USB device passthrough by ids." },
    DeviceSpec { ty: "gpu", subtype: Some("physical"), scope: Scope::Any,
        keys: &[VENDOR, PRODUCT, GPU_ID, PCI, CUID, CGID, CMODE], rule: Some(rules::gpu),
        doc: "Whole GPU passthrough (the default gputype). `pci` excludes id/vendorid/productid." },
    DeviceSpec { ty: "gpu", subtype: Some("mdev"), scope: Scope::Vm,
        keys: &[req("mdev", V::NotEmpty, "mdev profile to create."), VENDOR, PRODUCT, GPU_ID, PCI], rule: Some(rules::gpu),
        doc: "Mediated (vGPU) device. Needs `mdev`." },
    DeviceSpec { ty: "gpu", subtype: Some("mig"), scope: Scope::Container,
        keys: &[key("mig.ci", V::Uint32, "Compute instance id."), key("mig.gi", V::Uint32, "GPU instance id."),
            key("mig.uuid", V::Any, "MIG device UUID."), VENDOR, PRODUCT, GPU_ID, PCI],
        rule: Some(rules::gpu),
        doc: "NVIDIA MIG instance. Needs `mig.uuid`, or `mig.gi` and `mig.ci`." },
    DeviceSpec { ty: "gpu", subtype: Some("sriov"), scope: Scope::Vm, keys: &[VENDOR, PRODUCT, GPU_ID, PCI], rule: Some(rules::gpu),
        doc: "GPU SR-IOV virtual function." },
    DeviceSpec { ty: "proxy", subtype: None, scope: Scope::Any, keys: PROXY, rule: Some(rules::proxy),
        doc: "Forwards connections. Port counts match (or N→1); NAT is host-bound, not wildcard, and the only mode on VMs." },
    DeviceSpec { ty: "tpm", subtype: None, scope: Scope::Any,
        keys: &[key("path", V::Any, "TPM device path in the container."), key("pathrm", V::Any, "TPM resource manager path in the container.")],
        rule: Some(rules::tpm),
        doc: "Emulated TPM (swtpm). Containers need `path` and `pathrm`." },
    DeviceSpec { ty: "pci", subtype: None, scope: Scope::Vm, keys: &[req("address", V::PciAddress, "Host PCI address.")], rule: None,
        doc: "Raw PCI device passthrough." },
    DeviceSpec { ty: "none", subtype: None, scope: Scope::Any, keys: &[], rule: None,
        doc: "Masks a profile device of the same name." },
];

/// The option that selects a variant of `ty` (`nictype`, `gputype`).
pub fn subtype_key(ty: &str) -> Option<&'static str> {
    match ty {
        "nic" | "infiniband" => Some("nictype"),
        "gpu" => Some("gputype"),
        _ => None,
    }
}
