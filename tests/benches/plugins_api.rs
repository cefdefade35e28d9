//! Plugin costs through the real REST API of a real berthd (a plain program, not a
//! timed test). Needs a release berthd next to the bench binary:
//!
//!     cargo build --release -p berth-engine && cargo bench -p berth-tests --bench plugins_api
//!
//! Prints: instance create/update median with no plugins vs 3 validation plugins
//! (interleaved rounds), a listing of 500 instances with and without a plugin predicate,
//! loading cached plugins at daemon start, and the daemon's RSS around 10,000 calls to
//! the fault fixtures.

use std::time::{Duration, Instant};

use berth_tests::{wasm, Daemon};
use serde_json::json;

fn install(d: &Daemon, name: &str, path: &str, settings: serde_json::Value) {
    let bytes = std::fs::read(path).expect("plugin built");
    let r = d.raw("POST", &format!("/1.0/plugins?name={name}"), &[("content-type", "application/octet-stream")], bytes);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = d.req("PATCH", &format!("/1.0/plugins/{name}"), Some(settings));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

fn set(d: &Daemon, name: &str, settings: serde_json::Value) {
    let r = d.req("PATCH", &format!("/1.0/plugins/{name}"), Some(settings));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

fn remove(d: &Daemon, name: &str) {
    assert_eq!(d.req("DELETE", &format!("/1.0/plugins/{name}"), None).status, 200);
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[v.len() / 10], v[v.len() / 2], v[v.len() * 9 / 10])
}

fn row(what: &str, (p10, p50, p90): (Duration, Duration, Duration)) {
    println!("{what:<62} median {p50:>10.2?}   p10 {p10:>10.2?}   p90 {p90:>10.2?}");
}

fn timed(f: impl FnOnce() -> berth_tests::Resp, expect: u16) -> Duration {
    let start = Instant::now();
    let r = f();
    let t = start.elapsed();
    assert_eq!(r.status, expect, "{}", String::from_utf8_lossy(&r.body));
    t
}

fn daemon_pid(d: &Daemon) -> Option<u32> {
    let want = d.data_dir().to_string_lossy().into_owned();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("berthd") && cmd.contains(&want) && !cmd.contains(" plugin ") {
            return Some(pid);
        }
    }
    None
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

const VALIDATORS: [(&str, &str); 3] =
    [("limits", wasm::REQUIRE_LIMITS), ("nopriv", wasm::DENY_PRIVILEGED), ("names", wasm::NAME_POLICY)];

fn main() {
    let mut d = Daemon::start();
    println!("berthd {}", berth_tests::berthd_bin().display());

    // 1. Create and update, no plugins vs 3 validators, in interleaved rounds.
    let config: serde_json::Map<String, serde_json::Value> = (0..17)
        .map(|i| (format!("user.k{i}"), json!("v")))
        .chain([("limits.cpu".to_string(), json!("2")), ("limits.memory".to_string(), json!("1GiB"))])
        .collect();
    let (mut create0, mut create3, mut update0, mut update3) = (vec![], vec![], vec![], vec![]);
    let mut n = 0;
    let mut round_added = Vec::new();
    for round in 0..12 {
        let with = round % 2 == 1;
        if with {
            for (name, path) in VALIDATORS {
                install(&d, name, path, json!({"config": {"default": "[a-z][a-z0-9-]*"}}));
            }
        }
        for _ in 0..40 {
            n += 1;
            let name = format!("b{n}");
            let body = json!({"name": name, "source": {"type": "none"}, "config": config});
            let t = timed(|| d.req("POST", "/1.0/instances", Some(body.clone())), 202);
            if round >= 2 {
                if with { create3.push(t) } else { create0.push(t) }
            }
            let patch = json!({"config": {"user.k1": format!("v{n}")}});
            let t = timed(|| d.req("PATCH", &format!("/1.0/instances/{name}"), Some(patch)), 202);
            if round >= 2 {
                if with { update3.push(t) } else { update0.push(t) }
            }
        }
        if with {
            for (name, _) in VALIDATORS {
                remove(&d, name);
            }
            if round >= 2 {
                // This round against the one just before it (same load, roughly).
                let per = |v: &[Duration]| median(v[v.len() - 40..].to_vec()).1;
                round_added.push((
                    per(&create3).saturating_sub(per(&create0)),
                    per(&update3).saturating_sub(per(&update0)),
                ));
            }
        }
    }
    let (ca, ua): (Vec<Duration>, Vec<Duration>) = round_added.into_iter().unzip();
    let (ca, ua) = (median(ca), median(ua));
    println!("  added by 3 plugins, per pair of rounds: create median {:.2?} (min {:.2?}, max {:.2?}), update median {:.2?} (min {:.2?}, max {:.2?}), 5 pairs", ca.1, ca.0, ca.2, ua.1, ua.0, ua.2);
    let (c0, c3, u0, u3) = (median(create0), median(create3), median(update0), median(update3));
    row("POST /1.0/instances, no plugins (20 keys)", c0);
    row("POST /1.0/instances, 3 validation plugins", c3);
    row("PATCH /1.0/instances/N, no plugins", u0);
    row("PATCH /1.0/instances/N, 3 validation plugins", u3);
    println!("  added by 3 plugins: create {:?}, update {:?} (median vs median)", c3.1.saturating_sub(c0.1), u3.1.saturating_sub(u0.1));

    // 2. A listing of 500 instances, with and without a plugin predicate.
    for i in 0..500 - n.min(500) {
        let owner = if i % 2 == 0 { "alice" } else { "bob" };
        let body = json!({"name": format!("f{i}"), "source": {"type": "none"}, "config": {"user.owner": owner}});
        assert_eq!(d.req("POST", "/1.0/instances", Some(body)).status, 202);
    }
    let total = d.get("/1.0/instances")["metadata"].as_array().map(Vec::len).unwrap_or(0);
    let list = |d: &Daemon, q: &str| timed(|| d.req("GET", &format!("/1.0/instances?{q}"), None), 200);
    let plain = "recursion=1&filter=config.user.owner%20eq%20alice";
    let pred = "recursion=1&filter=plugin.owner%20eq%20alice";
    // Interleaved rounds (the machine is shared: load drifts within seconds): each round
    // lists with the owner plugin disabled, then enabled (visibility, then visibility +
    // predicate). Enabling/disabling is a settings update (hot, no recompilation).
    install(&d, "owner", wasm::OWNER, json!({}));
    let (mut base, mut vis, mut with, mut added) = (vec![], vec![], vec![], vec![]);
    for round in 0..12 {
        set(&d, "owner", json!({"enabled": false}));
        let b: Vec<Duration> = (0..8).map(|_| list(&d, plain)).collect();
        set(&d, "owner", json!({"enabled": true}));
        let v: Vec<Duration> = (0..8).map(|_| list(&d, plain)).collect();
        let w: Vec<Duration> = (0..8).map(|_| list(&d, pred)).collect();
        if round >= 2 {
            added.push(median(w.clone()).1.saturating_sub(median(b.clone()).1));
            base.extend(b);
            vis.extend(v);
            with.extend(w);
        }
    }
    row(&format!("GET {total} instances, filter config.user.owner, no plugin"), median(base));
    row(&format!("GET {total} instances, same filter, owner plugin (visibility)"), median(vis));
    row(&format!("GET {total} instances, filter plugin.owner eq alice"), median(with));
    let (a10, a50, a90) = median(added);
    println!("  added by the plugin (visibility + predicate), per round median vs median: median {a50:.2?}, p10 {a10:.2?}, p90 {a90:.2?} (10 rounds)");

    // 3. Loading cached plugins at start (5 restarts).
    for (name, path) in VALIDATORS {
        install(&d, name, path, json!({}));
    }
    let mut loads: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
    for _ in 0..5 {
        d.kill9();
        d.spawn();
        for p in d.get("/1.0/plugins?recursion=1")["metadata"].as_array().cloned().unwrap_or_default() {
            let us = p["load_time_us"].as_u64().unwrap_or(0);
            loads.entry(p["name"].as_str().unwrap_or("").to_string()).or_default().push(Duration::from_micros(us));
        }
    }
    for (name, v) in loads {
        let mut v = v;
        v.sort();
        println!("  start: plugin {name:<8} from_cache load over 5 restarts: median {:.2?}, min {:.2?}, max {:.2?}", v[v.len() / 2], v[0], v[v.len() - 1]);
    }
    for (name, _) in VALIDATORS {
        remove(&d, name);
    }
    remove(&d, "owner");

    // 4. RSS around 10,000 fault calls: 4 fail-open fault plugins, each listing calls each.
    for (name, path) in [
        ("panic", wasm::FIXTURE_PANIC),
        ("rec", wasm::FIXTURE_DEEP_RECURSION),
        ("bomb", wasm::FIXTURE_MEMORY_BOMB),
        ("spin", wasm::FIXTURE_INFINITE_LOOP),
    ] {
        install(&d, name, path, json!({"failure_policy": "fail-open", "limits": {"deadline_ms": 2, "memory_bytes": 4194304, "max_log_lines": 64, "max_violations": 256}}));
    }
    let pid = daemon_pid(&d).expect("berthd pid");
    let q = "recursion=0&project=default&filter=name%20eq%20b1";
    for _ in 0..100 {
        list(&d, q);
    }
    let before = rss_kib(pid);
    let start = Instant::now();
    for _ in 0..2500 {
        list(&d, q);
    }
    let after = rss_kib(pid);
    let failures: u64 = d.get("/1.0/plugins?recursion=1")["metadata"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["failures"].as_u64()).sum())
        .unwrap_or(0);
    println!(
        "2,500 listings x 4 fault plugins ({failures} failed calls in all) in {:.2?}: berthd RSS before {before} KiB, after {after} KiB ({:+} KiB)",
        start.elapsed(),
        after as i64 - before as i64
    );
}
