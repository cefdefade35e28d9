//! Boot-time measurement (ignored by default; prints numbers):
//! `cargo test -p berth-engine --lib vm::tests_timing -- --ignored --nocapture`
//! Compares, in one run and alternating, start → first successful agent exec (`uname -a`)
//! against a bare boot of the same kernel + initramfs to `/bare-init` printing a marker on
//! the serial console. Both go through `Machine::start` (daemonized QEMU, same devices).

use super::accel::BARE_BOOT_MARKER;
use super::agent::{AgentClient, ExecSpec};
use super::cmdline::{DirectBoot, RunPaths};
use super::machine::Machine;
use super::tests::{image_spec, qemu_path, test_image};
use crate::testsupport::{require, Tier};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn agent_boot(image: &std::path::Path, run: &std::path::Path) -> Duration {
    let spec = image_spec("timing-agent", image, &[("limits.memory", "512MiB")], None);
    let _cleanup = super::tests::Cleanup(run.to_path_buf());
    let t = Instant::now();
    let m = Machine::start(&qemu_path(), &spec, RunPaths::new(run)).unwrap();
    let agent = AgentClient::connect(&m.paths().agent(), Duration::from_secs(120)).unwrap();
    let out = agent
        .exec(ExecSpec { argv: vec!["uname".into(), "-a".into()], ..Default::default() })
        .unwrap()
        .wait_with_output(Duration::from_secs(30))
        .unwrap();
    let took = t.elapsed();
    assert_eq!(out.return_code(), 0);
    drop(agent);
    m.stop().unwrap();
    took
}

fn bare_boot(image: &std::path::Path, run: &std::path::Path) -> Duration {
    let mut spec = image_spec("timing-bare", image, &[("limits.memory", "512MiB")], None);
    spec.boot = Some(DirectBoot {
        kernel: image.join("vmlinuz"),
        initrd: Some(image.join("initrd.img")),
        append: Some("console=ttyS0 quiet panic=-1 rdinit=/bare-init".into()),
    });
    let log = RunPaths::new(run).console_log();
    let _ = std::fs::remove_file(&log);
    let _cleanup = super::tests::Cleanup(run.to_path_buf());
    let t = Instant::now();
    let m = Machine::start(&qemu_path(), &spec, RunPaths::new(run)).unwrap();
    loop {
        let text = std::fs::read(&log).unwrap_or_default();
        if String::from_utf8_lossy(&text).contains(BARE_BOOT_MARKER) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "bare boot marker never appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = t.elapsed();
    let _ = m.stop(); // /bare-init powers off by itself; stop covers a slow exit
    took
}

#[test]
#[ignore = "takes about a minute; prints boot timings"]
fn qemu_boot_timing() {
    let image = test_image();
    if !require("qemu_boot_timing", Tier::Qemu, image.as_ref().map(drop).map_err(Clone::clone)) {
        return;
    }
    let image = image.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runs = 5;
    let (mut agent, mut bare) = (Vec::new(), Vec::new());
    for i in 0..runs {
        bare.push(bare_boot(&image, &dir.path().join(format!("b{i}"))));
        agent.push(agent_boot(&image, &dir.path().join(format!("a{i}"))));
    }
    println!("bare boot to /init marker on serial: {:?} median {:?}", bare, median(bare.clone()));
    println!("start to first agent exec (uname -a): {:?} median {:?}", agent, median(agent.clone()));
    assert!(median(agent) >= median(bare), "an agent exec cannot beat reaching /init");
}
