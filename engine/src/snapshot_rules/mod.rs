//! Pure snapshot rules, as LXD has them: which snapshots a refresh copies or deletes,
//! the next `snap%d` name, `snapshots.expiry` and `snapshots.schedule`.

mod cron;
mod expiry;

use chrono::{DateTime, Utc};

pub use cron::{is_scheduled_now, CronSpec, Schedule};
pub use expiry::get_expiry;

/// Errors of the snapshot rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A bad `snapshots.expiry` value.
    #[error("invalid expiry expression {0:?}")]
    Expiry(String),
    /// A bad `snapshots.schedule` value.
    #[error("invalid schedule {spec:?}: {reason}")]
    Schedule { spec: String, reason: String },
    /// A bad `snapshots.pattern` value.
    #[error("invalid snapshot pattern {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },
}

/// LXD's default `snapshots.pattern`.
pub const DEFAULT_PATTERN: &str = "snap%d";

/// A snapshot as compared across pools for `copy --refresh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComparableSnapshot {
    /// Snapshot name without the parent.
    pub name: String,
    /// An identifier that survives copies (LXD uses the volatile UUID).
    pub id: String,
    /// Creation time.
    pub creation_date: DateTime<Utc>,
}

/// Returns (indexes of `source` to sync, indexes of `target` to delete), as LXD's
/// `CompareSnapshots`: a snapshot is synced if the target lacks it or has it with another
/// ID or creation date, and deleted from the target if the source lacks it or differs.
pub fn compare_snapshots(source: &[ComparableSnapshot], target: &[ComparableSnapshot]) -> (Vec<usize>, Vec<usize>) {
    let same = |a: &ComparableSnapshot, b: &ComparableSnapshot| a.id == b.id && a.creation_date == b.creation_date;
    let delete = target
        .iter()
        .enumerate()
        .filter(|(_, t)| !source.iter().any(|s| s.name == t.name && same(s, t)))
        .map(|(i, _)| i)
        .collect();
    let sync = source
        .iter()
        .enumerate()
        .filter(|(_, s)| !target.iter().any(|t| t.name == s.name && same(s, t)))
        .map(|(i, _)| i)
        .collect();
    (sync, delete)
}

/// The next snapshot name for `pattern` (LXD `NextSnapshotName` with the index query of
/// `GetNextInstanceSnapshotIndex`): `%d` becomes one more than the highest number already
/// used with that pattern; a pattern without `%d` is used as is, or gets `-%d` appended
/// when taken. Templated patterns (`{{ … }}`) are not supported.
pub fn next_snapshot_name(pattern: &str, existing: &[String]) -> Result<String, Error> {
    let pattern = if pattern.is_empty() { DEFAULT_PATTERN } else { pattern };
    let bad = |reason: &str| Error::Pattern { pattern: pattern.to_string(), reason: reason.to_string() };
    if pattern.contains("{{") || pattern.contains("{%") {
        return Err(bad("templated patterns are not supported"));
    }
    match pattern.matches("%d").count() {
        0 => {
            if !existing.iter().any(|e| e == pattern) {
                return Ok(pattern.to_string());
            }
            let with_index = format!("{pattern}-%d");
            Ok(with_index.replacen("%d", &next_index(&with_index, existing).to_string(), 1))
        }
        1 => Ok(pattern.replacen("%d", &next_index(pattern, existing).to_string(), 1)),
        _ => Err(bad("may contain '%d' only once")),
    }
}

/// One more than the highest `%d` value among names matching the pattern, like Go's
/// `fmt.Sscanf(name, pattern)` (which ignores trailing input once the pattern matched).
fn next_index(pattern: &str, existing: &[String]) -> i64 {
    let (prefix, suffix) = pattern.split_once("%d").unwrap_or((pattern, ""));
    let mut max = 0i64;
    for name in existing {
        let Some(rest) = name.strip_prefix(prefix) else { continue };
        let bytes = rest.as_bytes();
        let mut end = usize::from(matches!(bytes.first(), Some(b'+') | Some(b'-')));
        let digits_start = end;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
        }
        if end == digits_start {
            continue;
        }
        let Ok(num) = rest[..end].parse::<i64>() else { continue };
        if !rest[end..].starts_with(suffix) {
            continue;
        }
        if num >= max {
            max = num + 1;
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn snap(name: &str, id: &str, secs: i64) -> ComparableSnapshot {
        ComparableSnapshot { name: name.into(), id: id.into(), creation_date: Utc.timestamp_opt(secs, 0).unwrap() }
    }

    #[test]
    fn compare_snapshots_like_lxd() {
        let source = vec![snap("s0", "a", 1), snap("s1", "b", 2), snap("s3", "d", 4)];
        let target = vec![snap("s0", "a", 1), snap("s1", "x", 2), snap("s2", "c", 3), snap("s3", "d", 5)];
        let (sync, delete) = compare_snapshots(&source, &target);
        assert_eq!(sync, vec![1, 2], "s1 (other id) and s3 (other date)");
        assert_eq!(delete, vec![1, 2, 3], "s1, s2 (gone from source) and s3");
        assert_eq!(compare_snapshots(&source, &[]), (vec![0, 1, 2], vec![]));
        assert_eq!(compare_snapshots(&[], &target), (vec![], vec![0, 1, 2, 3]));
        assert_eq!(compare_snapshots(&source, &source), (vec![], vec![]));
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn next_snapshot_names() {
        assert_eq!(next_snapshot_name("snap%d", &[]).unwrap(), "snap0");
        assert_eq!(next_snapshot_name("", &names(&["snap0", "snap1"])).unwrap(), "snap2");
        assert_eq!(next_snapshot_name("snap%d", &names(&["snap5", "other", "snap2"])).unwrap(), "snap6");
        assert_eq!(next_snapshot_name("snap%d", &names(&["snap-3"])).unwrap(), "snap0");
        assert_eq!(next_snapshot_name("snap%d", &names(&["snap1a"])).unwrap(), "snap2", "Sscanf ignores trailing input");
        assert_eq!(next_snapshot_name("backup-%d-daily", &names(&["backup-4-daily", "backup-9-weekly", "snap7"])).unwrap(), "backup-5-daily");
        assert_eq!(next_snapshot_name("mysnap", &[]).unwrap(), "mysnap");
        assert_eq!(next_snapshot_name("mysnap", &names(&["mysnap"])).unwrap(), "mysnap-0");
        assert_eq!(next_snapshot_name("mysnap", &names(&["mysnap", "mysnap-0", "mysnap-3"])).unwrap(), "mysnap-4");
        assert!(next_snapshot_name("a%db%d", &[]).is_err());
        assert!(next_snapshot_name("{{ creation_date|date:'2006' }}", &[]).is_err());
    }
}
