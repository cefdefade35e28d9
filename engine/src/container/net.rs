//! Network devices: bridged veth pairs moved into the container's network namespace,
//! and interface listing/counters read inside that namespace. Uses iproute2's `ip`
//! (run with setns into the namespace), which every supported host has.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::state::NetInterface;
use super::Error;

/// One bridged nic to create at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicPlan {
    pub device: String,
    pub parent: String,
    pub host_name: String,
    pub name: String,
    pub hwaddr: Option<String>,
    pub mtu: Option<u32>,
}

impl NicPlan {
    pub(crate) fn from_device(config: &BTreeMap<String, String>, dev: &str, d: &BTreeMap<String, String>) -> Result<Self, Error> {
        let bad = |r: &str| Error::Device { device: dev.to_string(), reason: r.to_string() };
        let get = |k: &str| d.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let nictype = get("nictype").unwrap_or(if get("network").is_some() { "network" } else { "" });
        if nictype != "bridged" {
            return Err(bad(&format!("nictype {nictype:?} is not supported (only bridged)")));
        }
        let parent = get("parent").ok_or_else(|| bad("missing parent"))?.to_string();
        let vol = |k: &str| config.get(&format!("volatile.{dev}.{k}")).filter(|v| !v.is_empty()).cloned();
        let host_name = get("host_name").map(str::to_string).or_else(|| vol("host_name")).unwrap_or_else(|| random_name("veth"));
        let mtu = match get("mtu") {
            Some(m) => Some(m.parse().map_err(|_| bad("invalid mtu"))?),
            None => None,
        };
        Ok(NicPlan {
            device: dev.to_string(),
            parent,
            host_name,
            name: get("name").unwrap_or(dev).to_string(),
            hwaddr: get("hwaddr").map(str::to_string).or_else(|| vol("hwaddr")),
            mtu,
        })
    }
}

fn random_name(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand::random::<u32>())
}

fn ip(args: &[&str], netns: Option<BorrowedFd<'_>>) -> Result<String, Error> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    if let Some(ns) = netns {
        let raw = ns.as_raw_fd();
        // SAFETY: the closure only calls setns(2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(raw, libc::CLONE_NEWNET) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().map_err(super::ioe("run ip"))?;
    if !out.status.success() {
        return Err(Error::Setup(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates the veth pair, plugs the host end into the bridge and moves the other end,
/// renamed, into `netns` (the container's network namespace).
pub(crate) fn attach(nic: &NicPlan, pid: i32, netns: BorrowedFd<'_>) -> Result<(), Error> {
    let peer = random_name("bp");
    ip(&["link", "add", &nic.host_name, "type", "veth", "peer", "name", &peer], None)?;
    let res = (|| {
        if let Some(hw) = &nic.hwaddr {
            ip(&["link", "set", "dev", &peer, "address", hw], None)?;
        }
        if let Some(mtu) = nic.mtu {
            let m = mtu.to_string();
            ip(&["link", "set", "dev", &peer, "mtu", &m], None)?;
            ip(&["link", "set", "dev", &nic.host_name, "mtu", &m], None)?;
        }
        ip(&["link", "set", "dev", &nic.host_name, "master", &nic.parent, "up"], None)?;
        ip(&["link", "set", "dev", &peer, "netns", &pid.to_string()], None)?;
        ip(&["link", "set", "dev", &peer, "name", &nic.name], Some(netns))?;
        Ok(())
    })();
    if res.is_err() {
        detach(&nic.host_name);
    }
    res
}

/// Plugs an existing host interface (a VM's tap, created by QEMU) into the nic's bridge and
/// brings it up.
pub(crate) fn plug(nic: &NicPlan) -> Result<(), Error> {
    if let Some(mtu) = nic.mtu {
        ip(&["link", "set", "dev", &nic.host_name, "mtu", &mtu.to_string()], None)?;
    }
    ip(&["link", "set", "dev", &nic.host_name, "master", &nic.parent, "up"], None)?;
    Ok(())
}

/// Deletes a host-side veth if it still exists (it vanishes with the namespace anyway).
pub(crate) fn detach(host_name: &str) {
    // Not via /sys/class/net: that shows the namespace sysfs was mounted in, not ours.
    if ip(&["link", "show", "dev", host_name], None).is_ok() {
        let _ = ip(&["link", "del", "dev", host_name], None);
    }
}

/// Interfaces of the namespace with addresses and counters (from /proc/<pid>/net/dev,
/// which shows the namespace of `pid`). Addresses come from getifaddrs(3) on a short-lived
/// thread that joined the namespace (no process spawn: `lxc list` asks this for every
/// running container); `ip -j addr` is the fallback.
pub(crate) fn interfaces(pid: i32, netns: BorrowedFd<'_>) -> Result<BTreeMap<String, NetInterface>, Error> {
    let mut out = match addresses_in(netns) {
        Ok(m) => m,
        Err(_) => addresses_by_ip(netns)?,
    };
    add_counters(pid, &mut out)?;
    Ok(out)
}

fn scope_of(addr: &std::net::IpAddr) -> &'static str {
    match addr {
        std::net::IpAddr::V4(a) if a.is_loopback() => "local",
        std::net::IpAddr::V4(a) if a.is_link_local() => "link",
        std::net::IpAddr::V6(a) if a.is_loopback() => "local",
        std::net::IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => "link",
        _ => "global",
    }
}

/// getifaddrs + SIOCGIFMTU inside the namespace, on a thread of its own (setns of the
/// network namespace only affects the calling thread).
fn addresses_in(netns: BorrowedFd<'_>) -> Result<BTreeMap<String, NetInterface>, Error> {
    use nix::net::if_::InterfaceFlags;
    let ns = netns.try_clone_to_owned().map_err(super::ioe("dup netns"))?;
    let h = std::thread::Builder::new().stack_size(128 * 1024).spawn(move || -> Result<BTreeMap<String, NetInterface>, String> {
        crate::sys::setns(std::os::fd::AsFd::as_fd(&ns), libc::CLONE_NEWNET).map_err(|e| e.to_string())?;
        let mut out: BTreeMap<String, NetInterface> = BTreeMap::new();
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        for ifa in nix::ifaddrs::getifaddrs().map_err(|e| e.to_string())? {
            let ni = out.entry(ifa.interface_name.clone()).or_insert_with(|| {
                // SAFETY: ifreq is plain old data; all-zero is a valid value.
                let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
                for (d, b) in req.ifr_name.iter_mut().zip(ifa.interface_name.bytes().take(libc::IFNAMSIZ - 1)) {
                    *d = b as libc::c_char;
                }
                // SAFETY: SIOCGIFMTU with a zeroed ifreq naming the interface.
                let mtu = if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req) } == 0 {
                    // SAFETY: the kernel filled the mtu member.
                    unsafe { req.ifr_ifru.ifru_mtu }.max(0) as u64
                } else {
                    0
                };
                let f = ifa.flags;
                NetInterface {
                    mtu,
                    state: if f.contains(InterfaceFlags::IFF_UP) { "up".into() } else { "down".into() },
                    kind: if f.contains(InterfaceFlags::IFF_LOOPBACK) {
                        "loopback".into()
                    } else if f.contains(InterfaceFlags::IFF_POINTOPOINT) {
                        "point-to-point".into()
                    } else {
                        "broadcast".into()
                    },
                    ..Default::default()
                }
            });
            let Some(addr) = ifa.address else { continue };
            if let Some(link) = addr.as_link_addr() {
                if let Some(mac) = link.addr() {
                    ni.hwaddr = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
                }
                continue;
            }
            let (ip, prefix): (std::net::IpAddr, u32) = if let Some(v4) = addr.as_sockaddr_in() {
                let m = ifa.netmask.as_ref().and_then(|m| m.as_sockaddr_in()).map(|m| m.ip().to_bits().count_ones()).unwrap_or(32);
                (std::net::IpAddr::V4(v4.ip()), m)
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                let m = ifa.netmask.as_ref().and_then(|m| m.as_sockaddr_in6()).map(|m| m.ip().to_bits().count_ones()).unwrap_or(128);
                (std::net::IpAddr::V6(v6.ip()), m)
            } else {
                continue;
            };
            ni.addresses.push(super::state::NetAddress {
                family: if ip.is_ipv6() { "inet6".into() } else { "inet".into() },
                address: ip.to_string(),
                netmask: prefix.to_string(),
                scope: scope_of(&ip).into(),
            });
        }
        Ok(out)
    });
    let h = h.map_err(super::ioe("spawn netns reader"))?;
    h.join().map_err(|_| Error::Setup("netns reader panicked".into()))?.map_err(Error::Setup)
}

/// Addresses from `ip -j addr` run inside the namespace.
fn addresses_by_ip(netns: BorrowedFd<'_>) -> Result<BTreeMap<String, NetInterface>, Error> {
    let mut out = BTreeMap::new();
    let json = ip(&["-j", "addr", "show"], Some(netns))?;
    let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| Error::Setup(format!("ip -j addr: {e}")))?;
    for l in v.as_array().into_iter().flatten() {
        let Some(name) = l.get("ifname").and_then(|n| n.as_str()) else { continue };
        let mut ni = NetInterface {
            hwaddr: l.get("address").and_then(|a| a.as_str()).unwrap_or("").to_string(),
            mtu: l.get("mtu").and_then(|m| m.as_u64()).unwrap_or(0),
            state: if l.get("operstate").and_then(|s| s.as_str()) == Some("DOWN") { "down".into() } else { "up".into() },
            kind: l.get("link_type").and_then(|s| s.as_str()).unwrap_or("").to_string(),
            ..Default::default()
        };
        for a in l.get("addr_info").and_then(|a| a.as_array()).into_iter().flatten() {
            let family = a.get("family").and_then(|f| f.as_str()).unwrap_or("");
            ni.addresses.push(super::state::NetAddress {
                family: if family == "inet6" { "inet6".into() } else { "inet".into() },
                address: a.get("local").and_then(|x| x.as_str()).unwrap_or("").to_string(),
                netmask: a.get("prefixlen").and_then(|x| x.as_u64()).unwrap_or(0).to_string(),
                scope: a.get("scope").and_then(|x| x.as_str()).unwrap_or("").to_string(),
            });
        }
        out.insert(name.to_string(), ni);
    }
    Ok(out)
}

fn add_counters(pid: i32, out: &mut BTreeMap<String, NetInterface>) -> Result<(), Error> {
    let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).map_err(super::ioe("read net/dev"))?;
    for line in dev.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else { continue };
        let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if f.len() < 16 {
            continue;
        }
        if let Some(ni) = out.get_mut(name.trim()) {
            ni.counters = super::state::NetCounters {
                bytes_received: f[0],
                packets_received: f[1],
                bytes_sent: f[8],
                packets_sent: f[9],
            };
        }
    }
    Ok(())
}
