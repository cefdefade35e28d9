//! `/1.0/plugins`: install, list, settings, removal, bad components, hot reload,
//! ordering, persistence across restarts, and the `berthd plugin` client.

use berth_tests::{wasm, Daemon};
use serde_json::json;

use crate::support::*;

#[test]
fn extension_install_list_get_remove() {
    let d = Daemon::start();
    let exts = d.get("/1.0")["metadata"]["api_extensions"].clone();
    assert!(exts.as_array().unwrap().iter().any(|e| e == "berth_plugins"), "{exts}");
    assert_eq!(d.get("/1.0/plugins")["metadata"], json!([]));

    let events = with_events(&d, || install(&d, "owner", wasm::OWNER), |e| !lifecycle(e, "plugin-installed").is_empty());
    let ev = lifecycle(&events, "plugin-installed");
    assert_eq!(ev.len(), 1, "{events:?}");
    assert_eq!(ev[0]["metadata"]["context"]["plugin"], "owner");

    assert_eq!(d.get("/1.0/plugins")["metadata"], json!(["/1.0/plugins/owner"]));
    let all = d.get("/1.0/plugins?recursion=1")["metadata"].clone();
    assert_eq!(all[0]["name"], "owner");
    let p = d.get("/1.0/plugins/owner")["metadata"].clone();
    assert_eq!(p["status"], "Loaded");
    assert_eq!(p["enabled"], true);
    assert_eq!(p["failure_policy"], "fail-closed");
    assert_eq!(p["capabilities"], json!(["filter"]));
    assert_eq!(p["predicates"], json!(["owner"]));
    assert_eq!(p["sha256"].as_str().unwrap().len(), 64);

    // PUT replaces the settings (ETag checked), PATCH merges.
    let etag = d.req("GET", "/1.0/plugins/owner", None).header("etag").unwrap();
    let r = d.raw("PUT", "/1.0/plugins/owner", &[("if-match", "nope")], b"{}".to_vec());
    assert_eq!(r.status, 412);
    let body = serde_json::to_vec(&json!({"priority": 7, "config": {"hide-unowned": "true"}})).unwrap();
    let r = d.raw("PUT", "/1.0/plugins/owner", &[("if-match", &etag)], body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    set(&d, "owner", json!({"config": {"visible-owners": "alice"}, "hooks": ["pre-create"]}));
    let p = d.get("/1.0/plugins/owner")["metadata"].clone();
    assert_eq!(p["priority"], 7);
    assert_eq!(p["config"], json!({"hide-unowned": "true", "visible-owners": "alice"}));
    assert_eq!(p["hooks"], json!(["pre-create"]));
    assert_error(&d.req("PATCH", "/1.0/plugins/owner", Some(json!({"failure_policy": "sometimes"}))), 400, "failure_policy");
    assert_error(&d.req("PATCH", "/1.0/plugins/owner", Some(json!({"hooks": ["pre-launch"]}))), 400, "pre-launch");
    assert_error(&d.req("PATCH", "/1.0/plugins/owner", Some(json!({"limits": {"deadline_ms": 0}}))), 400, "deadline");

    let events = with_events(
        &d,
        || assert_eq!(d.req("DELETE", "/1.0/plugins/owner", None).status, 200),
        |e| !lifecycle(e, "plugin-removed").is_empty(),
    );
    assert_eq!(lifecycle(&events, "plugin-removed").len(), 1);
    assert_eq!(d.get("/1.0/plugins")["metadata"], json!([]));
    assert_error(&d.req("GET", "/1.0/plugins/owner", None), 404, "owner");
    assert_error(&d.req("DELETE", "/1.0/plugins/owner", None), 404, "owner");
}

#[test]
fn bad_components_are_400_saying_why() {
    let d = Daemon::start();
    let r = d.raw("POST", "/1.0/plugins?name=junk", &[("content-type", "application/octet-stream")], b"garbage".to_vec());
    assert_error(&r, 400, "not a valid WebAssembly component");
    assert_error(&install_raw(&d, "future", wasm::FIXTURE_WRONG_VERSION), 400, "berth:plugin@0.1");
    assert_error(&install_raw(&d, "nothing", wasm::FIXTURE_DESCRIBE_ONLY), 400, "exports none");
    assert_error(&install_raw(&d, "shape", wasm::FIXTURE_WRONG_SHAPE), 400, "does not match");
    assert_error(&install_raw(&d, "Bad/Name", wasm::OWNER), 400, "");
    let r = d.raw("POST", "/1.0/plugins", &[("content-type", "application/octet-stream")], b"x".to_vec());
    assert_error(&r, 400, "name");
    // Nothing was stored.
    assert_eq!(d.get("/1.0/plugins")["metadata"], json!([]));
    assert!(!d.data_dir().join("plugins/junk.wasm").exists());
    // The daemon still serves.
    assert_eq!(d.req("GET", "/1.0", None).status, 200);
}

#[test]
fn hot_reload_without_restart() {
    let d = Daemon::start();
    install(&d, "names", wasm::NAME_POLICY);
    set(&d, "names", json!({"config": {"default": "web-[0-9]+"}}));
    assert_error(&create(&d, "db1", json!({})).unwrap_err(), 400, "does not match");
    // Settings: disabling applies to the next request.
    set(&d, "names", json!({"enabled": false}));
    create(&d, "db1", json!({})).unwrap();
    set(&d, "names", json!({"enabled": true, "config": {"default": "db[0-9]+"}}));
    create(&d, "db2", json!({})).unwrap();
    assert_error(&create(&d, "web-1", json!({})).unwrap_err(), 400, "does not match");
    // Code: installing under the same name replaces the component, keeping settings.
    let events = with_events(&d, || install(&d, "names", wasm::DENY_PRIVILEGED), |e| !lifecycle(e, "plugin-reloaded").is_empty());
    assert_eq!(lifecycle(&events, "plugin-reloaded").len(), 1);
    create(&d, "web-1", json!({})).unwrap();
    assert_error(&create(&d, "web-2", json!({"security.privileged": "true"})).unwrap_err(), 400, "privileged");
    assert_eq!(d.get("/1.0/plugins/names")["metadata"]["config"]["default"], "db[0-9]+");
}

#[test]
fn priority_orders_validators_and_hooks() {
    let d = Daemon::start();
    install(&d, "names", wasm::NAME_POLICY);
    install(&d, "limits", wasm::REQUIRE_LIMITS);
    set(&d, "names", json!({"config": {"default": "ok[0-9]*"}, "priority": 1}));
    set(&d, "limits", json!({"priority": 2}));
    // Both would deny "bad": the first in priority order answers.
    let body = assert_error(&create(&d, "bad", json!({})).unwrap_err(), 400, "names");
    assert_eq!(body["metadata"]["plugin"], "names");
    set(&d, "limits", json!({"priority": 0}));
    let body = assert_error(&create(&d, "bad", json!({})).unwrap_err(), 400, "limits");
    assert_eq!(body["metadata"]["plugin"], "limits");
    assert_eq!(body["metadata"]["violations"][0]["field"], "limits.cpu");
    d.req("DELETE", "/1.0/plugins/names", None);
    d.req("DELETE", "/1.0/plugins/limits", None);

    // Hooks: audit-a and audit-b log in priority order.
    install(&d, "audit-a", wasm::AUDIT);
    install(&d, "audit-b", wasm::AUDIT);
    set(&d, "audit-a", json!({"priority": 5}));
    set(&d, "audit-b", json!({"priority": -5}));
    let events = with_events(&d, || { create(&d, "c1", json!({})).unwrap(); }, |e| plugin_logs(e).len() >= 2);
    let order: Vec<String> = plugin_logs(&events).into_iter().map(|(p, _)| p).collect();
    assert_eq!(order, ["audit-b", "audit-a"], "{events:?}");
    set(&d, "audit-b", json!({"priority": 10}));
    let events = with_events(&d, || { create(&d, "c2", json!({})).unwrap(); }, |e| plugin_logs(e).len() >= 2);
    let order: Vec<String> = plugin_logs(&events).into_iter().map(|(p, _)| p).collect();
    assert_eq!(order, ["audit-a", "audit-b"]);
}

#[test]
fn plugins_persist_across_restarts() {
    let mut d = Daemon::start();
    install(&d, "limits", wasm::REQUIRE_LIMITS);
    set(&d, "limits", json!({"config": {"default.cpu": "3", "default.memory": "1GiB"}, "priority": 4}));
    install(&d, "owner", wasm::OWNER);
    assert!(d.data_dir().join("plugins/limits.wasm").is_file());
    d.kill9();
    d.spawn();
    let all = d.get("/1.0/plugins?recursion=1")["metadata"].clone();
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let p = d.get("/1.0/plugins/limits")["metadata"].clone();
    assert_eq!(p["status"], "Loaded");
    assert_eq!(p["priority"], 4);
    assert_eq!(p["from_cache"], true, "loaded from the compiled-code cache: {p}");
    create(&d, "c1", json!({})).unwrap();
    assert_eq!(d.get("/1.0/instances/c1")["metadata"]["config"]["limits.cpu"], "3");

    // A plugin whose file went bad is reported, and the daemon still starts.
    d.kill9();
    std::fs::write(d.data_dir().join("plugins/owner.wasm"), b"corrupt").unwrap();
    d.spawn();
    let p = d.get("/1.0/plugins/owner")["metadata"].clone();
    assert_eq!(p["status"], "Error", "{p}");
    assert!(p["error"].as_str().unwrap().contains("not a valid"), "{p}");
    assert_eq!(d.get("/1.0/plugins/limits")["metadata"]["status"], "Loaded");
    assert_eq!(d.req("DELETE", "/1.0/plugins/owner", None).status, 200);
}

#[test]
fn berthd_plugin_subcommands() {
    let d = Daemon::start();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(berth_tests::berthd_bin())
            .arg("--data-dir")
            .arg(d.data_dir())
            .arg("plugin")
            .args(args)
            .output()
            .unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
    };
    let (ok, out) = run(&["install", wasm::REQUIRE_LIMITS, "--name", "limits"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["set", "limits", "config.default.cpu=2", "priority=3", "deadline_ms=80"]);
    assert!(ok, "{out}");
    let p = d.get("/1.0/plugins/limits")["metadata"].clone();
    assert_eq!(p["config"]["default.cpu"], "2");
    assert_eq!(p["priority"], 3);
    assert_eq!(p["limits"]["deadline_ms"], 80);
    let (ok, out) = run(&["list"]);
    assert!(ok && out.contains("limits") && out.contains("validate-instance"), "{out}");
    let (ok, out) = run(&["install", wasm::FIXTURE_WRONG_VERSION, "--name", "future"]);
    assert!(!ok && out.contains("berth:plugin"), "{out}");
    let (ok, out) = run(&["set", "limits", "bogus=1"]);
    assert!(!ok, "{out}");
    let (ok, out) = run(&["remove", "limits"]);
    assert!(ok, "{out}");
    assert_eq!(d.get("/1.0/plugins")["metadata"], json!([]));
}
