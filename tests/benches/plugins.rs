//! Plugin host measurements (a plain program, not a timed test):
//!
//!     cargo bench -p berth-tests --bench plugins
//!
//! Prints: one instance validation with 3 plugins vs none, a predicate over
//! 500 views, installing a plugin from the on-disk cache, and RSS before and
//! after 10,000 calls to the misbehaving fixtures.

use std::time::{Duration, Instant};

use berth_plugin_host::*;
use berth_tests::wasm;

/// Median per-iteration time of `samples` batches of `iters` runs.
fn measure(samples: usize, iters: usize, mut f: impl FnMut()) -> (Duration, Duration, Duration) {
    for _ in 0..iters.min(50) {
        f();
    }
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed() / iters as u32
        })
        .collect();
    times.sort();
    (
        times[samples / 10],
        times[samples / 2],
        times[samples * 9 / 10],
    )
}

/// Percentiles of `n` single timed calls, each after an untimed 1 ms pause.
fn spaced(n: usize, mut f: impl FnMut()) -> (Duration, Duration, Duration) {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(1));
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[n / 10], times[n / 2], times[n * 9 / 10])
}

fn row(what: &str, (p10, p50, p90): (Duration, Duration, Duration)) {
    println!("{what:<58} median {p50:>11.2?}   p10 {p10:>11.2?}   p90 {p90:>11.2?}");
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn view(name: &str, config: &[(&str, &str)]) -> InstanceView {
    let mut v = InstanceView::new("default", name);
    v.config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.expanded_config = v.config.clone();
    v
}

fn settings(config: &[(&str, &str)]) -> PluginSettings {
    PluginSettings {
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..PluginSettings::default()
    }
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cache = dir.path().join("cache");
    let read = |p: &str| std::fs::read(p);

    // 1. One instance validation: no plugins vs three.
    let host = PluginHost::new(&cache)?;
    let mut config: Vec<(String, String)> = (0..17)
        .map(|i| (format!("user.k{i}"), "v".to_string()))
        .collect();
    config.extend(
        [
            ("limits.cpu", "2"),
            ("limits.memory", "1GiB"),
            ("security.nesting", "false"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let mut v = view("web-1", &[]);
    v.config = config.into_iter().collect();
    v.expanded_config = v.config.clone();
    let req = InstanceRequest {
        op: InstanceOp::Create,
        view: v,
    };
    row(
        "validate_instance, no plugins (20 keys)",
        measure(50, 2000, || {
            host.validate_instance(&req).ok();
        }),
    );
    host.install(
        "limits",
        &read(wasm::REQUIRE_LIMITS)?,
        PluginSettings::default(),
    )?;
    host.install(
        "nopriv",
        &read(wasm::DENY_PRIVILEGED)?,
        PluginSettings::default(),
    )?;
    host.install(
        "names",
        &read(wasm::NAME_POLICY)?,
        settings(&[("default", "[a-z][a-z0-9-]*")]),
    )?;
    assert!(host.validate_instance(&req).is_ok());
    row(
        "validate_instance, 3 plugins (allow, 20 keys)",
        measure(30, 100, || {
            host.validate_instance(&req).ok();
        }),
    );

    // 1b. Each validator alone, back to back and 1 ms apart (as requests arrive; the
    // pre-instantiation thread then has a fresh instance ready for every call).
    for (name, path, cfg) in [
        ("limits", wasm::REQUIRE_LIMITS, &[][..]),
        ("nopriv", wasm::DENY_PRIVILEGED, &[][..]),
        ("names", wasm::NAME_POLICY, &[("default", "[a-z][a-z0-9-]*")][..]),
    ] {
        let one = PluginHost::new(&cache)?;
        one.install(name, &read(path)?, settings(cfg))?;
        std::thread::sleep(Duration::from_millis(20));
        row(&format!("validate_instance, {name} alone, back to back"), measure(20, 20, || {
            one.validate_instance(&req).ok();
        }));
        row(&format!("validate_instance, {name} alone, 1 ms apart"), spaced(200, || {
            one.validate_instance(&req).ok();
        }));
    }
    row("validate_instance, 3 plugins, 1 ms apart", spaced(200, || {
        host.validate_instance(&req).ok();
    }));

    if std::env::var_os("ONLY_VALIDATE").is_some() {
        // For profiling the validation path alone: 20,000 more calls, then stop.
        for _ in 0..20_000 {
            host.validate_instance(&req).ok();
        }
        return Ok(());
    }

    // 2. A predicate over 500 views.
    host.install("owner", &read(wasm::OWNER)?, PluginSettings::default())?;
    let views: Vec<_> = (0..500)
        .map(|i| {
            view(
                &format!("c{i}"),
                &[("user.owner", if i % 2 == 0 { "alice" } else { "bob" })],
            )
        })
        .collect();
    row(
        "predicate plugin.owner eq alice over 500 views",
        measure(10, 2, || {
            let n = views
                .iter()
                .filter(|v| host.predicate("owner", "alice", v).unwrap_or(false))
                .count();
            assert_eq!(n, 250);
        }),
    );
    row(
        "visible() over 500 views (1 filter plugin)",
        measure(10, 2, || {
            assert_eq!(views.iter().filter(|v| host.visible(v)).count(), 500);
        }),
    );

    row(
        "predicate_batch plugin.owner eq alice over 500 views",
        measure(20, 5, || {
            let n = host
                .predicate_batch("owner", "alice", &views)
                .expect("batch")
                .into_iter()
                .filter(|b| *b)
                .count();
            assert_eq!(n, 250);
        }),
    );
    row(
        "visible_batch over 500 views (1 filter plugin)",
        measure(20, 5, || {
            assert!(host.visible_batch(&views).into_iter().all(|b| b));
        }),
    );

    // 3. Loading a plugin from the on-disk cache (a daemon restart).
    let names = read(wasm::NAME_POLICY)?;
    let fresh = PluginHost::new(&dir.path().join("other-cache"))?;
    let compiled = fresh.install("names", &names, PluginSettings::default())?;
    println!(
        "{:<58} {:>11.2?} ({} KiB wasm)",
        "compile name-policy (no cache)",
        compiled.load_time,
        names.len() / 1024
    );
    let restarted = PluginHost::new(&cache)?;
    row(
        "install name-policy from the disk cache",
        measure(20, 10, || {
            let info = restarted
                .install("names", &names, PluginSettings::default())
                .expect("install");
            assert!(info.from_cache);
        }),
    );

    // 3b. Where loading a cached plugin goes, phase by phase (wasmtime directly, an
    // engine configured as the host's). `OLD_NAME_POLICY=<path.wasm>` adds another
    // build of the plugin (e.g. the one with the `regex` crate) for comparison.
    load_phases("name-policy", wasm::NAME_POLICY)?;
    if let Some(old) = std::env::var("OLD_NAME_POLICY").ok().filter(|p| !p.is_empty()) {
        load_phases("name-policy (OLD_NAME_POLICY)", &old)?;
    }

    // 4. RSS around 10,000 calls to the fault fixtures.
    let faults = PluginHost::new(&cache)?;
    let mut fast = PluginSettings::default();
    fast.limits.deadline = Duration::from_millis(2);
    fast.limits.memory_bytes = 4 << 20;
    for (name, path) in [
        ("panic", wasm::FIXTURE_PANIC),
        ("rec", wasm::FIXTURE_DEEP_RECURSION),
        ("bomb", wasm::FIXTURE_MEMORY_BOMB),
        ("spin", wasm::FIXTURE_INFINITE_LOOP),
    ] {
        faults.install(name, &read(path)?, fast.clone())?;
        faults.update_settings(
            name,
            PluginSettings {
                enabled: false,
                ..fast.clone()
            },
        )?;
    }
    let hook_view = view("c1", &[]);
    let run = |n: usize| {
        for i in 0..n {
            let name = ["panic", "rec", "bomb", "spin"][i % 4];
            faults.update_settings(name, fast.clone()).expect("enable");
            let r = faults.hook(Hook::PreStart, &hook_view, &ConfigMap::new());
            assert!(matches!(r, Err(Rejection::Failed(_))), "{r:?}");
            faults
                .update_settings(
                    name,
                    PluginSettings {
                        enabled: false,
                        ..fast.clone()
                    },
                )
                .expect("disable");
        }
    };
    run(100);
    let before = rss_kib();
    let start = Instant::now();
    run(10_000);
    let elapsed = start.elapsed();
    let after = rss_kib();
    println!(
        "10,000 fault calls (panic/recursion/4 MiB bomb/2 ms loop): {elapsed:.2?}, RSS before {before} KiB, after {after} KiB ({:+} KiB)",
        after as i64 - before as i64
    );
    for i in faults.list() {
        println!(
            "  {:<6} calls {:>5} failures {:>5}",
            i.name, i.calls, i.failures
        );
    }
    Ok(())
}

/// Times each step of loading `path` from a compiled-code cache.
fn load_phases(label: &str, path: &str) -> anyhow::Result<()> {
    use sha2::Digest;
    use wasmtime::component::{Component, Linker};
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    let engine = w(wasmtime::Engine::new(&config))?;
    let dir = tempfile::tempdir()?;
    let wasm = std::fs::read(path)?;
    let cwasm_path = dir.path().join("p.cwasm");
    std::fs::write(&cwasm_path, w(w(Component::new(&engine, &wasm))?.serialize())?)?;
    let cwasm = std::fs::read(&cwasm_path)?;
    println!(
        "load phases, {label}: {} KiB wasm, {} KiB compiled",
        wasm.len() / 1024,
        cwasm.len() / 1024
    );
    row("  read .wasm", measure(20, 20, || { std::hint::black_box(std::fs::read(path).ok()); }));
    row("  sha256 of .wasm", measure(20, 20, || { std::hint::black_box(sha2::Sha256::digest(&wasm)); }));
    row("  read .cwasm", measure(20, 20, || { std::hint::black_box(std::fs::read(&cwasm_path).ok()); }));
    // SAFETY: bytes and file were serialized just above by an engine of this config.
    row("  Component::deserialize (bytes)", measure(20, 10, || {
        std::hint::black_box(unsafe { Component::deserialize(&engine, &cwasm) }.ok());
    }));
    row("  Component::deserialize_file (mmap)", measure(20, 10, || {
        std::hint::black_box(unsafe { Component::deserialize_file(&engine, &cwasm_path) }.ok());
    }));
    let mut linker: Linker<()> = Linker::new(&engine);
    // SAFETY: as above.
    let component = w(unsafe { Component::deserialize(&engine, &cwasm) })?;
    w(linker.define_unknown_imports_as_traps(&component))?;
    row("  instantiate_pre", measure(20, 10, || { std::hint::black_box(linker.instantiate_pre(&component).ok()); }));
    row("  first instantiation of a just-loaded component", measure(20, 5, || {
        // SAFETY: as above.
        let c = unsafe { Component::deserialize(&engine, &cwasm) }.expect("deserialize");
        let pre = linker.instantiate_pre(&c).expect("pre");
        let t = Instant::now();
        let mut store = wasmtime::Store::new(&engine, ());
        store.set_epoch_deadline(1000);
        std::hint::black_box(pre.instantiate(&mut store).ok());
        FIRST.with(|f| f.set(f.get() + t.elapsed()));
    }));
    let first = FIRST.with(|f| f.replace(Duration::ZERO));
    println!("    (of which the instantiation itself: {:.2?} per load on average)", first / (20 * 5 + 5));
    Ok(())
}

/// wasmtime's error type is not `std::error::Error`.
fn w<T>(r: wasmtime::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("{e:#}"))
}

thread_local! {
    static FIRST: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}
