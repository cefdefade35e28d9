//! Storage through the real `lxc` client (and raw REST where lxc has no verb): images,
//! instances from images, snapshots, restore, copy, rename, export/import, expiry, pools,
//! custom volumes, and refusal of untrusted image archives. Run on the `dir` pool and on a
//! btrfs pool on a loop file (`lxc storage create bt btrfs size=2GiB`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_engine::testsupport::{probe_program, probe_root, require, Tier};
use berth_tests::storage::{drop_pool, get, lxc_err, rootfs, sha256, snapshot_names, tar_header as header, write, BtrfsPool};
use berth_tests::{probe_lxc, Daemon};
use serde_json::json;

fn ready(test: &str) -> bool {
    require(test, Tier::Root, probe_root())
        && require(test, Tier::LxcClient, probe_lxc())
        && require(test, Tier::Root, probe_program("busybox"))
}

fn btrfs_ready(test: &str) -> bool {
    ready(test) && require(test, Tier::Btrfs, probe_program("mkfs.btrfs"))
}

const METADATA: &str = "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: busybox\n  description: busybox test image\n";

/// A tar of busybox + symlinks (+ metadata.yaml when `with_meta`), under `prefix`.
fn busybox_tar(with_meta: bool, prefix: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    if with_meta {
        b.append(&header("metadata.yaml", METADATA.len() as u64, 0o644, tar::EntryType::Regular), METADATA.as_bytes()).expect("meta");
    }
    let bin = std::fs::read("/bin/busybox").expect("read busybox");
    for dir in ["", "bin", "etc"] {
        let p = if dir.is_empty() { prefix.trim_end_matches('/').to_string() } else { format!("{prefix}{dir}") };
        if !p.is_empty() {
            b.append(&header(&p, 0, 0o755, tar::EntryType::Directory), &[][..]).expect("dir");
        }
    }
    b.append(&header(&format!("{prefix}bin/busybox"), bin.len() as u64, 0o755, tar::EntryType::Regular), bin.as_slice()).expect("bin");
    for app in ["sh", "ls", "cat", "echo"] {
        let mut h = header(&format!("{prefix}bin/{app}"), 0, 0o777, tar::EntryType::Symlink);
        h.set_link_name("busybox").expect("link");
        h.set_cksum();
        b.append(&h, &[][..]).expect("symlink");
    }
    let host = b"busybox\n";
    b.append(&header(&format!("{prefix}etc/hostname"), host.len() as u64, 0o644, tar::EntryType::Regular), &host[..]).expect("hostname");
    b.into_inner().expect("tar")
}

/// A tar with only metadata.yaml (split images).
fn metadata_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append(&header("metadata.yaml", METADATA.len() as u64, 0o644, tar::EntryType::Regular), METADATA.as_bytes()).expect("meta");
    b.into_inner().expect("tar")
}

/// Compresses with the CLI tool (`gzip`, `xz`, `zstd`) or not at all (`none`).
fn compress(data: &[u8], tool: &str) -> Vec<u8> {
    if tool == "none" {
        return data.to_vec();
    }
    let mut child = Command::new(tool).arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("compressor");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = data.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let out = child.wait_with_output().expect("compress");
    writer.join().expect("writer").expect("write");
    out.stdout
}

/// Imports the unified busybox image as alias `bb`; returns its fingerprint.
fn import_busybox(d: &Daemon) -> String {
    let data = compress(&busybox_tar(true, "rootfs/"), "gzip");
    let p = write(d.data_dir(), "bb.tar.gz", &data);
    let out = d.lxc_ok(&["image", "import", p.to_str().unwrap_or_default(), "--alias", "bb"]);
    let fp = sha256(&data);
    assert!(out.contains(&fp), "{out}");
    fp
}

#[test]
fn image_import_list_export_delete_all_formats() {
    if !ready("image_import_list_export_delete_all_formats") {
        return;
    }
    let d = Daemon::start();
    let fp = import_busybox(&d);
    let list = d.lxc_ok(&["image", "list", "--format", "csv", "-c", "lfd"]);
    assert!(list.contains("bb,") && list.contains(&fp[..12]) && list.contains("busybox test image"), "{list}");

    // Export: the bytes hash to the fingerprint.
    let out = d.data_dir().join("exported");
    d.lxc_ok(&["image", "export", "bb", out.to_str().unwrap_or_default()]);
    let exported = std::fs::read(out.with_extension("tar.gz")).expect("exported file");
    assert_eq!(sha256(&exported), fp);

    // Other compressions and a split image (multipart upload).
    let raw = busybox_tar(true, "rootfs/");
    for tool in ["xz", "zstd", "none"] {
        let data = compress(&raw, tool);
        let p = write(d.data_dir(), &format!("img-{tool}.tar"), &data);
        let o = d.lxc_ok(&["image", "import", p.to_str().unwrap_or_default(), "--alias", tool]);
        assert!(o.contains(&sha256(&data)), "{tool}: {o}");
    }
    let meta = compress(&metadata_tar(), "xz");
    let rootfs_tar = compress(&busybox_tar(false, ""), "gzip");
    let mp = write(d.data_dir(), "meta.tar.xz", &meta);
    let rp = write(d.data_dir(), "rootfs.tar.gz", &rootfs_tar);
    let split_fp = sha256(&[meta.clone(), rootfs_tar.clone()].concat());
    let o = d.lxc_ok(&["image", "import", mp.to_str().unwrap_or_default(), rp.to_str().unwrap_or_default(), "--alias", "split"]);
    assert!(o.contains(&split_fp), "{o}");
    d.lxc_ok(&["init", "split", "fromsplit"]);
    assert!(rootfs_path_has_busybox(&rootfs(&d, "default", "fromsplit")));
    let sdir = d.data_dir().join("split-export");
    std::fs::create_dir_all(&sdir).expect("dir");
    d.lxc_ok(&["image", "export", "split", sdir.join("x").to_str().unwrap_or_default()]);
    let mut parts: Vec<Vec<u8>> = std::fs::read_dir(&sdir).expect("ls").filter_map(|e| std::fs::read(e.ok()?.path()).ok()).collect();
    parts.sort_by_key(|p| p.len());
    assert_eq!(parts.len(), 2, "split export writes two files");
    assert_eq!(sha256(&[parts[0].clone(), parts[1].clone()].concat()), split_fp);

    // Filters, aliases API, properties.
    let f = get(&d, "/1.0/images?recursion=1&filter=properties.os%20eq%20busybox");
    assert_eq!(f.as_array().map(Vec::len), Some(5), "{f}");
    let f = get(&d, "/1.0/images?recursion=1&filter=properties.os%20eq%20debian");
    assert_eq!(f.as_array().map(Vec::len), Some(0));
    d.lxc_ok(&["image", "alias", "rename", "bb", "busy"]);
    assert_eq!(get(&d, "/1.0/images/aliases/busy")["target"], fp);
    assert_eq!(d.req("GET", "/1.0/images/aliases/bb", None).status, 404);
    d.lxc_ok(&["image", "alias", "create", "second", &fp[..12]]);
    let r = d.req("PATCH", &format!("/1.0/images/{}", &fp[..10]), Some(json!({"properties": {"extra": "1"}, "public": true})));
    assert_eq!(r.status, 200, "{}", r.json());
    let img = get(&d, &format!("/1.0/images/{}", &fp[..8]));
    assert_eq!(img["properties"]["extra"], "1");
    assert_eq!(img["properties"]["os"], "busybox");
    assert_eq!(img["public"], true);
    assert_eq!(img["aliases"].as_array().map(Vec::len), Some(2));

    // Delete: record, aliases, files and the unpacked volume go.
    d.lxc_ok(&["image", "delete", "busy"]);
    assert_eq!(d.req("GET", &format!("/1.0/images/{fp}"), None).status, 404);
    assert_eq!(d.req("GET", "/1.0/images/aliases/second", None).status, 404);
    assert!(!d.data_dir().join("images").join(&fp).exists());
    assert!(!d.data_dir().join("storage-pools/default/images").join(&fp).exists());
}

fn rootfs_path_has_busybox(p: &Path) -> bool {
    p.join("bin/busybox").is_file() && std::fs::read_link(p.join("bin/sh")).is_ok_and(|l| l == Path::new("busybox"))
}

/// init from an image, snapshot, restore, copy (instance, snapshot, instance_only),
/// rename, delete, on one pool.
fn lifecycle_on_pool(d: &Daemon, pool: &str) {
    let fp = import_busybox(d);
    d.lxc_ok(&["init", "bb", "c1", "-s", pool]);
    let c1 = get(&d, "/1.0/instances/c1");
    assert_eq!(c1["config"]["volatile.base_image"], fp);
    let root = rootfs(d, pool, "c1");
    assert!(rootfs_path_has_busybox(&root));
    std::fs::write(root.join("etc/hostname"), "before\n").expect("write");
    d.lxc_ok(&["snapshot", "c1"]);
    d.lxc_ok(&["snapshot", "c1", "named"]);
    d.lxc_ok(&["snapshot", "c1"]);
    assert_eq!(snapshot_names(d, "c1"), vec!["snap0", "named", "snap1"]);
    let csv = d.lxc_ok(&["list", "--format", "csv", "-c", "nS"]);
    assert!(csv.contains("c1,3"), "{csv}");
    let full = get(&d, "/1.0/instances/c1?recursion=1");
    assert_eq!(full["snapshots"].as_array().map(Vec::len), Some(3), "{full}");
    let e = lxc_err(d, &["snapshot", "c1", "stf", "--stateful"]);
    assert!(e.contains("CRIU"), "{e}");

    std::fs::write(root.join("etc/hostname"), "after\n").expect("write");
    d.lxc_ok(&["config", "set", "c1", "user.later", "1"]);
    d.lxc_ok(&["restore", "c1", "snap0"]);
    assert_eq!(std::fs::read_to_string(root.join("etc/hostname")).expect("read"), "before\n");
    assert!(get(&d, "/1.0/instances/c1")["config"].get("user.later").is_none(), "config restored too");

    d.lxc_ok(&["copy", "c1", "c2"]);
    assert_eq!(snapshot_names(d, "c2"), vec!["snap0", "named", "snap1"]);
    let c2 = get(&d, "/1.0/instances/c2");
    assert_eq!(c2["config"]["volatile.base_image"], fp);
    assert_ne!(c2["config"]["volatile.uuid"], get(&d, "/1.0/instances/c1")["config"]["volatile.uuid"]);
    d.lxc_ok(&["copy", "c1", "c3", "--instance-only"]);
    assert!(snapshot_names(d, "c3").is_empty());
    d.lxc_ok(&["copy", "c1/named", "c4"]);
    assert!(rootfs_path_has_busybox(&rootfs(d, pool, "c4")));

    d.lxc_ok(&["move", "c2", "c2r"]);
    assert!(rootfs(d, pool, "c2r").join("bin/busybox").is_file());
    assert!(!rootfs(d, pool, "c2").exists());
    assert_eq!(snapshot_names(d, "c2r"), vec!["snap0", "named", "snap1"]);
    d.lxc_ok(&["move", "c2r/named", "c2r/renamed"]);
    assert_eq!(snapshot_names(d, "c2r"), vec!["snap0", "renamed", "snap1"]);
    d.lxc_ok(&["delete", "c2r/snap1"]);
    assert_eq!(snapshot_names(d, "c2r"), vec!["snap0", "renamed"]);

    // copy --refresh brings the target's snapshots in line with the source.
    d.lxc_ok(&["copy", "c1", "c3", "--refresh"]);
    assert_eq!(snapshot_names(d, "c3"), vec!["snap0", "named", "snap1"]);

    d.lxc_ok(&["delete", "c2r"]);
    assert!(!rootfs(d, pool, "c2r").exists());
    let snaps_dir = d.data_dir().join("storage-pools").join(pool).join("containers-snapshots").join("c2r");
    assert!(!snaps_dir.exists() || std::fs::read_dir(&snaps_dir).map(|mut r| r.next().is_none()).unwrap_or(true));
    assert_eq!(d.req("GET", "/1.0/instances/c2r/snapshots", None).status, 404);
}

#[test]
fn instance_lifecycle_on_dir() {
    if !ready("instance_lifecycle_on_dir") {
        return;
    }
    let d = Daemon::start();
    lifecycle_on_pool(&d, "default");
}

#[test]
fn instance_lifecycle_on_btrfs() {
    if !btrfs_ready("instance_lifecycle_on_btrfs") {
        return;
    }
    let d = Daemon::start();
    let _pool = BtrfsPool::create(&d, "bt", "2GiB");
    let pool = get(&d, "/1.0/storage-pools/bt");
    assert_eq!(pool["status"], "Created");
    assert_eq!(pool["driver"], "btrfs");
    lifecycle_on_pool(&d, "bt");
    // Instances on btrfs are snapshots of the image subvolume.
    let out = Command::new("btrfs").args(["subvolume", "show"]).arg(rootfs(&d, "bt", "c1").parent().expect("parent")).output().expect("btrfs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Parent UUID"), "not a subvolume");
    drop_pool(&d, "bt");
    assert!(!d.data_dir().join("storage-pools/bt/containers").exists());
}

fn export_import_round_trip(d: &Daemon, pool: &str, optimized: bool) {
    import_busybox(d);
    d.lxc_ok(&["init", "bb", "e1", "-s", pool]);
    let root = rootfs(d, pool, "e1");
    std::fs::write(root.join("etc/hostname"), "v1\n").expect("write");
    d.lxc_ok(&["snapshot", "e1"]);
    std::fs::write(root.join("etc/hostname"), "v2\n").expect("write");
    d.lxc_ok(&["snapshot", "e1"]);
    std::fs::write(root.join("etc/hostname"), "v3\n").expect("write");
    d.lxc_ok(&["config", "set", "e1", "user.mark", "exported"]);
    let tarball = d.data_dir().join("e1.tar.gz");
    let mut args = vec!["export", "e1", tarball.to_str().unwrap_or_default()];
    if optimized {
        args.push("--optimized-storage");
    }
    d.lxc_ok(&args);
    assert!(get(&d, "/1.0/instances/e1/backups").as_array().is_some_and(Vec::is_empty), "lxc export deletes its backup");
    d.lxc_ok(&["delete", "e1"]);
    d.lxc_ok(&["import", tarball.to_str().unwrap_or_default(), "--storage", pool]);
    assert_eq!(snapshot_names(d, "e1"), vec!["snap0", "snap1"]);
    assert_eq!(std::fs::read_to_string(root.join("etc/hostname")).expect("read"), "v3\n");
    assert_eq!(get(&d, "/1.0/instances/e1")["config"]["user.mark"], "exported");
    d.lxc_ok(&["restore", "e1", "snap0"]);
    assert_eq!(std::fs::read_to_string(root.join("etc/hostname")).expect("read"), "v1\n");
    // Import under another name, next to the original.
    d.lxc_ok(&["import", tarball.to_str().unwrap_or_default(), "e2", "--storage", pool]);
    assert_eq!(snapshot_names(d, "e2"), vec!["snap0", "snap1"]);
    assert_eq!(std::fs::read_to_string(rootfs(d, pool, "e2").join("etc/hostname")).expect("read"), "v3\n");
}

#[test]
fn export_import_round_trip_on_dir() {
    if !ready("export_import_round_trip_on_dir") {
        return;
    }
    let d = Daemon::start();
    export_import_round_trip(&d, "default", false);
    // Backups API by hand: names, list, rename, delete.
    let r = d.req("POST", "/1.0/instances/e1/backups", Some(json!({})));
    let op = d.wait_op(&r);
    assert_eq!(op["resources"]["backups"][0], "/1.0/backups/backup0", "{op}");
    let r = d.req("POST", "/1.0/instances/e1/backups", Some(json!({"name": "mine", "instance_only": true})));
    d.wait_op(&r);
    let list = get(&d, "/1.0/instances/e1/backups?recursion=1");
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    let r = d.req("POST", "/1.0/instances/e1/backups/mine", Some(json!({"name": "mine2"})));
    d.wait_op(&r);
    assert_eq!(get(&d, "/1.0/instances/e1/backups/mine2")["instance_only"], true);
    let r = d.req("DELETE", "/1.0/instances/e1/backups/mine2", None);
    d.wait_op(&r);
    assert_eq!(d.req("GET", "/1.0/instances/e1/backups/mine2", None).status, 404);
}

#[test]
fn export_import_round_trip_on_btrfs_optimized() {
    if !btrfs_ready("export_import_round_trip_on_btrfs_optimized") {
        return;
    }
    let d = Daemon::start();
    let _pool = BtrfsPool::create(&d, "bt", "2GiB");
    export_import_round_trip(&d, "bt", true);
    drop_pool(&d, "bt");
    assert!(!d.data_dir().join("storage-pools/bt/containers").exists());
}

#[test]
fn snapshot_expiry_and_schedule() {
    if !ready("snapshot_expiry_and_schedule") {
        return;
    }
    let d = Daemon::start_with_env(&[("BERTH_SCHEDULER_TICK_MS", "300")]);
    import_busybox(&d);
    d.lxc_ok(&["init", "bb", "x1"]);
    // snapshots.expiry sets expires_at; --no-expiry overrides it.
    d.lxc_ok(&["config", "set", "x1", "snapshots.expiry", "1d"]);
    d.lxc_ok(&["snapshot", "x1"]);
    let s0 = get(&d, "/1.0/instances/x1/snapshots/snap0");
    let exp = chrono::DateTime::parse_from_rfc3339(s0["expires_at"].as_str().unwrap_or_default()).expect("expires_at");
    let left = exp.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(left > chrono::Duration::hours(23) && left <= chrono::Duration::hours(24), "{s0}");
    d.lxc_ok(&["snapshot", "x1", "keep", "--no-expiry"]);
    assert_eq!(get(&d, "/1.0/instances/x1/snapshots/keep")["expires_at"], "0001-01-01T00:00:00Z");
    // A snapshot that expires in two seconds is deleted by the scheduler.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let r = d.req("POST", "/1.0/instances/x1/snapshots", Some(json!({"name": "short", "expires_at": soon})));
    d.wait_op(&r);
    // PATCH expires_at of snap0 into the past too.
    let past = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    let r = d.req("PATCH", "/1.0/instances/x1/snapshots/snap0", Some(json!({"expires_at": past})));
    d.wait_op(&r);
    let deadline = Instant::now() + Duration::from_secs(10);
    while snapshot_names(&d, "x1") != vec!["keep"] && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(snapshot_names(&d, "x1"), vec!["keep"]);
    assert!(!d.data_dir().join("storage-pools/default/containers-snapshots/x1/short").exists());
    // A schedule that matches every minute takes snapshots of stopped instances when asked.
    d.lxc_ok(&["config", "unset", "x1", "snapshots.expiry"]);
    d.lxc_ok(&["config", "set", "x1", "snapshots.schedule", "* * * * *"]);
    d.lxc_ok(&["config", "set", "x1", "snapshots.schedule.stopped", "true"]);
    d.lxc_ok(&["config", "set", "x1", "snapshots.pattern", "auto-%d"]);
    let deadline = Instant::now() + Duration::from_secs(75);
    while !snapshot_names(&d, "x1").iter().any(|n| n == "auto-0") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(snapshot_names(&d, "x1").iter().any(|n| n == "auto-0"), "{:?}", snapshot_names(&d, "x1"));
}

fn evil_tar(extra: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append(&header("metadata.yaml", METADATA.len() as u64, 0o644, tar::EntryType::Regular), METADATA.as_bytes()).expect("meta");
    b.append(&header("rootfs", 0, 0o755, tar::EntryType::Directory), &[][..]).expect("dir");
    extra(&mut b);
    b.into_inner().expect("tar")
}

/// Appends an entry with a raw name (the tar crate refuses `..` and absolute paths).
fn raw_entry(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) {
    let mut h = tar::Header::new_old();
    {
        let bytes = h.as_old_mut();
        bytes.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            bytes.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(kind);
    h.set_cksum();
    b.append(&h, data).expect("append");
}

#[test]
fn untrusted_archives_are_refused_naming_the_entry() {
    if !ready("untrusted_archives_are_refused_naming_the_entry") {
        return;
    }
    let d = Daemon::start_with_env(&[("BERTH_IMAGE_MAX_UNPACK_BYTES", "8388608")]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dotdot", evil_tar(|b| raw_entry(b, "rootfs/../../evil", tar::EntryType::Regular, None, b"x")), "rootfs/../../evil"),
        ("absolute", evil_tar(|b| raw_entry(b, "/etc/evil", tar::EntryType::Regular, None, b"x")), "/etc/evil"),
        (
            "symlink",
            evil_tar(|b| {
                raw_entry(b, "rootfs/link", tar::EntryType::Symlink, Some("/tmp"), b"");
                raw_entry(b, "rootfs/link/evil", tar::EntryType::Regular, None, b"x");
            }),
            "rootfs/link/evil",
        ),
        ("hardlink", evil_tar(|b| raw_entry(b, "rootfs/hl", tar::EntryType::Link, Some("../../../../etc/passwd"), b"")), "rootfs/hl"),
        ("device", evil_tar(|b| raw_entry(b, "rootfs/sda", tar::EntryType::Block, None, b"")), "rootfs/sda"),
        ("bomb", evil_tar(|b| raw_entry(b, "rootfs/big", tar::EntryType::Regular, None, &vec![0u8; 16 << 20])), "rootfs/big"),
    ];
    let pool_images = d.data_dir().join("storage-pools/default/images");
    for (name, data, entry) in cases {
        let data = compress(&data, "gzip");
        let p = write(d.data_dir(), &format!("{name}.tar.gz"), &data);
        let e = lxc_err(&d, &["image", "import", p.to_str().unwrap_or_default()]);
        assert!(e.contains(entry), "{name}: {e}");
        // Raw REST: the operation fails with 400 and the same message.
        let r = d.raw("POST", "/1.0/images", &[("Content-Type", "application/octet-stream")], data.clone());
        let op = d.wait_op(&r);
        assert_eq!(op["status_code"], 400, "{name}: {op}");
        assert!(op["err"].as_str().is_some_and(|m| m.contains(entry)), "{name}: {op}");
        // Nothing left behind: no record, no file, no volume.
        assert_eq!(get(&d, "/1.0/images").as_array().map(Vec::len), Some(0), "{name}");
        let left: Vec<_> = std::fs::read_dir(d.data_dir().join("images")).map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "{name}: left {left:?}");
        let vols: Vec<_> = std::fs::read_dir(&pool_images).map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(vols.is_empty(), "{name}: volumes left {vols:?}");
        assert!(!Path::new("/etc/evil").exists() && !Path::new("/tmp/evil").exists());
    }
    // A wrong X-LXD-fingerprint is refused too.
    let good = compress(&busybox_tar(true, "rootfs/"), "gzip");
    let r = d.raw("POST", "/1.0/images", &[("Content-Type", "application/octet-stream"), ("X-LXD-fingerprint", &"0".repeat(64))], good);
    let op = d.wait_op(&r);
    assert_eq!(op["status_code"], 400, "{op}");
}

#[test]
fn pools_volumes_publish_and_server_info() {
    if !btrfs_ready("pools_volumes_publish_and_server_info") {
        return;
    }
    let d = Daemon::start();
    let info = get(&d, "/1.0");
    let drivers: Vec<&str> = info["environment"]["storage_supported_drivers"].as_array().map(|a| a.iter().filter_map(|x| x["Name"].as_str()).collect()).unwrap_or_default();
    assert!(drivers.contains(&"dir") && drivers.contains(&"btrfs"), "{info}");
    let exts = info["api_extensions"].to_string();
    for e in ["storage", "container_backup", "snapshot_expiry", "storage_api_volume_snapshots", "image_create_aliases"] {
        assert!(exts.contains(e), "{e}");
    }
    import_busybox(&d);
    let res = get(&d, "/1.0/storage-pools/default/resources");
    assert!(res["space"]["total"].as_u64().unwrap_or(0) > 0, "{res}");
    let _pool = BtrfsPool::create(&d, "bt", "1GiB");
    let e = lxc_err(&d, &["storage", "create", "bt", "dir"]);
    assert!(e.contains("already exists"), "{e}");
    let e = lxc_err(&d, &["storage", "create", "bad", "zfs"]);
    assert!(e.contains("zfs"), "{e}");
    d.lxc_ok(&["storage", "set", "bt", "user.note", "hi"]);
    assert_eq!(get(&d, "/1.0/storage-pools/bt")["config"]["user.note"], "hi");
    let info = d.lxc_ok(&["storage", "info", "bt"]);
    assert!(info.contains("total space"), "{info}");

    // Custom volumes with snapshots, attached as a disk.
    d.lxc_ok(&["storage", "volume", "create", "bt", "vol1"]);
    let vpath = d.data_dir().join("storage-pools/bt/custom/vol1");
    assert!(vpath.is_dir());
    std::fs::write(vpath.join("f"), "1").expect("write");
    d.lxc_ok(&["storage", "volume", "snapshot", "bt", "vol1", "s1"]);
    std::fs::write(vpath.join("f"), "2").expect("write");
    d.lxc_ok(&["storage", "volume", "restore", "bt", "vol1", "s1"]);
    assert_eq!(std::fs::read_to_string(vpath.join("f")).expect("read"), "1");
    let vols = d.lxc_ok(&["storage", "volume", "list", "bt", "--format", "csv"]);
    assert!(vols.contains("vol1"), "{vols}");
    d.lxc_ok(&["init", "bb", "p1", "-s", "bt"]);
    d.lxc_ok(&["config", "device", "add", "p1", "data", "disk", "pool=bt", "source=vol1", "path=/data"]);
    let used = get(&d, "/1.0/storage-pools/bt/volumes/custom/vol1");
    assert!(used["used_by"].to_string().contains("/1.0/instances/p1"), "{used}");
    let e = lxc_err(&d, &["storage", "volume", "delete", "bt", "vol1"]);
    assert!(e.contains("in use"), "{e}");
    d.lxc_ok(&["config", "device", "remove", "p1", "data"]);
    d.lxc_ok(&["storage", "volume", "rename", "bt", "vol1", "vol2"]);
    d.lxc_ok(&["storage", "volume", "delete", "bt", "vol2"]);
    assert!(!d.data_dir().join("storage-pools/bt/custom/vol2").exists());

    // Publish an instance and a snapshot as images.
    d.lxc_ok(&["snapshot", "p1"]);
    // Same bytes in the same second would be the same image (a 409, as in LXD): make p1
    // differ from its snapshot.
    std::fs::write(rootfs(&d, "bt", "p1").join("etc/hostname"), "published\n").expect("write");
    let out = d.lxc_ok(&["publish", "p1", "--alias", "pub1"]);
    assert!(out.contains("fingerprint"), "{out}");
    let fp = get(&d, "/1.0/images/aliases/pub1")["target"].as_str().unwrap_or_default().to_string();
    let exp = d.data_dir().join("pub-export");
    d.lxc_ok(&["image", "export", "pub1", exp.to_str().unwrap_or_default()]);
    assert_eq!(sha256(&std::fs::read(exp.with_extension("tar.gz")).expect("read")), fp);
    d.lxc_ok(&["publish", "p1/snap0", "--alias", "pub2"]);
    d.lxc_ok(&["init", "pub1", "frompub"]);
    assert!(rootfs_path_has_busybox(&rootfs(&d, "default", "frompub")));

    let e = lxc_err(&d, &["storage", "delete", "bt"]);
    assert!(e.contains("in use"), "{e}");
    drop_pool(&d, "bt");
    assert!(!d.data_dir().join("storage-pools/bt/containers").exists());
}

