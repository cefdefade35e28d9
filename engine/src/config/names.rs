//! Name rules: instances (`ValidName`/`IsHostname`), snapshots and devices.

use super::ConfigError;

fn err(m: impl Into<String>) -> ConfigError {
    ConfigError::Other(m.into())
}

/// LXD `validate.IsHostname`, wrapped as ValidName: 1–63 of `[A-Za-z0-9-]`, not starting
/// with a digit or `-`, not ending with `-`; `/` is reserved for snapshots.
pub fn valid_instance_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(err("Name is required"));
    }
    if name.contains('/') {
        return Err(err("The character \"/\" is reserved for snapshots"));
    }
    let bad = |m: &str| Err(err(format!("Invalid instance name: {m}")));
    if name.len() > 63 {
        return bad("Name must be 1-63 characters long");
    }
    if name.starts_with('-') {
        return bad("Name must not start with \"-\" character");
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return bad("Name must not start with a number");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return bad("Name can only contain alphanumeric and hyphen characters");
    }
    if name.ends_with('-') {
        return bad("Name must not end with \"-\" character");
    }
    Ok(())
}

/// Snapshot names (the part after `/`): non-empty, no space and no `/`.
pub fn valid_snapshot_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(err("Invalid instance snapshot name: Name is required"));
    }
    if name.contains([' ', '/']) {
        return Err(err("Invalid instance snapshot name: Cannot contain space or / characters"));
    }
    if name == "." || name == ".." {
        return Err(err("Invalid instance snapshot name: Cannot be \".\" or \"..\""));
    }
    Ok(())
}

/// LXD `IsDeviceName`: 1–63 of `[/.\-:_A-Za-z0-9]`, not starting with `.`.
pub fn valid_device_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 63 {
        return Err(err(format!("Invalid device name {name:?}: Name must be 1-63 characters long")));
    }
    if name.starts_with('.') {
        return Err(err(format!("Invalid device name {name:?}: Name must not start with \".\" character")));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b':' | b'_')) {
        return Err(err(format!(
            "Invalid device name {name:?}: Name can only contain alphanumeric, forward slash, hyphen, colon, underscore and full stop characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names() {
        for ok in ["a", "c1", "my-container", "A-b-C", &"a".repeat(63)] {
            assert!(valid_instance_name(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "required"),
            ("1abc", "number"),
            ("-abc", "start with \"-\""),
            ("abc-", "end with \"-\""),
            ("a_b", "alphanumeric"),
            ("a.b", "alphanumeric"),
            ("a b", "alphanumeric"),
            ("a/b", "reserved for snapshots"),
            ("é", "alphanumeric"),
        ] {
            let e = valid_instance_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(valid_instance_name(&"a".repeat(64)).unwrap_err().to_string().contains("1-63"));
    }

    #[test]
    fn snapshot_names() {
        for ok in ["snap0", "my snap".replace(' ', "_").as_str(), "2024-01-01T00:00", "ü+%"] {
            assert!(valid_snapshot_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "..", "."] {
            assert!(valid_snapshot_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn device_names() {
        for ok in ["eth0", "root", "a/b", "gpu:0", "x_y-z.1", &"d".repeat(63)] {
            assert!(valid_device_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a b", "a@b", &"d".repeat(64)] {
            assert!(valid_device_name(bad).is_err(), "{bad:?}");
        }
    }
}
