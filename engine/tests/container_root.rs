//! Root-tier tests of the native container runtime on a busybox rootfs.

#[path = "container/support.rs"]
mod support;

use std::time::Duration;

use berth_engine::container::{Container, NoHooks, Status};
use support::*;

#[test]
fn root_unprivileged_start_exec_stop() {
    if !can_run("root_unprivileged_start_exec_stop") {
        return;
    }
    let fx = Fixture::new("basic");
    let spec = fx.spec(&[("environment.FOO", "bar")]);
    let (ct, info) = Container::start(&spec, &NoHooks).unwrap();
    assert!(info.pid > 0);
    let map = info.idmap.clone().unwrap();

    let (code, out, _) = run(&ct, &["cat", "/proc/self/uid_map"]);
    assert_eq!(code, 0);
    let host_map = std::fs::read_to_string("/proc/self/uid_map").unwrap();
    assert_ne!(out.split_whitespace().collect::<Vec<_>>(), host_map.split_whitespace().collect::<Vec<_>>());
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), map.render(true).split_whitespace().collect::<Vec<_>>());

    let (code, out, err) = run(&ct, &["echo", "hello"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "hello\n", ""));
    let (code, out, _) = run(&ct, &["hostname"]);
    assert_eq!((code, out.trim()), (0, fx.name.as_str()));
    // Files in the rootfs appear owned by root inside.
    let (_, out, _) = run(&ct, &["stat", "-c", "%u:%g", "/etc/passwd"]);
    assert_eq!(out.trim(), "0:0");
    let (code, out, _) = run(&ct, &["sh", "-c", "echo $$; exit 7"]);
    assert_eq!(code, 7);
    assert!(out.trim().parse::<i32>().unwrap() > 1);
    let bad = berth_engine::container::ExecRequest { command: vec!["no-such-command".into()], ..Default::default() };
    let e = ct.exec(&bad).unwrap_err();
    assert!(e.to_string().contains("No such file"), "{e}");

    let st = ct.state().unwrap();
    assert_eq!(st.status, Status::Running);
    assert!(st.processes >= 1, "{st:?}");
    assert!(st.memory_usage > 0);
    assert!(st.network.contains_key("lo"));

    let cg = ct.cgroup().clone();
    let holder = ct.runtime_state().holder_pid;
    ct.stop(&NoHooks).unwrap();
    assert!(!cg.exists(), "cgroup left behind");
    assert!(!std::path::Path::new(&format!("/proc/{}", info.pid)).exists());
    assert!(!std::path::Path::new(&format!("/proc/{holder}")).exists());
    assert!(!spec.runtime_dir.join("state.json").exists());
    assert_eq!(ct.state().unwrap().status, Status::Stopped);
    let log = std::fs::read_to_string(&spec.log_path).unwrap();
    assert!(log.contains("BOOTED"), "console log: {log:?}");
    let _ = Duration::from_secs(1);
}
