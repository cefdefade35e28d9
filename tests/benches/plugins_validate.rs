//! The daemon's plugin validation path, in-process (criterion): the same instance
//! create/update input through `Daemon::plugin_validate_instance` with no plugins and
//! with the 3 validation plugins of `plugins_api` (require-limits, deny-privileged,
//! name-policy). No database commit is involved, so what differs is the plugin part.
//!
//!     cargo bench -p berth-tests --bench plugins_validate
//!
//! Two spacings: back to back (the pre-instantiation thread cannot keep up, calls
//! instantiate inline), and 1 ms apart like REST requests (every call finds a fresh
//! instance made ahead of time). Only the call is timed.

use std::time::{Duration, Instant};

use berth_engine::daemon::plugins::SettingsRecord;
use berth_engine::daemon::Daemon;
use berth_engine::events::EventHub;
use berth_engine::model::InstanceRecord;
use berth_tests::wasm;
use criterion::{criterion_group, criterion_main, Criterion};

const VALIDATORS: [(&str, &str); 3] =
    [("limits", wasm::REQUIRE_LIMITS), ("nopriv", wasm::DENY_PRIVILEGED), ("names", wasm::NAME_POLICY)];

/// The create body of `plugins_api`: 17 user keys, limits.cpu and limits.memory.
fn record(name: &str) -> InstanceRecord {
    let config = (0..17)
        .map(|i| (format!("user.k{i}"), "v".to_string()))
        .chain([("limits.cpu".to_string(), "2".to_string()), ("limits.memory".to_string(), "1GiB".to_string())])
        .collect();
    let now = chrono::Utc::now();
    InstanceRecord {
        name: name.to_string(),
        project: "default".to_string(),
        instance_type: berth_engine::config::InstanceType::Container,
        architecture: "x86_64".to_string(),
        config,
        devices: Default::default(),
        profiles: vec!["default".to_string()],
        ephemeral: false,
        stateful: false,
        description: String::new(),
        created_at: now,
        last_used_at: now,
    }
}

fn daemon(dir: &std::path::Path, plugins: bool) -> Daemon {
    let d = Daemon::open(dir, EventHub::new()).expect("daemon");
    if plugins {
        for (name, path) in VALIDATORS {
            let bytes = std::fs::read(path).expect("plugin built");
            d.install_plugin(name, &bytes).expect("install");
        }
        let mut s = SettingsRecord::default();
        s.config.insert("default".into(), "[a-z][a-z0-9-]*".into());
        d.update_plugin("names", s).expect("settings");
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

/// Times `iters` calls of `f`, each preceded (untimed) by `gap`.
fn spaced(iters: u64, gap: Duration, mut f: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        let t = Instant::now();
        f();
        total += t.elapsed();
    }
    total
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _enter = rt.enter();
    let tmp = tempfile::tempdir().expect("tempdir");
    let none = daemon(&tmp.path().join("none"), false);
    let three = daemon(&tmp.path().join("three"), true);
    let new = record("bench-1");
    let previous = record("bench-1");
    let mut changed = previous.clone();
    changed.config.insert("user.k1".into(), "v2".into());

    // The plugins must really run and allow this input.
    assert!(three.plugin_validate_instance(new.clone(), None).is_ok());
    assert!(three.plugin_validate_instance(changed.clone(), Some(&previous)).is_ok());
    let mut bad = new.clone();
    bad.config.remove("limits.cpu");
    assert!(three.plugin_validate_instance(bad, None).is_err(), "require-limits must deny");

    for (gap, label) in [(Duration::ZERO, "back-to-back"), (Duration::from_millis(1), "1ms-apart")] {
        let mut g = c.benchmark_group(format!("validate/{label}"));
        g.sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_millis(600));
        for (plugins, d) in [("none", &none), ("3-plugins", &three)] {
            g.bench_function(format!("create/{plugins}"), |b| {
                b.iter_custom(|iters| {
                    spaced(iters, gap, || {
                        d.plugin_validate_instance(new.clone(), None).expect("allowed");
                    })
                })
            });
            g.bench_function(format!("update/{plugins}"), |b| {
                b.iter_custom(|iters| {
                    spaced(iters, gap, || {
                        d.plugin_validate_instance(changed.clone(), Some(&previous)).expect("allowed");
                    })
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
