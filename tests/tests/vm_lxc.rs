//! Qemu tier: virtual machines driven end to end by the real `lxc` 5.0.2 client against
//! berthd, under TCG. The VM comes from the test image (`tests/vm/build-test-image.sh`:
//! Debian cloud kernel, busybox initramfs with berth-agent) imported as an LXD split VM
//! image (`lxd/meta.tar.gz` + `lxd/root.qcow2`, with berth's boot/ extension). Three guest
//! boots in all.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_tests::lxc::{eventually, exec, status};
use berth_tests::{probe_program, require, Daemon, Tier};

/// The test image dir, built on demand (like the engine's VM tests).
fn test_image() -> Result<PathBuf, String> {
    probe_program("qemu-system-x86_64")?;
    probe_program("lxc")?;
    berth_engine::testsupport::vm_test_image(&["initrd.img", "vmlinuz", "root.qcow2", "lxd/meta.tar.gz", "lxd/root.qcow2"])
}

/// Kills every QEMU a test left running (pids from the run dirs; works without berthd).
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        let Ok(dirs) = std::fs::read_dir(self.0.join("vms")) else { return };
        for dir in dirs.flatten() {
            if let Some(pid) = qemu_pid(&dir.path()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

fn qemu_pid(run: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(run.join("qemu.pid")).ok()?.trim().parse().ok()?;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmd).contains("qemu").then_some(pid)
}

async fn ws_connect(d: &Daemon, id: &str, secret: &str) -> tokio_tungstenite::WebSocketStream<tokio::net::UnixStream> {
    let stream = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let url = format!("ws://unix.socket/1.0/operations/{id}/websocket?secret={secret}");
    tokio_tungstenite::client_async(url, stream).await.unwrap().0
}

/// Types into the serial console through `POST /1.0/instances/<name>/console` and waits for
/// the echo.
fn console_echo(d: &Daemon, name: &str) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let r = d.req("POST", &format!("/1.0/instances/{name}/console"), Some(serde_json::json!({"width": 80, "height": 24, "type": "console"})));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let meta = r.json()["metadata"].clone();
    let id = meta["id"].as_str().unwrap().to_string();
    let fds = meta["metadata"]["fds"].clone();
    berth_tests::block_on(async {
        let mut control = ws_connect(d, &id, fds["control"].as_str().unwrap()).await;
        let mut data = ws_connect(d, &id, fds["0"].as_str().unwrap()).await;
        data.send(Message::binary(b"CONSOLE-PING-42".to_vec())).await.unwrap();
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !String::from_utf8_lossy(&seen).contains("CONSOLE-PING-42") {
            match tokio::time::timeout_at(deadline, data.next()).await.expect("console echo in time") {
                Some(Ok(Message::Binary(b))) => seen.extend_from_slice(&b),
                Some(Ok(_)) => {}
                other => panic!("console closed: {other:?} after {:?}", String::from_utf8_lossy(&seen)),
            }
        }
        control.close(None).await.unwrap();
    });
    let w = d.get(&format!("/1.0/operations/{id}/wait?timeout=10"))["metadata"].clone();
    assert_eq!(w["status"], "Success", "{w}");
}

#[test]
fn qemu_vm_lxc_lifecycle() {
    let image = test_image();
    if !require("qemu_vm_lxc_lifecycle", Tier::Qemu, image.as_ref().map(drop).map_err(Clone::clone)) {
        return;
    }
    let image = image.unwrap();
    let mut d = Daemon::start();
    let _reaper = Reaper(d.data_dir().to_path_buf());
    let (meta, disk) = (image.join("lxd/meta.tar.gz"), image.join("lxd/root.qcow2"));
    d.lxc_ok(&["image", "import", meta.to_str().unwrap(), disk.to_str().unwrap(), "--alias", "vmtest"]);

    // Boot 1. The first exec arrives while the guest boots: it waits for the agent.
    let raw = "raw.qemu=-smbios type=1,serial=berth-raw-qemu";
    d.lxc_ok(&["launch", "vmtest", "v1", "--vm", "-c", "limits.memory=512MiB", "-c", "limits.cpu=2", "-c", raw]);
    let inst = d.get("/1.0/instances/v1");
    assert_eq!(inst["metadata"]["type"], "virtual-machine");
    assert_eq!(status(&d, "v1"), "Running");
    let (code, out, err) = exec(&d, "v1", &["uname", "-a"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Linux berth-test ") && out.contains("cloud-amd64"), "{out}");
    // The image starts its agent first and finishes its init (lo, acpid) in the background.
    eventually("the guest init to finish", Duration::from_secs(60), || {
        d.lxc_ok(&["console", "v1", "--show-log"]).contains("BERTH-INIT-DONE")
    });
    let (code, out, err) = exec(&d, "v1", &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!((code, out.as_str(), err.as_str()), (3, "out\n", "err\n"));
    // Interactive (a pty in the guest), environment, user and cwd.
    let o = d.lxc(&["exec", "-t", "v1", "--env", "X=pty", "--", "sh", "-c", "tty; echo $X"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.starts_with("/dev/pts/") && out.contains("\npty"), "{out:?}");
    let o = d.lxc(&["exec", "v1", "--env", "X=y", "--user", "1000", "--group", "1000", "--cwd", "/tmp", "--", "sh", "-c", "id -u; id -g; pwd; echo $X"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1000\n1000\n/tmp\ny\n");
    // raw.qemu reached QEMU; limits.cpu and limits.memory shaped the machine.
    assert_eq!(exec(&d, "v1", &["cat", "/sys/class/dmi/id/product_serial"]).1, "berth-raw-qemu\n");
    let (_, out, _) = exec(&d, "v1", &["grep", "-c", "^processor", "/proc/cpuinfo"]);
    assert_eq!(out.trim(), "2");
    let (_, out, _) = exec(&d, "v1", &["sh", "-c", "grep MemTotal /proc/meminfo"]);
    let kb: u64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(kb > 400 * 1024 && kb <= 512 * 1024, "{out}");

    // Files through the agent.
    let local = d.data_dir().join("push.txt");
    std::fs::write(&local, "pushed into the guest\n").unwrap();
    d.lxc_ok(&["file", "push", local.to_str().unwrap(), "v1/root/pushed.txt", "--mode", "0640"]);
    let (_, out, _) = exec(&d, "v1", &["sh", "-c", "cat /root/pushed.txt; stat -c %a /root/pushed.txt"]);
    assert_eq!(out, "pushed into the guest\n640\n");
    exec(&d, "v1", &["sh", "-c", "echo made in the guest > /tmp/pull.txt"]);
    let pulled = d.data_dir().join("pulled.txt");
    d.lxc_ok(&["file", "pull", "v1/tmp/pull.txt", pulled.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&pulled).unwrap(), "made in the guest\n");
    d.lxc_ok(&["file", "delete", "v1/root/pushed.txt"]);
    assert_ne!(exec(&d, "v1", &["test", "-e", "/root/pushed.txt"]).0, 0);

    // State: memory, CPU and disk from QMP and the host, interfaces from the agent.
    let st = d.get("/1.0/instances/v1/state")["metadata"].clone();
    assert!(st["memory"]["usage"].as_u64().unwrap() > 0, "{st}");
    assert!(st["cpu"]["usage"].as_u64().unwrap() > 0, "{st}");
    assert!(st["pid"].as_i64().unwrap() > 0);
    assert!(st["disk"]["root"]["usage"].as_u64().is_some(), "{st}");
    assert_eq!(st["network"]["lo"]["addresses"][0]["address"], "127.0.0.1", "{st}");
    let info = d.lxc_ok(&["info", "v1"]);
    assert!(info.contains("Type: virtual-machine") && info.contains("Memory usage:") && info.contains("CPU usage"), "{info}");

    // limits.memory on a running VM: shrinking goes through the balloon, now.
    d.lxc_ok(&["config", "set", "v1", "limits.memory=256MiB"]);
    eventually("the balloon to shrink the guest", Duration::from_secs(60), || {
        let (_, out, _) = exec(&d, "v1", &["grep", "MemTotal", "/proc/meminfo"]);
        out.split_whitespace().nth(1).and_then(|k| k.parse::<u64>().ok()).is_some_and(|kb| kb <= 256 * 1024)
    });

    // Freeze and unfreeze (QMP stop/cont).
    d.lxc_ok(&["pause", "v1"]);
    assert_eq!(status(&d, "v1"), "Frozen");
    let (code, _, err) = exec(&d, "v1", &["true"]);
    assert_ne!(code, 0);
    assert!(err.contains("frozen"), "{err}");
    d.lxc_ok(&["start", "v1"]);
    assert_eq!(status(&d, "v1"), "Running");
    assert_eq!(exec(&d, "v1", &["echo", "thawed"]).1, "thawed\n");

    // The serial console: attached over the console API (the guest's tty echoes what is
    // typed), and its log.
    console_echo(&d, "v1");
    let log = d.lxc_ok(&["console", "v1", "--show-log"]);
    assert!(log.contains("BERTH-INIT-DONE") && log.contains("CONSOLE-PING-42"), "{log}");

    // berthd dies; QEMU lives on and the next berthd adopts it (QMP and agent again).
    let run = d.data_dir().join("vms/default_v1");
    let pid = qemu_pid(&run).expect("qemu pid");
    d.kill9();
    d.spawn();
    assert_eq!(qemu_pid(&run), Some(pid));
    assert_eq!(status(&d, "v1"), "Running");
    assert_eq!(exec(&d, "v1", &["echo", "adopted"]).1, "adopted\n");
    let log = d.lxc_ok(&["console", "v1", "--show-log"]);
    assert!(log.contains("BERTH-INIT-DONE"), "console log kept across berthd restarts");

    // Clean stop: the ACPI button makes the guest power off by itself.
    d.lxc_ok(&["stop", "v1"]);
    assert_eq!(status(&d, "v1"), "Stopped");
    assert!(qemu_pid(&run).is_none());
    let log = d.lxc_ok(&["console", "v1", "--show-log"]);
    assert!(log.contains("BERTH-POWERDOWN"), "the guest acted on the power button: {log}");
    let (code, _, err) = exec(&d, "v1", &["true"]);
    assert!(code != 0 && err.contains("not running"), "{err}");

    // Boot 2: forced stop.
    d.lxc_ok(&["start", "v1"]);
    assert_eq!(exec(&d, "v1", &["echo", "again"]).1, "again\n");
    let pid = qemu_pid(&run).expect("qemu pid");
    let t = Instant::now();
    d.lxc_ok(&["stop", "--force", "v1"]);
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(status(&d, "v1"), "Stopped");
    assert!(!Path::new(&format!("/proc/{pid}")).exists() || qemu_pid(&run).is_none());

    // Boot 3, then 4: restart gives a new QEMU; a poweroff from inside is noticed and recorded.
    d.lxc_ok(&["start", "v1"]);
    assert_eq!(exec(&d, "v1", &["echo", "up"]).1, "up\n");
    let pid = qemu_pid(&run).expect("qemu pid");
    d.lxc_ok(&["restart", "--force", "v1"]);
    assert_eq!(status(&d, "v1"), "Running");
    assert_ne!(qemu_pid(&run), Some(pid));
    assert_eq!(exec(&d, "v1", &["echo", "up"]).1, "up\n");
    let _ = d.lxc(&["exec", "v1", "--", "poweroff"]);
    eventually("the VM to stop by itself", Duration::from_secs(60), || status(&d, "v1") == "Stopped");
    let inst = d.get("/1.0/instances/v1");
    assert_eq!(inst["metadata"]["config"]["volatile.last_state.power"], "STOPPED");

    d.lxc_ok(&["delete", "v1"]);
    assert!(!d.data_dir().join("storage-pools/default/virtual-machines/v1").exists());
}

/// A host bridge with a network namespace plugged into it (169.254.89.2/24 on its `eth0`),
/// all removed on drop. Nothing leaves the machine: the bridge has no address or uplink.
struct BridgeWithPeer {
    bridge: String,
    netns: String,
}

impl BridgeWithPeer {
    fn new() -> BridgeWithPeer {
        let id = std::process::id() % 100000;
        let b = BridgeWithPeer { bridge: format!("btvb{id}"), netns: format!("btvn{id}") };
        let (host_end, peer) = (format!("btvh{id}"), format!("btvp{id}"));
        let ns = b.netns.as_str();
        for args in [
            vec!["link", "add", &b.bridge, "type", "bridge"],
            vec!["link", "set", &b.bridge, "up"],
            vec!["netns", "add", ns],
            vec!["link", "add", &host_end, "type", "veth", "peer", "name", &peer],
            vec!["link", "set", &host_end, "master", &b.bridge, "up"],
            vec!["link", "set", &peer, "netns", ns],
            vec!["-n", ns, "link", "set", &peer, "name", "eth0"],
            vec!["-n", ns, "addr", "add", "169.254.89.2/24", "dev", "eth0"],
            vec!["-n", ns, "link", "set", "eth0", "up"],
            vec!["-n", ns, "link", "set", "lo", "up"],
        ] {
            let ok = std::process::Command::new("ip").args(&args).status().unwrap().success();
            assert!(ok, "ip {args:?}");
        }
        b
    }
}

impl Drop for BridgeWithPeer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.netns]).status();
        let _ = std::process::Command::new("ip").args(["link", "del", &self.bridge]).status();
    }
}

fn link_exists(name: &str) -> bool {
    std::process::Command::new("ip").args(["link", "show", "dev", name]).output().unwrap().status.success()
}

/// A bridged nic on a VM: a tap QEMU creates, plugged into the bridge, a virtio-net device in
/// the guest with the instance's MAC, traffic both ways to a namespace on the same bridge,
/// and nothing left behind after the stop. A host file as a read-only disk device; a
/// directory disk is refused with a clear error. A nic and a disk plugged into the running
/// VM and out again.
#[test]
fn qemu_vm_bridged_nic_and_disk() {
    let image = test_image();
    if !require("qemu_vm_bridged_nic_and_disk", Tier::Qemu, image.as_ref().map(drop).map_err(Clone::clone)) {
        return;
    }
    let image = image.unwrap();
    let net = BridgeWithPeer::new();
    let mut d = Daemon::start();
    let _reaper = Reaper(d.data_dir().to_path_buf());
    let (meta, disk) = (image.join("lxd/meta.tar.gz"), image.join("lxd/root.qcow2"));
    d.lxc_ok(&["image", "import", meta.to_str().unwrap(), disk.to_str().unwrap(), "--alias", "vmtest"]);
    d.lxc_ok(&["init", "vmtest", "vn", "--vm", "-c", "limits.memory=256MiB"]);
    d.lxc_ok(&["config", "device", "add", "vn", "eth0", "nic", "nictype=bridged", &format!("parent={}", net.bridge)]);
    let img = d.data_dir().join("disk.img");
    let mut bytes = b"BERTH-DISK-42".to_vec();
    bytes.resize(1 << 20, 0);
    std::fs::write(&img, &bytes).unwrap();
    d.lxc_ok(&["config", "device", "add", "vn", "data", "disk", &format!("source={}", img.display()), "readonly=true"]);
    // A directory would need a share (9p/virtiofs): refused, not silently left out.
    d.lxc_ok(&["init", "vmtest", "vd", "--vm"]);
    d.lxc_ok(&["config", "device", "add", "vd", "dir", "disk", &format!("source={}", d.data_dir().display()), "path=/mnt"]);
    let o = d.lxc(&["start", "vd"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("directory shares are not supported"), "{err}");
    assert_eq!(status(&d, "vd"), "Stopped");
    d.lxc_ok(&["start", "vn"]);

    let config = d.get("/1.0/instances/vn")["metadata"]["config"].clone();
    let tap = config["volatile.eth0.host_name"].as_str().unwrap_or("").to_string();
    let hwaddr = config["volatile.eth0.hwaddr"].as_str().unwrap_or("").to_string();
    assert!(tap.starts_with("tap") && !hwaddr.is_empty(), "{config}");
    let master = std::fs::read_link(format!("/sys/class/net/{tap}/master")).unwrap();
    assert_eq!(master.file_name().unwrap().to_str(), Some(net.bridge.as_str()));

    // The image loads virtio_net in the background; then the guest's eth0 carries the MAC.
    let setup = "for i in $(seq 300); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done; \
                 cat /sys/class/net/eth0/address && ip addr add 169.254.89.1/24 dev eth0 && ip link set eth0 up";
    let (code, out, err) = exec(&d, "vn", &["sh", "-c", setup]);
    assert_eq!((code, out.trim()), (0, hwaddr.as_str()), "{err}");
    let (code, out, err) = exec(&d, "vn", &["ping", "-c", "2", "-W", "10", "169.254.89.2"]);
    assert_eq!(code, 0, "{out}{err}");
    let ping = std::process::Command::new("ip")
        .args(["netns", "exec", &net.netns, "busybox", "ping", "-c", "1", "-W", "10", "169.254.89.1"])
        .output()
        .unwrap();
    assert!(ping.status.success(), "{}{}", String::from_utf8_lossy(&ping.stdout), String::from_utf8_lossy(&ping.stderr));
    let disk = "for i in $(seq 300); do [ -e /sys/block/vdb ] && break; sleep 0.1; done; \
                cat /sys/block/vdb/serial; echo; cat /sys/block/vdb/ro; head -c 13 /dev/vdb";
    let (code, out, err) = exec(&d, "vn", &["sh", "-c", disk]);
    assert_eq!((code, out.as_str()), (0, "data\n1\nBERTH-DISK-42"), "{err}");
    let st = d.get("/1.0/instances/vn/state")["metadata"].clone();
    assert_eq!(st["network"]["eth0"]["hwaddr"], hwaddr.as_str(), "{st}");
    assert_eq!(st["network"]["eth0"]["host_name"], tap.as_str(), "{st}");
    assert!(st["network"]["eth0"]["counters"]["packets_received"].as_u64().unwrap() >= 2, "{st}");

    // Hotplug into the running VM: a second nic and a disk, then out again, with the disk
    // given at start.
    let img2 = d.data_dir().join("disk2.img");
    let mut bytes = b"BERTH-HOTPLUG".to_vec();
    bytes.resize(1 << 20, 0);
    std::fs::write(&img2, &bytes).unwrap();
    d.lxc_ok(&["config", "device", "add", "vn", "eth1", "nic", "nictype=bridged", &format!("parent={}", net.bridge)]);
    d.lxc_ok(&["config", "device", "add", "vn", "data2", "disk", &format!("source={}", img2.display())]);
    let tap1 = d.get("/1.0/instances/vn")["metadata"]["config"]["volatile.eth1.host_name"].as_str().unwrap_or("").to_string();
    assert!(tap1.starts_with("tap") && tap1 != tap, "{tap1}");
    let master = std::fs::read_link(format!("/sys/class/net/{tap1}/master")).unwrap();
    assert_eq!(master.file_name().unwrap().to_str(), Some(net.bridge.as_str()));
    let by_serial = |serial: &str| {
        format!("for i in $(seq 300); do for b in /sys/block/vd*; do [ \"$(cat $b/serial)\" = {serial} ] && echo ${{b##*/}} && exit 0; done; sleep 0.1; done; exit 1")
    };
    let (code, dev2, err) = exec(&d, "vn", &["sh", "-c", &by_serial("data2")]);
    assert_eq!(code, 0, "hotplugged disk not seen: {err}");
    let (_, head, _) = exec(&d, "vn", &["head", "-c", "13", &format!("/dev/{}", dev2.trim())]);
    assert_eq!(head, "BERTH-HOTPLUG");
    let (code, _, err) = exec(&d, "vn", &["sh", "-c", "for i in $(seq 300); do [ -e /sys/class/net/eth1 ] && exit 0; sleep 0.1; done; exit 1"]);
    assert_eq!(code, 0, "hotplugged nic not seen: {err}");
    // A disk QEMU refuses (the image is already in use): the change is not kept.
    let o = d.lxc(&["config", "device", "add", "vn", "data3", "disk", &format!("source={}", img2.display())]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("lock"), "{err}");
    assert!(d.get("/1.0/instances/vn")["metadata"]["devices"].get("data3").is_none(), "a refused device stays in the record");
    let mut devices = d.get("/1.0/instances/vn")["metadata"]["devices"].clone();
    devices["data3"] = serde_json::json!({"type": "disk", "source": img2.display().to_string()});
    let r = d.req("PATCH", "/1.0/instances/vn", Some(serde_json::json!({ "devices": devices })));
    assert_eq!(r.status, 400, "QEMU's refusal answers the request: {}", String::from_utf8_lossy(&r.body));
    d.lxc_ok(&["config", "device", "remove", "vn", "eth1"]);
    d.lxc_ok(&["config", "device", "remove", "vn", "data"]);
    assert!(!link_exists(&tap1), "tap {tap1} left after the unplug");
    let (code, out, _) = exec(&d, "vn", &["sh", "-c", "ls /sys/class/net; cat /sys/block/vd*/serial; echo"]);
    assert_eq!(code, 0);
    assert!(!out.contains("eth1") && !out.contains("data\n") && out.contains("data2") && out.contains("eth0"), "{out}");
    let cfg = d.get("/1.0/instances/vn")["metadata"]["config"].clone();
    assert_eq!(cfg["volatile.eth1.host_name"].as_str().unwrap_or(""), "", "{cfg}");

    // berthd dies (say between QEMU's start and the plug): adopting the VM plugs its tap
    // into the bridge again.
    d.kill9();
    assert!(std::process::Command::new("ip").args(["link", "set", &tap, "nomaster"]).status().unwrap().success());
    d.spawn();
    let master = std::fs::read_link(format!("/sys/class/net/{tap}/master")).expect("tap plugged again after the restart");
    assert_eq!(master.file_name().unwrap().to_str(), Some(net.bridge.as_str()));
    let (code, out, err) = exec(&d, "vn", &["ping", "-c", "1", "-W", "10", "169.254.89.2"]);
    assert_eq!(code, 0, "{out}{err}");

    d.lxc_ok(&["stop", "--force", "vn"]);
    assert!(!link_exists(&tap), "tap {tap} left after the stop");
    let config = d.get("/1.0/instances/vn")["metadata"]["config"].clone();
    assert_eq!(config["volatile.eth0.host_name"].as_str().unwrap_or(""), "", "{config}");
    assert_eq!(config["volatile.eth0.hwaddr"], hwaddr.as_str(), "the MAC is kept");
}
