//! Test tiers: a test that needs a host feature calls [`require`] at its top.
//!
//! On a host without the feature the test prints `SKIP <test>: <reason>` and returns
//! early. When `BERTH_TEST_REQUIRE` names the tier (comma list, or `all`), the skip
//! becomes a panic, so CI on a capable host can never pass by skipping.

/// A tier of tests that needs something from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// euid 0, namespaces, cgroups, mounts, loop devices.
    Root,
    /// mkfs.btrfs and a loop device.
    Btrfs,
    /// qemu-system-x86_64 (TCG is enough).
    Qemu,
    /// The `lxc` client binary.
    LxcClient,
    /// The wasm32-wasip2 target (plugins).
    Wasm,
}

impl Tier {
    fn name(self) -> &'static str {
        match self {
            Tier::Root => "root",
            Tier::Btrfs => "btrfs",
            Tier::Qemu => "qemu",
            Tier::LxcClient => "lxc",
            Tier::Wasm => "wasm",
        }
    }
}

/// Whether `BERTH_TEST_REQUIRE` forbids skipping this tier.
pub fn is_required(tier: Tier) -> bool {
    std::env::var("BERTH_TEST_REQUIRE")
        .map(|v| v.split(',').any(|t| t.trim() == "all" || t.trim() == tier.name()))
        .unwrap_or(false)
}

/// Returns true if the test may run. `probe` is `Err(reason)` when the host lacks the feature.
/// Prints a skip line and returns false otherwise, or panics if the tier is required.
pub fn require(test: &str, tier: Tier, probe: Result<(), String>) -> bool {
    match probe {
        Ok(()) => true,
        Err(reason) => {
            if is_required(tier) {
                panic!("{test}: tier '{}' is required by BERTH_TEST_REQUIRE but {reason}", tier.name());
            }
            eprintln!("SKIP {test}: {reason}");
            false
        }
    }
}

/// Probe: running as root.
pub fn probe_root() -> Result<(), String> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err("not running as root".into())
    }
}

/// Probe: a program is on PATH.
pub fn probe_program(name: &str) -> Result<(), String> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(format!("{name} is not installed"))
    }
}

/// Serializes VM test image builds within one test process.
static VM_IMAGE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The VM test image directory (`BERTH_VM_TEST_IMAGE`, default `target/vm-test-image`),
/// built by `tests/vm/build-test-image.sh` when any of `files` is missing from it.
pub fn vm_test_image(files: &[&str]) -> Result<std::path::PathBuf, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::var_os("BERTH_VM_TEST_IMAGE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target/vm-test-image"));
    let _g = VM_IMAGE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if files.iter().any(|f| !dir.join(f).is_file()) {
        let out = std::process::Command::new(root.join("tests/vm/build-test-image.sh"))
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run build-test-image.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!("build-test-image.sh failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    Ok(dir)
}

/// Polls `f` every 50 ms until it holds; panics naming `what` after `timeout`.
pub fn eventually(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}
