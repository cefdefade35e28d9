//! REST API tests over the real unix socket of a real berthd.

use berth_tests::{block_on, events, Daemon};
use futures_util::StreamExt;
use serde_json::{json, Value};

fn create(d: &Daemon, name: &str, extra: Value) -> Value {
    let mut body = json!({"name": name, "source": {"type": "none"}});
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    let r = d.req("POST", "/1.0/instances", Some(body));
    let op = d.wait_op(&r);
    assert_eq!(op["status"], "Success", "{op}");
    op
}

fn assert_error(r: &berth_tests::Resp, code: u16, needle: &str) {
    let body = r.json();
    assert_eq!(r.status, code, "body: {body}");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error_code"], code);
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "error {msg:?} should mention {needle:?}");
}

#[test]
fn handshake_and_envelopes() {
    let d = Daemon::start();
    let r = d.req("GET", "/1.0", None);
    assert_eq!(r.status, 200);
    assert!(r.header("etag").is_some());
    let v = r.json();
    assert_eq!(v["type"], "sync");
    assert_eq!(v["status_code"], 200);
    let m = &v["metadata"];
    assert_eq!(m["auth"], "trusted");
    assert_eq!(m["api_version"], "1.0");
    assert_eq!(m["environment"]["server_clustered"], false);
    assert!(!m["environment"]["storage"].as_str().unwrap().is_empty());
    let exts: Vec<&str> = m["api_extensions"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for e in ["instances", "api_filtering", "container_full", "instance_get_full", "projects"] {
        assert!(exts.contains(&e), "missing extension {e}");
    }
    assert_eq!(m["environment"]["project"], "default");
    let r = d.req("GET", "/1.0?project=foo", None);
    assert_eq!(r.json()["metadata"]["environment"]["project"], "foo");
    assert_error(&d.req("GET", "/1.0/nope", None), 404, "not found");
    assert_error(&d.req("GET", "/1.0/instances/ghost", None), 404, "Instance not found");
    assert_error(&d.req("DELETE", "/1.0", None), 501, "not implemented");
}

#[test]
fn instance_record_lifecycle() {
    let d = Daemon::start();
    let r = d.req("POST", "/1.0/instances", Some(json!({"name": "c1", "source": {"type": "none"}, "config": {"user.a": "b"}})));
    assert_eq!(r.status, 202);
    let loc = r.header("location").expect("Location");
    assert!(loc.starts_with("/1.0/operations/"));
    let body = r.json();
    assert_eq!(body["type"], "async");
    assert_eq!(body["metadata"]["resources"]["instances"][0], "/1.0/instances/c1");
    let op = d.wait_op(&r);
    assert_eq!(op["status_code"], 200);

    let r = d.req("GET", "/1.0/instances/c1", None);
    let etag = r.header("etag").expect("etag");
    let inst = r.json()["metadata"].clone();
    assert_eq!(inst["status"], "Stopped");
    assert_eq!(inst["type"], "container");
    assert_eq!(inst["profiles"], json!(["default"]));
    assert_eq!(inst["expanded_config"]["user.a"], "b");
    assert!(inst["config"]["volatile.uuid"].as_str().is_some_and(|u| u.len() == 36));

    // recursion=1 on one instance gives InstanceFull.
    let full = d.get("/1.0/instances/c1?recursion=1")["metadata"].clone();
    assert_eq!(full["state"]["status"], "Stopped");

    // PUT with a stale ETag is refused, with the right one accepted.
    let put = json!({"config": {"user.a": "c"}, "devices": {}, "profiles": ["default"], "ephemeral": false, "description": "d"});
    let r = d.raw("PUT", "/1.0/instances/c1", &[("If-Match", "\"deadbeef\"")], serde_json::to_vec(&put).unwrap());
    assert_error(&r, 412, "ETag");
    let r = d.raw("PUT", "/1.0/instances/c1", &[("If-Match", &etag)], serde_json::to_vec(&put).unwrap());
    d.wait_op(&r);
    let inst = d.get("/1.0/instances/c1")["metadata"].clone();
    assert_eq!(inst["config"]["user.a"], "c");
    assert_eq!(inst["description"], "d");
    assert!(inst["config"]["volatile.uuid"].is_string(), "volatile keys survive a PUT that omits them");

    // PATCH merges.
    let r = d.req("PATCH", "/1.0/instances/c1", Some(json!({"config": {"user.b": "x"}})));
    d.wait_op(&r);
    let inst = d.get("/1.0/instances/c1")["metadata"].clone();
    assert_eq!(inst["config"]["user.a"], "c");
    assert_eq!(inst["config"]["user.b"], "x");

    // Rename, conflicts, delete.
    create(&d, "c2", json!({}));
    assert_error(&d.req("POST", "/1.0/instances/c1", Some(json!({"name": "c2"}))), 409, "already in use");
    d.wait_op(&d.req("POST", "/1.0/instances/c1", Some(json!({"name": "c3"}))));
    assert_eq!(d.req("GET", "/1.0/instances/c1", None).status, 404);
    let list = d.get("/1.0/instances")["metadata"].clone();
    assert_eq!(list, json!(["/1.0/instances/c2", "/1.0/instances/c3"]));
    assert_error(&d.req("POST", "/1.0/instances", Some(json!({"name": "c2", "source": {"type": "none"}}))), 409, "already exists");
    d.wait_op(&d.req("DELETE", "/1.0/instances/c3", None));
    assert_eq!(d.req("GET", "/1.0/instances/c3", None).status, 404);
}

#[test]
fn generated_names_and_instance_types() {
    let d = Daemon::start();
    let r = d.req("POST", "/1.0/instances", Some(json!({"source": {"type": "none"}, "instance_type": "c2-m1"})));
    let op = d.wait_op(&r);
    let url = op["resources"]["instances"][0].as_str().unwrap().to_string();
    let inst = d.get(&url)["metadata"].clone();
    assert!(!inst["name"].as_str().unwrap().is_empty());
    assert_eq!(inst["config"]["limits.cpu"], "2");
    assert_eq!(inst["config"]["limits.memory"], "1024MiB");
    assert_error(&d.req("POST", "/1.0/instances", Some(json!({"source": {"type": "none"}, "instance_type": "huge"}))), 400, "instance type");
}

#[test]
fn bad_input_is_4xx_naming_the_field() {
    let d = Daemon::start();
    assert_error(&d.raw("POST", "/1.0/instances", &[], b"{not json".to_vec()), 400, "Invalid request body");
    assert_error(&d.req("POST", "/1.0/instances", Some(json!({"name": "x", "ephemeral": "yes"}))), 400, "ephemeral");
    assert_error(&d.req("POST", "/1.0/instances", Some(json!({"name": "x", "config": {"limits.cpu": 2}}))), 400, "config");
    assert_error(&d.req("POST", "/1.0/instances", Some(json!({"name": "-bad", "source": {"type": "none"}}))), 400, "");
    assert_error(&d.req("POST", "/1.0/instances", Some(json!({"name": "x", "type": "toaster"}))), 400, "toaster");
    assert_error(&d.req("POST", "/1.0/instances", Some(json!({"name": "x", "source": {"type": "teleport"}}))), 400, "teleport");
    let huge = vec![b' '; 5 << 20];
    assert_error(&d.raw("POST", "/1.0/instances", &[], huge), 413, "too large");
    assert_error(&d.req("GET", "/1.0/instances?filter=name%20eq", None), 400, "Invalid filter");
    assert_error(&d.req("POST", "/1.0/profiles", Some(json!({"name": "a/b"}))), 400, "Invalid profile name");
    // Nothing was half-written by any of the above.
    assert_eq!(d.get("/1.0/instances")["metadata"], json!([]));
    assert_eq!(d.get("/1.0/profiles")["metadata"], json!(["/1.0/profiles/default"]));
}

#[test]
fn filters_and_recursion() {
    let d = Daemon::start();
    for n in ["web1", "web2", "db1"] {
        create(&d, n, json!({"config": {"user.role": if n.starts_with("web") { "web" } else { "db" }}}));
    }
    let names = |path: &str| -> Vec<String> {
        d.get(path)["metadata"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap_or(v.as_str().unwrap_or("")).to_string()).collect()
    };
    assert_eq!(names("/1.0/instances?recursion=1&filter=name%20eq%20web.*"), ["web1", "web2"]);
    assert_eq!(names("/1.0/instances?recursion=1&filter=config.user.role%20eq%20db"), ["db1"]);
    assert_eq!(names("/1.0/instances?recursion=2&filter=name%20eq%20db1%20or%20name%20eq%20web2"), ["db1", "web2"]);
    assert_eq!(names("/1.0/instances?recursion=1&filter=not%20name%20eq%20web1"), ["db1", "web2"]);
    let urls = d.get("/1.0/instances?filter=name%20eq%20web1")["metadata"].clone();
    assert_eq!(urls, json!(["/1.0/instances/web1"]));
    let full = d.get("/1.0/instances?recursion=2")["metadata"].clone();
    assert_eq!(full.as_array().unwrap().len(), 3);
    assert_eq!(full[0]["state"]["status"], "Stopped");
    assert!(full[0].get("snapshots").is_some() && full[0].get("backups").is_some());
}

#[test]
fn projects_and_all_projects() {
    let d = Daemon::start();
    let r = d.req("POST", "/1.0/projects", Some(json!({"name": "p1", "config": {"features.profiles": "true"}})));
    assert_eq!(r.status, 201, "{}", r.json());
    assert_eq!(r.header("location").as_deref(), Some("/1.0/projects/p1"));
    assert_error(&d.req("POST", "/1.0/projects", Some(json!({"name": "p1"}))), 409, "already exists");
    assert_error(&d.req("POST", "/1.0/projects", Some(json!({"name": "p2", "config": {"bogus": "1"}}))), 400, "bogus");
    create(&d, "a", json!({}));
    // A project with its own profiles starts with an empty default profile (as in LXD).
    assert_error(&d.req("POST", "/1.0/instances?project=p1", Some(json!({"name": "a", "source": {"type": "none"}}))), 400, "root");
    let root = json!({"devices": {"root": {"type": "disk", "path": "/", "pool": "default"}}});
    assert_eq!(d.req("PATCH", "/1.0/profiles/default?project=p1", Some(root)).status, 200);
    let r = d.req("POST", "/1.0/instances?project=p1", Some(json!({"name": "a", "source": {"type": "none"}})));
    d.wait_op(&r);
    let p1 = d.get("/1.0/projects/p1")["metadata"].clone();
    assert!(p1["used_by"].as_array().unwrap().contains(&json!("/1.0/instances/a?project=p1")));
    let all = d.get("/1.0/instances?recursion=1&all-projects=true")["metadata"].clone();
    let projects: Vec<&str> = all.as_array().unwrap().iter().map(|i| i["project"].as_str().unwrap()).collect();
    assert_eq!(projects, ["default", "p1"]);
    assert_error(&d.req("DELETE", "/1.0/projects/p1", None), 400, "empty");
    assert_error(&d.req("GET", "/1.0/instances?project=nope", None), 404, "Project");
    d.wait_op(&d.req("DELETE", "/1.0/instances/a?project=p1", None));
    let op = d.wait_op(&d.req("POST", "/1.0/projects/p1", Some(json!({"name": "p9"}))));
    assert_eq!(op["status"], "Success", "{op}");
    assert_eq!(d.req("DELETE", "/1.0/projects/p9", None).status, 200);
    assert_error(&d.req("DELETE", "/1.0/projects/default", None), 403, "default");
}

#[test]
fn profiles_crud_used_by_and_rename() {
    let d = Daemon::start();
    let r = d.req("POST", "/1.0/profiles", Some(json!({"name": "web", "config": {"user.x": "1"}, "description": "w"})));
    assert_eq!(r.status, 201);
    create(&d, "c1", json!({"profiles": ["default", "web"]}));
    let p = d.get("/1.0/profiles/web")["metadata"].clone();
    assert_eq!(p["used_by"], json!(["/1.0/instances/c1"]));
    assert_eq!(d.get("/1.0/instances/c1")["metadata"]["expanded_config"]["user.x"], "1");
    assert_error(&d.req("DELETE", "/1.0/profiles/web", None), 400, "in use");
    assert_eq!(d.req("POST", "/1.0/profiles/web", Some(json!({"name": "www"}))).status, 201);
    assert_eq!(d.get("/1.0/instances/c1")["metadata"]["profiles"], json!(["default", "www"]));
    assert_error(&d.req("POST", "/1.0/instances", Some(json!({"name": "c2", "source": {"type": "none"}, "profiles": ["nope"]}))), 400, "nope");
    let r = d.req("PATCH", "/1.0/profiles/www", Some(json!({"config": {"user.y": "2"}})));
    assert_eq!(r.status, 200);
    assert_eq!(d.get("/1.0/instances/c1")["metadata"]["expanded_config"]["user.y"], "2");
    assert_error(&d.req("DELETE", "/1.0/profiles/default", None), 403, "default");
}

#[test]
fn operations_wait_list_and_cancel() {
    let d = Daemon::start();
    let r = d.req("POST", "/1.0/instances", Some(json!({"name": "c1", "source": {"type": "none"}})));
    let op_url = r.json()["operation"].as_str().unwrap().to_string();
    let id = op_url.rsplit('/').next().unwrap().to_string();
    let w = d.get(&format!("{op_url}/wait?timeout=5"))["metadata"].clone();
    assert_eq!(w["id"], id);
    assert_eq!(w["status"], "Success");
    let list = d.get("/1.0/operations")["metadata"].clone();
    assert!(list["success"].as_array().unwrap().contains(&json!(op_url)));
    let list = d.get("/1.0/operations?recursion=1")["metadata"].clone();
    assert!(list["success"].as_array().unwrap().iter().any(|o| o["id"] == id));
    assert_error(&d.req("DELETE", &op_url, None), 400, "");
    assert_error(&d.req("GET", "/1.0/operations/nope", None), 404, "Operation not found");
    assert_error(&d.req("GET", &format!("{op_url}/wait?timeout=abc"), None), 400, "timeout");
}

#[test]
fn events_websocket_reports_operations_and_lifecycle() {
    let d = Daemon::start();
    block_on(async {
        let mut ws = events(&d.socket, "").await.unwrap();
        let mut other = events(&d.socket, "?project=other&type=lifecycle").await.unwrap();
        let r = berth_tests::request(
            &d.socket,
            hyper::Method::POST,
            "/1.0/instances",
            &[],
            serde_json::to_vec(&json!({"name": "c1", "source": {"type": "none"}})).unwrap(),
        )
        .await
        .unwrap();
        let id = r.json()["metadata"]["id"].as_str().unwrap().to_string();
        let (mut saw_final_op, mut saw_lifecycle) = (false, false);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !(saw_final_op && saw_lifecycle) {
            let msg = tokio::time::timeout_at(deadline, ws.next()).await.expect("event in time").unwrap().unwrap();
            if !msg.is_text() {
                continue;
            }
            let Ok(text) = msg.to_text() else { continue };
            let ev: Value = serde_json::from_str(text).unwrap();
            match ev["type"].as_str() {
                Some("operation") if ev["metadata"]["id"] == id && ev["metadata"]["status_code"] == 200 => saw_final_op = true,
                Some("lifecycle") if ev["metadata"]["action"] == "instance-created" => {
                    assert_eq!(ev["metadata"]["source"], "/1.0/instances/c1");
                    saw_lifecycle = true;
                }
                _ => {}
            }
        }
        // A listener on another project sees nothing of this.
        let r = tokio::time::timeout(std::time::Duration::from_millis(300), other.next()).await;
        assert!(r.is_err() || matches!(r, Ok(Some(Ok(ref m))) if m.is_ping()), "unexpected event for another project: {r:?}");
    });
    assert_eq!(d.req("GET", "/1.0/events?type=bogus", None).status, 400);
}

#[test]
fn server_config_put_and_patch() {
    let d = Daemon::start();
    let r = d.req("PUT", "/1.0", Some(json!({"config": {"images.auto_update_interval": "6"}})));
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(d.get("/1.0")["metadata"]["config"]["images.auto_update_interval"], "6");
    let r = d.raw("PUT", "/1.0", &[("If-Match", "\"stale\"")], br#"{"config":{}}"#.to_vec());
    assert_eq!(r.status, 412);
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let mut d = Daemon::start();
    for i in 0..20 {
        let name = format!("k{i}");
        create(&d, &name, json!({"config": {"user.n": i.to_string()}}));
        if i % 5 == 4 {
            // SIGKILL right after the acknowledgement, then come back on the same data dir.
            d.kill9();
            d.spawn();
        }
    }
    d.kill9();
    d.spawn();
    let all = d.get("/1.0/instances?recursion=1")["metadata"].clone();
    let arr = all.as_array().unwrap();
    assert_eq!(arr.len(), 20);
    for i in 0..20 {
        let inst = arr.iter().find(|x| x["name"] == format!("k{i}")).expect("acknowledged instance survived");
        assert_eq!(inst["config"]["user.n"], i.to_string());
    }
}

#[test]
fn waitready_shutdown_and_sigterm() {
    let mut d = Daemon::start();
    let bin = berth_tests::berthd_bin();
    let st = std::process::Command::new(&bin).arg("--data-dir").arg(d.data_dir()).args(["waitready", "--timeout", "5"]).status().unwrap();
    assert!(st.success());
    let st = std::process::Command::new(&bin).arg("--data-dir").arg(d.data_dir()).arg("shutdown").status().unwrap();
    assert!(st.success());
    let mut child = d.take_child().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit after shutdown: {status:?}");
    assert!(!d.socket.exists(), "socket removed on shutdown");
    // SIGTERM is graceful too.
    d.spawn();
    let status = d.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert!(status.success(), "{status:?}");
    // waitready fails when nothing runs.
    let st = std::process::Command::new(&bin).arg("--data-dir").arg(d.data_dir()).args(["waitready", "--timeout", "1"]).status().unwrap();
    assert!(!st.success());
}
