//! What /proc says about a daemon: resident memory of a process tree and CPU time.

use std::collections::HashMap;
use std::fs;

use anyhow::Context;

/// Memory of one process or a summed tree, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss_kb: u64,
    pub pss_kb: u64,
    pub procs: usize,
}

fn field_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.trim().trim_end_matches("kB").trim().parse().ok())
}

/// VmRSS (from status) and Pss (from smaps_rollup) of one process.
pub fn mem_of(pid: u32) -> anyhow::Result<Mem> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("pid {pid} is gone"))?;
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    Ok(Mem {
        rss_kb: field_kb(&status, "VmRSS:").unwrap_or(0),
        pss_kb: field_kb(&rollup, "Pss:").unwrap_or(0),
        procs: 1,
    })
}

/// `(pid, ppid, comm)` of every process.
fn all_procs() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // comm is in parentheses and may contain spaces: split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = stat[open + 1..close].to_string();
        let ppid = stat[close + 1..].split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        out.push((pid, ppid, comm));
    }
    out
}

/// The process and all its descendants, summed.
pub fn tree_mem(root: u32) -> anyhow::Result<Mem> {
    let procs = all_procs();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, ppid, _) in &procs {
        children.entry(*ppid).or_default().push(*pid);
    }
    let mut total = mem_of(root)?;
    let mut stack = children.get(&root).cloned().unwrap_or_default();
    while let Some(p) = stack.pop() {
        if let Ok(m) = mem_of(p) {
            total.rss_kb += m.rss_kb;
            total.pss_kb += m.pss_kb;
            total.procs += 1;
        }
        stack.extend(children.get(&p).cloned().unwrap_or_default());
    }
    Ok(total)
}

/// Pids whose comm is exactly `name`.
pub fn pids_named(name: &str) -> Vec<u32> {
    all_procs().into_iter().filter(|(_, _, c)| c == name).map(|(p, _, _)| p).collect()
}

/// CPU time per thread so far, in nanoseconds: the first field of each thread's
/// `schedstat` (ns precision, unlike the 10 ms ticks of `stat`).
pub fn cpu_threads(pid: u32) -> HashMap<u32, u64> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else { return HashMap::new() };
    dir.flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let ns = fs::read_to_string(t.path().join("schedstat")).ok()?.split_whitespace().next()?.parse().ok()?;
            Some((tid, ns))
        })
        .collect()
}

/// CPU used between two [`cpu_threads`] snapshots. Only threads alive at the end
/// count: a thread that exited in between (tokio retires idle blocking threads after
/// 10 s) would otherwise subtract its whole lifetime's CPU.
pub fn cpu_delta(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after.iter().map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0))).sum()
}

/// Size of a directory tree in bytes (files only).
pub fn du(path: &std::path::Path) -> u64 {
    let Ok(dir) = fs::read_dir(path) else { return 0 };
    dir.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Whether the pid still exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rfind(')').and_then(|i| s[i + 1..].split_whitespace().next()).is_some_and(|st| st != "Z"),
        Err(_) => false,
    }
}

/// The 1/5/15-minute load averages, as /proc/loadavg prints them.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        let m = mem_of(me).unwrap();
        assert!(m.rss_kb > 0);
        assert!(alive(me));
        let a = cpu_threads(me);
        // Busy for 30 ms, then sleep: schedstat is brought up to date at a switch.
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(30) {
            std::hint::black_box(t.elapsed());
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(cpu_delta(&a, &cpu_threads(me)) > 0);
        let mut gone = a.clone();
        gone.insert(u32::MAX, 1 << 40);
        assert_eq!(cpu_delta(&gone, &a), 0, "an exited thread must not count");
        assert!(tree_mem(me).unwrap().rss_kb >= m.rss_kb);
        assert_eq!(field_kb("VmRSS:\t  1234 kB\n", "VmRSS:"), Some(1234));
    }
}
