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

#[test]
fn root_interactive_exec_pty() {
    if !can_run("root_interactive_exec_pty") {
        return;
    }
    let fx = Fixture::new("pty");
    let spec = fx.spec(&[]);
    let (ct, _) = Container::start(&spec, &NoHooks).unwrap();
    let req = berth_engine::container::ExecRequest {
        command: vec!["/bin/sh".into()],
        interactive: true,
        width: 100,
        height: 30,
        cwd: "/".into(),
        ..Default::default()
    };
    let ex = ct.exec(&req).unwrap();
    let m = ex.pty.as_ref().unwrap();
    use std::os::fd::AsRawFd;
    write_all(m, b"tty; stty size; echo MARK$((40+2))\n");
    let out = read_until(m.as_raw_fd(), "MARK42", Duration::from_secs(10));
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("30 100"), "{out:?}");
    ex.resize(120, 40).unwrap();
    write_all(m, b"stty size; exit 3\n");
    let out = read_until(m.as_raw_fd(), "40 120", Duration::from_secs(10));
    assert!(out.contains("40 120"), "{out:?}");
    assert_eq!(ex.wait().unwrap(), 3);

    // Many at once, and a signal.
    let sleeper = ct.exec(&berth_engine::container::ExecRequest { command: vec!["sleep".into(), "100".into()], ..Default::default() }).unwrap();
    let many: Vec<_> = (0..8).map(|i| ct.exec(&berth_engine::container::ExecRequest { command: vec!["sh".into(), "-c".into(), format!("echo {i}")], ..Default::default() }).unwrap()).collect();
    for (i, ex) in many.into_iter().enumerate() {
        let (code, out, _) = finish(ex);
        assert_eq!((code, out.trim().to_string()), (0, i.to_string()));
    }
    sleeper.signal(libc::SIGTERM).unwrap();
    assert_eq!(sleeper.wait().unwrap(), 128 + libc::SIGTERM);
    // Binary-safe pipes.
    let mut ex = ct.exec(&berth_engine::container::ExecRequest { command: vec!["cat".into()], ..Default::default() }).unwrap();
    let data: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    let stdin = ex.stdin.take().unwrap();
    let d2 = data.clone();
    let w = std::thread::spawn(move || {
        let mut f = std::fs::File::from(stdin);
        std::io::Write::write_all(&mut f, &d2).unwrap();
    });
    let out = read_fd(ex.stdout.as_ref().unwrap());
    w.join().unwrap();
    assert_eq!(out, data);
    assert_eq!(ex.wait().unwrap(), 0);
    ct.stop(&NoHooks).unwrap();
}

#[test]
fn root_limits_oom_pids_freeze() {
    if !can_run("root_limits_oom_pids_freeze") {
        return;
    }
    let fx = Fixture::new("limits");
    let spec = fx.spec(&[("limits.memory", "64MB"), ("limits.memory.swap", "false"), ("limits.processes", "12"), ("limits.cpu.allowance", "50ms/100ms")]);
    let (ct, _) = Container::start(&spec, &NoHooks).unwrap();
    let berth_engine::cgroup::Cgroup::V1(v1) = ct.cgroup().clone() else { panic!("this host is v1") };
    let mem = &v1.dirs["memory"];
    assert_eq!(std::fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap().trim(), "64000000");
    assert_eq!(std::fs::read_to_string(v1.dirs["pids"].join("pids.max")).unwrap().trim(), "12");
    assert_eq!(std::fs::read_to_string(v1.dirs["cpu"].join("cpu.cfs_quota_us")).unwrap().trim(), "50000");

    // 200 MB buffer in a 64 MB cgroup: the kernel kills dd, nothing else.
    let (code, _, err) = run(&ct, &["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"]);
    assert_eq!(code, 128 + libc::SIGKILL, "{err}");
    let oom = std::fs::read_to_string(mem.join("memory.oom_control")).unwrap();
    assert!(oom.lines().any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0"), "{oom}");
    assert!(ct.is_running());
    let (code, out, _) = run(&ct, &["echo", "alive"]);
    assert_eq!((code, out.as_str()), (0, "alive\n"));

    // pids.max: a fork bomb in miniature hits the limit.
    let (_, out, err) = run(&ct, &["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do sleep 3 & done; wait; echo done"]);
    assert!(err.contains("can't fork") || err.contains("Resource temporarily unavailable"), "out={out:?} err={err:?}");

    // Live limit update.
    let mut cfg = spec.config.clone();
    cfg.insert("limits.processes".into(), "30".into());
    ct.apply_limits(&cfg).unwrap();
    assert_eq!(std::fs::read_to_string(v1.dirs["pids"].join("pids.max")).unwrap().trim(), "30");

    ct.freeze().unwrap();
    assert_eq!(ct.state().unwrap().status, Status::Frozen);
    ct.unfreeze().unwrap();
    assert_eq!(ct.state().unwrap().status, Status::Running);
    let st = ct.state().unwrap();
    assert!(st.memory_peak >= st.memory_usage && st.cpu_usage_ns > 0, "{st:?}");
    // Force stop works on a frozen container too.
    ct.freeze().unwrap();
    ct.stop(&NoHooks).unwrap();
    assert!(!mem.exists());
}

#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);
impl berth_engine::container::Hooks for Recorder {
    fn on_start(&self, pid: i32) -> Result<(), String> {
        self.0.lock().unwrap().push(format!("start:{}", pid > 0));
        Ok(())
    }
    fn on_stop_ns(&self, netns: Option<std::os::fd::BorrowedFd<'_>>) {
        self.0.lock().unwrap().push(format!("stopns:{}", netns.is_some()));
    }
    fn on_stop(&self) {
        self.0.lock().unwrap().push("stop".into());
    }
}

#[test]
fn root_clean_shutdown_hooks_console() {
    if !can_run("root_clean_shutdown_hooks_console") {
        return;
    }
    let fx = Fixture::new("shutdown");
    let spec = fx.spec(&[]);
    let hooks = Recorder::default();
    let (ct, _) = Container::start(&spec, &hooks).unwrap();

    // Console: the respawned shell on /dev/console answers.
    let att = ct.console_attach().unwrap();
    att.resize(90, 20).unwrap();
    use std::os::fd::AsRawFd;
    eventually("shell on console", Duration::from_secs(10), || {
        write_all(&att.stream, b"echo CON$((1+1))OK\n");
        read_until(att.stream.as_raw_fd(), "CON2OK", Duration::from_millis(500)).contains("CON2OK")
    });
    drop(att);

    // The helper's memory footprint stays small.
    let holder = ct.runtime_state().holder_pid;
    let rollup = std::fs::read_to_string(format!("/proc/{holder}/smaps_rollup")).unwrap();
    let pss_kb: u64 = rollup.lines().find_map(|l| l.strip_prefix("Pss:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap();
    eprintln!("berth-console PSS: {pss_kb} kB");
    assert!(pss_kb < 1536, "helper PSS {pss_kb} kB");

    let clean = ct.shutdown(spec.halt_signal, Duration::from_secs(20), &hooks).unwrap();
    assert!(clean, "init ignored the halt signal");
    assert_eq!(*hooks.0.lock().unwrap(), vec!["start:true", "stopns:true", "stop"]);
    let log = std::fs::read_to_string(&spec.log_path).unwrap();
    assert!(log.contains("BOOTED") && log.contains("CON2OK") && log.contains("SHUTDOWN"), "{log:?}");
    assert!(!ct.cgroup().exists());

    // A second boot appends to the same log.
    let (ct, _) = Container::start(&spec, &hooks).unwrap();
    eventually("second boot in log", Duration::from_secs(10), || {
        std::fs::read_to_string(&spec.log_path).unwrap().matches("BOOTED").count() == 2
    });
    ct.stop(&hooks).unwrap();
}
