//! Filter predicates and the visibility filter.

use std::time::Instant;

use berth_plugin_host::*;
use berth_tests::wasm;

use crate::support::*;

fn owned(name: &str, owner: Option<&str>) -> InstanceView {
    match owner {
        Some(o) => instance("default", name, &[("user.owner", o)]),
        None => instance("default", name, &[]),
    }
}

#[test]
fn owner_predicate() {
    let h = Harness::new();
    let info = h.install("owner", wasm::OWNER, PluginSettings::default());
    assert_eq!(info.predicates, ["owner"]);
    assert_eq!(info.capabilities, [Capability::Filter]);
    assert!(h
        .host
        .predicate("owner", "alice", &owned("c1", Some("alice")))
        .unwrap());
    assert!(!h
        .host
        .predicate("owner", "alice", &owned("c1", Some("bob")))
        .unwrap());
    assert!(!h
        .host
        .predicate("owner", "alice", &owned("c1", None))
        .unwrap());
    assert!(matches!(
        h.host.predicate("colour", "red", &owned("c1", None)),
        Err(PluginError::UnknownPredicate { ref name }) if name == "colour"
    ));
    // The plugin refuses a value: an invalid clause, not a plugin failure.
    match h.host.predicate("owner", "", &owned("c1", None)) {
        Err(e @ PluginError::Predicate { .. }) => {
            assert!(e.is_invalid_input());
            assert!(e.to_string().contains("owner must not be empty"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // Over a listing of 500 instances.
    let views: Vec<_> = (0..500)
        .map(|i| {
            owned(
                &format!("c{i}"),
                Some(if i % 5 == 0 { "alice" } else { "bob" }),
            )
        })
        .collect();
    let start = Instant::now();
    let hits = views
        .iter()
        .filter(|v| h.host.predicate("owner", "alice", v).unwrap())
        .count();
    assert_eq!(hits, 100);
    println!("predicate over 500 views: {:?}", start.elapsed());
}

#[test]
fn owner_visibility() {
    let h = Harness::new();
    // No filter plugins: everything is visible, nothing is called.
    assert!(h.host.visible(&owned("c1", None)));
    h.install("owner", wasm::OWNER, PluginSettings::default());
    assert!(h.host.visible(&owned("c1", None)));
    assert!(h.host.visible(&owned("c1", Some("bob"))));
    h.host
        .update_settings(
            "owner",
            settings(&[("visible-owners", "alice, carol"), ("hide-unowned", "yes")]),
        )
        .unwrap();
    assert!(h.host.visible(&owned("c1", Some("alice"))));
    assert!(h.host.visible(&owned("c1", Some("carol"))));
    assert!(!h.host.visible(&owned("c1", Some("bob"))));
    assert!(!h.host.visible(&owned("c1", None)));
    h.host
        .update_settings(
            "owner",
            PluginSettings {
                enabled: false,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(
        h.host.visible(&owned("c1", None)),
        "disabled plugins do not filter"
    );
}

#[test]
fn each_call_gets_a_fresh_instance() {
    let h = Harness::new();
    h.install("probe", wasm::FIXTURE_PROBE, PluginSettings::default());
    let v = owned("c1", None);
    // A static counter in the plugin: every call sees its first call.
    for _ in 0..5 {
        assert!(h.host.predicate("calls", "1", &v).unwrap());
    }
}

#[test]
fn wasi_capabilities_only_when_granted() {
    let h = Harness::new();
    let data = h.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("file.txt"), "hello").unwrap();
    std::env::set_var("BERTH_TEST_SECRET", "x");
    h.install("probe", wasm::FIXTURE_PROBE, PluginSettings::default());
    let v = owned("c1", None);
    let p = |name: &str, value: &str| h.host.predicate(name, value, &v).unwrap();
    // Nothing by default: no files, no host environment, frozen clock, no network.
    assert!(!p("read", "/data/file.txt"));
    assert!(!p("read", "/etc/passwd"));
    assert!(!p("env", "BERTH_TEST_SECRET"));
    assert!(!p("env", "PATH"));
    assert!(!p("clock", ""));
    assert!(!p("net", "169.254.1.1:80"));
    // Granted: a read-only directory, one variable, clocks.
    let mut s = PluginSettings::default();
    s.grants.read_only_dirs.push(DirGrant {
        host_path: data.clone(),
        guest_path: "/data".into(),
    });
    s.grants.env.insert("GRANTED".into(), "1".into());
    s.grants.clocks = true;
    h.host.update_settings("probe", s).unwrap();
    assert!(p("read", "/data/file.txt"));
    assert!(
        !p("write", "/data/new.txt"),
        "granted directories are read-only"
    );
    assert!(!data.join("new.txt").exists());
    assert!(!p("read", "/etc/passwd"));
    assert!(p("env", "GRANTED"));
    assert!(!p("env", "BERTH_TEST_SECRET"));
    assert!(p("clock", ""));
    assert!(!p("net", "169.254.1.1:80"));
    // A grant of a missing directory is refused up front.
    let mut bad = PluginSettings::default();
    bad.grants.read_only_dirs.push(DirGrant {
        host_path: data.join("missing"),
        guest_path: "/x".into(),
    });
    assert!(matches!(
        h.host.update_settings("probe", bad),
        Err(PluginError::InvalidSettings { .. })
    ));
}

#[test]
fn warm_instances_serve_one_call_each() {
    let h = Harness::new();
    h.install("probe", wasm::FIXTURE_PROBE, PluginSettings::default());
    let v = owned("c1", None);
    // Back to back (pool drained: inline instantiation) and spaced out (pool refilled
    // by the background thread): every call is the first call of its instance.
    for i in 0..200 {
        if i % 20 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(h.host.predicate("calls", "1", &v).unwrap(), "call {i}");
    }
    // A batch is one instance for the whole request, and a fresh one per request.
    let views = vec![owned("a", None), owned("b", None), owned("c", None)];
    for _ in 0..3 {
        assert_eq!(h.host.predicate_batch("calls", "1", &views).unwrap(), [true, false, false]);
    }
    // Concurrent callers never share an instance.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    assert!(h.host.predicate("calls", "1", &v).unwrap());
                }
            });
        }
    });
}

/// A plugin that declares what it reads (`view-needs`) gets exactly that: the declared
/// keys and prefixes of `config` and `expanded-config`, no devices; everywhere it is
/// given an instance (single and batch filters, validation with `previous`).
#[test]
fn views_are_trimmed_to_what_the_plugin_declares() {
    let h = Harness::new();
    h.install("shape", wasm::FIXTURE_VIEW_SHAPE, PluginSettings::default());
    let mut v = instance(
        "default",
        "c1",
        &[("user.a", "1"), ("user.b", "2"), ("limits.cpu", "2"), ("limits.memory", "1GiB"), ("security.nesting", "true")],
    );
    v.expanded_config.insert("limits.processes".into(), "10".into());
    v.devices.insert("eth0".into(), [("type".to_string(), "nic".to_string())].into());
    v.expanded_devices = v.devices.clone();
    let want = "limits.cpu,limits.memory,user.a|limits.cpu,limits.memory,limits.processes,user.a|0";
    let saw = |r: Result<bool, PluginError>| match r {
        Ok(b) => format!("{b}"),
        Err(e) => e.to_string(),
    };
    assert_eq!(saw(h.host.predicate("shape", want, &v)), "true");
    let batch = h.host.predicate_batch("shape", want, std::slice::from_ref(&v)).map(|r| r[0]);
    assert_eq!(saw(batch), "true");
    let mut prev = v.clone();
    prev.config.remove("user.a");
    prev.expanded_config.remove("user.a");
    let r = h.host.validate_instance(&InstanceRequest { op: InstanceOp::Update { previous: Box::new(prev) }, view: v.clone() });
    match r {
        Err(Rejection::Denied { violations, .. }) => assert_eq!(
            violations[0].message,
            format!("{want} / limits.cpu,limits.memory|limits.cpu,limits.memory,limits.processes|0")
        ),
        other => panic!("{other:?}"),
    }
    // The caller's view is untouched, and each plugin gets its own declaration's view
    // (owner declares only `user.owner`, which `v` does not have).
    assert_eq!(v.config.len(), 5);
    h.install("owner", wasm::OWNER, PluginSettings::default());
    assert!(!h.host.predicate("owner", "alice", &v).unwrap());
}
