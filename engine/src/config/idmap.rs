//! `raw.idmap` (LXD `shared/idmap` ParseRawIdmap) and the unprivileged-only policy.

use super::{ConfigError, IdmapEntry};

/// Parses `HOST[-END]` into (base, size).
fn range(r: &str, line: &str) -> Result<(u64, u64), ConfigError> {
    let bad = || ConfigError::Other(format!("Invalid ID map range {r:?} in line {line:?}"));
    let mut parts = r.split('-');
    let base_s = parts.next().unwrap_or("");
    let end_s = parts.next();
    if parts.next().is_some() {
        return Err(bad());
    }
    let num = |s: &str| -> Result<u64, ConfigError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<u64>().map_err(|_| bad())
    };
    let base = num(base_s)?;
    let size = match end_s {
        None => 1,
        Some(e) => {
            let end = num(e)?;
            if end < base {
                return Err(bad());
            }
            end - base + 1
        }
    };
    Ok((base, size))
}

fn overlaps(a_start: u64, a_size: u64, b_start: u64, b_size: u64) -> bool {
    a_start < b_start.saturating_add(b_size) && b_start < a_start.saturating_add(a_size)
}

/// ParseRawIdmap: one `both|uid|gid HOST[-END] NS[-END]` entry per line (empty lines
/// skipped); both ranges must be the same size. Entries of the same kind may not overlap
/// on the host side nor on the container side (LXD splits some overlaps; berth refuses).
pub fn parse_raw_idmap(value: &str) -> Result<Vec<IdmapEntry>, ConfigError> {
    let mut out: Vec<IdmapEntry> = Vec::new();
    for line in value.split('\n') {
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() != 3 {
            return Err(ConfigError::Other(format!("Invalid ID map line {line:?}")));
        }
        let (host_id, host_size) = range(fields[1], line)?;
        let (ns_id, ns_size) = range(fields[2], line)?;
        if host_size != ns_size {
            return Err(ConfigError::Other(format!("The ID map ranges are of different sizes {line:?}")));
        }
        let (is_uid, is_gid) = match fields[0] {
            "both" => (true, true),
            "uid" => (true, false),
            "gid" => (false, true),
            _ => return Err(ConfigError::Other(format!("Invalid ID map type {line:?}"))),
        };
        let entry = IdmapEntry { is_uid, is_gid, host_id, ns_id, range: host_size };
        for e in &out {
            let same_kind = (e.is_uid && entry.is_uid) || (e.is_gid && entry.is_gid);
            if !same_kind {
                continue;
            }
            if overlaps(e.host_id, e.range, entry.host_id, entry.range) {
                return Err(ConfigError::Other(format!("Host ID ranges overlap in line {line:?}")));
            }
            if overlaps(e.ns_id, e.range, entry.ns_id, entry.range) {
                return Err(ConfigError::Other(format!("Container ID ranges overlap in line {line:?}")));
            }
        }
        out.push(entry);
    }
    Ok(out)
}

/// AllowedUnprivilegedOnlyMap: a raw.idmap that maps host id 0 is refused.
pub fn allowed_unprivileged_only_map(value: &str) -> Result<(), ConfigError> {
    for e in parse_raw_idmap(value)? {
        if e.host_id == 0 {
            return Err(ConfigError::Other(
                "Cannot map root user into container as berth was configured to only allow unprivileged containers"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Whether `BERTH_UNPRIVILEGED_ONLY` is true (LXD's `LXD_UNPRIVILEGED_ONLY`): then
/// validation refuses privileged containers, raw.idmap mapping host root, and
/// `lxc.idmap`/`lxc.id_map`/`lxc.include` in raw.lxc.
pub fn unprivileged_only() -> bool {
    std::env::var("BERTH_UNPRIVILEGED_ONLY").map(|v| super::is_true(&v)).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(is_uid: bool, is_gid: bool, host_id: u64, ns_id: u64, range: u64) -> IdmapEntry {
        IdmapEntry { is_uid, is_gid, host_id, ns_id, range }
    }

    #[test]
    fn parses_all_kinds() {
        let got = parse_raw_idmap("both 1000 70000\nuid 50-60 500-510\ngid 100000-165535 0-65535\n").unwrap();
        assert_eq!(
            got,
            vec![e(true, true, 1000, 70000, 1), e(true, false, 50, 500, 11), e(false, true, 100000, 0, 65536)]
        );
        assert_eq!(parse_raw_idmap("").unwrap(), vec![]);
    }

    #[test]
    fn refuses_bad_lines() {
        for bad in [
            "both 1000",
            "both 1000 1000 1000",
            "both  1000 1000",
            "user 1000 1000",
            "uid 1-2-3 1",
            "uid a 1",
            "uid 5-4 5-4",
            "uid 1-10 1-9",
            "uid -1 1",
            "uid 1000 1000\nuid 1000 2000",
            "uid 1000 1000\nboth 2000 1000",
            "both 10-20 10-20\ngid 15 100",
        ] {
            assert!(parse_raw_idmap(bad).is_err(), "{bad:?}");
        }
        let err = parse_raw_idmap("uid 1-10 1-9").unwrap_err().to_string();
        assert!(err.contains("different sizes"), "{err}");
        // Different kinds may share ids.
        assert!(parse_raw_idmap("uid 1000 1000\ngid 1000 1000").is_ok());
    }

    #[test]
    fn unprivileged_only_map_refuses_host_root() {
        assert!(allowed_unprivileged_only_map("both 1000 0").is_ok());
        let err = allowed_unprivileged_only_map("both 0 0").unwrap_err().to_string();
        assert!(err.contains("Cannot map root user"), "{err}");
        assert!(allowed_unprivileged_only_map("gid 0-10 1000-1010").is_err());
        assert!(allowed_unprivileged_only_map("bogus").is_err());
    }
}
