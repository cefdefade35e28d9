//! Validation plugins: verdicts, mutation + re-validation, priority order,
//! profile/project/device validation.

use berth_plugin_host::*;
use berth_tests::wasm;

use crate::support::*;

fn create(h: &Harness, view: InstanceView) -> Result<Outcome<InstanceView>, Rejection> {
    h.host.validate_instance(&InstanceRequest {
        op: InstanceOp::Create,
        view,
    })
}

fn denied_fields(r: Result<Outcome<InstanceView>, Rejection>) -> Vec<String> {
    match r {
        Err(Rejection::Denied { violations, .. }) => {
            violations.into_iter().map(|v| v.field).collect()
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn require_limits_denies_then_fills_defaults() {
    let h = Harness::new();
    h.install("limits", wasm::REQUIRE_LIMITS, PluginSettings::default());
    assert_eq!(
        denied_fields(create(&h, instance("default", "c1", &[]))),
        ["limits.cpu", "limits.memory"]
    );
    assert_eq!(
        denied_fields(create(
            &h,
            instance("default", "c1", &[("limits.cpu", "2")])
        )),
        ["limits.memory"]
    );
    assert_eq!(
        denied_fields(create(
            &h,
            instance(
                "default",
                "c1",
                &[("limits.cpu", "2"), ("limits.memory", "lots")]
            )
        )),
        ["limits.memory"]
    );
    let ok = create(
        &h,
        instance(
            "default",
            "c1",
            &[("limits.cpu", "2"), ("limits.memory", "512MB")],
        ),
    )
    .unwrap();
    assert!(!ok.mutated());

    // With defaults the plugin mutates instead of denying.
    h.host
        .update_settings(
            "limits",
            settings(&[("default.cpu", "1"), ("default.memory", "1GiB")]),
        )
        .unwrap();
    let out = create(&h, instance("default", "c1", &[("limits.cpu", "4")])).unwrap();
    assert_eq!(out.patches.len(), 1);
    assert_eq!(out.patches[0].0, "limits");
    assert_eq!(
        out.value.config.get("limits.memory").map(String::as_str),
        Some("1GiB")
    );
    assert_eq!(
        out.value.config.get("limits.cpu").map(String::as_str),
        Some("4"),
        "existing key kept"
    );
    assert_eq!(
        out.value
            .expanded_config
            .get("limits.memory")
            .map(String::as_str),
        Some("1GiB")
    );

    // The caller validates the mutated object again: now nothing to change.
    let again = create(&h, out.value.clone()).unwrap();
    assert!(!again.mutated());
    assert_eq!(again.value, out.value);

    // Limits supplied by a profile (expanded config) satisfy the rule.
    let mut v = instance("default", "c2", &[]);
    v.expanded_config.insert("limits.cpu".into(), "1".into());
    v.expanded_config
        .insert("limits.memory".into(), "1GiB".into());
    assert!(!create(&h, v).unwrap().mutated());

    // `projects` scopes the rule.
    h.host
        .update_settings("limits", settings(&[("projects", "prod")]))
        .unwrap();
    assert!(create(&h, instance("default", "c1", &[])).is_ok());
    assert!(create(&h, instance("prod", "c1", &[])).is_err());
}

#[test]
fn deny_privileged_rules() {
    let h = Harness::new();
    h.install("nopriv", wasm::DENY_PRIVILEGED, PluginSettings::default());
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (&[], &[]),
        (&[("security.privileged", "true")], &["security.privileged"]),
        (&[("security.privileged", "yes")], &["security.privileged"]),
        (&[("security.privileged", "false")], &[]),
        (&[("security.nesting", "on")], &["security.nesting"]),
        (&[("raw.idmap", "both 0 0")], &["raw.idmap"]),
        (
            &[("raw.idmap", "uid 1000 0\ngid 0-10 5000-5010")],
            &["raw.idmap"],
        ),
        (&[("raw.idmap", "both 1000 0")], &[]),
        (
            &[("security.privileged", "1"), ("security.nesting", "1")],
            &["security.privileged", "security.nesting"],
        ),
    ];
    for (config, expect) in cases {
        let r = create(&h, instance("default", "c1", config));
        if expect.is_empty() {
            assert!(r.is_ok(), "{config:?}: {r:?}");
        } else {
            assert_eq!(denied_fields(r), *expect, "{config:?}");
        }
    }
    // Per project, and nesting can be allowed.
    h.host
        .update_settings(
            "nopriv",
            settings(&[("projects", "prod"), ("allow-nesting", "true")]),
        )
        .unwrap();
    assert!(create(
        &h,
        instance("default", "c1", &[("security.privileged", "true")])
    )
    .is_ok());
    assert!(create(&h, instance("prod", "c1", &[("security.nesting", "true")])).is_ok());
    assert!(create(
        &h,
        instance("prod", "c1", &[("security.privileged", "true")])
    )
    .is_err());
}

#[test]
fn profiles_and_projects_are_validated() {
    let h = Harness::new();
    h.install("nopriv", wasm::DENY_PRIVILEGED, PluginSettings::default());
    let mut p = ProfileView {
        name: "default".into(),
        project: "default".into(),
        ..Default::default()
    };
    assert!(h.host.validate_profile(&p, None).is_ok());
    p.config.insert("security.privileged".into(), "true".into());
    match h.host.validate_profile(&p, Some(&ProfileView::default())) {
        Err(Rejection::Denied { plugin, violations }) => {
            assert_eq!(plugin, "nopriv");
            assert_eq!(violations[0].field, "security.privileged");
        }
        other => panic!("{other:?}"),
    }
    let mut project = ProjectView {
        name: "prod".into(),
        ..Default::default()
    };
    assert!(h.host.validate_project(&project, None).is_ok());
    project
        .config
        .insert("restricted.containers.privilege".into(), "allow".into());
    assert!(matches!(
        h.host.validate_project(&project, None),
        Err(Rejection::Denied { .. })
    ));
}

#[test]
fn devices_are_validated_and_mutated() {
    let h = Harness::new();
    h.install(
        "nopriv",
        wasm::DENY_PRIVILEGED,
        settings(&[("force-readonly-disks", "true")]),
    );
    let inst = instance("default", "c1", &[]);
    let dev = |pairs: &[(&str, &str)]| -> ConfigMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let root = dev(&[("type", "disk"), ("source", "/"), ("path", "/mnt")]);
    match h.host.validate_device(&inst, "hostroot", &root) {
        Err(Rejection::Denied { violations, .. }) => {
            assert_eq!(violations[0].field, "devices.hostroot.source")
        }
        other => panic!("{other:?}"),
    }
    let kmsg = dev(&[("type", "unix-char"), ("path", "/dev/kmsg")]);
    assert!(h.host.validate_device(&inst, "kmsg", &kmsg).is_err());
    let data = dev(&[("type", "disk"), ("source", "/srv/data"), ("path", "/data")]);
    let out = h.host.validate_device(&inst, "data", &data).unwrap();
    assert!(out.mutated());
    assert_eq!(out.value.get("readonly").map(String::as_str), Some("true"));
    assert_eq!(
        out.value.get("source").map(String::as_str),
        Some("/srv/data")
    );
    // Re-validating the mutated device changes nothing more.
    assert!(!h
        .host
        .validate_device(&inst, "data", &out.value)
        .unwrap()
        .mutated());
    let nic = dev(&[("type", "nic"), ("network", "lxdbr0")]);
    assert!(!h
        .host
        .validate_device(&inst, "eth0", &nic)
        .unwrap()
        .mutated());
}

#[test]
fn name_policy_per_project() {
    let h = Harness::new();
    h.install(
        "names",
        wasm::NAME_POLICY,
        settings(&[
            ("default", "[a-z][a-z0-9-]*"),
            ("project.prod", "prod-[0-9]+"),
        ]),
    );
    assert!(create(&h, instance("default", "web-1", &[])).is_ok());
    assert_eq!(
        denied_fields(create(&h, instance("default", "Web", &[]))),
        ["name"]
    );
    assert!(create(&h, instance("prod", "prod-12", &[])).is_ok());
    // Anchored: a partial match is not enough.
    assert!(create(&h, instance("prod", "xprod-12", &[])).is_err());
    assert!(create(&h, instance("prod", "web-1", &[])).is_err());
    // Updates are checked only when the name changes.
    let old = instance("prod", "legacy", &[]);
    let req = InstanceRequest {
        op: InstanceOp::Update {
            previous: Box::new(old.clone()),
        },
        view: old,
    };
    assert!(h.host.validate_instance(&req).is_ok());
    // A broken pattern denies rather than letting everything through.
    h.host
        .update_settings("names", settings(&[("default", "(")]))
        .unwrap();
    match create(&h, instance("default", "web", &[])) {
        Err(Rejection::Denied { violations, .. }) => {
            assert!(violations[0].message.contains("invalid"), "{violations:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn priority_orders_mutations_and_denials() {
    let h = Harness::new();
    let with = |prio: i32, mem: &str| PluginSettings {
        priority: prio,
        ..settings(&[("default.cpu", "1"), ("default.memory", mem)])
    };
    h.install("small", wasm::REQUIRE_LIMITS, with(1, "1GiB"));
    h.install("large", wasm::REQUIRE_LIMITS, with(2, "8GiB"));
    let out = create(&h, instance("default", "c1", &[])).unwrap();
    // The first plugin fills the key; the second then sees it set.
    assert_eq!(out.value.config["limits.memory"], "1GiB");
    assert_eq!(
        out.patches
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>(),
        ["small"]
    );
    h.host.update_settings("large", with(0, "8GiB")).unwrap();
    let out = create(&h, instance("default", "c1", &[])).unwrap();
    assert_eq!(out.value.config["limits.memory"], "8GiB");
    assert_eq!(
        h.host
            .list()
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        ["large", "small"]
    );

    // The first denial in priority order is the one reported.
    h.install(
        "nopriv",
        wasm::DENY_PRIVILEGED,
        PluginSettings {
            priority: -5,
            ..Default::default()
        },
    );
    h.install(
        "names",
        wasm::NAME_POLICY,
        PluginSettings {
            priority: -10,
            ..settings(&[("default", "ok")])
        },
    );
    let r = create(
        &h,
        instance("default", "bad", &[("security.privileged", "1")]),
    );
    assert!(
        matches!(r, Err(Rejection::Denied { ref plugin, .. }) if plugin == "names"),
        "{r:?}"
    );
    h.host
        .update_settings(
            "names",
            PluginSettings {
                priority: 10,
                ..settings(&[("default", "ok")])
            },
        )
        .unwrap();
    let r = create(
        &h,
        instance("default", "bad", &[("security.privileged", "1")]),
    );
    assert!(
        matches!(r, Err(Rejection::Denied { ref plugin, .. }) if plugin == "nopriv"),
        "{r:?}"
    );
}

#[test]
fn readme_example_is_current_and_works() {
    let readme = include_str!("../../../sdk/README.md");
    let source = include_str!("../../../plugins/readme-example/src/lib.rs");
    assert!(
        readme.contains(source),
        "sdk/README.md must show plugins/readme-example/src/lib.rs verbatim"
    );
    assert!(
        source.lines().count() < 30,
        "the README plugin must stay under 30 lines"
    );

    let h = Harness::new();
    let info = h.install("example", wasm::README_EXAMPLE, PluginSettings::default());
    assert_eq!(info.metadata.name, "no-privileged");
    assert_eq!(
        info.capabilities,
        [Capability::InstanceValidator, Capability::Lifecycle]
    );
    assert_eq!(
        denied_fields(create(
            &h,
            instance("default", "c1", &[("security.privileged", "on")])
        )),
        ["security.privileged"]
    );
    assert_eq!(
        denied_fields(create(
            &h,
            instance("default", "c1", &[("limits.memory", "1MB")])
        )),
        ["limits.memory"]
    );
    let out = create(&h, instance("default", "c1", &[])).unwrap();
    assert_eq!(out.value.config["limits.memory"], "1GiB");
    assert!(create(&h, out.value).unwrap().patches.is_empty());
    h.host
        .hook(
            Hook::OnStart,
            &instance("default", "c1", &[]),
            &ConfigMap::new(),
        )
        .unwrap();
    assert!(h
        .logs()
        .iter()
        .any(|l| l.plugin == "example" && l.message == "onstart c1"));
}

/// Calls the cacheable fixture really received (the host's counter, and the
/// fixture's own log line for creates).
fn real_calls(h: &Harness) -> u64 {
    h.host.get("cache").unwrap().calls
}

#[test]
fn reusable_verdicts_skip_repeated_calls_only() {
    let h = Harness::new();
    let info = h.install("cache", wasm::FIXTURE_CACHEABLE, PluginSettings::default());
    assert!(info.reuses_verdicts);
    let c1 = || instance("default", "c1", &[("user.a", "1"), ("limits.cpu", "2")]);
    create(&h, c1()).unwrap();
    create(&h, c1()).unwrap();
    // A key the plugin does not read (trimmed away) does not change the input.
    let mut c1b = c1();
    c1b.config.insert("limits.cpu".into(), "4".into());
    c1b.expanded_config = c1b.config.clone();
    create(&h, c1b).unwrap();
    assert_eq!(real_calls(&h), 1);
    assert_eq!(h.logs().iter().filter(|r| r.message == "called for c1").count(), 1);
    assert_eq!(h.host.get("cache").unwrap().reused, 2);
    // Anything it reads differs: called again (another name, another value).
    create(&h, instance("default", "c2", &[("user.a", "1")])).unwrap();
    create(&h, instance("default", "c1", &[("user.a", "2")])).unwrap();
    assert_eq!(real_calls(&h), 3);
    // An update is another input than a create of the same view.
    h.host
        .validate_instance(&InstanceRequest {
            op: InstanceOp::Update { previous: Box::new(c1()) },
            view: c1(),
        })
        .unwrap();
    assert_eq!(real_calls(&h), 4);
    // Denials are reused as denials.
    let deny = || instance("default", "d", &[("user.deny", "1")]);
    assert_eq!(denied_fields(create(&h, deny())), ["user.deny"]);
    assert_eq!(denied_fields(create(&h, deny())), ["user.deny"]);
    assert_eq!(real_calls(&h), 5);
    // A settings change forgets every verdict.
    h.host.update_settings("cache", settings(&[("k", "v")])).unwrap();
    create(&h, c1()).unwrap();
    assert_eq!(real_calls(&h), 6);
}

#[test]
fn reusable_verdicts_never_keep_failures_and_refuse_queries() {
    let h = Harness::new();
    h.install("cache", wasm::FIXTURE_CACHEABLE, PluginSettings::default());
    // A failure (here a panic) is reported every time: the plugin is called again.
    let p = || instance("default", "p", &[("user.panic", "1")]);
    for _ in 0..2 {
        assert!(matches!(create(&h, p()), Err(Rejection::Failed(_))));
    }
    assert_eq!(h.host.get("cache").unwrap().failures, 2);
    // Host queries are refused to it, even for an instance that exists.
    h.db.put(instance("default", "other", &[]));
    let r = create(&h, instance("default", "q", &[("user.query", "other")]));
    let Err(Rejection::Denied { violations, .. }) = r else { panic!("expected a denial, got {r:?}") };
    assert!(violations[0].message.contains("not available to a plugin whose verdicts are reused"), "{violations:?}");
}

#[test]
fn verdicts_are_not_reused_with_wasi_grants_or_without_the_promise() {
    let h = Harness::new();
    let mut s = PluginSettings::default();
    s.grants.clocks = true;
    let info = h.install("cache", wasm::FIXTURE_CACHEABLE, s);
    assert!(!info.reuses_verdicts);
    let c = || instance("default", "c", &[("user.a", "1")]);
    create(&h, c()).unwrap();
    create(&h, c()).unwrap();
    assert_eq!(real_calls(&h), 2);
    // Granted plugins get their queries back.
    h.db.put(instance("default", "other", &[]));
    let r = create(&h, instance("default", "q", &[("user.query", "other")]));
    let Err(Rejection::Denied { violations, .. }) = r else { panic!("expected a denial, got {r:?}") };
    assert_eq!(violations[0].message, "got other");
    // A plugin that does not declare it (max-running uses queries) is always called.
    let info = h.install("running", wasm::MAX_RUNNING, PluginSettings::default());
    assert!(!info.reuses_verdicts);
}

#[test]
fn reusable_verdicts_span_names_a_plugin_does_not_read() {
    // require-limits reads limits.* and the project, not the name: one verdict
    // serves every instance with the same limits in a project.
    let h = Harness::new();
    let info = h.install("limits", wasm::REQUIRE_LIMITS, PluginSettings::default());
    assert!(info.reuses_verdicts);
    let lim = [("limits.cpu", "2"), ("limits.memory", "1GiB"), ("user.x", "y")];
    for n in ["a", "b", "c"] {
        create(&h, instance("default", n, &lim)).unwrap();
    }
    let got = h.host.get("limits").unwrap();
    assert_eq!((got.calls, got.reused), (1, 2));
    // Another project, or other limits: new inputs.
    create(&h, instance("p2", "a", &lim)).unwrap();
    assert_eq!(
        denied_fields(create(&h, instance("default", "d", &[("limits.cpu", "2")]))),
        ["limits.memory"]
    );
    assert_eq!(
        denied_fields(create(&h, instance("default", "e", &[("limits.cpu", "2")]))),
        ["limits.memory"]
    );
    let got = h.host.get("limits").unwrap();
    assert_eq!((got.calls, got.reused), (3, 3));
}
