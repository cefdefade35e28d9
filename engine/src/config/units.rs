//! Byte sizes and booleans with LXD's semantics (`shared/units`, `shared.IsTrue`), public
//! so the cgroup code and the SDK read limits exactly as validation accepted them.

use super::ConfigError;

/// LXD `units.ParseByteSizeString`: digits then an optional unit among `B`, ` bytes`,
/// `kB MB GB TB PB EB` (powers of 1000) and `KiB MiB GiB TiB PiB EiB` (powers of 1024).
/// The empty string is 0. No sign, no fraction, no spaces (except the ` bytes` unit).
pub fn parse_byte_size(input: &str) -> Result<u64, ConfigError> {
    if input.is_empty() {
        return Ok(0);
    }
    let split = input.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(input.len());
    if split == 0 {
        return Err(ConfigError::Other(format!("Invalid value: {input}")));
    }
    let (digits, suffix) = input.split_at(split);
    let value: i64 = digits
        .parse()
        .map_err(|_| ConfigError::Other(format!("Invalid integer: {input}")))?;
    let mult: i64 = match suffix {
        "" | "B" | " bytes" => 1,
        "kB" => 1000,
        "MB" => 1000_i64.pow(2),
        "GB" => 1000_i64.pow(3),
        "TB" => 1000_i64.pow(4),
        "PB" => 1000_i64.pow(5),
        "EB" => 1000_i64.pow(6),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "PiB" => 1 << 50,
        "EiB" => 1 << 60,
        _ => return Err(ConfigError::Other(format!("Invalid value: {input}"))),
    };
    let bytes = value
        .checked_mul(mult)
        .ok_or_else(|| ConfigError::Other(format!("Overflow multiplying {value} with {mult}")))?;
    // Both factors are non-negative, so the product is too.
    Ok(bytes.unsigned_abs())
}

pub use super::validators::{is_false, is_true};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_port_lxd_is_size_vectors() {
        for (v, ok) in [
            ("1KiB", true),
            ("1024", true),
            ("1MB", true),
            ("1GB", true),
            ("1PiB", true),
            ("-1KiB", false),
            ("abc", false),
            ("1.5KiB", false),
            ("1,5KiB", false),
        ] {
            assert_eq!(parse_byte_size(v).is_ok(), ok, "{v}");
        }
    }

    #[test]
    fn byte_size_values() {
        assert_eq!(parse_byte_size("").unwrap(), 0);
        assert_eq!(parse_byte_size("512MB").unwrap(), 512_000_000);
        assert_eq!(parse_byte_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_byte_size("100kB").unwrap(), 100_000);
        assert_eq!(parse_byte_size("7B").unwrap(), 7);
        assert_eq!(parse_byte_size("7 bytes").unwrap(), 7);
        assert_eq!(parse_byte_size("2EiB").unwrap(), 2 << 60);
        assert!(parse_byte_size("100KB").is_err(), "KB is not an LXD unit (kB is)");
        assert!(parse_byte_size("1 GiB").is_err());
        assert!(parse_byte_size("8EiB").is_err(), "overflow");
        assert!(parse_byte_size("GiB").is_err());
    }

    #[test]
    fn truthiness() {
        for t in ["true", "TRUE", "1", "yes", "On"] {
            assert!(is_true(t), "{t}");
            assert!(!is_false(t), "{t}");
        }
        for f in ["false", "0", "no", "OFF"] {
            assert!(is_false(f), "{f}");
            assert!(!is_true(f), "{f}");
        }
        assert!(!is_true("") && !is_false(""));
        assert!(!is_true("maybe"));
    }
}
