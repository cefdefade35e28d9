//! Driver tests. The qemu-tier one boots no guest: a blank raw disk leaves the firmware
//! looking for a boot device, which is enough for lifecycle, state and the agent wait.

use super::*;
use crate::instance::{Driver, NoHooks};
use crate::testsupport::{probe_program, require, Tier};
use std::time::Instant;

/// Stops a QEMU the test left behind (also on panic).
struct Cleanup(RunPaths);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(m) = Machine::adopt(self.0.clone()) {
            let _ = m.stop();
        }
    }
}

#[test]
fn without_qemu_the_driver_says_why() {
    let d = VmDriver { qemu: None, agent_wait: AGENT_WAIT };
    match d.status() {
        DriverStatus::NotOperational(why) => assert!(why.contains("qemu-system-x86_64"), "{why}"),
        DriverStatus::Operational => panic!("operational without qemu"),
    }
}

fn load_args(dir: &std::path::Path, config: &[(&str, &str)]) -> LoadArgs {
    LoadArgs {
        project: "default".into(),
        name: "t1".into(),
        config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        devices: Devices::new(),
        volume_path: dir.join("vol"),
        runtime_dir: dir.join("run"),
        log_dir: dir.join("log"),
        other_maps: Vec::new(),
    }
}

#[test]
fn qemu_vm_instance_without_guest() {
    if !require("qemu_vm_instance_without_guest", Tier::Qemu, probe_program(layout::QEMU)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = load_args(dir.path(), &[("limits.memory", "256MiB"), ("limits.cpu", "2")]);
    std::fs::create_dir_all(&args.volume_path).unwrap();
    let d = VmDriver { qemu: layout::find_qemu(), agent_wait: Duration::from_secs(1) };

    // Nothing to boot yet: a clear error, no QEMU.
    let inst = d.load(args.clone()).unwrap();
    let e = inst.start(&NoHooks).err().unwrap();
    assert!(e.to_string().contains("invalid VM volume: root.img is missing"), "{e}");

    std::fs::write(args.volume_path.join("root.img"), vec![0u8; 1 << 20]).unwrap();
    inst.start(&NoHooks).unwrap();
    let _cleanup = Cleanup(layout::run_paths(&args.runtime_dir));
    assert!(inst.is_running());
    assert!(matches!(inst.start(&NoHooks), Err(Error::AlreadyRunning)));
    let st = inst.state().unwrap();
    assert_eq!(st.status, Status::Running);
    assert!(st.pid > 0 && st.memory_usage > 0, "{st:?}");
    assert!(st.disk.contains_key("root"));

    // No agent in this guest: exec waits the bounded time, then says so.
    let t = Instant::now();
    let e = inst.exec(&ExecArgs { command: vec!["true".into()], ..Default::default() }).err().unwrap();
    assert!(e.to_string().contains("The VM agent isn't currently running"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "waited {:?}", t.elapsed());

    inst.freeze().unwrap();
    assert_eq!(inst.state().unwrap().status, Status::Frozen);
    assert!(matches!(inst.exec(&ExecArgs::default()), Err(Error::Frozen)));
    inst.unfreeze().unwrap();
    assert_eq!(inst.state().unwrap().status, Status::Running);

    // A second daemon's load adopts the running QEMU (the first handle lets go of QMP).
    let pid = inst.state().unwrap().pid;
    drop(inst);
    if let Err(e) = Machine::adopt(layout::run_paths(&args.runtime_dir)) {
        panic!("adopt: {}", chain(&e));
    }
    let inst = d.load(args.clone()).unwrap();
    assert!(inst.is_running());
    assert_eq!(inst.state().unwrap().pid, pid);

    // Live memory: shrinking works through the balloon (or is deferred); never an error.
    let mut cfg = args.config.clone();
    cfg.insert("limits.memory".into(), "128MiB".into());
    inst.update(&cfg, &Devices::new()).unwrap();

    // No OS acts on the power button: the shutdown is forced after the timeout.
    assert!(!inst.shutdown(Some(Duration::from_secs(1)), &NoHooks).unwrap());
    assert!(!inst.is_running());
    assert!(inst.wait_exit(Some(Duration::from_secs(1))));
    assert_eq!(inst.state().unwrap().status, Status::Stopped);
    assert!(!layout::run_paths(&args.runtime_dir).pidfile().exists() || d.load(args.clone()).unwrap().state().unwrap().status == Status::Stopped);
    inst.on_delete().unwrap();
}
