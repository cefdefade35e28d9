//! `berth-bench`: measures berthd and LXD side by side, in one run, over the same
//! client code (HTTP/1.1 over each unix socket), for the issue-2 performance targets.
//! Prints a markdown report on stdout; progress goes to stderr.
//!
//! Usage: `berth-bench --berthd target/release/berthd` (see bench/run.sh, which also
//! brings LXD up and down).

mod client;
mod daemon;
mod phases;
mod procfs;
mod report;
mod stats;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use daemon::Daemon;
use report::Report;

#[derive(Parser)]
#[command(name = "berth-bench", about = "berthd vs LXD: REST latency, RSS and start time")]
pub struct Args {
    /// The berthd binary to measure.
    #[arg(long, default_value = "target/release/berthd")]
    berthd: PathBuf,
    /// Extra environment for berthd, `KEY=VALUE` (repeatable), e.g. MALLOC_ARENA_MAX=1.
    #[arg(long = "berthd-env", value_name = "KEY=VALUE")]
    berthd_env: Vec<String>,
    /// berthd data directory; wiped at the start and at the end.
    #[arg(long, default_value = "/tmp/berth-bench")]
    berth_dir: PathBuf,
    /// LXD's unix socket.
    #[arg(long, default_value = "/var/lib/lxd/unix.socket")]
    lxd_socket: PathBuf,
    /// LXD's state directory (its database size goes into the report).
    #[arg(long, default_value = "/var/lib/lxd")]
    lxd_dir: PathBuf,
    /// How to exec LXD in the foreground (what the anchor's start-lxd.sh runs).
    #[arg(long, default_value = "/usr/bin/lxd --group root --logfile=/var/log/lxd/lxd.log")]
    lxd_exec: String,
    /// Measure berthd only.
    #[arg(long)]
    no_lxd: bool,
    /// Instance records to create (`source: none`).
    #[arg(long, default_value_t = 500)]
    instances: usize,
    /// Samples per list request.
    #[arg(long, default_value_t = 30)]
    samples: usize,
    /// Samples of `GET /1.0`.
    #[arg(long, default_value_t = 2000)]
    ping_samples: usize,
    /// Daemon restarts measured, empty and with the records.
    #[arg(long, default_value_t = 3)]
    restarts: usize,
    /// Seconds to let a daemon settle before reading its RSS.
    #[arg(long, default_value_t = 3)]
    settle: u64,
    /// Leave the bench instances in LXD (default: delete them).
    #[arg(long)]
    keep: bool,
}

fn env_header(args: &Args) -> Vec<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string()))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut h = vec![
        format!("date: {}", chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")),
        format!("machine: {cpu}, {cpus} CPUs, {mem} kB RAM, kernel {}", kernel.trim()),
        format!(
            "run: {} instance records, {} samples per list request, {} samples of GET /1.0, {} restarts; interleaved berthd/LXD request by request",
            args.instances, args.samples, args.ping_samples, args.restarts
        ),
        format!("load average at start: {}", procfs::loadavg()),
    ];
    if !args.berthd_env.is_empty() {
        h.push(format!("berthd environment: {}", args.berthd_env.join(" ")));
    }
    if !args.no_lxd {
        let db = args.lxd_dir.join("database");
        h.push(format!(
            "LXD database at start: {:.0} MiB in {} (dqlite replays its raft segments at start: LXD's start time and RSS grow with its history)",
            procfs::du(&db) as f64 / 1048576.0,
            db.display()
        ));
    }
    h
}

fn split_words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let berthd = std::fs::canonicalize(&args.berthd).with_context(|| format!("berthd binary {}", args.berthd.display()))?;
    let _ = std::fs::remove_dir_all(&args.berth_dir);
    std::fs::create_dir_all(&args.berth_dir)?;
    let data = args.berth_dir.join("data");
    let mut daemons = vec![Daemon::new(
        "berthd",
        data.join("unix.socket"),
        vec![berthd.display().to_string(), "--data-dir".into(), data.display().to_string()],
        args.berth_dir.join("berthd.log"),
    )];
    for kv in &args.berthd_env {
        let (k, v) = kv.split_once('=').with_context(|| format!("--berthd-env {kv}: expected KEY=VALUE"))?;
        daemons[0].env.push((k.to_string(), v.to_string()));
    }
    if !args.no_lxd {
        daemons.push(Daemon::new("LXD", args.lxd_socket.clone(), split_words(&args.lxd_exec), "/var/log/lxd/lxd.stdout".into()));
    }
    let mut report = Report::new(daemons.iter().map(|d| d.label).collect());
    report.header = env_header(&args);
    let result = phases::run(&args, &mut daemons, &mut report).await;
    let cleanup = phases::cleanup(&args, &mut daemons, &mut report).await;
    report.header.push(format!("load average at end: {}", procfs::loadavg()));
    println!("{}", report.markdown());
    result?;
    cleanup
}
