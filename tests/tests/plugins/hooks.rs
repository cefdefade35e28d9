//! Lifecycle hooks: every hook point reaches plugins, pre-* hooks may
//! refuse, host queries work from inside a hook.

use berth_plugin_host::*;
use berth_tests::wasm;

use crate::support::*;

#[test]
fn audit_sees_every_hook_point() {
    let h = Harness::new();
    h.install("audit", wasm::AUDIT, PluginSettings::default());
    let view = instance("web", "c1", &[]);
    for hook in Hook::ALL {
        let details: ConfigMap = match hook {
            Hook::OnRename => [("old-name".to_string(), "c0".to_string())].into(),
            Hook::OnSnapshot | Hook::OnRestore => {
                [("snapshot".to_string(), "snap0".to_string())].into()
            }
            _ => ConfigMap::new(),
        };
        let report = h.host.hook(hook, &view, &details).unwrap();
        assert_eq!(report.called, ["audit"], "{hook}");
        assert!(report.errors.is_empty() && report.failures.is_empty());
    }
    let lines: Vec<String> = h
        .logs()
        .into_iter()
        .filter(|l| l.plugin == "audit")
        .map(|l| l.message)
        .collect();
    assert_eq!(lines.len(), Hook::ALL.len(), "{lines:?}");
    let expected = [
        "audit pre-create web/c1",
        "audit pre-start web/c1",
        "audit onstart web/c1",
        "audit pre-stop web/c1",
        "audit onstopns web/c1",
        "audit onstop web/c1",
        "audit pre-delete web/c1",
        "audit on-snapshot web/c1 snapshot=snap0",
        "audit on-restore web/c1 snapshot=snap0",
        "audit on-rename web/c1 old-name=c0",
        "audit on-update web/c1",
    ];
    for (line, want) in lines.iter().zip(expected) {
        assert_eq!(line.trim_end(), want);
    }
}

#[test]
fn hook_subscription_and_order() {
    let h = Harness::new();
    h.install(
        "b-audit",
        wasm::AUDIT,
        PluginSettings {
            priority: 1,
            ..Default::default()
        },
    );
    h.install(
        "a-audit",
        wasm::AUDIT,
        PluginSettings {
            priority: 2,
            hooks: Some(vec![Hook::OnStart]),
            ..Default::default()
        },
    );
    let view = instance("default", "c1", &[]);
    assert_eq!(
        h.host
            .hook(Hook::OnStart, &view, &ConfigMap::new())
            .unwrap()
            .called,
        ["b-audit", "a-audit"]
    );
    assert_eq!(
        h.host
            .hook(Hook::OnStop, &view, &ConfigMap::new())
            .unwrap()
            .called,
        ["b-audit"]
    );
    // Disabled plugins are not called at all.
    h.host
        .update_settings(
            "b-audit",
            PluginSettings {
                enabled: false,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(h
        .host
        .hook(Hook::OnStop, &view, &ConfigMap::new())
        .unwrap()
        .called
        .is_empty());
    assert_eq!(h.host.get("b-audit").unwrap().calls, 2);
}

#[test]
fn max_running_uses_host_queries() {
    let h = Harness::new();
    h.install(
        "cap",
        wasm::MAX_RUNNING,
        settings(&[("max", "2"), ("project.big", "10")]),
    );
    for (name, status) in [("a", "Running"), ("b", "Running"), ("c", "Stopped")] {
        let mut v = instance("default", name, &[]);
        v.status = status.into();
        h.db.put(v);
    }
    let c = instance("default", "c", &[]);
    match h.host.hook(Hook::PreStart, &c, &ConfigMap::new()) {
        Err(Rejection::Refused {
            plugin,
            hook,
            reason,
        }) => {
            assert_eq!((plugin.as_str(), hook), ("cap", Hook::PreStart));
            assert!(
                reason.contains("already has 2 running instances (limit 2)"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Other hooks are not limited.
    assert!(h.host.hook(Hook::PreStop, &c, &ConfigMap::new()).is_ok());
    // Restarting a running instance does not count itself.
    let mut b = instance("default", "b", &[]);
    b.status = "Running".into();
    h.db.put({
        let mut a = instance("default", "a", &[]);
        a.status = "Stopped".into();
        a
    });
    assert!(h.host.hook(Hook::PreStart, &b, &ConfigMap::new()).is_ok());
    // Per-project override, and another project is counted separately.
    for i in 0..5 {
        let mut v = instance("big", &format!("x{i}"), &[]);
        v.status = "Running".into();
        h.db.put(v);
    }
    assert!(h
        .host
        .hook(
            Hook::PreStart,
            &instance("big", "y", &[]),
            &ConfigMap::new()
        )
        .is_ok());
    h.host
        .update_settings("cap", settings(&[("max", "2"), ("project.big", "5")]))
        .unwrap();
    assert!(h
        .host
        .hook(
            Hook::PreStart,
            &instance("big", "y", &[]),
            &ConfigMap::new()
        )
        .is_err());
    // A bad limit in the config refuses (the plugin returns an error).
    h.host
        .update_settings("cap", settings(&[("max", "many")]))
        .unwrap();
    assert!(matches!(
        h.host.hook(Hook::PreStart, &c, &ConfigMap::new()),
        Err(Rejection::Refused { ref reason, .. }) if reason.contains("bad limit")
    ));
}
