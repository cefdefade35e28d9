//! `limits.cpu`: a bare number is a CPU count, anything else a cpuset
//! (LXD `resources.ParseCpuset` plus `validate.IsValidCPUSet`).

use std::collections::BTreeSet;

use super::ConfigError;

/// What `limits.cpu` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuLimit {
    /// Any `n` CPUs (the scheduler or the balancer picks them).
    Count(u32),
    /// Exactly these CPUs, in the order written.
    Set(Vec<u32>),
}

fn syntax_err() -> ConfigError {
    ConfigError::Other("Invalid CPU limit syntax".into())
}

/// ParseCpuset: `"0-3,5"` → `[0,1,2,3,5]`. Refuses bad syntax, reversed ranges and a CPU
/// listed twice (LXD's validator refuses duplicates; its parser alone would keep them).
pub fn parse_cpuset(value: &str) -> Result<Vec<u32>, ConfigError> {
    if value.is_empty() {
        return Err(syntax_err());
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let num = |s: &str| -> Result<u32, ConfigError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax_err());
        }
        s.parse::<u32>()
            .map_err(|_| ConfigError::Other(format!("Invalid cpuset value: {value}")))
    };
    for chunk in value.split(',') {
        let (lo, hi) = match chunk.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(chunk)?;
                (n, n)
            }
        };
        if hi < lo {
            return Err(ConfigError::Other(format!("Invalid cpuset range {chunk:?}: end before start")));
        }
        for cpu in lo..=hi {
            if !seen.insert(cpu) {
                return Err(ConfigError::Other("Cannot define CPU multiple times".into()));
            }
            out.push(cpu);
        }
    }
    Ok(out)
}

/// Reads `limits.cpu`: a bare number (≥ 1) is [`CpuLimit::Count`], anything else a
/// [`CpuLimit::Set`] (so `"0"` alone is refused, and `"0-0"` pins CPU 0).
pub fn limits_cpu(value: &str) -> Result<CpuLimit, ConfigError> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let n: u32 = value
            .parse()
            .map_err(|_| ConfigError::Other(format!("Invalid cpuset value: {value}")))?;
        if n < 1 {
            return Err(ConfigError::Other(format!("Invalid cpuset value: {value}")));
        }
        return Ok(CpuLimit::Count(n));
    }
    parse_cpuset(value).map(CpuLimit::Set)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LXD's `ExampleIsValidCPUSet` vectors, with the same messages.
    #[test]
    fn lxd_cpuset_vectors() {
        let cases: &[(&str, Option<&str>)] = &[
            ("1", None),
            ("1,2,3", None),
            ("1-3", None),
            ("1-3,4-6", None),
            ("1-3,4", None),
            ("abc", Some("Invalid CPU limit syntax")),
            ("1-", Some("Invalid CPU limit syntax")),
            ("1,", Some("Invalid CPU limit syntax")),
            ("-1", Some("Invalid CPU limit syntax")),
            (",1", Some("Invalid CPU limit syntax")),
            ("1,2,3,3", Some("Cannot define CPU multiple times")),
            ("1-2,2", Some("Cannot define CPU multiple times")),
            ("1-2,2-3", Some("Cannot define CPU multiple times")),
        ];
        for (v, want) in cases {
            let got = limits_cpu(v).err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), *want, "{v}");
        }
    }

    #[test]
    fn bare_number_is_a_count_anything_else_a_set() {
        assert_eq!(limits_cpu("4").unwrap(), CpuLimit::Count(4));
        assert_eq!(limits_cpu("1").unwrap(), CpuLimit::Count(1));
        assert_eq!(limits_cpu("0-0").unwrap(), CpuLimit::Set(vec![0]));
        assert_eq!(limits_cpu("0,2").unwrap(), CpuLimit::Set(vec![0, 2]));
        assert_eq!(limits_cpu("0-3,5").unwrap(), CpuLimit::Set(vec![0, 1, 2, 3, 5]));
        assert!(limits_cpu("0").is_err());
        assert!(limits_cpu("").is_err());
        assert!(limits_cpu("1 ,2").is_err());
        assert!(limits_cpu("3-1").is_err());
        assert!(limits_cpu("1--2").is_err());
        assert!(limits_cpu("99999999999").is_err());
    }

    #[test]
    fn parse_cpuset_expands_ranges() {
        assert_eq!(parse_cpuset("0-3,5").unwrap(), vec![0, 1, 2, 3, 5]);
        assert_eq!(parse_cpuset("7").unwrap(), vec![7]);
        assert_eq!(parse_cpuset("8,1-2").unwrap(), vec![8, 1, 2]);
        assert!(parse_cpuset("1,1").is_err());
    }
}
