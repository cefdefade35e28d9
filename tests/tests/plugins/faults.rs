//! Misbehaving fixtures: the host survives, answers with a clear error
//! within the deadline, and never treats a failure as "allow".

use std::time::{Duration, Instant};

use berth_plugin_host::*;
use berth_tests::wasm;

use crate::support::*;

#[test]
fn smoke() {
    let h = Harness::new();
    for (name, w) in [("loop", wasm::FIXTURE_INFINITE_LOOP), ("bomb", wasm::FIXTURE_MEMORY_BOMB), ("rec", wasm::FIXTURE_DEEP_RECURSION), ("panic", wasm::FIXTURE_PANIC), ("huge", wasm::FIXTURE_HUGE_OUTPUT)] {
        let info = h.install(name, w, PluginSettings::default());
        println!("{info:?}");
        let req = InstanceRequest { op: InstanceOp::Create, view: instance("default", "c1", &[]) };
        let t = Instant::now();
        let r = h.host.validate_instance(&req);
        println!("{name}: {:?} {r:?}", t.elapsed());
        h.host.remove(name).unwrap();
    }
    println!("{:?}", h.logs().iter().map(|l| (l.level, l.message.len(), l.message.chars().take(100).collect::<String>())).collect::<Vec<_>>());
    let _ = Duration::ZERO;
}
