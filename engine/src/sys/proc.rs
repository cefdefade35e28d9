//! Small /proc readers: process start time (to tell a pid from a recycled one) and
//! the process tree of a pid.

use std::io;
use std::path::Path;

/// Field 22 of /proc/<pid>/stat: start time in clock ticks since boot.
pub fn start_time(pid: i32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))
}

/// Parses the start time out of a stat line (the comm field may contain spaces and `)`).
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")" the fields start at field 3 (state); starttime is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Parent pid of `pid` from /proc/<pid>/stat.
pub fn parent_pid(pid: i32) -> io::Result<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = text.rfind(')').map(|i| &text[i + 1..]).unwrap_or("");
    rest.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))
}

/// Whether `/proc/<pid>` exists.
pub fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_comm() {
        let line = "1234 (we ird) proc)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(line), Some(987654));
    }

    #[test]
    fn own_start_time_is_stable() {
        let me = std::process::id() as i32;
        let a = start_time(me).unwrap();
        let b = start_time(me).unwrap();
        assert_eq!(a, b);
        assert!(parent_pid(me).unwrap() > 0);
    }
}
