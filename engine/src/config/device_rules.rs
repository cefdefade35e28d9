//! Rules across the options of one device (the "notable rules" of each LXD validateConfig).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::validators::is_true;
use super::InstanceType;

/// What a rule sees: the device and the instance type it is validated for.
#[derive(Debug)]
pub struct DeviceCtx<'a> {
    /// The device name.
    pub name: &'a str,
    /// Its options.
    pub config: &'a BTreeMap<String, String>,
    /// The instance type (`Any` for profiles).
    pub ty: InstanceType,
    /// The resolved `nictype`/`gputype` (also when it came from a managed network).
    pub subtype: &'a str,
}

impl DeviceCtx<'_> {
    /// The option's value, empty if unset.
    pub fn get(&self, key: &str) -> &str {
        self.config.get(key).map(String::as_str).unwrap_or("")
    }

    fn has(&self, key: &str) -> bool {
        !self.get(key).is_empty()
    }
}

/// Whether a disk device is the root disk (`path=/` and no source: `IsRootDiskDevice`).
pub fn is_root_disk(config: &BTreeMap<String, String>) -> bool {
    config.get("type").map(String::as_str) == Some("disk")
        && config.get("path").map(String::as_str) == Some("/")
        && config.get("source").is_none_or(|s| s.is_empty())
}

/// The special disk source that attaches a cloud-init config drive to a VM.
pub const DISK_SOURCE_CLOUD_INIT: &str = "cloud-init:config";

fn is_ceph(source: &str) -> bool {
    source.starts_with("ceph:") || source.starts_with("cephfs:")
}

/// `disk`.
pub fn disk(d: &DeviceCtx<'_>) -> Result<(), String> {
    let (path, source, pool) = (d.get("path"), d.get("source"), d.get("pool"));
    if d.has("required") && d.has("optional") {
        return Err("Cannot use both \"required\" and deprecated \"optional\" properties at the same time".into());
    }
    if path.is_empty() && d.ty == InstanceType::Container {
        return Err("Disk entry is missing the required \"path\" property".into());
    }
    if source.is_empty() && path != "/" {
        return Err("Disk entry is missing the required \"source\" property".into());
    }
    if path == "/" && !source.is_empty() {
        return Err("Root disk entry may not have a \"source\" property set".into());
    }
    if path == "/" && pool.is_empty() {
        return Err("Root disk entry must have a \"pool\" property set".into());
    }
    if (d.has("size") || d.has("size.state")) && path != "/" {
        return Err("Only the root disk may have a size quota".into());
    }
    if d.has("recursive") && path == "/" {
        return Err("The recursive option is only supported for additional bind-mounted paths".into());
    }
    if is_true(d.get("recursive")) && is_true(d.get("readonly")) {
        return Err("Recursive read-only bind-mounts aren't currently supported by the kernel".into());
    }
    if !is_ceph(source) && (d.has("ceph.cluster_name") || d.has("ceph.user_name")) {
        return Err(format!("Invalid options ceph.cluster_name/ceph.user_name for source {source:?}"));
    }
    if source == DISK_SOURCE_CLOUD_INIT {
        if d.ty == InstanceType::Container {
            return Err(format!("disks with source={source} are only supported by virtual machines"));
        }
        return Ok(());
    }
    if !pool.is_empty() && d.has("shift") {
        return Err("The \"shift\" property cannot be used with custom storage volumes".into());
    }
    if !pool.is_empty() && !source.is_empty() {
        if source.starts_with('/') {
            return Err("Storage volumes cannot be specified as absolute paths".into());
        }
        if source.contains('/') {
            return Err(format!("Invalid storage volume name {source:?}"));
        }
    } else if !source.is_empty() && !is_ceph(source) && !source.starts_with('/') {
        return Err(format!("Source path {source:?} must be absolute (or set \"pool\" for a custom volume)"));
    }
    Ok(())
}

/// Options a NIC may not set next to `network` (the managed network supplies them).
fn banned_with_network(nictype: &str) -> &'static [&'static str] {
    match nictype {
        "bridged" => &["nictype", "parent", "mtu", "maas.subnet.ipv4", "maas.subnet.ipv6"],
        "macvlan" | "physical" => &["nictype", "parent", "mtu", "vlan", "maas.subnet.ipv4", "maas.subnet.ipv6", "gvrp"],
        "sriov" => &["nictype", "parent", "mtu", "vlan", "maas.subnet.ipv4", "maas.subnet.ipv6"],
        _ => &[],
    }
}

/// `nic` bridged/macvlan/sriov/physical: `network`, or `parent` without it.
pub fn nic_network_or_parent(d: &DeviceCtx<'_>) -> Result<(), String> {
    if d.has("network") {
        for banned in banned_with_network(d.subtype) {
            if d.has(banned) {
                return Err(format!("Cannot use {banned:?} property in conjunction with \"network\" property"));
            }
        }
        return Ok(());
    }
    if !d.has("parent") {
        return Err("Requires either a \"network\" or a \"parent\" property".into());
    }
    Ok(())
}

/// `unix-char`/`unix-block`: `source` or `path`.
pub fn unix_source_or_path(d: &DeviceCtx<'_>) -> Result<(), String> {
    if !d.has("source") && !d.has("path") {
        return Err("Unix device entry is missing the required \"source\" or \"path\" property".into());
    }
    Ok(())
}

/// `source` of unix devices: absolute and under the device monitor prefix `/dev`.
pub fn dev_source(value: &str) -> Result<(), String> {
    let normal = value.starts_with("/dev/") && !value.split('/').any(|c| c == "..");
    if !normal {
        return Err(format!("Source path {value:?} must be an absolute path under /dev"));
    }
    Ok(())
}

/// `unix-hotplug`: `vendorid` or `productid`.
pub fn hotplug_ids(d: &DeviceCtx<'_>) -> Result<(), String> {
    if !d.has("vendorid") && !d.has("productid") {
        return Err("Unix hotplug devices require a vendorid or a productid".into());
    }
    Ok(())
}

/// `gpu`: `pci` excludes the other selectors; MIG needs its ids.
pub fn gpu(d: &DeviceCtx<'_>) -> Result<(), String> {
    if d.has("pci") {
        for field in ["id", "productid", "vendorid"] {
            if d.has(field) {
                return Err(format!("Cannot use {field:?} when \"pci\" is set"));
            }
        }
    }
    if d.get("gputype") == "mig" {
        let (uuid, gi, ci) = (d.has("mig.uuid"), d.has("mig.gi"), d.has("mig.ci"));
        if uuid && (gi || ci) {
            return Err("Cannot specify \"mig.uuid\" with \"mig.gi\" or \"mig.ci\"".into());
        }
        if !(uuid || gi && ci) {
            return Err("Either \"mig.uuid\" or both \"mig.gi\" and \"mig.ci\" must be set".into());
        }
    }
    Ok(())
}

/// `tpm`: containers need both device paths.
pub fn tpm(d: &DeviceCtx<'_>) -> Result<(), String> {
    if d.ty == InstanceType::Container {
        for field in ["path", "pathrm"] {
            if !d.has(field) {
                return Err(format!("Missing required device option {field:?}"));
            }
        }
    }
    Ok(())
}

/// A parsed proxy `listen`/`connect` address (LXD `ProxyParseAddr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAddress {
    /// `tcp`, `udp` or `unix`.
    pub conn_type: String,
    /// IP (empty = wildcard) or socket path.
    pub address: String,
    /// Every port, ranges expanded.
    pub ports: Vec<u16>,
    /// An abstract unix socket (`@name`).
    pub abstract_socket: bool,
}

/// Parses `tcp|udp|unix:<addr>[:port[-port][,...]]`.
pub fn parse_proxy_address(value: &str) -> Result<ProxyAddress, String> {
    let (conn_type, rest) = value.split_once(':').ok_or_else(|| format!("Invalid address {value:?}"))?;
    if !matches!(conn_type, "tcp" | "udp" | "unix") {
        return Err(format!("Unknown connection type {conn_type:?}"));
    }
    let mut out = ProxyAddress {
        conn_type: conn_type.into(),
        address: String::new(),
        ports: Vec::new(),
        abstract_socket: rest.starts_with('@'),
    };
    if conn_type == "unix" {
        if rest.is_empty() {
            return Err("Missing unix socket path".into());
        }
        out.address = rest.into();
        return Ok(out);
    }
    let (host, ports) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r.split_once("]:").ok_or_else(|| format!("Invalid address {value:?}"))?;
        (h, after)
    } else {
        let (h, p) = rest.rsplit_once(':').ok_or_else(|| format!("Missing port in address {value:?}"))?;
        if h.contains(':') {
            return Err(format!("IPv6 addresses must be in brackets: {value:?}"));
        }
        (h, p)
    };
    if !host.is_empty() {
        host.parse::<IpAddr>().map_err(|_| format!("Not an IP address {host:?}"))?;
    }
    out.address = host.into();
    for p in ports.split(',') {
        let (first, last) = match p.split_once('-') {
            Some((a, b)) => (a, b),
            None => (p, p),
        };
        let parse = |s: &str| s.parse::<u16>().map_err(|_| format!("Invalid port {p:?} in {value:?}"));
        let (first, last) = (parse(first)?, parse(last)?);
        if last < first {
            return Err(format!("Invalid port range {p:?} in {value:?}"));
        }
        out.ports.extend(first..=last);
    }
    if out.ports.is_empty() {
        return Err("At least one port is required".into());
    }
    Ok(out)
}

/// `proxy`.
pub fn proxy(d: &DeviceCtx<'_>) -> Result<(), String> {
    let listen = parse_proxy_address(d.get("listen")).map_err(|e| format!("Invalid listen address: {e}"))?;
    let connect = parse_proxy_address(d.get("connect")).map_err(|e| format!("Invalid connect address: {e}"))?;
    // A unix socket counts as one address, as in LXD.
    let count = |a: &ProxyAddress| if a.conn_type == "unix" { 1 } else { a.ports.len() };
    let (nl, nc) = (count(&listen), count(&connect));
    if nc > nl {
        return Err("Cannot map a single port to multiple ports".into());
    }
    if nc > 1 && nc != nl {
        return Err(format!("Cannot map {nl} ports to {nc} ports"));
    }
    if is_true(d.get("proxy_protocol")) && (connect.conn_type != "tcp" || is_true(d.get("nat"))) {
        return Err("The PROXY header can only be sent to tcp servers in non-nat mode".into());
    }
    let unix_listen = listen.conn_type == "unix" && !listen.abstract_socket;
    if !unix_listen && (d.has("uid") || d.has("gid") || d.has("mode")) {
        return Err("Only proxy devices for non-abstract unix sockets can carry uid, gid, or mode properties".into());
    }
    let nat = is_true(d.get("nat"));
    if d.ty == InstanceType::VirtualMachine && !nat {
        return Err("Only NAT mode is supported for proxies on VM instances".into());
    }
    if nat {
        if !matches!(d.get("bind"), "" | "host") {
            return Err("Only host-bound proxies can use NAT".into());
        }
        if listen.conn_type == "unix" || listen.conn_type != connect.conn_type {
            return Err(format!(
                "Proxying {} <-> {} is not supported when using NAT",
                listen.conn_type, connect.conn_type
            ));
        }
        let wildcard = listen.address.is_empty()
            || listen.address.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
        if wildcard {
            return Err(format!("Cannot listen on wildcard address {:?} when in nat mode", listen.address));
        }
        let v4 = |a: &str| a.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4());
        if !connect.address.is_empty() && v4(&listen.address) != v4(&connect.address) {
            return Err("Cannot mix IP versions between listen and connect in nat mode".into());
        }
    }
    Ok(())
}
