//! Resource limits of an instance, parsed from its expanded config (LXD semantics:
//! `limits.cpu.allowance` N% is a soft share, Nms/Mms a hard CFS quota).

use std::collections::BTreeMap;

use super::Error;

/// Parsed `limits.*` keys. `None` means "leave the kernel default".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// CPUs the instance may run on (`limits.cpu`).
    pub cpuset: Option<Vec<u32>>,
    /// `limits.cpu.allowance` as a percentage (soft, via shares/weight).
    pub cpu_percent: Option<u64>,
    /// `limits.cpu.allowance` as quota/period in microseconds (hard).
    pub cpu_quota: Option<(u64, u64)>,
    /// `limits.cpu.priority` 0..=10 (10 when unset).
    pub cpu_priority: Option<u64>,
    /// `limits.memory` in bytes.
    pub memory: Option<u64>,
    /// `limits.memory.enforce=soft`.
    pub memory_soft: bool,
    /// `limits.memory.swap` (true when unset).
    pub swap: bool,
    /// `limits.processes`.
    pub processes: Option<u64>,
}

impl Limits {
    /// Parses the limits keys. `host_cpus` and `host_memory` resolve counts and percentages.
    pub fn from_config(config: &BTreeMap<String, String>, host_cpus: u32, host_memory: u64) -> Result<Self, Error> {
        let get = |k: &str| config.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let bad = |k: &str, v: &str| Error::InvalidLimit { key: k.into(), value: v.into() };
        let mut l = Limits { swap: true, ..Default::default() };
        if let Some(v) = get("limits.cpu") {
            l.cpuset = Some(match v.parse::<u32>() {
                Ok(n) if n > 0 => (0..n.min(host_cpus.max(1))).collect(),
                Ok(_) => return Err(bad("limits.cpu", v)),
                Err(_) => match crate::config::parse_cpuset(v) {
                    Ok(set) if !set.is_empty() => set,
                    _ => return Err(bad("limits.cpu", v)),
                },
            });
        }
        if let Some(v) = get("limits.cpu.allowance") {
            if let Some(p) = v.strip_suffix('%') {
                l.cpu_percent = Some(p.parse().map_err(|_| bad("limits.cpu.allowance", v))?);
            } else {
                let (q, p) = v.split_once('/').ok_or_else(|| bad("limits.cpu.allowance", v))?;
                let ms = |s: &str| s.trim().strip_suffix("ms").and_then(|n| n.parse::<u64>().ok());
                match (ms(q), ms(p)) {
                    (Some(q), Some(p)) if p > 0 && q > 0 => l.cpu_quota = Some((q * 1000, p * 1000)),
                    _ => return Err(bad("limits.cpu.allowance", v)),
                }
            }
        }
        if let Some(v) = get("limits.cpu.priority") {
            match v.parse::<u64>() {
                Ok(n) if n <= 10 => l.cpu_priority = Some(n),
                _ => return Err(bad("limits.cpu.priority", v)),
            }
        }
        if let Some(v) = get("limits.memory") {
            l.memory = Some(if let Some(p) = v.strip_suffix('%') {
                let p: u64 = p.parse().map_err(|_| bad("limits.memory", v))?;
                host_memory / 100 * p
            } else {
                parse_bytes(v).ok_or_else(|| bad("limits.memory", v))?
            });
        }
        match get("limits.memory.enforce") {
            None | Some("hard") => {}
            Some("soft") => l.memory_soft = true,
            Some(v) => return Err(bad("limits.memory.enforce", v)),
        }
        if let Some(v) = get("limits.memory.swap") {
            l.swap = !matches!(v, "false" | "0" | "no" | "off");
        }
        if let Some(v) = get("limits.processes") {
            l.processes = Some(v.parse().map_err(|_| bad("limits.processes", v))?);
        }
        Ok(l)
    }

    /// LXD's ParseCPU: the share value for a backend whose full share is `max_shares`
    /// (1024 for v1 cpu.shares, 100 for v2 cpu.weight).
    pub fn shares(&self, max_shares: u64) -> u64 {
        let mut shares: i64 = -(10 - self.cpu_priority.unwrap_or(10) as i64);
        match self.cpu_percent {
            Some(p) => shares += (max_shares as f64 / 100.0 * p as f64) as i64,
            None => shares += max_shares as i64,
        }
        shares.max(1) as u64
    }

    /// Whether any CPU weight key is set (otherwise the weight is left alone).
    pub fn has_cpu_weight(&self) -> bool {
        self.cpu_percent.is_some() || self.cpu_priority.is_some()
    }
}

/// Parses "64MB", "1GiB", "512kB", "1000" exactly as validation does
/// ([`crate::config::parse_byte_size`]), so a limit is read the way it was accepted.
pub fn parse_bytes(v: &str) -> Option<u64> {
    crate::config::parse_byte_size(v.trim()).ok().filter(|_| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("64MB"), Some(64_000_000));
        assert_eq!(parse_bytes("64MiB"), Some(64 << 20));
        assert_eq!(parse_bytes("1.5GiB"), None, "fractions are refused, as by validation");
        assert_eq!(parse_bytes("12"), Some(12));
        assert_eq!(parse_bytes("12XB"), None);
        assert_eq!(parse_bytes("MB"), None);
    }

    #[test]
    fn cpu_count_and_allowance() {
        let l = Limits::from_config(&cfg(&[("limits.cpu", "2"), ("limits.cpu.allowance", "25ms/100ms")]), 4, 0).unwrap();
        assert_eq!(l.cpuset, Some(vec![0, 1]));
        assert_eq!(l.cpu_quota, Some((25_000, 100_000)));
        assert!(!l.has_cpu_weight());
        let l = Limits::from_config(&cfg(&[("limits.cpu", "8")]), 2, 0).unwrap();
        assert_eq!(l.cpuset, Some(vec![0, 1]));
        assert!(Limits::from_config(&cfg(&[("limits.cpu.allowance", "25/100")]), 2, 0).is_err());
    }

    #[test]
    fn shares_follow_lxd() {
        let l = Limits::from_config(&cfg(&[("limits.cpu.allowance", "50%"), ("limits.cpu.priority", "5")]), 2, 0).unwrap();
        assert_eq!(l.shares(1024), 512 - 5);
        assert_eq!(l.shares(100), 45);
        let d = Limits::default();
        assert_eq!(d.shares(1024), 1024);
        assert!(Limits::from_config(&cfg(&[("limits.cpu.priority", "11")]), 2, 0).is_err());
    }

    #[test]
    fn memory_keys() {
        let l = Limits::from_config(
            &cfg(&[("limits.memory", "50%"), ("limits.memory.enforce", "soft"), ("limits.memory.swap", "false"), ("limits.processes", "20")]),
            2,
            1000,
        )
        .unwrap();
        assert_eq!(l.memory, Some(500));
        assert!(l.memory_soft);
        assert!(!l.swap);
        assert_eq!(l.processes, Some(20));
        assert!(Limits::from_config(&cfg(&[("limits.memory.enforce", "maybe")]), 2, 0).is_err());
    }
}
