//! Install/remove/update, hot reload and the compiled-component cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_plugin_host::*;
use berth_tests::wasm;

use crate::support::*;

fn create(h: &PluginHost, view: InstanceView) -> Result<Outcome<InstanceView>, Rejection> {
    h.validate_instance(&InstanceRequest {
        op: InstanceOp::Create,
        view,
    })
}

#[test]
fn install_reports_metadata_and_capabilities() {
    let h = Harness::new();
    let info = h.install("nopriv", wasm::DENY_PRIVILEGED, PluginSettings::default());
    assert_eq!(info.metadata.name, "deny-privileged");
    assert_eq!(info.metadata.version, "0.1.0");
    assert_eq!(info.metadata.api_version, API_VERSION);
    assert_eq!(
        info.capabilities,
        [
            Capability::InstanceValidator,
            Capability::ProfileValidator,
            Capability::ProjectValidator,
            Capability::DeviceValidator
        ]
    );
    assert_eq!(info.sha256.len(), 64);
    let audit = h.install("audit", wasm::AUDIT, PluginSettings::default());
    assert_eq!(audit.capabilities, [Capability::Lifecycle]);
    assert!(matches!(
        h.host.remove("nope"),
        Err(PluginError::NotFound { .. })
    ));
    assert!(matches!(
        h.host.update_settings("nope", PluginSettings::default()),
        Err(PluginError::NotFound { .. })
    ));
}

#[test]
fn hot_reload_install_replace_remove() {
    let h = Harness::new();
    let view = instance("default", "c1", &[]);
    assert!(create(&h.host, view.clone()).is_ok());
    h.install("policy", wasm::REQUIRE_LIMITS, PluginSettings::default());
    assert!(create(&h.host, view.clone()).is_err());
    // Replacing the code under the same name takes effect at once.
    h.install(
        "policy",
        wasm::NAME_POLICY,
        settings(&[("default", "c[0-9]")]),
    );
    assert!(create(&h.host, view.clone()).is_ok());
    assert_eq!(h.host.list().len(), 1);
    assert_eq!(h.host.get("policy").unwrap().metadata.name, "name-policy");
    h.host.remove("policy").unwrap();
    assert!(h.host.list().is_empty());
    assert!(create(&h.host, instance("default", "BAD", &[])).is_ok());
}

#[test]
fn calls_in_flight_finish_on_the_old_snapshot() {
    let h = Arc::new(Harness::new());
    h.install(
        "spin",
        wasm::FIXTURE_INFINITE_LOOP,
        PluginSettings::default(),
    );
    let h2 = h.clone();
    let t = std::thread::spawn(move || create(&h2.host, instance("default", "c1", &[])));
    // Wait until the call has started (it counts itself first thing).
    let start = Instant::now();
    while h.host.get("spin").unwrap().calls == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "call never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    h.host.remove("spin").unwrap();
    // The running call still completes (with its timeout), the next one
    // no longer sees the plugin.
    let r = t.join().unwrap();
    assert!(
        matches!(r, Err(Rejection::Failed(ref f)) if f.plugin == "spin"),
        "{r:?}"
    );
    assert!(create(&h.host, instance("default", "c1", &[])).is_ok());
}

#[test]
fn compiled_components_come_from_the_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let bytes = std::fs::read(wasm::NAME_POLICY).unwrap();
    let first = {
        let host = PluginHost::new(&cache).unwrap();
        host.install("names", &bytes, PluginSettings::default())
            .unwrap()
    };
    assert!(!first.from_cache);
    let artifacts: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let name = artifacts[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(
        name.ends_with(&format!("-{}.cwasm", first.sha256)),
        "{name}"
    );

    // A new host (daemon restart) loads the artifact instead of compiling.
    let host = PluginHost::new(&cache).unwrap();
    let start = Instant::now();
    let second = host
        .install("names", &bytes, settings(&[("default", "ok")]))
        .unwrap();
    let elapsed = start.elapsed();
    assert!(second.from_cache);
    assert!(
        second.load_time * 5 < first.load_time,
        "cached load {:?} vs compile {:?}",
        second.load_time,
        first.load_time
    );
    println!(
        "compile {:?}, cached load {:?} (install total {elapsed:?})",
        first.load_time, second.load_time
    );
    assert!(
        create(&host, instance("default", "bad", &[])).is_err(),
        "cached plugin works"
    );

    // A corrupt artifact is discarded and recompiled.
    std::fs::write(&artifacts[0], b"corrupt").unwrap();
    let host = PluginHost::new(&cache).unwrap();
    let third = host
        .install("names", &bytes, PluginSettings::default())
        .unwrap();
    assert!(!third.from_cache);
    assert!(
        std::fs::metadata(&artifacts[0]).unwrap().len() > 1000,
        "rewritten"
    );
}

#[test]
fn settings_are_checked() {
    let h = Harness::new();
    let bytes = std::fs::read(wasm::AUDIT).unwrap();
    let mut s = PluginSettings::default();
    s.limits.memory_bytes = 1000;
    assert!(matches!(
        h.host.install("a", &bytes, s),
        Err(PluginError::InvalidSettings { .. })
    ));
    let mut s = PluginSettings::default();
    s.limits.deadline = Duration::from_secs(3600);
    assert!(matches!(
        h.host.install("a", &bytes, s),
        Err(PluginError::InvalidSettings { .. })
    ));
}

#[test]
fn plugin_too_small_memory_limit_fails_cleanly() {
    // 2 MiB is accepted but leaves a std guest little room: whatever
    // happens, it is a clean result, never a crash.
    let h = Harness::new();
    let mut s = PluginSettings::default();
    s.limits.memory_bytes = 2 << 20;
    let bytes = std::fs::read(wasm::AUDIT).unwrap();
    match h.host.install("audit", &bytes, s) {
        Ok(_) => {
            let _ = h.host.hook(
                Hook::PreStart,
                &instance("default", "c1", &[]),
                &ConfigMap::new(),
            );
        }
        Err(e) => assert!(matches!(e, PluginError::InstallCall { .. }), "{e}"),
    }
}

#[test]
fn concurrent_calls_during_reloads() {
    let h = Arc::new(Harness::new());
    h.install("limits", wasm::REQUIRE_LIMITS, PluginSettings::default());
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let h = h.clone();
            std::thread::spawn(move || {
                let (mut denied, mut allowed) = (0, 0);
                for _ in 0..60 {
                    match create(&h.host, instance("default", "c1", &[])) {
                        Err(Rejection::Denied { plugin, .. }) if plugin == "limits" => denied += 1,
                        Ok(_) => allowed += 1,
                        other => panic!("unexpected {other:?}"),
                    }
                }
                (denied, allowed)
            })
        })
        .collect();
    let bytes = std::fs::read(wasm::REQUIRE_LIMITS).unwrap();
    for _ in 0..20 {
        h.host.remove("limits").unwrap();
        h.host
            .install("limits", &bytes, PluginSettings::default())
            .unwrap();
    }
    let total: usize = workers
        .into_iter()
        .map(|w| {
            let (d, a) = w.join().unwrap();
            d + a
        })
        .sum();
    assert_eq!(total, 180);
    assert!(
        create(&h.host, instance("default", "c1", &[])).is_err(),
        "installed at the end"
    );
}
