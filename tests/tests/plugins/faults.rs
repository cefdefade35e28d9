//! Misbehaving fixtures: the host survives, answers with a clear error
//! within the deadline, and never treats a failure as "allow".

use std::time::{Duration, Instant};

use berth_plugin_host::*;
use berth_tests::wasm;

use crate::support::*;

/// Generous upper bound for "answered promptly": the deadline is 50 ms, the
/// rest is slack for a debug build on a shared 2-core machine.
const PROMPT: Duration = Duration::from_millis(1500);

fn create(h: &Harness) -> (Result<Outcome<InstanceView>, Rejection>, Duration) {
    let req = InstanceRequest {
        op: InstanceOp::Create,
        view: instance("default", "c1", &[]),
    };
    let start = Instant::now();
    let r = h.host.validate_instance(&req);
    (r, start.elapsed())
}

fn failure(r: Result<Outcome<InstanceView>, Rejection>) -> Failure {
    match r {
        Err(Rejection::Failed(f)) => *f,
        other => panic!("expected a plugin failure, got {other:?}"),
    }
}

/// After a fault the host still works: a good plugin installed beside the
/// bad one answers normally once the bad one is gone.
fn assert_host_still_works(h: &Harness, bad: &str) {
    h.host.remove(bad).unwrap();
    h.install("limits", wasm::REQUIRE_LIMITS, PluginSettings::default());
    let (r, _) = create(h);
    assert!(
        matches!(r, Err(Rejection::Denied { ref plugin, .. }) if plugin == "limits"),
        "{r:?}"
    );
    h.host.remove("limits").unwrap();
}

#[test]
fn infinite_loop_times_out_at_the_deadline() {
    let h = Harness::new();
    h.install(
        "spin",
        wasm::FIXTURE_INFINITE_LOOP,
        PluginSettings::default(),
    );
    let (r, elapsed) = create(&h);
    let f = failure(r);
    assert_eq!(f.plugin, "spin");
    assert_eq!(
        f.kind,
        FailureKind::Timeout {
            deadline: Duration::from_millis(50)
        }
    );
    assert!(
        elapsed >= Duration::from_millis(50),
        "interrupted before the deadline: {elapsed:?}"
    );
    assert!(elapsed < PROMPT, "took {elapsed:?}");
    assert!(f.to_string().contains("deadline of 50ms exceeded"), "{f}");
    // A shorter configured deadline is honoured too.
    let mut s = PluginSettings::default();
    s.limits.deadline = Duration::from_millis(10);
    h.host.update_settings("spin", s).unwrap();
    let (r, elapsed) = create(&h);
    assert_eq!(
        failure(r).kind,
        FailureKind::Timeout {
            deadline: Duration::from_millis(10)
        }
    );
    assert!(
        elapsed < Duration::from_millis(45) + PROMPT / 2,
        "{elapsed:?}"
    );
    assert_eq!(h.host.get("spin").unwrap().failures, 2);
    assert_host_still_works(&h, "spin");
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let h = Harness::new();
    // A long deadline so that the memory limit, not time, stops it even on
    // a loaded machine.
    let mut s = PluginSettings::default();
    s.limits.deadline = Duration::from_secs(10);
    h.install("bomb", wasm::FIXTURE_MEMORY_BOMB, s);
    let (r, elapsed) = create(&h);
    let f = failure(r);
    assert_eq!(f.kind, FailureKind::OutOfMemory { limit: 32 << 20 });
    assert!(elapsed < PROMPT, "{elapsed:?}");
    assert!(
        f.to_string()
            .contains("memory limit of 33554432 bytes exceeded"),
        "{f}"
    );
    assert_host_still_works(&h, "bomb");
}

#[test]
fn deep_recursion_exhausts_the_stack() {
    let h = Harness::new();
    h.install(
        "rec",
        wasm::FIXTURE_DEEP_RECURSION,
        PluginSettings::default(),
    );
    let (r, elapsed) = create(&h);
    assert_eq!(failure(r).kind, FailureKind::StackExhausted);
    assert!(elapsed < PROMPT, "{elapsed:?}");
    assert_host_still_works(&h, "rec");
}

#[test]
fn panic_message_reaches_the_error_and_the_log() {
    let h = Harness::new();
    h.install("boom", wasm::FIXTURE_PANIC, PluginSettings::default());
    let (r, elapsed) = create(&h);
    match failure(r).kind {
        FailureKind::Panic { message } => {
            assert!(
                message.contains("deliberate panic validating c1"),
                "{message}"
            )
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert!(elapsed < PROMPT, "{elapsed:?}");
    let logs = h.logs();
    assert!(
        logs.iter().any(|l| l.plugin == "boom"
            && l.level == Level::Error
            && l.message.contains("deliberate panic")),
        "{logs:?}"
    );
    // The default panic handler's stderr output is captured as well.
    assert!(
        logs.iter()
            .any(|l| l.message.starts_with("stderr:") && l.message.contains("panicked")),
        "{logs:?}"
    );
    assert_host_still_works(&h, "boom");
}

#[test]
fn huge_output_is_bounded() {
    let h = Harness::new();
    let mut s = PluginSettings::default();
    // Give it time to produce its output so the size checks are what trips.
    s.limits.deadline = Duration::from_secs(5);
    h.install("huge", wasm::FIXTURE_HUGE_OUTPUT, s);

    // 100,000 violations: a broken plugin, not a policy.
    let (r, _) = create(&h);
    match failure(r).kind {
        FailureKind::OutputTooLarge { what } => {
            assert!(what.contains("100000 violations"), "{what}")
        }
        other => panic!("{other:?}"),
    }
    // A 50,000-key patch.
    let view = instance("default", "c1", &[]);
    let req = InstanceRequest {
        op: InstanceOp::Update {
            previous: Box::new(view.clone()),
        },
        view,
    };
    match h.host.validate_instance(&req) {
        Err(Rejection::Failed(f)) => {
            assert!(matches!(f.kind, FailureKind::OutputTooLarge { .. }), "{f}")
        }
        other => panic!("{other:?}"),
    }
    // A 16 MiB log line and 5,000 more: cut and capped.
    h.clear_logs();
    let report = h
        .host
        .hook(
            Hook::OnStart,
            &instance("default", "c1", &[]),
            &ConfigMap::new(),
        )
        .unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    let logs = h.logs();
    assert_eq!(
        logs.len(),
        Limits::default().max_log_lines,
        "log lines are capped"
    );
    assert!(
        logs.iter().all(|l| l.message.len() <= 4096 + 32),
        "log lines are cut"
    );
    assert!(logs[0].message.ends_with("[truncated]"));
    // 8 MiB on stderr: kept up to 64 KiB, the plugin itself is unaffected.
    h.clear_logs();
    assert!(h.host.visible(&instance("default", "c1", &[])));
    let logs = h.logs();
    let stderr: Vec<_> = logs
        .iter()
        .filter(|l| l.message.starts_with("stderr:"))
        .collect();
    assert_eq!(stderr.len(), 1, "{}", logs.len());
    assert!(stderr[0].message.len() <= 4096 + 32);
}

#[test]
fn every_fault_is_fail_closed_everywhere() {
    let h = Harness::new();
    let view = instance("default", "c1", &[]);
    for (name, w) in [
        ("spin", wasm::FIXTURE_INFINITE_LOOP),
        ("bomb", wasm::FIXTURE_MEMORY_BOMB),
        ("rec", wasm::FIXTURE_DEEP_RECURSION),
        ("boom", wasm::FIXTURE_PANIC),
    ] {
        h.install(name, w, PluginSettings::default());
        // Listing: a broken filter hides the instance.
        assert!(!h.host.visible(&view), "{name}: visible despite failure");
        // pre-* hooks: refused by failure, not allowed.
        for hook in Hook::ALL.into_iter().filter(|h| h.can_refuse()) {
            let r = h.host.hook(hook, &view, &ConfigMap::new());
            assert!(
                matches!(r, Err(Rejection::Failed(ref f)) if f.plugin == name),
                "{name} {hook}: {r:?}"
            );
        }
        // Notifications: the action already happened; failure is reported.
        let report = h.host.hook(Hook::OnStop, &view, &ConfigMap::new()).unwrap();
        assert_eq!(report.failures.len(), 1, "{name}");
        h.host.remove(name).unwrap();
    }
}

#[test]
fn fail_open_plugins_are_skipped_and_reported() {
    let h = Harness::new();
    let mut open = PluginSettings {
        failure_policy: FailurePolicy::FailOpen,
        ..PluginSettings::default()
    };
    open.priority = 1;
    h.install("spin", wasm::FIXTURE_INFINITE_LOOP, open.clone());
    h.install(
        "boom",
        wasm::FIXTURE_PANIC,
        PluginSettings {
            priority: 2,
            ..open
        },
    );
    let view = instance(
        "default",
        "c1",
        &[("limits.cpu", "1"), ("limits.memory", "1GiB")],
    );
    let outcome = h
        .host
        .validate_instance(&InstanceRequest {
            op: InstanceOp::Create,
            view,
        })
        .unwrap();
    let failed: Vec<_> = outcome.failures.iter().map(|f| f.plugin.as_str()).collect();
    assert_eq!(failed, ["spin", "boom"]);
    assert!(h.host.visible(&instance("default", "c1", &[])));
    assert!(h
        .host
        .predicate("spin", "x", &instance("default", "c1", &[]))
        .unwrap());
    assert!(h
        .host
        .hook(
            Hook::PreStart,
            &instance("default", "c1", &[]),
            &ConfigMap::new()
        )
        .is_ok());
    // Fail-closed again: the same faults now reject.
    h.host
        .update_settings("boom", PluginSettings::default())
        .unwrap();
    let r = h.host.validate_instance(&InstanceRequest {
        op: InstanceOp::Create,
        view: instance("p", "c", &[]),
    });
    assert!(
        matches!(r, Err(Rejection::Failed(ref f)) if f.plugin == "boom"),
        "{r:?}"
    );
    h.host
        .update_settings("spin", PluginSettings::default())
        .unwrap();
    match h
        .host
        .predicate("spin", "x", &instance("default", "c1", &[]))
    {
        Err(PluginError::Failed(f)) => assert!(matches!(f.kind, FailureKind::Timeout { .. })),
        other => panic!("{other:?}"),
    }
}

#[test]
fn install_rejects_wrong_version_and_garbage() {
    let h = Harness::new();
    let bytes = std::fs::read(wasm::FIXTURE_WRONG_VERSION).unwrap();
    let err = h
        .host
        .install("future", &bytes, PluginSettings::default())
        .unwrap_err();
    assert!(err.is_invalid_input());
    match &err {
        PluginError::IncompatibleVersion {
            found, supported, ..
        } => {
            assert!(
                found.starts_with("berth:plugin/") && found.ends_with("@0.2.0"),
                "{found}"
            );
            assert_eq!(*supported, "0.1.0");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("@0.2.0") && err.to_string().contains("berth:plugin@0.1.0"),
        "{err}"
    );

    for junk in [&b"garbage"[..], b"\0asm\x01\0\0\0", b""] {
        let err = h
            .host
            .install("junk", junk, PluginSettings::default())
            .unwrap_err();
        assert!(matches!(err, PluginError::NotAComponent { .. }), "{err}");
        assert!(err.is_invalid_input());
    }
    let err = h
        .host
        .install("Bad Name", &bytes, PluginSettings::default())
        .unwrap_err();
    assert!(matches!(err, PluginError::InvalidName { .. }), "{err}");
    assert!(h.host.list().is_empty(), "nothing was installed");
}

#[test]
fn install_rejects_components_without_capabilities_or_with_wrong_types() {
    let h = Harness::new();
    let bytes = std::fs::read(wasm::FIXTURE_DESCRIBE_ONLY).unwrap();
    let err = h
        .host
        .install("nothing", &bytes, PluginSettings::default())
        .unwrap_err();
    match &err {
        PluginError::NoKnownExport { exports, .. } => {
            // The SDK exports self-description, `view-needs` and
            // `verdict-cache` for every plugin.
            assert_eq!(
                exports,
                "berth:plugin/describe@0.1.0, berth:plugin/view-needs@0.1.0, berth:plugin/verdict-cache@0.1.0"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_invalid_input());

    // Right version, wrong signature: caught by the export type check.
    let bytes = std::fs::read(wasm::FIXTURE_WRONG_SHAPE).unwrap();
    let err = h
        .host
        .install("shape", &bytes, PluginSettings::default())
        .unwrap_err();
    assert!(matches!(err, PluginError::Link { .. }), "{err}");
    assert!(
        err.to_string().contains("berth:plugin/filter@0.1.0"),
        "{err}"
    );
    assert!(
        err.to_string().contains("expected `bool` found `string`"),
        "{err}"
    );
    assert!(h.host.list().is_empty());
}

#[test]
fn host_survives_repeated_faults() {
    let h = Harness::new();
    h.install("boom", wasm::FIXTURE_PANIC, PluginSettings::default());
    h.install(
        "bomb",
        wasm::FIXTURE_MEMORY_BOMB,
        PluginSettings {
            priority: 1,
            ..PluginSettings::default()
        },
    );
    let view = instance("default", "c1", &[]);
    for _ in 0..50 {
        let r = h.host.hook(Hook::PreStart, &view, &ConfigMap::new());
        assert!(matches!(r, Err(Rejection::Failed(_))));
    }
    let report = h
        .host
        .hook(Hook::OnStart, &view, &ConfigMap::new())
        .unwrap();
    assert_eq!(report.called, ["boom", "bomb"]);
    assert_eq!(report.failures.len(), 2);
    assert_eq!(h.host.get("boom").unwrap().failures, 51);
}

/// A full instance pool refuses (never allows) with a clear error, and the host
/// serves again once slots are free.
#[test]
fn exhausted_instance_pool_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    // Two slots: plugin "a"'s two ready instances take both.
    let host = PluginHost::with_capacity(dir.path(), std::sync::Arc::new(NoQueries), None, 2).unwrap();
    let limits = std::fs::read(wasm::REQUIRE_LIMITS).unwrap();
    host.install("a", &limits, PluginSettings::default()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let err = host
        .install("b", &limits, PluginSettings::default())
        .expect_err("no slot left for b's trial call");
    assert!(err.to_string().contains("plugin instance pool exhausted"), "{err}");
    assert!(host.get("b").is_none());
    // "a" itself still answers (from its ready instances), and still denies.
    let req = InstanceRequest { op: InstanceOp::Create, view: instance("default", "c1", &[]) };
    let r = host.validate_instance(&req);
    assert!(matches!(r, Err(Rejection::Denied { .. })), "{r:?}");
    // Without "a" the slots come back.
    host.remove("a").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    host.install("b", &limits, PluginSettings::default()).unwrap();
}
