//! Parsing the config values a VM needs: LXD byte sizes, CPU counts, shell words.

/// Errors parsing VM config values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitsError {
    /// A size that is not `<number>[unit]` or `<n>%`.
    #[error("invalid size {value:?}")]
    Size { value: String },
    /// A `limits.cpu` that is neither a count nor a cpuset.
    #[error("invalid cpu limit {value:?}")]
    Cpu { value: String },
    /// A `raw.qemu` with an unterminated quote or trailing backslash.
    #[error("invalid shell words {value:?}: {reason}")]
    Words { value: String, reason: &'static str },
}

/// Parses an LXD byte size: plain bytes, decimal units (`kB MB GB TB PB EB`, also `B`) or
/// binary units (`KiB MiB GiB TiB PiB EiB`). `host_total` resolves a percentage.
pub fn parse_size(value: &str, host_total: u64) -> Result<u64, UnitsError> {
    let bad = || UnitsError::Size { value: value.to_string() };
    let v = value.trim();
    if let Some(pct) = v.strip_suffix('%') {
        let p: u64 = pct.trim().parse().map_err(|_| bad())?;
        if p == 0 || p > 100 {
            return Err(bad());
        }
        return u64::try_from(u128::from(host_total) * u128::from(p) / 100).map_err(|_| bad());
    }
    if v.is_empty() {
        return Err(bad());
    }
    crate::config::parse_byte_size(v).map_err(|_| bad())
}

/// How many vCPUs `limits.cpu` asks for: a count (`"4"`) or a cpuset (`"0-3,6"`, counted).
pub fn cpu_count(value: &str) -> Result<u32, UnitsError> {
    let bad = || UnitsError::Cpu { value: value.to_string() };
    let v = value.trim();
    if v.is_empty() {
        return Err(bad());
    }
    if v.chars().all(|c| c.is_ascii_digit()) && !v.contains(',') {
        // A single number is a count, as in LXD.
        let n: u32 = v.parse().map_err(|_| bad())?;
        return if n == 0 { Err(bad()) } else { Ok(n) };
    }
    let mut cpus = std::collections::BTreeSet::new();
    for part in v.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().map_err(|_| bad())?, b.trim().parse::<u32>().map_err(|_| bad())?),
            None => {
                let n = part.trim().parse::<u32>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if lo > hi || hi - lo > 4096 {
            return Err(bad());
        }
        cpus.extend(lo..=hi);
    }
    u32::try_from(cpus.len()).map_err(|_| bad())
}

/// Splits `raw.qemu` like a POSIX shell would split words (quotes and backslashes; no
/// expansion).
pub fn shell_words(value: &str) -> Result<Vec<String>, UnitsError> {
    let err = |reason| UnitsError::Words { value: value.to_string(), reason };
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err(err("unterminated single quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => cur.push(ch),
                            Some('\n') => {}
                            Some(ch) => {
                                cur.push('\\');
                                cur.push(ch);
                            }
                            None => return Err(err("unterminated double quote")),
                        },
                        Some(ch) => cur.push(ch),
                        None => return Err(err("unterminated double quote")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(ch) => {
                    in_word = true;
                    cur.push(ch);
                }
                None => return Err(err("trailing backslash")),
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB", 0), Ok(1 << 30));
        assert_eq!(parse_size("512MiB", 0), Ok(512 << 20));
        assert_eq!(parse_size("2GB", 0), Ok(2_000_000_000));
        assert!(parse_size("1.5GiB", 0).is_err(), "fractions are refused, as by validation");
        assert_eq!(parse_size("4096", 0), Ok(4096));
        assert_eq!(parse_size("100B", 0), Ok(100));
        assert_eq!(parse_size("50%", 8 << 30), Ok(4 << 30));
        for bad in ["", "GiB", "1gib", "1 XB", "-1", "0%", "101%", "99999999999EiB"] {
            assert!(parse_size(bad, 1 << 30).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpus() {
        assert_eq!(cpu_count("2"), Ok(2));
        assert_eq!(cpu_count("0-3"), Ok(4));
        assert_eq!(cpu_count("0-1,3,3"), Ok(3));
        assert_eq!(cpu_count("5"), Ok(5));
        for bad in ["", "0", "a", "3-1", "1,,2"] {
            assert!(cpu_count(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn words() {
        assert_eq!(shell_words("-a b  -c").unwrap(), ["-a", "b", "-c"]);
        assert_eq!(shell_words(r#"-fw_cfg 'name=x,string=a b' "q\"x" c\ d"#).unwrap(), ["-fw_cfg", "name=x,string=a b", "q\"x", "c d"]);
        assert_eq!(shell_words("''").unwrap(), [""]);
        assert!(shell_words("'open").is_err());
        assert!(shell_words("x\\").is_err());
        assert!(shell_words("  ").unwrap().is_empty());
    }
}
