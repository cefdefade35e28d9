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
    let (ct, info) = start(&spec, &NoHooks);
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
    // A uid outside the container's map fails in the spawned child and says so; the
    // failed child is reaped (no zombie left among the daemon's children).
    let unmapped = berth_engine::container::ExecRequest { command: vec!["true".into()], uid: 70000, ..Default::default() };
    let e = ct.exec(&unmapped).unwrap_err();
    assert!(e.to_string().contains("setuid 70000"), "{e}");
    let zombies = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z'))))
        .count();
    assert_eq!(zombies, 0, "zombie children after a failed exec");
    // The requested cwd, or / when it cannot be entered.
    for (cwd, want) in [("/etc", "/etc"), ("/no-such-dir", "/")] {
        let req = berth_engine::container::ExecRequest { command: vec!["pwd".into()], cwd: cwd.into(), ..Default::default() };
        let (_, out, _) = finish(ct.exec(&req).unwrap());
        assert_eq!(out.trim(), want);
    }

    // Init is in the container's cgroups, and its cgroup namespace is rooted there
    // (it enters the namespace only after the daemon moved it).
    assert!(ct.cgroup().pids().unwrap().contains(&info.pid));
    let (_, out, _) = run(&ct, &["cat", "/proc/1/cgroup"]);
    assert!(!out.is_empty() && out.lines().all(|l| l.ends_with(":/")), "cgroups seen inside: {out}");

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
    let (ct, _) = start(&spec, &NoHooks);
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
    let (ct, _) = start(&spec, &NoHooks);
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
    cfg.insert("limits.cpu".into(), "1".into());
    ct.apply_limits(&cfg).unwrap();
    assert_eq!(std::fs::read_to_string(v1.dirs["pids"].join("pids.max")).unwrap().trim(), "30");
    assert_eq!(std::fs::read_to_string(v1.dirs["cpuset"].join("cpuset.cpus")).unwrap().trim(), "0");
    let (_, out, _) = run(&ct, &["grep", "Cpus_allowed_list", "/proc/self/status"]);
    assert!(out.trim().ends_with("\t0") || out.trim().ends_with(" 0"), "{out}");
    cfg.remove("limits.cpu");
    ct.apply_limits(&cfg).unwrap();
    let parent_cpus = std::fs::read_to_string(v1.dirs["cpuset"].parent().unwrap().join("cpuset.cpus")).unwrap();
    assert_eq!(std::fs::read_to_string(v1.dirs["cpuset"].join("cpuset.cpus")).unwrap(), parent_cpus);

    ct.freeze().unwrap();
    assert_eq!(ct.state().unwrap().status, Status::Frozen);
    assert!(ct.exec(&berth_engine::container::ExecRequest { command: vec!["true".into()], ..Default::default() }).is_err());
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
    let (ct, _) = start(&spec, &hooks);

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
    let (ct, _) = start(&spec, &hooks);
    eventually("second boot in log", Duration::from_secs(10), || {
        std::fs::read_to_string(&spec.log_path).unwrap().matches("BOOTED").count() == 2
    });
    ct.stop(&hooks).unwrap();
}

/// Not a test on its own: the "daemon" process of `root_adopt_after_daemon_kill`.
#[test]
fn root_adopt_child_helper() {
    let Ok(dir) = std::env::var("BERTH_ADOPT_DIR") else { return };
    let name = std::env::var("BERTH_ADOPT_NAME").unwrap();
    let fx = Fixture::open(std::path::Path::new(&dir), &name);
    let (ct, info) = start(&fx.spec(&[]), &NoHooks);
    println!("PID {}", info.pid);
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::mem::forget(ct);
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn root_adopt_after_daemon_kill() {
    if !can_run("root_adopt_after_daemon_kill") {
        return;
    }
    let fx = Fixture::new("adopt");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["root_adopt_child_helper", "--exact", "--nocapture", "--test-threads=1"])
        .env("BERTH_ADOPT_DIR", &fx.path)
        .env("BERTH_ADOPT_NAME", &fx.name)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let pid: i32 = loop {
        let l = lines.next().expect("helper exited before starting the container").unwrap();
        // The harness prints "test name ... " on the same line first.
        if let Some(i) = l.find("PID ") {
            break l[i + 4..].trim().parse().unwrap();
        }
    };
    // SIGKILL the "daemon": the container must live on.
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "container died with its daemon");

    let ct = Container::adopt(&fx.path.join("run")).unwrap();
    assert!(ct.is_running());
    assert_eq!(ct.pid(), pid);
    let (code, out, _) = run(&ct, &["echo", "adopted"]);
    assert_eq!((code, out.as_str()), (0, "adopted\n"));
    let st = ct.state().unwrap();
    assert_eq!((st.status, st.pid), (Status::Running, pid));
    let att = ct.console_attach().unwrap();
    use std::os::fd::AsRawFd;
    eventually("console after adoption", Duration::from_secs(10), || {
        write_all(&att.stream, b"echo ADO$((2+3))\n");
        read_until(att.stream.as_raw_fd(), "ADO5", Duration::from_millis(500)).contains("ADO5")
    });
    drop(att);
    let holder = ct.runtime_state().holder_pid;
    let cg = ct.cgroup().clone();
    ct.stop(&NoHooks).unwrap();
    assert!(!cg.exists());
    eventually("init gone", Duration::from_secs(5), || !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() || is_zombie(pid));
    eventually("helper gone", Duration::from_secs(5), || !std::path::Path::new(&format!("/proc/{holder}/stat")).exists() || is_zombie(holder));
    // Adopting again finds nothing.
    assert!(Container::adopt(&fx.path.join("run")).is_err());
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
}

#[test]
fn root_files_running_and_stopped() {
    if !can_run("root_files_running_and_stopped") {
        return;
    }
    use berth_engine::container::Files;
    use std::io::Read;
    use std::path::Path;
    let fx = Fixture::new("files");
    let spec = fx.spec(&[]);
    let (ct, info) = start(&spec, &NoHooks);
    let f = Files::for_container(&ct).unwrap();
    f.write(Path::new("/root/pushed"), 1000, 1000, 0o640, &mut &b"\x00payload\xff"[..]).unwrap();
    let (_, out, _) = run(&ct, &["stat", "-c", "%u:%g:%a:%s", "/root/pushed"]);
    assert_eq!(out.trim(), "1000:1000:640:9");
    f.mkdir(Path::new("/root/dir"), 1000, 1001, 0o711).unwrap();
    f.symlink(Path::new("/root/dir/ln"), Path::new("/etc/inittab"), 1000, 1001).unwrap();
    let (_, out, _) = run(&ct, &["stat", "-c", "%u:%g:%a", "/root/dir"]);
    assert_eq!(out.trim(), "1000:1001:711");
    let (_, out, _) = run(&ct, &["sh", "-c", "stat -c %u:%g /root/dir/ln; cat /root/dir/ln"]);
    assert_eq!(out, format!("1000:1001\n{INITTAB}"));
    run(&ct, &["sh", "-c", "echo inside > /tmp/made; chown 1000:1000 /tmp/made; ln -s /proc/1/root/ /tmp/magic; ln -s ../../../../../ /tmp/up"]);
    let st = f.stat(Path::new("/tmp/made")).unwrap();
    assert_eq!((st.uid, st.gid, st.size), (1000, 1000, 7));
    let mut s = String::new();
    f.read(Path::new("/tmp/up/etc/inittab")).unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, INITTAB);
    assert!(f.read(Path::new("/tmp/magic/etc/hostname")).is_err(), "magic link followed");
    assert!(f.read(Path::new("/../../../../etc/shadow")).is_err(), "host /etc/shadow reached");
    f.delete(Path::new("/tmp/made")).unwrap();
    let (code, _, _) = run(&ct, &["test", "-e", "/tmp/made"]);
    assert_eq!(code, 1);
    ct.stop(&NoHooks).unwrap();

    // Stopped: the rootfs on disk (idmapped mounts leave it unshifted).
    assert!(info.disk_idmap.is_none(), "rootfs was shifted although ext4 supports idmapped mounts");
    let f = Files::for_stopped(&spec.rootfs, info.disk_idmap.clone()).unwrap();
    let st = f.stat(Path::new("/root/pushed")).unwrap();
    assert_eq!((st.uid, st.gid, st.mode), (1000, 1000, 0o640));
    let mut v = Vec::new();
    f.read(Path::new("/root/pushed")).unwrap().read_to_end(&mut v).unwrap();
    assert_eq!(v, b"\x00payload\xff");
}

#[test]
fn root_privileged_with_devices() {
    if !can_run("root_privileged_with_devices") {
        return;
    }
    let fx = Fixture::new("priv");
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("f"), "from host").unwrap();
    let devs = devices(&[
        ("data", &[("type", "disk"), ("source", share.path().to_str().unwrap()), ("path", "/mnt/data"), ("readonly", "true")]),
        ("z", &[("type", "unix-char"), ("source", "/dev/zero"), ("path", "/dev/myzero")]),
        ("nothing", &[("type", "none")]),
    ]);
    let spec = fx.spec_with(&[("security.privileged", "true")], devs);
    let (ct, info) = start(&spec, &NoHooks);
    assert!(info.idmap.is_none());
    let (_, out, _) = run(&ct, &["cat", "/proc/self/uid_map"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "0", "4294967295"]);
    let (code, out, _) = run(&ct, &["cat", "/mnt/data/f"]);
    assert_eq!((code, out.as_str()), (0, "from host"));
    let (code, _, err) = run(&ct, &["touch", "/mnt/data/x"]);
    assert_ne!(code, 0);
    assert!(err.contains("Read-only"), "{err}");
    let (code, out, _) = run(&ct, &["sh", "-c", "head -c 5 /dev/myzero | wc -c"]);
    assert_eq!((code, out.trim()), (0, "5"));
    let (_, out, _) = run(&ct, &["grep", "Seccomp:", "/proc/self/status"]);
    assert!(out.contains('2'), "{out}");
    // cgroup namespace: the container sees its own cgroup as the root.
    let (_, out, _) = run(&ct, &["cat", "/proc/self/cgroup"]);
    assert!(out.lines().filter(|l| l.contains(":memory:")).all(|l| l.ends_with(":/")), "{out}");
    let (code, _, _) = run(&ct, &["test", "-f", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]);
    assert_eq!(code, 0);
    if std::path::Path::new("/sys/fs/cgroup/systemd").is_dir() {
        let (code, _, err) = run(&ct, &["test", "-f", "/sys/fs/cgroup/systemd/cgroup.procs"]);
        assert_eq!(code, 0, "{err}");
    }
    if std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        let (code, _, _) = run(&ct, &["test", "-f", "/sys/fs/cgroup/unified/cgroup.procs"]);
        assert_eq!(code, 0);
        assert!(out.lines().any(|l| l == "0::/"), "{out}");
    }
    ct.stop(&NoHooks).unwrap();
    assert!(!share.path().join("x").exists());
}

#[test]
fn root_bridge_ping() {
    if !can_run("root_bridge_ping") {
        return;
    }
    // Only this test thread moves into a fresh network namespace.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let ip = |args: &[&str]| assert!(std::process::Command::new("ip").args(args).status().unwrap().success(), "ip {args:?}");
    ip(&["link", "add", "brtest0", "type", "bridge"]);
    ip(&["link", "set", "brtest0", "up"]);
    let mut cts = Vec::new();
    let mut fxs = Vec::new();
    for (i, hw) in [(1, "00:16:3e:aa:00:01"), (2, "00:16:3e:aa:00:02")] {
        let mut fx = Fixture::new(&format!("net{i}"));
        fx.name = format!("{}-{i}", fx.name);
        let devs = devices(&[("eth0", &[("type", "nic"), ("nictype", "bridged"), ("parent", "brtest0")])]);
        let mut spec = fx.spec_with(&[], devs);
        spec.config.insert("volatile.eth0.hwaddr".into(), hw.into());
        let (ct, info) = start(&spec, &NoHooks);
        assert_eq!(info.host_nics.len(), 1);
        let (code, _, err) = run(&ct, &["sh", "-c", &format!("ip link set lo up && ip addr add 169.254.77.{i}/24 dev eth0 && ip link set eth0 up")]);
        assert_eq!(code, 0, "{err}");
        cts.push((ct, info));
        fxs.push(fx);
    }
    let (code, out, err) = run(&cts[0].0, &["ping", "-c", "2", "-W", "5", "169.254.77.2"]);
    assert_eq!(code, 0, "{out}{err}");
    let st = cts[0].0.state().unwrap();
    let eth0 = &st.network["eth0"];
    assert_eq!(eth0.hwaddr, "00:16:3e:aa:00:01");
    assert!(eth0.addresses.iter().any(|a| a.address == "169.254.77.1" && a.netmask == "24"));
    assert!(eth0.counters.packets_sent >= 2 && eth0.counters.bytes_received > 0, "{eth0:?}");
    for (ct, info) in &cts {
        ct.stop(&NoHooks).unwrap();
        let host = &info.host_nics[0].1;
        let out = std::process::Command::new("ip").args(["link", "show", "dev", host]).output().unwrap();
        assert!(!out.status.success(), "{host} left behind");
    }
}

#[test]
fn root_shift_fallback_on_overlay() {
    if !can_run("root_shift_fallback_on_overlay") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    // An overlay mount refuses idmapping, so the runtime must shift the rootfs once.
    let fx = Fixture::new("shift");
    let lower = fx.rootfs();
    let (upper, work, merged) = (fx.path.join("upper"), fx.path.join("work"), fx.path.join("merged"));
    for d in [&upper, &work, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    nix::mount::mount(Some("overlay"), &merged, Some("overlay"), nix::mount::MsFlags::empty(), Some(opts.as_str())).unwrap();
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _guard = Umount(merged.clone());
    let mut spec = fx.spec(&[]);
    spec.rootfs = merged.clone();
    let (ct, info) = start(&spec, &NoHooks);
    let map = info.idmap.clone().unwrap();
    assert_eq!(info.disk_idmap.as_ref(), Some(&map), "expected a shifted rootfs");
    let root_host = map.to_host(true, 0).unwrap() as u32;
    assert_eq!(std::fs::symlink_metadata(merged.join("etc/passwd")).unwrap().uid(), root_host);
    let (code, out, _) = run(&ct, &["stat", "-c", "%u", "/etc/passwd"]);
    assert_eq!((code, out.trim()), (0, "0"));
    ct.stop(&NoHooks).unwrap();
    drop(ct);

    // Second start with the recorded shift: no second walk (ctime stays put).
    let before = std::fs::symlink_metadata(merged.join("etc/passwd")).unwrap().ctime_nsec();
    spec.disk_idmap = info.disk_idmap.clone();
    std::thread::sleep(Duration::from_millis(20));
    let (ct, info2) = start(&spec, &NoHooks);
    assert_eq!(info2.disk_idmap, info.disk_idmap);
    assert_eq!(std::fs::symlink_metadata(merged.join("etc/passwd")).unwrap().ctime_nsec(), before);
    ct.stop(&NoHooks).unwrap();

    // A privileged start unshifts it again.
    let mut priv_spec = fx.spec(&[("security.privileged", "true")]);
    priv_spec.rootfs = merged.clone();
    priv_spec.disk_idmap = info2.disk_idmap.clone();
    let (ct, info3) = start(&priv_spec, &NoHooks);
    assert!(info3.disk_idmap.is_none());
    assert_eq!(std::fs::symlink_metadata(merged.join("etc/passwd")).unwrap().uid(), 0);
    ct.stop(&NoHooks).unwrap();
}

#[test]
fn root_exec_user_cwd_env() {
    if !can_run("root_exec_user_cwd_env") {
        return;
    }
    let fx = Fixture::new("user");
    let (ct, _) = start(&fx.spec(&[("environment.FROM_CONFIG", "yes")]), &NoHooks);
    let req = berth_engine::container::ExecRequest {
        command: vec!["sh".into(), "-c".into(), "id -u; id -g; pwd; echo $GREETING".into()],
        env: vec![("GREETING".into(), "hi there".into())],
        uid: 1000,
        gid: 1000,
        cwd: "/tmp".into(),
        ..Default::default()
    };
    let (code, out, err) = finish(ct.exec(&req).unwrap());
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1000\n1000\n/tmp\nhi there\n");
    let (_, out, _) = run(&ct, &["sh", "-c", "tr '\\0' '\\n' < /proc/1/environ | grep -E '^(FROM_CONFIG|container)='"]);
    assert_eq!(out, "FROM_CONFIG=yes\ncontainer=lxc\n");
    ct.clear_console_log().unwrap();
    assert_eq!(std::fs::metadata(ct.console_log_path()).unwrap().len(), 0);
    ct.stop(&NoHooks).unwrap();
}

#[test]
fn root_poweroff_and_reboot_from_inside() {
    if !can_run("root_poweroff_and_reboot_from_inside") {
        return;
    }
    let fx = Fixture::new("inside");
    let spec = fx.spec(&[]);
    for (cmd, want) in [("poweroff", 128 + libc::SIGINT), ("reboot", berth_engine::container::REBOOT_STATUS)] {
        let (ct, _) = start(&spec, &NoHooks);
        // Detached: the exec itself dies with the container.
        let ex = ct.exec(&berth_engine::container::ExecRequest { command: vec![cmd.into()], ..Default::default() }).unwrap();
        let code = ex.wait().unwrap();
        let exited = ct.wait_exit(Some(Duration::from_secs(20)));
        let log = std::fs::read_to_string(&spec.log_path).unwrap_or_default();
        assert!(exited, "{cmd} (exit {code}): init did not exit; console: {log:?}");
        let status = ct.cleanup(&NoHooks).unwrap();
        assert_eq!(status, Some(want), "{cmd}");
        assert!(!ct.cgroup().exists());
    }
}

#[test]
fn root_failed_start_leaves_nothing() {
    if !can_run("root_failed_start_leaves_nothing") {
        return;
    }
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Container>();
    let fx = Fixture::new("fail");
    let mut spec = fx.spec(&[]);
    spec.init = vec!["/sbin/does-not-exist".into()];
    let err = Container::start(&spec, &NoHooks).unwrap_err();
    assert!(err.to_string().contains("does-not-exist"), "{err}");
    let layout = berth_engine::cgroup::Layout::detect(None).unwrap();
    let cgname = format!("berth-{}", fx.name);
    match layout {
        berth_engine::cgroup::Layout::V1 { parents } => {
            for p in parents.values() {
                assert!(!p.join(&cgname).exists(), "{} left behind", p.join(&cgname).display());
            }
        }
        berth_engine::cgroup::Layout::V2 { parent } => assert!(!parent.join(&cgname).exists()),
    }
    assert!(!spec.runtime_dir.join("state.json").exists());
    // A hook that refuses the start also unwinds everything, and nothing keeps running.
    struct Refuse;
    impl berth_engine::container::Hooks for Refuse {
        fn on_start(&self, _pid: i32) -> Result<(), String> {
            Err("no".into())
        }
    }
    let spec = fx.spec(&[]);
    assert!(Container::start(&spec, &Refuse).is_err());
    assert!(Container::adopt(&spec.runtime_dir).is_err());
    let ps = std::process::Command::new("ps").args(["-o", "args=", "-C", "berth-console"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains(&spec.runtime_dir.display().to_string()), "helper left behind");
    // And the same spec starts fine afterwards.
    let (ct, _) = start(&spec, &NoHooks);
    ct.stop(&NoHooks).unwrap();
}

#[test]
fn root_hotplug_devices() {
    if !can_run("root_hotplug_devices") {
        return;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    assert!(std::process::Command::new("ip").args(["link", "add", "brhot0", "type", "bridge"]).status().unwrap().success());
    let fx = Fixture::new("hotplug");
    let (ct, _) = start(&fx.spec(&[]), &NoHooks);
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("f"), "hot").unwrap();
    let cfg = std::collections::BTreeMap::new();
    let disk = devices(&[("d", &[("type", "disk"), ("source", share.path().to_str().unwrap()), ("path", "/mnt/new/dir"), ("readonly", "true")])]);
    ct.add_device("d", &disk["d"], &cfg).unwrap();
    let (code, out, _) = run(&ct, &["cat", "/mnt/new/dir/f"]);
    assert_eq!((code, out.as_str()), (0, "hot"));
    let (code, _, _) = run(&ct, &["touch", "/mnt/new/dir/x"]);
    assert_ne!(code, 0, "read-only disk was writable");
    ct.remove_device("d", &disk["d"], &cfg).unwrap();
    let (code, _, _) = run(&ct, &["test", "-e", "/mnt/new/dir/f"]);
    assert_eq!(code, 1);

    let nic = devices(&[("eth1", &[("type", "nic"), ("nictype", "bridged"), ("parent", "brhot0"), ("hwaddr", "00:16:3e:bb:00:01")])]);
    let host = ct.add_device("eth1", &nic["eth1"], &cfg).unwrap().unwrap();
    let (code, out, _) = run(&ct, &["cat", "/sys/class/net/eth1/address"]);
    assert_eq!((code, out.trim()), (0, "00:16:3e:bb:00:01"));
    let mut vcfg = cfg.clone();
    vcfg.insert("volatile.eth1.host_name".to_string(), host.clone());
    ct.remove_device("eth1", &nic["eth1"], &vcfg).unwrap();
    let (code, _, _) = run(&ct, &["test", "-e", "/sys/class/net/eth1"]);
    assert_eq!(code, 1);
    ct.stop(&NoHooks).unwrap();
}
