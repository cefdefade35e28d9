//! qemu-tier tests: real QEMU under TCG. The guest tests use the image that
//! `tests/vm/build-test-image.sh` builds (built on demand when missing).

use super::accel::{self, Accel, ProbeKernel};
use super::agent::{AgentError, ExecSpec, FileKind};
use super::cmdline::{DirectBoot, Disk, DiskFormat, RunPaths, VmSpec};
use super::machine::{Machine, MemoryUpdate, ShutdownOutcome};
use crate::testsupport::{probe_program, require, Tier};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(crate) const QEMU: &str = "qemu-system-x86_64";
const APPEND: &str = "console=ttyS0 quiet panic=-1";

pub(crate) fn qemu_path() -> PathBuf {
    PathBuf::from(QEMU)
}

/// The test image directory, building it when missing.
pub(crate) fn test_image() -> Result<PathBuf, String> {
    probe_program(QEMU)?;
    crate::testsupport::vm_test_image(&["initrd.img", "vmlinuz"])
}

pub(crate) fn image_spec(name: &str, image: &Path, config: &[(&str, &str)], disk: Option<&Path>) -> VmSpec {
    let cfg: BTreeMap<String, String> = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let boot = DirectBoot {
        kernel: image.join("vmlinuz"),
        initrd: Some(image.join("initrd.img")),
        append: Some(APPEND.to_string()),
    };
    let disk = disk.map(|p| Disk { path: p.to_path_buf(), format: DiskFormat::Qcow2 });
    VmSpec::from_config(name, &cfg, Accel::Tcg, disk, Some(boot), 8 << 30).expect("valid spec")
}

/// Stops whatever QEMU runs from a run dir when a test ends (also on panic). Declare it
/// before the `Machine` so the machine (and its QMP connection) is dropped first.
pub(crate) struct Cleanup(pub(crate) PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(m) = Machine::adopt(RunPaths::new(&self.0)) {
            let _ = m.stop();
        }
    }
}

#[test]
fn qemu_qmp_lifecycle_without_guest() {
    if !require("qemu_qmp_lifecycle_without_guest", Tier::Qemu, probe_program(QEMU)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg: BTreeMap<String, String> =
        [("limits.cpu", "2"), ("limits.memory", "256MiB"), ("raw.qemu", "-S")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let spec = VmSpec::from_config("noguest", &cfg, Accel::Tcg, None, None, 0).unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let m = Machine::start(&qemu_path(), &spec, RunPaths::new(dir.path())).unwrap();
    assert!(m.is_running());
    let pid = m.pid();
    // Daemonized: not our child, in its own session, so it outlives berthd.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    assert_ne!(fields[1], std::process::id().to_string(), "ppid");
    // SAFETY: getsid(0) only reads our session id.
    let our_sid = unsafe { libc::getsid(0) };
    assert_ne!(fields[3], our_sid.to_string(), "qemu runs in a session of its own");
    {
        let mut q = m.qmp().unwrap();
        let st = q.query_status().unwrap();
        assert_eq!((st.status.as_str(), st.running), ("prelaunch", false));
        q.cont().unwrap();
        assert!(q.query_status().unwrap().running);
        q.stop().unwrap();
        assert_eq!(q.query_status().unwrap().status, "paused");
        assert!(q.wait_event("STOP", Duration::from_secs(2)).unwrap().is_some());
    }
    let st = m.state().unwrap();
    assert_eq!((st.cpus, st.memory_total, st.pid), (2, 256 << 20, pid));
    assert_eq!(st.memory_actual, Some(256 << 20), "balloon device reports boot memory");
    // The agent socket exists but nobody answers: a bounded wait, then a clear error.
    let t = Instant::now();
    let e = m.agent(Duration::from_secs(1)).err().unwrap();
    assert!(matches!(e, super::MachineError::Agent(AgentError::NotReady { .. })), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    // Adopting a second handle works while the first is dropped (QMP takes one client).
    drop(m);
    let m = Machine::adopt(RunPaths::new(dir.path())).unwrap();
    assert_eq!(m.pid(), pid);
    // Restart: the guest has no OS to act on the power button, so the shutdown is forced
    // after the timeout, and a new QEMU (new pid) comes up with the new spec.
    let mut spec2 = spec.clone();
    spec2.cpus = 1;
    let (m, how) = m.restart(&qemu_path(), &spec2, Duration::from_secs(1)).unwrap();
    assert_eq!(how, ShutdownOutcome::Forced);
    assert_ne!(m.pid(), pid);
    assert!(!super::machine::tests_support::alive(pid));
    assert_eq!(m.state().unwrap().cpus, 1);
    m.stop().unwrap();
    assert!(!m.is_running());
    assert!(Machine::adopt(RunPaths::new(dir.path())).is_err(), "a stopped VM cannot be adopted");
}

#[test]
fn qemu_pty_console() {
    if !require("qemu_pty_console", Tier::Qemu, probe_program(QEMU)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = VmSpec::from_config("pty", &BTreeMap::new(), Accel::Tcg, None, None, 0).unwrap();
    spec.console = super::cmdline::Console::Pty;
    spec.raw_qemu = vec!["-S".into()];
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let m = Machine::start(&qemu_path(), &spec, RunPaths::new(dir.path())).unwrap();
    let pty = m.qmp().unwrap().chardev_pty("console").unwrap();
    let stopped = m.stop();
    let pty = pty.expect("console pty path");
    assert!(pty.starts_with("/dev/pts/"), "{pty}");
    stopped.unwrap();
}

#[test]
fn qemu_start_failure_reports_qemu_error() {
    if !require("qemu_start_failure_reports_qemu_error", Tier::Qemu, probe_program(QEMU)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = VmSpec::from_config("bad", &BTreeMap::new(), Accel::Tcg, None, None, 0).unwrap();
    spec.raw_qemu = vec!["-no-such-option".into()];
    let e = Machine::start(&qemu_path(), &spec, RunPaths::new(dir.path())).err().unwrap();
    assert!(e.to_string().contains("no-such-option"), "{e}");
}

#[test]
fn qemu_accel_probe() {
    let image = test_image();
    if !require("qemu_accel_probe", Tier::Qemu, image.as_ref().map(drop).map_err(Clone::clone)) {
        return;
    }
    let image = image.unwrap();
    let dir = tempfile::tempdir().unwrap();
    accel::probe_boot_sector(&qemu_path(), Accel::Tcg, dir.path(), Duration::from_secs(20)).unwrap();
    let k = ProbeKernel {
        kernel: image.join("vmlinuz"),
        initrd: image.join("initrd.img"),
        append: format!("{APPEND} rdinit=/bare-init"),
        marker: accel::BARE_BOOT_MARKER,
    };
    accel::probe_kernel(&qemu_path(), Accel::Tcg, dir.path(), &k, Duration::from_secs(60)).unwrap();
    let sel = accel::select(
        accel::AccelSetting::Auto,
        &qemu_path(),
        Path::new("/dev/kvm"),
        dir.path(),
        Some(&k),
        Duration::from_secs(15),
    );
    eprintln!("accel selection: {:?} (kvm unusable: {:?})", sel.accel, sel.kvm_unusable.as_ref().map(|e| e.to_string()));
    if sel.accel == Accel::Tcg {
        assert!(sel.kvm_unusable.is_some(), "a TCG fallback says why");
    }
    // On kvm-pvm the boot-sector stage passes, the kernel stage must catch it on its own.
    if accel::probe_kvm_flavour(Path::new("/sys/module")).is_err() && Path::new("/dev/kvm").exists() {
        let r = accel::probe_kernel(&qemu_path(), Accel::Kvm, dir.path(), &k, Duration::from_secs(10));
        eprintln!("kernel stage under kvm-pvm: {r:?}");
        assert!(matches!(r, Err(accel::AccelError::NoMarker { .. })));
    }
}

#[test]
fn qemu_guest_agent_lifecycle() {
    let image = test_image();
    if !require("qemu_guest_agent_lifecycle", Tier::Qemu, image.as_ref().map(drop).map_err(Clone::clone)) {
        return;
    }
    let image = image.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("root.qcow2");
    std::fs::copy(image.join("root.qcow2"), &disk).unwrap();
    let spec = image_spec("guest1", &image, &[("limits.memory", "512MiB")], Some(&disk));
    let paths = RunPaths::new(dir.path().join("run"));
    let _cleanup = Cleanup(paths.dir.clone());
    let m = Machine::start(&qemu_path(), &spec, paths.clone()).unwrap();

    // Exec right after start: waits for the agent while the guest boots.
    let agent = m.agent(Duration::from_secs(90)).unwrap();
    assert_eq!(agent.hostname, "berth-test");
    let out = agent
        .exec(ExecSpec { argv: vec!["uname".into(), "-a".into()], ..Default::default() })
        .unwrap()
        .wait_with_output(Duration::from_secs(30))
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.return_code(), 0);
    assert!(text.starts_with("Linux berth-test ") && text.contains("cloud-amd64"), "{text}");

    // The image starts the agent first and finishes its init (disks, lo, acpid) in the
    // background: wait for that before looking at them.
    let t = Instant::now();
    while !String::from_utf8_lossy(&std::fs::read(paths.console_log()).unwrap_or_default()).contains("BERTH-INIT-DONE") {
        assert!(t.elapsed() < Duration::from_secs(60), "guest init did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The qcow2 root disk is the guest's virtio-blk /dev/vda (64 MiB = 131072 sectors).
    let out = agent
        .exec(ExecSpec { argv: vec!["cat".into(), "/sys/block/vda/size".into()], ..Default::default() })
        .unwrap()
        .wait_with_output(Duration::from_secs(30))
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "131072");

    // stdin, stderr, exit codes, env.
    let mut env = BTreeMap::new();
    env.insert("GREETING".to_string(), "hello".to_string());
    let ex = agent
        .exec(ExecSpec { argv: vec!["sh".into(), "-c".into(), "cat; echo $GREETING >&2; exit 7".into()], env, ..Default::default() })
        .unwrap();
    ex.control().write_stdin(b"from stdin").unwrap();
    ex.control().close_stdin().unwrap();
    let out = ex.wait_with_output(Duration::from_secs(30)).unwrap();
    assert_eq!((out.stdout.as_slice(), out.stderr.as_slice(), out.code), (&b"from stdin"[..], &b"hello\n"[..], Some(7)));
    assert!(matches!(agent.exec(ExecSpec { argv: vec!["/nonexistent".into()], ..Default::default() }), Err(AgentError::Guest { .. })));

    // A pty exec sees a terminal of the requested size.
    let pty = super::agent::WinSize { rows: 33, cols: 101 };
    let out = agent
        .exec(ExecSpec { argv: vec!["stty".into(), "size".into()], pty: Some(pty), ..Default::default() })
        .unwrap()
        .wait_with_output(Duration::from_secs(30))
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "33 101");

    // Interactive: resize the pty mid-session, then let the command read a line.
    let mut ex = agent
        .exec(ExecSpec { argv: vec!["sh".into(), "-c".into(), "read x; stty size".into()], pty: Some(pty), ..Default::default() })
        .unwrap();
    ex.control().resize(40, 120).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    ex.control().write_stdin(b"go\n").unwrap();
    let mut seen = Vec::new();
    loop {
        match ex.next_event(Duration::from_secs(30)).unwrap() {
            super::agent::ExecEvent::Stdout(b) => seen.extend(b),
            super::agent::ExecEvent::Stderr(_) => {}
            super::agent::ExecEvent::Exit { code, .. } => {
                assert_eq!(code, Some(0));
                break;
            }
        }
    }
    assert!(String::from_utf8_lossy(&seen).contains("40 120"), "{:?}", String::from_utf8_lossy(&seen));

    // Signals reach the command; the exit reports the signal.
    let ex = agent.exec(ExecSpec { argv: vec!["sleep".into(), "100".into()], ..Default::default() }).unwrap();
    ex.control().signal(15).unwrap();
    let out = ex.wait_with_output(Duration::from_secs(30)).unwrap();
    assert_eq!((out.code, out.signal, out.return_code()), (None, Some(15), 143));

    // Files: push, stat, pull, mkdir, delete.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    agent.push_file("/tmp/blob", &mut &data[..], 0o640, 1000, 1000).unwrap();
    let st = agent.stat("/tmp/blob").unwrap();
    assert_eq!((st.kind, st.size, st.mode, st.uid, st.gid), (FileKind::File, data.len() as u64, 0o640, 1000, 1000));
    let mut back = Vec::new();
    agent.pull_file("/tmp/blob", &mut back).unwrap();
    assert!(back == data, "pulled bytes differ");
    agent.mkdir("/tmp/d", 0o755, 0, 0).unwrap();
    agent.symlink("/tmp/d/link", "/tmp/blob", 0, 0).unwrap();
    let listing = agent.stat("/tmp/d").unwrap();
    assert_eq!(listing.entries, Some(vec!["link".to_string()]));
    assert_eq!(agent.stat("/tmp/d/link").unwrap().target.as_deref(), Some("/tmp/blob"));
    agent.delete("/tmp/blob").unwrap();
    assert!(matches!(agent.stat("/tmp/blob"), Err(AgentError::Guest { .. })));
    assert!(matches!(agent.push_file("/nonexistent/x", &mut &b"x"[..], 0o644, 0, 0), Err(AgentError::Guest { .. })));

    // Network state from the guest: at least lo with 127.0.0.1.
    let nics = agent.network().unwrap();
    let lo = nics.iter().find(|n| n.name == "lo").expect("lo");
    assert!(lo.addresses.iter().any(|a| a.address == "127.0.0.1" && a.netmask == "8"), "{lo:?}");

    // Freeze: a command cannot finish while vCPUs are stopped; unfreeze lets it.
    m.freeze().unwrap();
    assert_eq!(m.state().unwrap().status, "paused");
    let mut ex = agent.exec(ExecSpec { argv: vec!["echo".into(), "thawed".into()], ..Default::default() });
    if let Ok(e) = &mut ex {
        assert!(matches!(e.next_event(Duration::from_secs(2)), Err(AgentError::Timeout { .. })), "ran while frozen");
    }
    m.unfreeze().unwrap();
    let ex = match ex {
        Ok(e) => e,
        // The exec request itself timed out while frozen: retry after the thaw.
        Err(AgentError::Timeout { .. }) => agent.exec(ExecSpec { argv: vec!["echo".into(), "thawed".into()], ..Default::default() }).unwrap(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(ex.wait_with_output(Duration::from_secs(30)).unwrap().stdout, b"thawed\n");

    // State: memory, CPU time, the root disk counters.
    let st = m.state().unwrap();
    assert_eq!((st.status.as_str(), st.memory_total, st.cpus), ("running", 512 << 20, 1));
    assert!(st.cpu_ns > 0);
    assert!(st.disks.iter().any(|d| d.device == "root"), "{:?}", st.disks);

    // Live memory: shrinking works through the balloon; growing waits for the next start.
    assert_eq!(m.set_memory(384 << 20).unwrap(), MemoryUpdate::Ballooned);
    assert_eq!(m.set_memory(1 << 30).unwrap(), MemoryUpdate::NextStart);

    // Adoption: forget every client handle, then find the VM from its run dir.
    let pid = m.pid();
    drop(agent);
    drop(m);
    let m = Machine::adopt(paths.clone()).unwrap();
    assert_eq!(m.pid(), pid);
    let agent = m.agent(Duration::from_secs(30)).unwrap();
    let out = agent
        .exec(ExecSpec { argv: vec!["cat".into(), "/proc/sys/kernel/hostname".into()], ..Default::default() })
        .unwrap()
        .wait_with_output(Duration::from_secs(30))
        .unwrap();
    assert_eq!(out.stdout, b"berth-test\n");
    drop(agent);

    // Clean stop through the ACPI power button.
    assert_eq!(m.shutdown(Duration::from_secs(60)).unwrap(), ShutdownOutcome::Clean);
    assert!(!m.is_running());
    let log = std::fs::read_to_string(paths.console_log()).unwrap_or_default();
    assert!(log.contains("BERTH-POWERDOWN"), "console log shows the power button handler");
}
