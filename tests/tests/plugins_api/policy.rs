//! Every plugin point that exists in the daemon today, with real plugins: instance
//! create/update/rename validation (through `lxc`), device, profile and project
//! validation, filters and visibility, lifecycle hooks and their events.

use berth_tests::{wasm, Daemon};
use serde_json::json;

use crate::support::*;

#[test]
fn require_limits_denies_and_mutates_through_lxc() {
    let d = Daemon::start();
    install(&d, "require-limits", wasm::REQUIRE_LIMITS);
    let err = lxc_err(&d, &["init", "--empty", "c1"]);
    assert!(err.contains("limits.cpu must be set") && err.contains("require-limits"), "{err}");
    // The error envelope carries the plugin and its violations.
    let body = assert_error(&create(&d, "c1", json!({})).unwrap_err(), 400, "denied by plugin require-limits");
    assert_eq!(body["metadata"]["plugin"], "require-limits");
    let fields: Vec<&str> =
        body["metadata"]["violations"].as_array().unwrap().iter().map(|v| v["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["limits.cpu", "limits.memory"]);

    d.lxc_ok(&["init", "--empty", "c1", "-c", "limits.cpu=1", "-c", "limits.memory=512MiB"]);
    let err = lxc_err(&d, &["config", "set", "c1", "limits.memory=lots"]);
    assert!(err.contains("is not a size"), "{err}");
    let err = lxc_err(&d, &["config", "unset", "c1", "limits.cpu"]);
    assert!(err.contains("limits.cpu must be set"), "{err}");

    // Mutation: defaults fill the missing keys.
    set(&d, "require-limits", json!({"config": {"default.cpu": "2", "default.memory": "1GiB"}}));
    d.lxc_ok(&["init", "--empty", "c2"]);
    let c2 = d.get("/1.0/instances/c2")["metadata"].clone();
    assert_eq!(c2["config"]["limits.cpu"], "2");
    assert_eq!(c2["config"]["limits.memory"], "1GiB");
    d.lxc_ok(&["config", "unset", "c2", "limits.cpu"]);
    assert_eq!(d.get("/1.0/instances/c2")["metadata"]["config"]["limits.cpu"], "2");

    // Mutations are validated again by the daemon: a patch to an invalid value is refused.
    set(&d, "require-limits", json!({"config": {"default.cpu": "many"}}));
    let err = lxc_err(&d, &["init", "--empty", "c3"]);
    assert!(err.contains("limits.cpu"), "{err}");
    assert_eq!(d.req("GET", "/1.0/instances/c3", None).status, 404);
}

#[test]
fn deny_privileged_everywhere() {
    let d = Daemon::start();
    install(&d, "deny-privileged", wasm::DENY_PRIVILEGED);
    let err = lxc_err(&d, &["init", "--empty", "c1", "-c", "security.privileged=true"]);
    assert!(err.contains("privileged containers are not allowed"), "{err}");
    d.lxc_ok(&["init", "--empty", "c1"]);
    let err = lxc_err(&d, &["config", "set", "c1", "security.privileged=true"]);
    assert!(err.contains("privileged containers are not allowed"), "{err}");
    // Devices, in the context of their instance.
    let err = lxc_err(&d, &["config", "device", "add", "c1", "host", "disk", "source=/", "path=/mnt"]);
    assert!(err.contains("devices.host.source") && err.contains("host root"), "{err}");
    // Device mutation: host-path disks made read-only.
    set(&d, "deny-privileged", json!({"config": {"force-readonly-disks": "true"}}));
    d.lxc_ok(&["config", "device", "add", "c1", "data", "disk", "source=/tmp", "path=/data"]);
    assert_eq!(d.get("/1.0/instances/c1")["metadata"]["devices"]["data"]["readonly"], "true");
    // Profiles and projects.
    let err = lxc_err(&d, &["profile", "set", "default", "security.privileged", "true"]);
    assert!(err.contains("privileged"), "{err}");
    let r = d.req("POST", "/1.0/profiles", Some(json!({"name": "p1", "config": {"security.privileged": "true"}})));
    assert_eq!(assert_error(&r, 400, "privileged")["metadata"]["plugin"], "deny-privileged");
    let r = d.req("POST", "/1.0/projects", Some(json!({"name": "p1", "config": {"restricted.containers.privilege": "allow"}})));
    assert_error(&r, 400, "projects may not allow privileged containers");
    assert_eq!(d.req("POST", "/1.0/projects", Some(json!({"name": "p2"}))).status, 201);
    let r = d.req("PATCH", "/1.0/projects/p2", Some(json!({"config": {"restricted.containers.privilege": "allow"}})));
    assert_error(&r, 400, "privileged");
}

#[test]
fn name_policy_on_create_and_rename() {
    let d = Daemon::start();
    install(&d, "name-policy", wasm::NAME_POLICY);
    set(&d, "name-policy", json!({"config": {"default": "web-[0-9]+"}}));
    let err = lxc_err(&d, &["init", "--empty", "db1"]);
    assert!(err.contains("does not match"), "{err}");
    d.lxc_ok(&["init", "--empty", "web-1"]);
    let err = lxc_err(&d, &["rename", "web-1", "db1"]);
    assert!(err.contains("does not match"), "{err}");
    d.lxc_ok(&["rename", "web-1", "web-2"]);
    assert_eq!(names(&d, ""), ["web-2"]);
}

#[test]
fn owner_filter_and_visibility() {
    let d = Daemon::start();
    create(&d, "c1", json!({"user.owner": "alice"})).unwrap();
    create(&d, "c2", json!({"user.owner": "bob"})).unwrap();
    create(&d, "c3", json!({})).unwrap();
    // No plugin offers the predicate yet.
    let r = d.req("GET", "/1.0/instances?filter=plugin.owner%20eq%20alice", None);
    assert_error(&r, 400, "plugin.owner");
    install(&d, "owner", wasm::OWNER);
    for rec in ["", "&recursion=1", "&recursion=2"] {
        assert_eq!(names(&d, &format!("filter=plugin.owner%20eq%20alice{rec}")), ["c1"], "recursion {rec}");
    }
    assert_eq!(names(&d, "filter=plugin.owner%20ne%20alice&recursion=1"), ["c2", "c3"]);
    assert_eq!(names(&d, "filter=plugin.owner%20eq%20bob%20or%20name%20eq%20c3"), ["c2", "c3"]);
    assert_error(&d.req("GET", "/1.0/instances?filter=plugin.nope%20eq%201", None), 400, "plugin.nope");
    // The plugin's own error for a bad value is a 400 too.
    assert_error(&d.req("GET", "/1.0/instances?filter=plugin.owner%20eq%20%22%22", None), 400, "owner");

    // Visibility applies to every listing and to GET.
    set(&d, "owner", json!({"config": {"visible-owners": "alice", "hide-unowned": "true"}}));
    for rec in ["", "recursion=1", "recursion=2"] {
        assert_eq!(names(&d, rec), ["c1"], "recursion {rec}");
    }
    assert_eq!(names(&d, "all-projects=true&recursion=1"), ["c1"]);
    assert_eq!(d.req("GET", "/1.0/instances/c2", None).status, 404);
    assert_eq!(d.req("GET", "/1.0/instances/c1", None).status, 200);
    let out = d.lxc_ok(&["list", "--format", "csv", "-c", "n"]);
    assert_eq!(out.trim(), "c1");
    set(&d, "owner", json!({"enabled": false}));
    assert_eq!(names(&d, ""), ["c1", "c2", "c3"]);
}

#[test]
fn audit_hooks_and_denial_events() {
    let d = Daemon::start();
    install(&d, "audit", wasm::AUDIT);
    let events = with_events(
        &d,
        || {
            d.lxc_ok(&["init", "--empty", "c1"]);
            d.lxc_ok(&["config", "set", "c1", "user.x=1"]);
            d.lxc_ok(&["rename", "c1", "c2"]);
            d.lxc_ok(&["delete", "c2"]);
        },
        |e| plugin_logs(e).len() >= 4,
    );
    let logs: Vec<String> = plugin_logs(&events).into_iter().map(|(p, m)| format!("{p}: {m}")).collect();
    assert_eq!(logs.len(), 4, "{events:?}");
    assert!(logs[0].starts_with("audit: audit pre-create default/c1"), "{logs:?}");
    assert!(logs[1].starts_with("audit: audit on-update default/c1"), "{logs:?}");
    assert!(logs[2].starts_with("audit: audit on-rename default/c2 old-name=c1"), "{logs:?}");
    assert!(logs[3].starts_with("audit: audit pre-delete default/c2"), "{logs:?}");

    // Only the hooks a plugin subscribed to are delivered.
    set(&d, "audit", json!({"hooks": ["pre-delete"]}));
    let events = with_events(
        &d,
        || {
            d.lxc_ok(&["init", "--empty", "c3"]);
            d.lxc_ok(&["delete", "c3"]);
        },
        |e| !plugin_logs(e).is_empty() && !lifecycle(e, "instance-deleted").is_empty(),
    );
    let logs = plugin_logs(&events);
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].1.contains("pre-delete default/c3"));

    // Denials are events naming the plugin, the point and the reasons.
    install(&d, "limits", wasm::REQUIRE_LIMITS);
    let events = with_events(&d, || drop(create(&d, "c4", json!({})).unwrap_err()), |e| !lifecycle(e, "plugin-denied").is_empty());
    let denied = lifecycle(&events, "plugin-denied");
    assert_eq!(denied.len(), 1, "{events:?}");
    let ctx = &denied[0]["metadata"]["context"];
    assert_eq!(ctx["plugin"], "limits");
    assert_eq!(ctx["point"], "validate-create");
    assert!(ctx["reasons"][0].as_str().unwrap().contains("limits.cpu"), "{ctx}");
}
