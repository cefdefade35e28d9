//! Backup round trips with snapshots (dir and btrfs, plain and optimized) and refusals.

use std::fs;
use std::path::Path;

use super::*;
use crate::image::archive::Compression;
use crate::image::tests::TarMaker;
use crate::image::UnpackOptions;
use crate::storage::drivers::root_tests::{btrfs_probe, check_sample, fill_sample, MountGuard};
use crate::storage::drivers::{self, Driver, PoolSpec};
use crate::storage::{Volume, VolumeType};
use crate::testsupport::{probe_root, require, Tier};

fn hostname(d: &dyn Driver, p: &Path) -> String {
    let _ = d;
    fs::read_to_string(p.join("rootfs/etc/hostname")).unwrap()
}

fn entry_names(tarball: &[u8]) -> Vec<String> {
    let decoded = crate::image::archive::decompress(tarball).unwrap();
    let mut a = tar::Archive::new(decoded);
    a.entries().unwrap().map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned()).collect()
}

fn round_trip(d: &dyn Driver, optimized: bool, compression: Compression) {
    let v = Volume::new(VolumeType::Container, "web");
    d.create_volume(&v, Some(&mut |p: &Path| fill_sample(p))).unwrap();
    d.create_snapshot(&v, "snap0").unwrap();
    fs::write(d.volume_path(&v).join("rootfs/etc/hostname"), b"second\n").unwrap();
    fs::write(d.volume_path(&v).join("rootfs/added"), b"new file").unwrap();
    d.create_snapshot(&v, "snap1").unwrap();
    fs::write(d.volume_path(&v).join("rootfs/etc/hostname"), b"current\n").unwrap();

    let config: serde_yaml::Value = serde_yaml::from_str("container:\n  name: web\n  config:\n    limits.cpu: \"2\"\n").unwrap();
    let req = ExportRequest {
        driver: d,
        volume: &v,
        snapshots: vec!["snap0".into(), "snap1".into()],
        optimized,
        compression,
        config: Some(config.clone()),
    };
    let mut tarball = Vec::new();
    let info = export(&req, &mut tarball).unwrap();
    assert_eq!(info.optimized, Some(optimized));
    let names = entry_names(&tarball);
    assert_eq!(names[0], INDEX_PATH);
    if optimized {
        assert_eq!(&names[1..], ["backup/snapshots/snap0.bin", "backup/snapshots/snap1.bin", "backup/container.bin"]);
    } else {
        assert!(names.iter().any(|n| n == "backup/snapshots/snap1/rootfs/added"));
        assert!(names.iter().any(|n| n == "backup/container/rootfs/etc/hostname"));
    }
    assert!(d.list_snapshots(&v).unwrap() == vec!["snap0", "snap1"], "no temporary snapshot left");

    d.delete_volume(&v).unwrap();
    let ireq = ImportRequest { driver: d, project: "default", name: None, opts: UnpackOptions { allow_devices: true, ..UnpackOptions::default() } };
    let imported = import(&ireq, &mut tarball.as_slice()).unwrap();
    assert_eq!(imported.volume, v);
    assert_eq!(imported.info.config, Some(config));
    assert_eq!(d.list_snapshots(&v).unwrap(), vec!["snap0", "snap1"]);
    assert_eq!(hostname(d, &d.volume_path(&v)), "current\n");
    assert_eq!(hostname(d, &d.snapshot_path(&v, "snap1")), "second\n");
    assert_eq!(hostname(d, &d.snapshot_path(&v, "snap0")), "original\n");
    assert!(!d.snapshot_path(&v, "snap0").join("rootfs/added").exists());
    check_sample(&d.volume_path(&v));
    check_sample(&d.snapshot_path(&v, "snap0"));

    // Restoring over an existing volume is refused; under a new name (another project) it works.
    assert!(matches!(import(&ireq, &mut tarball.as_slice()), Err(Error::AlreadyExists { .. })));
    let other = ImportRequest { name: Some("web2"), project: "p2", ..ireq };
    let copy = import(&other, &mut tarball.as_slice()).unwrap();
    assert_eq!(copy.volume.storage_name(), "p2_web2");
    assert_eq!(hostname(d, &d.volume_path(&copy.volume)), "current\n");
    d.delete_volume(&copy.volume).unwrap();
    d.delete_volume(&v).unwrap();
}

#[test]
fn root_backup_round_trip_dir() {
    if !require("root_backup_round_trip_dir", Tier::Root, probe_root()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = drivers::load("dir", PoolSpec::new("default", tmp.path(), &[])).unwrap();
    d.create_pool().unwrap();
    round_trip(d.as_ref(), false, Compression::Gzip);
    assert!(matches!(
        export(&ExportRequest { driver: d.as_ref(), volume: &Volume::new(VolumeType::Container, "x"), snapshots: vec![], optimized: true, compression: Compression::None, config: None }, &mut Vec::new()),
        Err(Error::Invalid(_))
    ));
    d.delete_pool().unwrap();
}

#[test]
fn root_backup_round_trip_btrfs_plain_and_optimized() {
    if !require("root_backup_round_trip_btrfs_plain_and_optimized", Tier::Btrfs, btrfs_probe()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let spec = PoolSpec::new("bk", tmp.path(), &[("size", "512MiB")]);
    let _guard = MountGuard(spec.mount_path());
    let d = drivers::load("btrfs", spec).unwrap();
    d.create_pool().unwrap();
    round_trip(d.as_ref(), true, Compression::Zstd);
    round_trip(d.as_ref(), false, Compression::Xz);
    assert!(d.list_volumes().unwrap().is_empty());
    d.delete_pool().unwrap();
}

fn index(extra: &str) -> String {
    format!("name: evil\nbackend: dir\npool: default\ntype: container\n{extra}")
}

#[test]
fn malicious_backup_is_refused_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = drivers::load("dir", PoolSpec::new("default", tmp.path(), &[])).unwrap();
    d.create_pool().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let ireq = ImportRequest { driver: d.as_ref(), project: "default", name: None, opts: UnpackOptions::default() };

    let mut t = TarMaker::new();
    t.file(INDEX_PATH, index("snapshots: [s0]\n").as_bytes())
        .dir("backup/snapshots/s0/", 0o755)
        .file("backup/snapshots/s0/ok", b"1")
        .dir("backup/container/rootfs/", 0o755)
        .symlink("backup/container/rootfs/a", outside.path().to_str().unwrap())
        .file("backup/container/rootfs/a/passwd", b"owned");
    match import(&ireq, &mut t.finish().as_slice()) {
        Err(Error::Image(crate::image::Error::Unsafe { entry, .. })) => assert_eq!(entry, "backup/container/rootfs/a/passwd"),
        other => panic!("expected Unsafe, got {other:?}"),
    }
    assert!(!outside.path().join("passwd").exists());
    assert!(d.list_volumes().unwrap().is_empty(), "the half-restored volume and its snapshot are gone");
    assert!(d.list_snapshots(&Volume::new(VolumeType::Container, "evil")).unwrap().is_empty());

    // Entries outside backup/, a missing index, bad order, and foreign optimized streams.
    let mut t = TarMaker::new();
    t.file(INDEX_PATH, index("").as_bytes()).file("etc/passwd", b"x");
    assert!(matches!(import(&ireq, &mut t.finish().as_slice()), Err(Error::Invalid(_))));
    let mut t = TarMaker::new();
    t.file("backup/container/x", b"x");
    assert!(matches!(import(&ireq, &mut t.finish().as_slice()), Err(Error::Invalid(_))));
    let mut t = TarMaker::new();
    t.file(INDEX_PATH, index("snapshots: [s0]\n").as_bytes()).file("backup/container/x", b"x").file("backup/snapshots/s0/x", b"x");
    assert!(matches!(import(&ireq, &mut t.finish().as_slice()), Err(Error::Invalid(_))));
    let mut t = TarMaker::new();
    t.file(INDEX_PATH, "name: x\nbackend: btrfs\npool: p\noptimized: true\n".as_bytes()).file("backup/container.bin", b"x");
    assert!(matches!(import(&ireq, &mut t.finish().as_slice()), Err(Error::WrongBackend { .. })));
    let mut t = TarMaker::new();
    t.file(INDEX_PATH, index("snapshots: [../../x]\n").as_bytes());
    assert!(import(&ireq, &mut t.finish().as_slice()).is_err());
    assert!(d.list_volumes().unwrap().is_empty());
}
