//! Value parsers that read configuration the way LXD does, so a plugin and
//! the daemon agree on what "512MB" or "yes" means.

/// Error from the parsers: the offending input and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The input that was rejected.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid value {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for ParseError {}

fn err(input: &str, reason: &'static str) -> ParseError {
    ParseError {
        input: input.to_string(),
        reason,
    }
}

/// A byte size as LXD's `units.ParseByteSizeString` reads it: an integer
/// followed by nothing, `B`, ` bytes`, a decimal unit (`kB`, `MB`, `GB`, `TB`,
/// `PB`, `EB`) or a binary one (`KiB` ... `EiB`). Suffixes are case-sensitive
/// and fractions are refused, as in LXD.
pub fn parse_size(input: &str) -> Result<u64, ParseError> {
    let split = input
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(input.len());
    let (digits, suffix) = input.split_at(split);
    if digits.is_empty() {
        return Err(err(input, "no number"));
    }
    let value: u64 = digits.parse().map_err(|_| err(input, "number too large"))?;
    let multiplier: u64 = match suffix {
        "" | "B" | " bytes" => 1,
        "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "PB" => 1_000_000_000_000_000,
        "EB" => 1_000_000_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "PiB" => 1 << 50,
        "EiB" => 1 << 60,
        _ => return Err(err(input, "unknown unit")),
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| err(input, "size overflows"))
}

/// A CPU set such as `0-3,5`: sorted, without duplicates.
pub fn parse_cpuset(input: &str) -> Result<Vec<u32>, ParseError> {
    let mut cpus = Vec::new();
    for part in input.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(err(input, "empty element"));
        }
        match part.split_once('-') {
            Some((lo, hi)) => {
                let lo: u32 = lo
                    .trim()
                    .parse()
                    .map_err(|_| err(input, "bad range start"))?;
                let hi: u32 = hi.trim().parse().map_err(|_| err(input, "bad range end"))?;
                if lo > hi {
                    return Err(err(input, "range start above end"));
                }
                if hi - lo > 65_535 {
                    return Err(err(input, "range too large"));
                }
                cpus.extend(lo..=hi);
            }
            None => cpus.push(part.parse().map_err(|_| err(input, "not a cpu number"))?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// A boolean as LXD reads it: `true`/`1`/`yes`/`on` and
/// `false`/`0`/`no`/`off`, case-insensitive. Anything else is `None`.
pub fn parse_bool(input: &str) -> Option<bool> {
    match input.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_lxd() {
        assert_eq!(parse_size("512MB"), Ok(512_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("42"), Ok(42));
        assert_eq!(parse_size("10 bytes"), Ok(10));
        assert_eq!(parse_size("3kB"), Ok(3000));
        assert!(parse_size("1.5GB").is_err());
        assert!(parse_size("1gb").is_err());
        assert!(parse_size("GB").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("20EiB").is_err());
    }

    #[test]
    fn cpusets() {
        assert_eq!(parse_cpuset("0-3,5"), Ok(vec![0, 1, 2, 3, 5]));
        assert_eq!(parse_cpuset("5,1,1"), Ok(vec![1, 5]));
        assert!(parse_cpuset("3-1").is_err());
        assert!(parse_cpuset("1,,2").is_err());
        assert!(parse_cpuset("a").is_err());
    }

    #[test]
    fn booleans() {
        for t in ["true", "1", "yes", "on", "TRUE", "On"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["false", "0", "no", "off", "NO"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_bool(""), None);
    }
}
