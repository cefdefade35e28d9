//! Value validators as data (LXD `shared/validate`), so the key tables can both run them
//! and describe them in the generated reference.
//!
//! Every validator treats the empty string as "unset" and accepts it (LXD's
//! `validate.Optional`), except [`Validator::NotEmpty`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::cpuset;
use super::schedule::{cron, expiry};
use super::idmap;
use super::raw_lxc;
use super::units::parse_byte_size;

/// A value check, described in the reference docs by [`Validator::describe`].
#[derive(Debug, Clone, Copy)]
pub enum Validator {
    /// Anything.
    Any,
    /// A non-empty string (LXD `IsNotEmpty`).
    NotEmpty,
    /// `true/false/yes/no/1/0/on/off`, case-insensitive.
    Bool,
    /// A signed 64-bit integer.
    Int64,
    /// An unsigned 32-bit integer.
    Uint32,
    /// An integer within `[min, max]`.
    Range(i64, i64),
    /// A byte size (`512MB`, `1GiB`, `1024`).
    Size,
    /// `limits.memory`: `N%` or a byte size, not zero.
    MemoryLimit,
    /// `limits.cpu`: a CPU count or a cpuset, no CPU twice.
    CpuLimit,
    /// `limits.cpu.allowance`: `N%` or `Nms/Mms`.
    CpuAllowance,
    /// One of a fixed list of strings.
    OneOf(&'static [&'static str]),
    /// A cron spec (5 fields), or one of the aliases; several joined by `, `.
    Cron(&'static [&'static str]),
    /// A snapshot expiry expression (`1d 2H`).
    Expiry,
    /// A UUID.
    Uuid,
    /// Any YAML document.
    Yaml,
    /// `#cloud-config` YAML, or any other (script) payload.
    CloudInitUserData,
    /// `raw.idmap` lines.
    RawIdmap,
    /// `raw.lxc` lines with the refused keys.
    RawLxc,
    /// An Ethernet MAC `xx:xx:xx:xx:xx:xx`.
    Mac,
    /// An InfiniBand hardware address (8 or 20 colon-separated bytes).
    InfinibandMac,
    /// A host network interface name (2–15 of `[-_a-zA-Z0-9.]`, no `..`).
    InterfaceName,
    /// An IPv4 address.
    Ipv4,
    /// An IPv6 address.
    Ipv6,
    /// An IPv4 network in CIDR notation (host bits zero).
    NetV4,
    /// An IPv6 network in CIDR notation (host bits zero).
    NetV6,
    /// A VLAN id 0–4094.
    Vlan,
    /// An MTU 1280–16384.
    Mtu,
    /// Four lowercase hex digits (USB/PCI vendor or product id).
    DeviceId,
    /// A PCI address `[DDDD:]BB:DD.F`.
    PciAddress,
    /// An octal file mode (`0660`).
    FileMode,
    /// An absolute path.
    AbsPath,
    /// A disk I/O limit: a byte rate (`10MB`) or `Niops`.
    IoLimit,
    /// `[host][:port]` to listen on; host is an IP, a DNS name or empty (wildcard).
    ListenAddress,
    /// A compression command known to LXD (`gzip`, `xz`, … or `none`).
    Compression,
    /// An architecture name known to LXD.
    Architecture,
    /// A comma-separated list whose items all pass the inner validator.
    ListOf(&'static Validator),
    /// A one-off rule with its own description.
    Custom(&'static str, fn(&str) -> Result<(), String>),
}

/// Architecture names LXD knows (`shared/osarch`).
pub const ARCHITECTURES: &[&str] = &[
    "i686", "x86_64", "armv6l", "armv7l", "armv8l", "aarch64", "ppc", "ppc64", "ppc64le", "s390x", "mips",
    "mips64", "riscv32", "riscv64",
];

/// Compression commands LXD accepts for images and backups.
pub const COMPRESSION_COMMANDS: &[&str] = &["bzip2", "gzip", "lzma", "pigz", "pzstd", "squashfs", "xz", "zstd"];

impl Validator {
    /// Checks `value`; the error text says what is wrong without repeating the key.
    pub fn check(&self, value: &str) -> Result<(), String> {
        if value.is_empty() {
            return match self {
                Validator::NotEmpty => Err("Required value".into()),
                _ => Ok(()),
            };
        }
        match self {
            Validator::Any | Validator::NotEmpty => Ok(()),
            Validator::Bool => is_bool(value),
            Validator::Int64 => value
                .parse::<i64>()
                .map(|_| ())
                .map_err(|_| format!("Invalid value for an integer {value:?}")),
            Validator::Uint32 => parse_u32(value).map(|_| ()),
            Validator::Range(min, max) => {
                let n = value.parse::<i64>().map_err(|_| format!("Invalid value for an integer {value:?}"))?;
                if n < *min || n > *max {
                    return Err(format!("Value is not within valid range. Must be between {min} and {max}"));
                }
                Ok(())
            }
            Validator::Size => parse_byte_size(value).map(|_| ()).map_err(|e| e.to_string()),
            Validator::MemoryLimit => memory_limit(value),
            Validator::CpuLimit => cpuset::limits_cpu(value).map(|_| ()).map_err(|e| e.reason()),
            Validator::CpuAllowance => cpu_allowance(value),
            Validator::OneOf(list) => {
                if list.contains(&value) {
                    Ok(())
                } else {
                    Err(format!("Invalid value {value:?} (not one of {})", list.join(", ")))
                }
            }
            Validator::Cron(aliases) => cron(value, aliases),
            Validator::Expiry => expiry(value),
            Validator::Uuid => uuid::Uuid::parse_str(value).map(|_| ()).map_err(|_| "Invalid UUID".to_string()),
            Validator::Yaml => serde_yaml::from_str::<serde_yaml::Value>(value)
                .map(|_| ())
                .map_err(|e| format!("Invalid YAML: {e}")),
            Validator::CloudInitUserData => {
                if value.starts_with("#cloud-config") {
                    Validator::Yaml.check(value)
                } else {
                    Ok(())
                }
            }
            Validator::RawIdmap => idmap::parse_raw_idmap(value).map(|_| ()).map_err(|e| e.reason()),
            Validator::RawLxc => raw_lxc::validate_raw_lxc(value, false).map_err(|e| e.reason()),
            Validator::Mac => mac(value, &[6]),
            Validator::InfinibandMac => mac(value, &[8, 20]),
            Validator::InterfaceName => interface_name(value),
            Validator::Ipv4 => value
                .parse::<Ipv4Addr>()
                .map(|_| ())
                .map_err(|_| format!("Not an IPv4 address {value:?}")),
            Validator::Ipv6 => value
                .parse::<Ipv6Addr>()
                .map(|_| ())
                .map_err(|_| format!("Not an IPv6 address {value:?}")),
            Validator::NetV4 => network(value, false),
            Validator::NetV6 => network(value, true),
            Validator::Vlan => {
                let n = value.parse::<i64>().map_err(|_| format!("Invalid VLAN ID {value:?}"))?;
                if !(0..=4094).contains(&n) {
                    return Err(format!("Out of VLAN ID range (0-4094) {value:?}"));
                }
                Ok(())
            }
            Validator::Mtu => {
                let n = value.parse::<u32>().map_err(|_| format!("Invalid MTU {value:?}"))?;
                if !(1280..=16384).contains(&n) {
                    return Err(format!("Out of MTU range (1280-16384) {value:?}"));
                }
                Ok(())
            }
            Validator::DeviceId => {
                if value.len() == 4 && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    Ok(())
                } else {
                    Err("Invalid value, must be four lower case hex characters".into())
                }
            }
            Validator::PciAddress => pci_address(value),
            Validator::FileMode => match u32::from_str_radix(value, 8) {
                Ok(m) if m <= 0o7777 && !value.starts_with('+') => Ok(()),
                _ => Err(format!("Invalid file mode {value:?} (octal, at most 07777)")),
            },
            Validator::AbsPath => {
                if value.starts_with('/') {
                    Ok(())
                } else {
                    Err(format!("Path {value:?} must be absolute"))
                }
            }
            Validator::IoLimit => {
                if let Some(n) = value.strip_suffix("iops") {
                    return n.parse::<u64>().map(|_| ()).map_err(|_| format!("Invalid I/O limit {value:?}"));
                }
                parse_byte_size(value).map(|_| ()).map_err(|e| e.to_string())
            }
            Validator::ListenAddress => listen_address(value),
            Validator::Compression => compression(value),
            Validator::Architecture => Validator::OneOf(ARCHITECTURES).check(value),
            Validator::ListOf(inner) => {
                for item in value.split(',') {
                    let item = item.trim();
                    inner.check(item).map_err(|e| format!("Item {item:?}: {e}"))?;
                    if item.is_empty() {
                        return Err("Empty list item".into());
                    }
                }
                Ok(())
            }
            Validator::Custom(_, f) => f(value),
        }
    }

    /// One line for the reference docs.
    pub fn describe(&self) -> String {
        match self {
            Validator::Any => "any string".into(),
            Validator::NotEmpty => "non-empty string".into(),
            Validator::Bool => "bool".into(),
            Validator::Int64 => "int64".into(),
            Validator::Uint32 => "uint32".into(),
            Validator::Range(a, b) => format!("integer {a}–{b}"),
            Validator::Size => "byte size (`512MB`, `1GiB`)".into(),
            Validator::MemoryLimit => "`N%` or byte size, not zero".into(),
            Validator::CpuLimit => "CPU count, or cpuset (`0-3,5`)".into(),
            Validator::CpuAllowance => "`N%` or `Nms/Mms`".into(),
            Validator::OneOf(l) => format!("one of `{}`", l.join("`, `")),
            Validator::Cron(a) => format!("cron spec or `{}` (`, `-separated)", a.join("`, `")),
            Validator::Expiry => "expiry (`<n>M|H|d|w|m|y`, space-separated)".into(),
            Validator::Uuid => "UUID".into(),
            Validator::Yaml => "YAML".into(),
            Validator::CloudInitUserData => "`#cloud-config` YAML or a script".into(),
            Validator::RawIdmap => "`both|uid|gid HOST[-END] NS[-END]` lines".into(),
            Validator::RawLxc => "`key = value` lines (some keys refused)".into(),
            Validator::Mac => "MAC address".into(),
            Validator::InfinibandMac => "InfiniBand address (8 or 20 bytes)".into(),
            Validator::InterfaceName => "interface name".into(),
            Validator::Ipv4 => "IPv4 address".into(),
            Validator::Ipv6 => "IPv6 address".into(),
            Validator::NetV4 => "IPv4 CIDR network".into(),
            Validator::NetV6 => "IPv6 CIDR network".into(),
            Validator::Vlan => "VLAN id 0–4094".into(),
            Validator::Mtu => "MTU 1280–16384".into(),
            Validator::DeviceId => "4 lowercase hex digits".into(),
            Validator::PciAddress => "PCI address".into(),
            Validator::FileMode => "octal mode".into(),
            Validator::AbsPath => "absolute path".into(),
            Validator::IoLimit => "byte rate or `Niops`".into(),
            Validator::ListenAddress => "`[host][:port]`".into(),
            Validator::Compression => format!("`none` or `{}`", COMPRESSION_COMMANDS.join("`, `")),
            Validator::Architecture => "architecture name".into(),
            Validator::ListOf(inner) => format!("comma list of {}", inner.describe()),
            Validator::Custom(d, _) => (*d).into(),
        }
    }
}

/// LXD `IsBool`.
fn is_bool(value: &str) -> Result<(), String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "false" | "yes" | "no" | "1" | "0" | "on" | "off" => Ok(()),
        _ => Err(format!("Invalid value for a boolean {value:?}")),
    }
}

/// LXD `shared.IsTrue`: `true/1/yes/on`, case-insensitive.
pub fn is_true(value: &str) -> bool {
    matches!(value.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
}

/// LXD `shared.IsFalse`: `false/0/no/off`, case-insensitive (empty is neither).
pub fn is_false(value: &str) -> bool {
    matches!(value.to_ascii_lowercase().as_str(), "false" | "0" | "no" | "off")
}

fn parse_u32(value: &str) -> Result<u32, String> {
    // Go's ParseUint refuses a leading '+', Rust accepts it: refuse it too.
    if value.starts_with('+') {
        return Err(format!("Invalid value for uint32 {value:?}"));
    }
    value.parse::<u32>().map_err(|_| format!("Invalid value for uint32 {value:?}"))
}

fn memory_limit(value: &str) -> Result<(), String> {
    if let Some(pct) = value.strip_suffix('%') {
        let n = pct.parse::<i64>().map_err(|_| format!("Invalid percentage {value:?}"))?;
        if n <= 0 {
            return Err(format!("Invalid memory limit {value:?}: must be more than 0%"));
        }
        return Ok(());
    }
    let n = parse_byte_size(value).map_err(|e| e.to_string())?;
    if n == 0 {
        return Err(format!("Invalid memory limit {value:?}: must be more than 0"));
    }
    Ok(())
}

fn cpu_allowance(value: &str) -> Result<(), String> {
    if let Some(pct) = value.strip_suffix('%') {
        return pct.parse::<i32>().map(|_| ()).map_err(|_| format!("Invalid allowance: {value}"));
    }
    let (a, b) = value.split_once('/').ok_or_else(|| format!("Invalid allowance: {value}"))?;
    for part in [a, b] {
        part.trim_end_matches("ms")
            .parse::<i32>()
            .map_err(|_| format!("Invalid allowance: {value}"))?;
    }
    Ok(())
}

fn mac(value: &str, lens: &[usize]) -> Result<(), String> {
    let parts: Vec<&str> = value.split(':').collect();
    let ok = lens.contains(&parts.len())
        && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else if lens == [6] {
        Err("Invalid MAC address, must be 6 bytes of hex separated by colons".into())
    } else {
        Err(format!("Invalid hardware address {value:?}, must be 8 or 20 bytes of hex separated by colons"))
    }
}

fn interface_name(value: &str) -> Result<(), String> {
    if value.len() < 2 {
        return Err("Network interface is too short (minimum 2 characters)".into());
    }
    if value.len() > 15 {
        return Err("Network interface is too long (maximum 15 characters)".into());
    }
    if value.contains("..") {
        return Err("Network interface name must not contain '..'".into());
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
        return Err("Network interface contains invalid characters".into());
    }
    Ok(())
}

fn network(value: &str, v6: bool) -> Result<(), String> {
    let family = if v6 { "IPv6" } else { "IPv4" };
    let (addr, prefix) = value
        .split_once('/')
        .ok_or_else(|| format!("Not an {family} network {value:?}"))?;
    let prefix: u32 = prefix.parse().map_err(|_| format!("Invalid CIDR prefix in {value:?}"))?;
    let ip: IpAddr = addr.parse().map_err(|_| format!("Not an {family} network {value:?}"))?;
    let host_bits_zero = match (ip, v6) {
        (IpAddr::V4(a), false) if prefix <= 32 => {
            let bits = u32::from(a);
            prefix == 32 || bits & (u32::MAX >> prefix) == 0
        }
        (IpAddr::V6(a), true) if prefix <= 128 => {
            let bits = u128::from(a);
            prefix == 128 || bits & (u128::MAX >> prefix) == 0
        }
        _ => return Err(format!("Not an {family} network {value:?}")),
    };
    if !host_bits_zero {
        return Err(format!("Not an {family} network address {value:?}"));
    }
    Ok(())
}

fn pci_address(value: &str) -> Result<(), String> {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = value.split(':').collect();
    let (domain_ok, bus, rest) = match parts.as_slice() {
        [d, b, r] => (hex(d, 4), *b, *r),
        [b, r] => (true, *b, *r),
        _ => (false, "", ""),
    };
    let ok = domain_ok
        && hex(bus, 2)
        && matches!(rest.split_once('.'), Some((dev, func)) if hex(dev, 2) && hex(func, 1));
    if ok {
        Ok(())
    } else {
        Err("Invalid PCI address".into())
    }
}

/// A DNS name: dot-separated labels of `[A-Za-z0-9-]`, not starting or ending with `-`.
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// LXD `IsListenAddress(allowDNS, allowWildcard, requirePort=false)` without the DNS lookup.
fn listen_address(value: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| format!("Invalid address {value:?}"))?;
        match after {
            "" => (h, None),
            a => (h, Some(a.strip_prefix(':').ok_or_else(|| format!("Invalid address {value:?}"))?)),
        }
    } else if value.matches(':').count() == 1 {
        let (h, p) = value.split_once(':').ok_or_else(|| format!("Invalid address {value:?}"))?;
        (h, Some(p))
    } else {
        (value, None)
    };
    if let Some(p) = port {
        p.parse::<u16>().map_err(|_| format!("Invalid port number {p:?}"))?;
    }
    if host.is_empty() || host.parse::<IpAddr>().is_ok() || is_dns_name(host) {
        Ok(())
    } else {
        Err(format!("Invalid address {value:?}"))
    }
}

fn compression(value: &str) -> Result<(), String> {
    if value == "none" {
        return Ok(());
    }
    let cmd = value.split_whitespace().next().unwrap_or("");
    if COMPRESSION_COMMANDS.contains(&cmd) {
        Ok(())
    } else {
        Err(format!("Invalid compression algorithm {cmd:?}"))
    }
}

#[cfg(test)]
#[path = "validators_tests.rs"]
mod tests;
