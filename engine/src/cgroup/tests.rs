use super::*;

const HYBRID_MI: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpuacct
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

#[test]
fn hybrid_uses_own_cgroup_per_controller() {
    let own = "4:memory:/process_api/abc\n1:cpu:/\n2:cpuacct:/\n9:name=systemd:/\n0::/\n";
    let l = Layout::from_texts(HYBRID_MI, own, Some("berth")).unwrap();
    let Layout::V1 { parents } = l else { panic!("expected v1") };
    assert_eq!(parents["memory"], PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/berth"));
    assert_eq!(parents["cpu"], PathBuf::from("/sys/fs/cgroup/cpu/berth"));
    assert_eq!(parents["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/berth"));
    assert_eq!(parents["name=systemd"], PathBuf::from("/sys/fs/cgroup/systemd/berth"));
    assert_eq!(parents[UNIFIED], PathBuf::from("/sys/fs/cgroup/unified/berth"));
}

#[test]
fn unified_only() {
    let mi = "30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate";
    let l = Layout::from_texts(mi, "0::/system.slice/berthd.service\n", None).unwrap();
    assert_eq!(l, Layout::V2 { parent: PathBuf::from("/sys/fs/cgroup/system.slice/berthd.service") });
    assert!(matches!(Layout::from_texts("", "", None), Err(Error::NoHierarchy)));
    // Once the daemon moved itself into its leaf, instances still go next to the leaf.
    let l = Layout::from_texts(mi, "0::/system.slice/berthd.service/berthd.leaf\n", None).unwrap();
    assert_eq!(l, Layout::V2 { parent: PathBuf::from("/sys/fs/cgroup/system.slice/berthd.service") });
}

#[test]
fn cpuset_rendering() {
    assert_eq!(render_cpuset(&[3, 0, 1, 2, 5, 7, 8]), "0-3,5,7-8");
    assert_eq!(render_cpuset(&[1]), "1");
}

#[test]
fn layout_detect_works_here() {
    // Whatever this host is, detection must give a parent that exists.
    let l = Layout::detect(None).unwrap();
    match l {
        Layout::V1 { parents } => assert!(parents.values().all(|p| p.is_dir()), "{parents:?}"),
        Layout::V2 { parent } => assert!(parent.is_dir()),
    }
}

/// The real cgroup2 hierarchy (on a hybrid host: /sys/fs/cgroup/unified, where our own
/// cgroup is "/"): freeze, pids, kill and remove on a live process.
#[test]
fn root_v2_core_files_live() {
    use crate::testsupport::{probe_root, require, Tier};
    if !require("root_v2_core_files_live", Tier::Root, probe_root()) {
        return;
    }
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let Some(v2root) = mi.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if !right.starts_with("cgroup2 ") {
            return None;
        }
        left.split(' ').nth(4).map(PathBuf::from)
    }) else {
        eprintln!("SKIP root_v2_core_files_live: no cgroup2 mount");
        return;
    };
    let own_v2 = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/");
    let parent = v2root.join(own_v2.trim_start_matches('/'));
    let cg = v2::V2::create(&parent, &format!("berth-v2test-{}", std::process::id())).unwrap();
    let mut child = std::process::Command::new("sleep").arg("100").spawn().unwrap();
    cg.add_pid(child.id() as i32).unwrap();
    assert_eq!(cg.pids().unwrap(), vec![child.id() as i32]);
    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    cg.kill_all(std::time::Duration::from_secs(5)).unwrap();
    let st = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    cg.remove().unwrap();
    assert!(!cg.exists());
}

/// The device program on the real cgroup2 hierarchy (/sys/fs/cgroup/unified on this
/// hybrid host): a shell in the cgroup can open /dev/zero with the default rules, not
/// after the rules shrink to /dev/null only, and again once it is in the list; the
/// instance-level `set_device_rules` gives the defaults plus exactly its list.
#[test]
fn root_v2_device_program_live() {
    use crate::testsupport::{probe_root, require, Tier};
    use std::io::{BufRead, BufReader, Write};
    if !require("root_v2_device_program_live", Tier::Root, probe_root()) {
        return;
    }
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let Some(v2root) = mi.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        right.starts_with("cgroup2 ").then(|| left.split(' ').nth(4).map(PathBuf::from)).flatten()
    }) else {
        eprintln!("SKIP root_v2_device_program_live: no cgroup2 mount");
        return;
    };
    let own_v2 = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/");
    let parent = v2root.join(own_v2.trim_start_matches('/'));
    let cg = v2::V2::create(&parent, &format!("berth-devtest-{}", std::process::id())).unwrap();
    let mut sh = std::process::Command::new("sh")
        .args(["-c", "while read p; do if (: < $p) 2>/dev/null; then echo ok; else echo no; fi; done"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    cg.add_pid(sh.id() as i32).unwrap();
    let mut input = sh.stdin.take().unwrap();
    let mut output = BufReader::new(sh.stdout.take().unwrap());
    let mut try_open = |p: &str| {
        writeln!(input, "{p}").unwrap();
        let mut line = String::new();
        output.read_line(&mut line).unwrap();
        line.trim().to_string()
    };
    assert_eq!(try_open("/dev/zero"), "ok");
    cg.set_devices(vec!["c 1:3 rwm".into()]).unwrap();
    assert_eq!(try_open("/dev/null"), "ok");
    assert_eq!(try_open("/dev/zero"), "no");
    // Exactly one program stays attached: the old one was replaced.
    assert_eq!(devbpf::attached_count(&cg.dir).unwrap(), 1);
    cg.set_devices(vec!["c 1:3 rwm".into(), "c 1:5 r".into()]).unwrap();
    assert_eq!(devbpf::attached_count(&cg.dir).unwrap(), 1);
    assert_eq!(try_open("/dev/zero"), "ok");
    assert_eq!(try_open("/dev/full"), "no");
    // The whole device list sets the rules (nothing is remembered between calls, so a
    // restarted berthd does the same): the defaults plus exactly the list, so an
    // unplugged device is denied again.
    let whole = Cgroup::V2(cg.clone());
    assert_eq!(try_open("/dev/kmsg"), "no", "not a default device");
    whole.set_device_rules(&["c 1:11 rwm".into()]).unwrap();
    assert_eq!(devbpf::attached_count(&cg.dir).unwrap(), 1);
    assert_eq!(try_open("/dev/kmsg"), "ok");
    assert_eq!(try_open("/dev/full"), "ok", "a default rule again");
    whole.set_device_rules(&[]).unwrap();
    assert_eq!(try_open("/dev/kmsg"), "no", "removed from the list");
    let _ = sh.kill();
    let _ = sh.wait();
    cg.kill_all(std::time::Duration::from_secs(5)).unwrap();
    cg.remove().unwrap();
    assert!(!cg.exists());
}
