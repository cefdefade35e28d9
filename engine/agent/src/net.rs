//! Network state of the guest: names, MTU, MAC and counters from `/sys/class/net`,
//! addresses from `getifaddrs(3)`.

use berth_agent::proto::{Address, Counters, Interface};
use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Lists every interface with its addresses and counters.
pub fn interfaces() -> Result<Vec<Interface>, String> {
    let mut addrs = addresses()?;
    let dir = fs::read_dir("/sys/class/net").map_err(|e| format!("list /sys/class/net: {e}"))?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let base = entry.path();
        let read = |f: &str| fs::read_to_string(base.join(f)).map(|s| s.trim().to_string()).unwrap_or_default();
        let stat = |f: &str| read(&format!("statistics/{f}")).parse::<u64>().unwrap_or(0);
        let flags = u32::from_str_radix(read("flags").trim_start_matches("0x"), 16).unwrap_or(0);
        let up = flags & libc::IFF_UP as u32 != 0;
        let loopback = read("type") == "772";
        out.push(Interface {
            hwaddr: read("address"),
            mtu: read("mtu").parse().unwrap_or(0),
            state: if up { "up" } else { "down" }.into(),
            kind: if loopback { "loopback" } else { "broadcast" }.into(),
            addresses: addrs.remove(&name).unwrap_or_default(),
            counters: Counters {
                bytes_received: stat("rx_bytes"),
                bytes_sent: stat("tx_bytes"),
                packets_received: stat("rx_packets"),
                packets_sent: stat("tx_packets"),
                errors_received: stat("rx_errors"),
                errors_sent: stat("tx_errors"),
                packets_dropped_inbound: stat("rx_dropped"),
                packets_dropped_outbound: stat("tx_dropped"),
            },
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Addresses per interface name.
fn addresses() -> Result<BTreeMap<String, Vec<Address>>, String> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(format!("getifaddrs: {}", std::io::Error::last_os_error()));
    }
    let mut map: BTreeMap<String, Vec<Address>> = BTreeMap::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur walks the list getifaddrs returned; pointers are valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy().into_owned();
        // SAFETY: ifa_addr is non-null; the family says which sockaddr it is.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let addr = match family {
            libc::AF_INET => {
                // SAFETY: AF_INET addresses are sockaddr_in; netmask has the same family.
                let (a, m) = unsafe { (v4(ifa.ifa_addr), v4(ifa.ifa_netmask)) };
                Address {
                    family: "inet".into(),
                    address: a.to_string(),
                    netmask: u32::from(m).count_ones().to_string(),
                    scope: if a.is_loopback() { "local" } else if a.is_link_local() { "link" } else { "global" }.into(),
                }
            }
            libc::AF_INET6 => {
                // SAFETY: AF_INET6 addresses are sockaddr_in6.
                let (a, m) = unsafe { (v6(ifa.ifa_addr), v6(ifa.ifa_netmask)) };
                let link = a.segments()[0] & 0xffc0 == 0xfe80;
                Address {
                    family: "inet6".into(),
                    address: a.to_string(),
                    netmask: u128::from(m).count_ones().to_string(),
                    scope: if a.is_loopback() { "local" } else if link { "link" } else { "global" }.into(),
                }
            }
            _ => continue,
        };
        map.entry(name).or_default().push(addr);
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(map)
}

/// # Safety
/// `sa` is null or points to a `sockaddr_in`.
unsafe fn v4(sa: *const libc::sockaddr) -> Ipv4Addr {
    if sa.is_null() {
        return Ipv4Addr::UNSPECIFIED;
    }
    let sin = &*(sa as *const libc::sockaddr_in);
    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))
}

/// # Safety
/// `sa` is null or points to a `sockaddr_in6`.
unsafe fn v6(sa: *const libc::sockaddr) -> Ipv6Addr {
    if sa.is_null() {
        return Ipv6Addr::UNSPECIFIED;
    }
    let sin6 = &*(sa as *const libc::sockaddr_in6);
    Ipv6Addr::from(sin6.sin6_addr.s6_addr)
}
