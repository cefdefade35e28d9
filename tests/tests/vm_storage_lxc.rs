//! VM images and volumes through the real `lxc` client (and raw REST where lxc has no verb):
//! import of LXD VM images (split and unified) with the boot/ extension, list and export,
//! refusal of malformed qcow2 disks, `init --vm` from an image and `init --empty --vm`,
//! snapshot, restore, copy, rename, delete and export/import of stopped VMs, on the `dir`
//! pool and on a btrfs pool on a loop file. Creating and snapshotting a VM needs no QEMU.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_engine::testsupport::{probe_program, probe_root, require, Tier};
use berth_tests::storage::{drop_pool, get, lxc_err, sha256, snapshot_names, tar_header as header, write, BtrfsPool};
use berth_tests::{probe_lxc, Daemon};

fn ready(test: &str) -> bool {
    require(test, Tier::Root, probe_root())
        && require(test, Tier::LxcClient, probe_lxc())
        && require(test, Tier::Qemu, probe_program("qemu-img"))
}

fn btrfs_ready(test: &str) -> bool {
    ready(test) && require(test, Tier::Btrfs, probe_program("mkfs.btrfs"))
}

const METADATA: &str = "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: busybox\n  description: berth VM storage test image\n";

fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    b.append(&header(path, data.len() as u64, 0o644, tar::EntryType::Regular), data).expect("tar file");
}

fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    b.append(&header(path, 0, 0o755, tar::EntryType::Directory), &[][..]).expect("tar dir");
}

/// The metadata tarball of a split VM image, with the berth boot/ extension.
fn vm_meta_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "metadata.yaml", METADATA.as_bytes());
    dir(&mut b, "templates/");
    file(&mut b, "templates/hostname.tpl", b"{{ instance.name }}\n");
    dir(&mut b, "boot/");
    file(&mut b, "boot/vmlinuz", b"not really a kernel");
    file(&mut b, "boot/initrd.img", b"not really an initrd");
    file(&mut b, "boot/cmdline", b"console=ttyS0 quiet panic=-1\n");
    gzip(&b.into_inner().expect("tar"))
}

/// A unified container image (metadata.yaml + rootfs/).
fn container_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "metadata.yaml", METADATA.as_bytes());
    dir(&mut b, "rootfs/");
    dir(&mut b, "rootfs/etc/");
    file(&mut b, "rootfs/etc/hostname", b"ct\n");
    gzip(&b.into_inner().expect("tar"))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip").arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("gzip");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = data.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let out = child.wait_with_output().expect("gzip");
    writer.join().expect("writer").expect("write");
    out.stdout
}

fn qcow2(dir: &Path, name: &str, size: &str, extra: &[&str]) -> PathBuf {
    let p = dir.join(name);
    let out = Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).args(extra).arg(&p).arg(size).output().expect("qemu-img");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Imports the split VM image as `alias`; returns (fingerprint, disk bytes).
fn import_vm_image(d: &Daemon, alias: &str) -> (String, Vec<u8>) {
    let meta = vm_meta_tar();
    let mp = write(d.data_dir(), "vm-meta.tar.gz", &meta);
    let disk = qcow2(d.data_dir(), "vm-root.qcow2", "32M", &[]);
    let disk_bytes = std::fs::read(&disk).expect("disk");
    let fp = sha256(&[meta, disk_bytes.clone()].concat());
    let out = d.lxc_ok(&["image", "import", s(&mp), s(&disk), "--alias", alias]);
    assert!(out.contains(&fp), "{out}");
    (fp, disk_bytes)
}

fn vm_dir(d: &Daemon, pool: &str, name: &str) -> PathBuf {
    d.data_dir().join("storage-pools").join(pool).join("virtual-machines").join(name)
}

fn vm_snap_dir(d: &Daemon, pool: &str, name: &str) -> PathBuf {
    d.data_dir().join("storage-pools").join(pool).join("virtual-machines-snapshots").join(name)
}

/// A multipart upload built by hand, naming the disk part `rootfs.img` as LXD's client does.
fn multipart(meta: &[u8], disk: &[u8]) -> (String, Vec<u8>) {
    let boundary = "berthtestboundary";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"meta.tar.gz\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
    body.extend_from_slice(meta);
    body.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"rootfs.img\"; filename=\"root.qcow2\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
    body.extend_from_slice(disk);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn assert_nothing_left(d: &Daemon, what: &str) {
    assert_eq!(get(d, "/1.0/images").as_array().map(Vec::len), Some(0), "{what}: an image record was left");
    let left: Vec<_> = std::fs::read_dir(d.data_dir().join("images")).map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{what}: files left {left:?}");
    let vols: Vec<_> = std::fs::read_dir(d.data_dir().join("storage-pools/default/images"))
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(vols.is_empty(), "{what}: volumes left {vols:?}");
}

#[test]
fn vm_images_import_list_export_and_delete() {
    if !ready("vm_images_import_list_export_and_delete") {
        return;
    }
    let d = Daemon::start();
    let (fp, disk) = import_vm_image(&d, "vmimg");
    let list = d.lxc_ok(&["image", "list", "--format", "csv", "-c", "lft"]);
    assert!(list.lines().any(|l| l.starts_with("vmimg,") && l.contains(&fp[..12]) && l.contains("VIRTUAL-MACHINE")), "{list}");
    assert_eq!(get(&d, &format!("/1.0/images/{fp}"))["type"], "virtual-machine");
    assert_eq!(get(&d, "/1.0/images/aliases/vmimg")["type"], "virtual-machine");
    // Unpacked once into the default pool, in the VM layout.
    let vol = d.data_dir().join("storage-pools/default/images").join(&fp);
    assert_eq!(std::fs::read(vol.join("root.img")).expect("root.img"), disk);
    assert_eq!(std::fs::read_to_string(vol.join("boot/cmdline")).expect("cmdline"), "console=ttyS0 quiet panic=-1\n");

    // Export: two files whose bytes hash to the fingerprint; the disk is the qcow2.
    let out = d.data_dir().join("export");
    std::fs::create_dir_all(&out).expect("dir");
    d.lxc_ok(&["image", "export", "vmimg", s(&out.join("x"))]);
    let mut parts: Vec<(PathBuf, Vec<u8>)> =
        std::fs::read_dir(&out).expect("ls").filter_map(|e| e.ok()).map(|e| (e.path(), std::fs::read(e.path()).expect("read"))).collect();
    assert_eq!(parts.len(), 2, "split export writes two files: {parts:?}", parts = parts.iter().map(|p| &p.0).collect::<Vec<_>>());
    parts.sort_by_key(|(_, b)| !b.starts_with(&[0x1f, 0x8b]));
    assert_eq!(parts[1].1, disk);
    assert_eq!(sha256(&[parts[0].1.clone(), parts[1].1.clone()].concat()), fp);

    // Unified: one tarball with metadata.yaml and rootfs.img.
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "metadata.yaml", METADATA.as_bytes());
    file(&mut b, "rootfs.img", &std::fs::read(qcow2(d.data_dir(), "u.qcow2", "8M", &[])).expect("disk"));
    let unified = gzip(&b.into_inner().expect("tar"));
    let up = write(d.data_dir(), "unified.tar.gz", &unified);
    let o = d.lxc_ok(&["image", "import", s(&up), "--alias", "unified"]);
    assert!(o.contains(&sha256(&unified)), "{o}");
    assert_eq!(get(&d, "/1.0/images/aliases/unified")["target"], sha256(&unified));
    assert_eq!(get(&d, &format!("/1.0/images/{}", sha256(&unified)))["type"], "virtual-machine");
    let exported = d.data_dir().join("unified-export");
    d.lxc_ok(&["image", "export", "unified", s(&exported)]);
    assert_eq!(sha256(&std::fs::read(exported.with_extension("tar.gz")).expect("exported")), sha256(&unified));

    // A container image stays a container image.
    let cp = write(d.data_dir(), "ct.tar.gz", &container_tar());
    d.lxc_ok(&["image", "import", s(&cp), "--alias", "ct"]);
    let list = d.lxc_ok(&["image", "list", "--format", "csv", "-c", "lt"]);
    assert!(list.lines().any(|l| l.starts_with("ct,") && l.contains("CONTAINER")), "{list}");

    // Delete removes the record, files and the unpacked VM volume.
    d.lxc_ok(&["image", "delete", "vmimg"]);
    assert_eq!(d.req("GET", &format!("/1.0/images/{fp}"), None).status, 404);
    assert!(!d.data_dir().join("images").join(&fp).exists());
    assert!(!d.data_dir().join("images").join(format!("{fp}.rootfs")).exists());
    assert!(!vol.exists());
}

#[test]
fn malformed_vm_disks_are_refused_with_400() {
    if !ready("malformed_vm_disks_are_refused_with_400") {
        return;
    }
    let d = Daemon::start_with_env(&[("BERTH_VM_IMAGE_MAX_DISK_BYTES", "1073741824")]);
    let work = tempfile::tempdir().expect("tmp");
    let w = work.path();
    let meta = vm_meta_tar();
    let mp = write(w, "meta.tar.gz", &meta);
    let base = qcow2(w, "base.qcow2", "16M", &[]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad magic", vec![0x55u8; 65536], "bad magic"),
        ("backing file", std::fs::read(qcow2(w, "overlay.qcow2", "16M", &["-b", s(&base), "-F", "qcow2"])).expect("overlay"), "backing file"),
        ("too large", std::fs::read(qcow2(w, "big.qcow2", "4G", &[])).expect("big"), "exceeds the limit"),
    ];
    for (name, disk, needle) in cases {
        // Raw REST, as LXD's client sends a VM image.
        let (ctype, body) = multipart(&meta, &disk);
        let r = d.raw("POST", "/1.0/images", &[("Content-Type", ctype.as_str())], body);
        let op = d.wait_op(&r);
        assert_eq!(op["status_code"], 400, "{name}: {op}");
        assert!(op["err"].as_str().is_some_and(|m| m.contains(needle) && m.contains("invalid VM disk")), "{name}: {op}");
        assert_nothing_left(&d, name);
        // The lxc client sends a qcow2 as a VM disk by itself.
        if disk.starts_with(b"QFI\xfb") {
            let dp = write(w, "disk.qcow2", &disk);
            let e = lxc_err(&d, &["image", "import", s(&mp), s(&dp)]);
            assert!(e.contains(needle), "{name}: {e}");
            assert_nothing_left(&d, name);
        }
    }
    assert!(!Path::new("/etc/evil").exists());
}

/// init --vm from the image, type checks, snapshot, restore, copy, rename, delete, and
/// `init --empty --vm`, on one pool.
fn vm_lifecycle_on_pool(d: &Daemon, pool: &str) {
    let (fp, disk) = import_vm_image(d, "vmimg");
    let cp = write(d.data_dir(), "ct.tar.gz", &container_tar());
    d.lxc_ok(&["image", "import", s(&cp), "--alias", "ct"]);

    d.lxc_ok(&["init", "vmimg", "v1", "--vm", "-s", pool]);
    let v1 = get(d, "/1.0/instances/v1");
    assert_eq!(v1["type"], "virtual-machine");
    assert_eq!(v1["config"]["volatile.base_image"], fp);
    let list = d.lxc_ok(&["list", "--format", "csv", "-c", "nt"]);
    assert!(list.contains("v1,VIRTUAL-MACHINE"), "{list}");
    let vols = d.lxc_ok(&["storage", "volume", "list", pool, "--format", "csv"]);
    assert!(vols.lines().any(|l| l.starts_with("virtual-machine,v1,")), "{vols}");
    let root = vm_dir(d, pool, "v1");
    assert_eq!(std::fs::read(root.join("root.img")).expect("root.img"), disk);
    assert!(root.join("boot/vmlinuz").is_file() && root.join("metadata.yaml").is_file());

    // A root disk size larger than the image's disk grows it.
    d.lxc_ok(&["init", "vmimg", "vbig", "--vm", "-s", pool, "-d", "root,size=1GiB"]);
    let info = Command::new("qemu-img").args(["info", "--output=json"]).arg(vm_dir(d, pool, "vbig").join("root.img")).output().expect("qemu-img");
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
    assert_eq!(info["virtual-size"], 1u64 << 30, "{info}");
    let image_vol = d.data_dir().join("storage-pools").join(pool).join("images").join(&fp);
    assert_eq!(std::fs::read(image_vol.join("root.img")).expect("image volume disk"), disk, "the image volume was changed");
    d.lxc_ok(&["delete", "vbig"]);

    // The image's type must match the instance's. Without --vm, lxc takes the image's type
    // (as with LXD); an explicit container request for a VM image is refused.
    d.lxc_ok(&["init", "vmimg", "v0", "-s", pool]);
    assert_eq!(get(d, "/1.0/instances/v0")["type"], "virtual-machine");
    d.lxc_ok(&["delete", "v0"]);
    let body = serde_json::json!({"name": "c1", "type": "container", "source": {"type": "image", "alias": "vmimg"},
        "devices": {"root": {"type": "disk", "path": "/", "pool": pool}}});
    let r = d.req("POST", "/1.0/instances", Some(body));
    assert_eq!(r.status, 400, "{}", r.json());
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("virtual-machine image")), "{}", r.json());
    // lxc refuses a container image for --vm by itself; the server does too.
    let e = lxc_err(d, &["init", "ct", "v9", "--vm", "-s", pool]);
    assert!(e.contains("type container"), "{e}");
    let body = serde_json::json!({"name": "v9", "type": "virtual-machine", "source": {"type": "image", "alias": "ct"},
        "devices": {"root": {"type": "disk", "path": "/", "pool": pool}}});
    let r = d.req("POST", "/1.0/instances", Some(body));
    assert_eq!(r.status, 400, "{}", r.json());
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("container image")), "{}", r.json());
    assert_eq!(d.req("GET", "/1.0/instances/c1", None).status, 404);
    assert!(!vm_dir(d, pool, "v9").exists());
    assert!(!d.data_dir().join("storage-pools").join(pool).join("containers/c1").exists());

    // Snapshots and restore work on the disk.
    std::fs::write(root.join("root.img"), b"state-1").expect("write");
    d.lxc_ok(&["snapshot", "v1"]);
    std::fs::write(root.join("root.img"), b"state-2").expect("write");
    d.lxc_ok(&["snapshot", "v1", "named"]);
    std::fs::write(root.join("root.img"), b"state-3").expect("write");
    assert_eq!(snapshot_names(d, "v1"), vec!["snap0", "named"]);
    assert_eq!(std::fs::read(vm_snap_dir(d, pool, "v1").join("snap0/root.img")).expect("snap"), b"state-1");
    d.lxc_ok(&["restore", "v1", "snap0"]);
    assert_eq!(std::fs::read(root.join("root.img")).expect("read"), b"state-1");

    // Copy (with snapshots, from a snapshot), rename and delete.
    d.lxc_ok(&["copy", "v1", "v2"]);
    assert_eq!(get(d, "/1.0/instances/v2")["type"], "virtual-machine");
    assert_eq!(snapshot_names(d, "v2"), vec!["snap0", "named"]);
    assert_eq!(std::fs::read(vm_dir(d, pool, "v2").join("root.img")).expect("read"), b"state-1");
    assert_eq!(std::fs::read(vm_snap_dir(d, pool, "v2").join("named/root.img")).expect("read"), b"state-2");
    d.lxc_ok(&["copy", "v1/named", "v3"]);
    assert_eq!(std::fs::read(vm_dir(d, pool, "v3").join("root.img")).expect("read"), b"state-2");
    d.lxc_ok(&["copy", "v1", "v3", "--refresh"]);
    assert_eq!(snapshot_names(d, "v3"), vec!["snap0", "named"]);
    assert_eq!(std::fs::read(vm_dir(d, pool, "v3").join("root.img")).expect("read"), b"state-1");
    d.lxc_ok(&["move", "v2", "v2r"]);
    assert!(vm_dir(d, pool, "v2r").join("root.img").is_file() && !vm_dir(d, pool, "v2").exists());
    assert_eq!(snapshot_names(d, "v2r"), vec!["snap0", "named"]);
    d.lxc_ok(&["delete", "v2r"]);
    assert!(!vm_dir(d, pool, "v2r").exists());
    let sd = vm_snap_dir(d, pool, "v2r");
    assert!(!sd.exists() || std::fs::read_dir(&sd).map(|mut r| r.next().is_none()).unwrap_or(true), "snapshots left");

    // An empty VM: a sparse raw root.img of the root disk's size (10GiB by default).
    d.lxc_ok(&["init", "--empty", "--vm", "e1", "-s", pool]);
    let m = std::fs::metadata(vm_dir(d, pool, "e1").join("root.img")).expect("root.img");
    assert_eq!(m.len(), 10 << 30);
    assert!(m.blocks() < 1024, "root.img is not sparse: {} blocks", m.blocks());
    d.lxc_ok(&["snapshot", "e1"]);
    let sm = std::fs::metadata(vm_snap_dir(d, pool, "e1").join("snap0/root.img")).expect("snapshot root.img");
    assert_eq!(sm.len(), 10 << 30);
    assert!(sm.blocks() < 1024, "the snapshot filled the holes: {} blocks", sm.blocks());
    d.lxc_ok(&["init", "--empty", "--vm", "e2", "-s", pool, "-d", "root,size=64MiB"]);
    assert_eq!(std::fs::metadata(vm_dir(d, pool, "e2").join("root.img")).expect("root.img").len(), 64 << 20);
    d.lxc_ok(&["delete", "e1"]);
    d.lxc_ok(&["delete", "e2"]);
    assert!(!vm_dir(d, pool, "e1").exists() && !vm_dir(d, pool, "e2").exists());
}

#[test]
fn vm_lifecycle_on_dir() {
    if !ready("vm_lifecycle_on_dir") {
        return;
    }
    let d = Daemon::start();
    vm_lifecycle_on_pool(&d, "default");
}

#[test]
fn vm_lifecycle_on_btrfs() {
    if !btrfs_ready("vm_lifecycle_on_btrfs") {
        return;
    }
    let d = Daemon::start();
    let _pool = BtrfsPool::create(&d, "bt", "2GiB");
    vm_lifecycle_on_pool(&d, "bt");
    // VM volumes on btrfs are snapshots of the image subvolume.
    let out = Command::new("btrfs").args(["subvolume", "show"]).arg(vm_dir(&d, "bt", "v1")).output().expect("btrfs");
    let show = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && show.contains("Parent UUID") && !show.contains("Parent UUID: \t\t-"), "{show}");
    drop_pool(&d, "bt");
}

/// Export (optionally optimized), delete, import, under the old and a new name.
fn vm_export_import_round_trip(d: &Daemon, pool: &str, optimized: bool) {
    import_vm_image(d, "vmimg");
    d.lxc_ok(&["init", "vmimg", "x1", "--vm", "-s", pool]);
    let root = vm_dir(d, pool, "x1");
    std::fs::write(root.join("root.img"), b"disk-v1").expect("write");
    d.lxc_ok(&["snapshot", "x1"]);
    std::fs::write(root.join("root.img"), b"disk-v2").expect("write");
    d.lxc_ok(&["config", "set", "x1", "user.mark", "exported"]);
    let tarball = d.data_dir().join("x1.tar.gz");
    let mut args = vec!["export", "x1", s(&tarball)];
    if optimized {
        args.push("--optimized-storage");
    }
    d.lxc_ok(&args);
    d.lxc_ok(&["delete", "x1"]);
    assert!(!root.exists());
    d.lxc_ok(&["import", s(&tarball), "--storage", pool]);
    let x1 = get(d, "/1.0/instances/x1");
    assert_eq!(x1["type"], "virtual-machine", "{x1}");
    assert_eq!(x1["config"]["user.mark"], "exported");
    assert_eq!(snapshot_names(d, "x1"), vec!["snap0"]);
    assert_eq!(std::fs::read(root.join("root.img")).expect("read"), b"disk-v2");
    assert!(root.join("boot/vmlinuz").is_file());
    d.lxc_ok(&["restore", "x1", "snap0"]);
    assert_eq!(std::fs::read(root.join("root.img")).expect("read"), b"disk-v1");
    d.lxc_ok(&["import", s(&tarball), "x2", "--storage", pool]);
    assert_eq!(get(d, "/1.0/instances/x2")["type"], "virtual-machine");
    assert_eq!(std::fs::read(vm_dir(d, pool, "x2").join("root.img")).expect("read"), b"disk-v2");
    assert_eq!(std::fs::read(vm_snap_dir(d, pool, "x2").join("snap0/root.img")).expect("read"), b"disk-v1");

    // A sparse 10GiB disk travels as its data only and comes back sparse.
    d.lxc_ok(&["init", "--empty", "--vm", "big", "-s", pool]);
    let disk = vm_dir(d, pool, "big").join("root.img");
    std::os::unix::fs::FileExt::write_all_at(&std::fs::OpenOptions::new().write(true).open(&disk).expect("open"), b"deep data", 5 << 30).expect("write");
    d.lxc_ok(&["snapshot", "big"]);
    let big_tar = d.data_dir().join("big.tar.gz");
    let mut args = vec!["export", "big", s(&big_tar)];
    if optimized {
        args.push("--optimized-storage");
    }
    d.lxc_ok(&args);
    let size = std::fs::metadata(&big_tar).expect("tarball").len();
    assert!(size < 4 << 20, "the backup of a sparse disk is {size} bytes");
    d.lxc_ok(&["delete", "big"]);
    d.lxc_ok(&["import", s(&big_tar), "--storage", pool]);
    for p in [disk.clone(), vm_snap_dir(d, pool, "big").join("snap0/root.img")] {
        let m = std::fs::metadata(&p).expect("root.img");
        assert_eq!(m.len(), 10 << 30, "{}", p.display());
        assert!(m.blocks() < 4096, "{} came back with {} blocks", p.display(), m.blocks());
        let mut got = [0u8; 9];
        std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(&p).expect("open"), &mut got, 5 << 30).expect("read");
        assert_eq!(&got, b"deep data");
    }
}

#[test]
fn vm_export_import_round_trip_on_dir() {
    if !ready("vm_export_import_round_trip_on_dir") {
        return;
    }
    let d = Daemon::start();
    vm_export_import_round_trip(&d, "default", false);
}

#[test]
fn vm_export_import_round_trip_on_btrfs_optimized() {
    if !btrfs_ready("vm_export_import_round_trip_on_btrfs_optimized") {
        return;
    }
    let d = Daemon::start();
    let _pool = BtrfsPool::create(&d, "bt", "2GiB");
    vm_export_import_round_trip(&d, "bt", true);
    drop_pool(&d, "bt");
}

/// The VM test image directory (`BERTH_VM_TEST_IMAGE` or target/vm-test-image), built when
/// missing, as the qemu-tier tests of berth_engine::vm do.
fn vm_test_image() -> PathBuf {
    berth_engine::testsupport::vm_test_image(&["vmlinuz", "initrd.img", "root.qcow2"]).expect("build-test-image.sh")
}

#[test]
fn the_vm_test_image_imports_as_an_lxd_vm_image() {
    if !ready("the_vm_test_image_imports_as_an_lxd_vm_image") {
        return;
    }
    let image = vm_test_image();
    let d = Daemon::start();
    let lxd = d.data_dir().join("lxd-image");
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vm/make-lxd-image.sh")).arg(&image).arg(&lxd).output().expect("make-lxd-image.sh");
    assert!(out.status.success(), "make-lxd-image.sh: {}", String::from_utf8_lossy(&out.stderr));
    d.lxc_ok(&["image", "import", s(&lxd.join("meta.tar.gz")), s(&lxd.join("root.qcow2")), "--alias", "vmtest"]);
    let list = d.lxc_ok(&["image", "list", "--format", "csv", "-c", "lt"]);
    assert!(list.contains("vmtest,VIRTUAL-MACHINE"), "{list}");
    d.lxc_ok(&["init", "vmtest", "t1", "--vm"]);
    // What the VM driver reads: the root disk and the direct-boot files.
    let vol = vm_dir(&d, "default", "t1");
    assert_eq!(std::fs::read(berth_engine::storage::vm_volume::root_disk(&vol)).expect("disk"), std::fs::read(image.join("root.qcow2")).expect("disk"));
    let boot = berth_engine::storage::vm_volume::boot_files(&vol).expect("layout").expect("boot files");
    assert_eq!(std::fs::read(&boot.kernel).expect("kernel"), std::fs::read(image.join("vmlinuz")).expect("kernel"));
    assert_eq!(std::fs::read(boot.initrd.as_ref().expect("initrd")).expect("initrd"), std::fs::read(image.join("initrd.img")).expect("initrd"));
    assert_eq!(boot.cmdline.as_deref(), Some("console=ttyS0 quiet panic=-1"));
}

fn qemu_io(disk: &Path, cmd: &str) -> String {
    let o = Command::new("qemu-io").args(["-f", "qcow2", "-c", cmd]).arg(disk).output().expect("qemu-io");
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "qemu-io {cmd}: {out}");
    out
}

#[test]
fn vm_publish_makes_a_split_vm_image() {
    if !ready("vm_publish_makes_a_split_vm_image") || !require("vm_publish_makes_a_split_vm_image", Tier::Qemu, probe_program("qemu-io")) {
        return;
    }
    let d = Daemon::start();
    import_vm_image(&d, "vmimg");
    d.lxc_ok(&["init", "vmimg", "p1", "--vm"]);
    qemu_io(&vm_dir(&d, "default", "p1").join("root.img"), "write -P 0x42 1M 64k");
    let out = d.lxc_ok(&["publish", "p1", "--alias", "pub1"]);
    let fp = get(&d, "/1.0/images/aliases/pub1")["target"].as_str().unwrap_or_default().to_string();
    assert!(out.contains(&fp) && fp.len() == 64, "{out}");
    assert_eq!(get(&d, &format!("/1.0/images/{fp}"))["type"], "virtual-machine");
    // The published image exports to bytes hashing to its fingerprint.
    let ex = d.data_dir().join("pub-export");
    std::fs::create_dir_all(&ex).expect("dir");
    d.lxc_ok(&["image", "export", "pub1", s(&ex.join("x"))]);
    let mut parts: Vec<Vec<u8>> = std::fs::read_dir(&ex).expect("ls").filter_map(|e| std::fs::read(e.ok()?.path()).ok()).collect();
    parts.sort_by_key(|b| b.starts_with(b"QFI\xfb"));
    assert_eq!(parts.len(), 2);
    assert_eq!(sha256(&parts.concat()), fp);
    // A VM made from it has the data and the boot files.
    d.lxc_ok(&["init", "pub1", "p2", "--vm"]);
    let p2 = vm_dir(&d, "default", "p2");
    assert!(qemu_io(&p2.join("root.img"), "read -P 0x42 1M 64k").contains("read 65536/65536 bytes"));
    assert_eq!(std::fs::read_to_string(p2.join("boot/cmdline")).expect("cmdline"), "console=ttyS0 quiet panic=-1\n");
    // An empty (raw) VM publishes as a qcow2 of the same virtual size.
    d.lxc_ok(&["init", "--empty", "--vm", "p3", "-d", "root,size=64MiB"]);
    d.lxc_ok(&["publish", "p3", "--alias", "pub3"]);
    d.lxc_ok(&["init", "pub3", "p4", "--vm"]);
    let info = Command::new("qemu-img").args(["info", "--output=json"]).arg(vm_dir(&d, "default", "p4").join("root.img")).output().expect("qemu-img");
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], 64 << 20);
    // No temporary files are left in the images directory.
    let left: Vec<String> = std::fs::read_dir(d.data_dir().join("images")).expect("ls").filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with('.')).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_vm_backup_whose_disk_is_a_symlink_is_refused() {
    if !ready("a_vm_backup_whose_disk_is_a_symlink_is_refused") {
        return;
    }
    let d = Daemon::start();
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "backup/index.yaml", b"name: evil\nbackend: dir\npool: default\ntype: virtual-machine\n");
    dir(&mut b, "backup/virtual-machine/");
    let mut h = header("backup/virtual-machine/root.img", 0, 0o777, tar::EntryType::Symlink);
    h.set_link_name("/etc/shadow").expect("link");
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    b.append(&h, &[][..]).expect("symlink");
    let p = write(d.data_dir(), "evil.tar.gz", &gzip(&b.into_inner().expect("tar")));
    let e = lxc_err(&d, &["import", s(&p)]);
    assert!(e.contains("root.img") && e.contains("regular file"), "{e}");
    assert_eq!(d.req("GET", "/1.0/instances/evil", None).status, 404);
    assert!(!vm_dir(&d, "default", "evil").exists(), "the refused volume was left behind");
}
