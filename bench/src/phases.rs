//! The phases of one run. Every timed request alternates between the daemons, so a
//! load spike on this shared machine hits both sides of a comparison alike.

use std::time::Duration;

use anyhow::bail;
use hyper::Method;
use serde_json::json;

use crate::daemon::Daemon;
use crate::report::Report;
use crate::stats::{ms, Summary};
use crate::{procfs, Args};

/// Names of the records the bench creates (and the only ones it deletes).
const PREFIX: &str = "bench-";

fn log(msg: impl AsRef<str>) {
    eprintln!("[{}] {}", chrono::Utc::now().format("%H:%M:%S"), msg.as_ref());
}

fn summaries(v: &[Vec<f64>]) -> Vec<Option<Summary>> {
    v.iter().map(|s| Summary::of(s)).collect()
}

/// Names of the instances in the default project.
async fn instance_names(d: &mut Daemon) -> anyhow::Result<Vec<String>> {
    let v = d.conn().await?.get_ok("/1.0/instances").await?.json();
    Ok(v["metadata"]
        .as_array()
        .map(|a| a.iter().filter_map(|u| u.as_str()?.rsplit('/').next().map(str::to_string)).collect())
        .unwrap_or_default())
}

/// Deletes every bench record; returns the per-delete times (ms).
async fn delete_bench_records(d: &mut Daemon) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::new();
    for name in instance_names(d).await?.into_iter().filter(|n| n.starts_with(PREFIX)) {
        times.push(ms(d.conn().await?.mutate(Method::DELETE, &format!("/1.0/instances/{name}"), None).await?));
    }
    Ok(times)
}

/// berthd on a fresh data dir; LXD up, with no instances but possibly our leftovers.
async fn prepare(daemons: &mut [Daemon], report: &mut Report) -> anyhow::Result<()> {
    for d in daemons.iter_mut() {
        if d.label == "berthd" {
            let t = d.start(0).await?;
            report.note(format!("berthd first start on a new data dir: first 200 after {:.1} ms", ms(t.first_ok)));
            continue;
        }
        if !d.is_up().await {
            log(format!("{} is not up: starting it", d.label));
            d.start(0).await?;
        }
        let left = delete_bench_records(d).await?;
        if !left.is_empty() {
            log(format!("{}: deleted {} leftover bench records", d.label, left.len()));
        }
        let others = instance_names(d).await?;
        if !others.is_empty() {
            bail!("{} has {} instances that are not the bench's (e.g. {}); refusing to measure", d.label, others.len(), others[0]);
        }
    }
    Ok(())
}

/// Restarts every daemon `args.restarts` times, alternating, and times each start.
async fn starts(args: &Args, daemons: &mut [Daemon], report: &mut Report, expect: usize) -> anyhow::Result<()> {
    let label = if expect == 0 { "empty".to_string() } else { format!("{expect} records") };
    log(format!("restarts, {label} (load {})", procfs::loadavg()));
    let mut first = vec![Vec::new(); daemons.len()];
    let mut listed = vec![Vec::new(); daemons.len()];
    let mut ready = vec![Vec::new(); daemons.len()];
    for _ in 0..args.restarts {
        for (i, d) in daemons.iter_mut().enumerate() {
            d.stop().await?;
            // Let the other daemon's post-start work (and the page cache) calm down.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let t = d.start(expect).await?;
            let internal = t.internal_ready.map_or("-".to_string(), |r| format!("{:.1}", ms(r)));
            log(format!("  {} answers in {:.1} ms, lists in {:.1} ms, /internal/ready {internal} ms", d.label, ms(t.first_ok), ms(t.listed)));
            first[i].push(ms(t.first_ok));
            listed[i].push(ms(t.listed));
            ready[i].extend(t.internal_ready.map(ms));
        }
    }
    let goal = if expect > 0 { Some(100.0) } else { None };
    report.add(format!("start → first `GET /1.0` 200, {label}"), "ms", goal, summaries(&first));
    report.add(format!("start → `GET /1.0/instances` lists all, {label}"), "ms", None, summaries(&listed));
    if ready.iter().any(|r| !r.is_empty()) {
        report.add(format!("start → `GET /internal/ready` 200 (`lxd waitready`), {label}"), "ms", None, summaries(&ready));
    }
    report.note(format!("load average after the restarts, {label}: {}", procfs::loadavg()));
    Ok(())
}

/// Resident memory of each daemon's process tree after `args.settle` idle seconds.
async fn rss(args: &Args, daemons: &mut [Daemon], report: &mut Report, label: &str) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let mut rss = Vec::new();
    let mut pss = Vec::new();
    for d in daemons.iter_mut() {
        let pid = d.pid().await?;
        let m = procfs::tree_mem(pid)?;
        rss.push(Summary::of(&[m.rss_kb as f64 / 1024.0]));
        pss.push(format!("{} {:.1} MiB ({} process{})", d.label, m.pss_kb as f64 / 1024.0, m.procs, if m.procs == 1 { "" } else { "es" }));
    }
    report.add(format!("RSS, {label}"), "MiB", Some(15.0), rss);
    let mut note = format!("PSS, {label}: {}", pss.join(", "));
    let lxcfs = procfs::pids_named("lxcfs");
    if daemons.len() > 1 && !lxcfs.is_empty() {
        let kb: u64 = lxcfs.iter().filter_map(|p| procfs::mem_of(*p).ok()).map(|m| m.rss_kb).sum();
        note.push_str(&format!("; lxcfs (separate, not counted above) RSS {:.1} MiB", kb as f64 / 1024.0));
    }
    report.note(note);
    Ok(())
}

/// Creates `args.instances` records in every daemon, alternating.
async fn populate(args: &Args, daemons: &mut [Daemon], report: &mut Report) -> anyhow::Result<()> {
    log(format!("creating {} records in each daemon (load {})", args.instances, procfs::loadavg()));
    let mut times = vec![Vec::new(); daemons.len()];
    for n in 1..=args.instances {
        let body = json!({"name": format!("{PREFIX}{n}"), "source": {"type": "none"}});
        for (i, d) in daemons.iter_mut().enumerate() {
            times[i].push(ms(d.conn().await?.mutate(Method::POST, "/1.0/instances", Some(&body)).await?));
        }
        if n % 100 == 0 {
            log(format!("  {n} created"));
        }
    }
    report.add("create one record (`POST /1.0/instances` source none + operation wait)", "ms", None, summaries(&times));
    Ok(())
}

/// Times `uri` `count` times per daemon after a warm-up, alternating between the
/// daemons every `block` requests (1: request by request; larger: back-to-back runs,
/// as a client doing many calls in a row sees them). Notes the response size and
/// returns the latencies and the daemons' CPU time per request.
async fn timed_gets(
    daemons: &mut [Daemon],
    report: &mut Report,
    uri: &str,
    count: usize,
    block: usize,
) -> anyhow::Result<(Vec<Vec<f64>>, Vec<Option<Summary>>)> {
    let mut pids = Vec::new();
    let mut sizes = Vec::new();
    for d in daemons.iter_mut() {
        for _ in 0..5 {
            d.conn().await?.get_ok(uri).await?;
        }
        pids.push(d.pid().await?);
        let size = d.conn().await?.get_ok(uri).await?.body.len();
        sizes.push(format!("{} {size} B", d.label));
    }
    let load = procfs::loadavg();
    let cpu0: Vec<_> = pids.iter().map(|p| procfs::cpu_threads(*p)).collect();
    let mut times = vec![Vec::with_capacity(count); daemons.len()];
    let block = block.clamp(1, count.max(1));
    for _ in 0..count.div_ceil(block) {
        for (i, d) in daemons.iter_mut().enumerate() {
            let c = d.conn().await?;
            for _ in 0..block.min(count - times[i].len()) {
                times[i].push(ms(c.get_ok(uri).await?.elapsed));
            }
        }
    }
    let cpu: Vec<Option<Summary>> = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| Summary::of(&[procfs::cpu_delta(c0, &procfs::cpu_threads(*p)) as f64 / 1e6 / count as f64]))
        .collect();
    report.note(format!("`{uri}`: response body {}; load average before {load}, after {}", sizes.join(", "), procfs::loadavg()));
    Ok((times, cpu))
}

/// The request latencies on one kept-alive connection per daemon.
async fn requests(args: &Args, daemons: &mut [Daemon], report: &mut Report) -> anyhow::Result<()> {
    let n = args.instances;
    log(format!("GET /1.0 x{} (load {})", args.ping_samples, procfs::loadavg()));
    let (t, cpu) = timed_gets(daemons, report, "/1.0", args.ping_samples, 1).await?;
    report.add(format!("`GET /1.0`, kept-alive connection, {n} records, interleaved"), "ms", Some(0.1), summaries(&t));
    report.add("… daemon CPU time per request (mean)", "ms", None, cpu);
    let (t, cpu) = timed_gets(daemons, report, "/1.0", args.ping_samples, 100).await?;
    report.add(format!("`GET /1.0`, kept-alive connection, {n} records, back-to-back blocks of 100"), "ms", Some(0.1), summaries(&t));
    report.add("… daemon CPU time per request (mean)", "ms", None, cpu);
    let lists: [(&str, Option<f64>); 3] =
        [("/1.0/instances", None), ("/1.0/instances?recursion=1", Some(8.0)), ("/1.0/instances?recursion=2", Some(15.0))];
    for (uri, goal) in lists {
        log(format!("GET {uri} x{} (load {})", args.samples, procfs::loadavg()));
        let (t, cpu) = timed_gets(daemons, report, uri, args.samples, 1).await?;
        report.add(format!("`GET {uri}`, {n} records"), "ms", goal, summaries(&t));
        report.add("… daemon CPU time per request (mean)", "ms", None, cpu);
    }
    Ok(())
}

/// The volatile keys LXD 5.0.2 writes into an empty (`source: none`) container, with
/// values of the same length, so berthd's records can be given LXD's size.
fn lxd_volatile_keys(n: usize) -> serde_json::Value {
    let idmap = r#"[{"Isuid":true,"Isgid":false,"Hostid":100000,"Nsid":0,"Maprange":10000001},{"Isuid":false,"Isgid":true,"Hostid":100000,"Nsid":0,"Maprange":10000001}]"#;
    json!({
        "volatile.apply_template": "create",
        "volatile.cloud-init.instance-id": format!("00000000-0000-4000-8000-{n:012}"),
        "volatile.idmap.base": "0",
        "volatile.idmap.next": idmap,
        "volatile.last_state.idmap": "[]",
    })
}

/// Gives berthd's records LXD's shape (a root disk in the default profile, LXD's
/// volatile keys) and times the recursive lists again, so the comparison also holds
/// at equal response size. Only the first daemon (berthd) is changed.
async fn shaped(args: &Args, daemons: &mut [Daemon], report: &mut Report) -> anyhow::Result<()> {
    let n = args.instances;
    log(format!("shaping berthd's records like LXD's (load {})", procfs::loadavg()));
    let b = daemons.first_mut().ok_or_else(|| anyhow::anyhow!("no daemon"))?;
    let c = b.conn().await?;
    let root = json!({"devices": {"root": {"path": "/", "pool": "default", "type": "disk"}}});
    c.mutate(Method::PATCH, "/1.0/profiles/default", Some(&root)).await?;
    for i in 1..=n {
        let body = json!({"config": lxd_volatile_keys(i)});
        c.mutate(Method::PATCH, &format!("/1.0/instances/{PREFIX}{i}"), Some(&body)).await?;
    }
    for (uri, goal) in [("/1.0/instances?recursion=1", Some(8.0)), ("/1.0/instances?recursion=2", Some(15.0))] {
        log(format!("GET {uri} x{} (load {})", args.samples, procfs::loadavg()));
        let (t, cpu) = timed_gets(daemons, report, uri, args.samples, 1).await?;
        report.add(format!("`GET {uri}`, {n} records, berthd's shaped like LXD's"), "ms", goal, summaries(&t));
        report.add("… daemon CPU time per request (mean)", "ms", None, cpu);
    }
    Ok(())
}

/// The whole measurement, in order.
pub async fn run(args: &Args, daemons: &mut [Daemon], report: &mut Report) -> anyhow::Result<()> {
    prepare(daemons, report).await?;
    starts(args, daemons, report, 0).await?;
    rss(args, daemons, report, "idle after start, empty").await?;
    populate(args, daemons, report).await?;
    requests(args, daemons, report).await?;
    rss(args, daemons, report, &format!("{} records, after the list requests", args.instances)).await?;
    starts(args, daemons, report, args.instances).await?;
    rss(args, daemons, report, &format!("idle after start, {} records", args.instances)).await?;
    shaped(args, daemons, report).await?;
    Ok(())
}

/// Deletes the bench records from LXD (unless `--keep`) and stops berthd. LXD itself
/// is left running: bench/run.sh stops it with the anchor's stop-lxd.sh.
pub async fn cleanup(args: &Args, daemons: &mut [Daemon], report: &mut Report) -> anyhow::Result<()> {
    let mut first_err = None;
    for d in daemons.iter_mut() {
        if d.label == "berthd" {
            if let Err(e) = d.stop().await {
                first_err.get_or_insert(e);
            }
            let _ = std::fs::remove_dir_all(args.berth_dir.join("data"));
            continue;
        }
        if args.keep {
            continue;
        }
        if !d.is_up().await {
            if let Err(e) = d.start(0).await {
                first_err.get_or_insert(e);
                continue;
            }
        }
        log(format!("deleting the bench records from {}", d.label));
        match delete_bench_records(d).await {
            Ok(t) if !t.is_empty() => report.note(format!(
                "{} delete one record (`DELETE` + operation wait): median {:.1} ms over {}",
                d.label,
                Summary::of(&t).map_or(0.0, |s| s.median),
                t.len()
            )),
            Ok(_) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}
