//! Latency benchmark (run by hand, prints numbers):
//! `cargo test -p berth-engine --lib bench_ -- --ignored --nocapture --test-threads=1`

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::root_tests::{btrfs_probe, MountGuard};
use super::*;
use crate::storage::{Volume, VolumeType};
use crate::testsupport::{probe_root, require, Tier};

/// A rootfs of `total` bytes in files of `file_size`, 100 files per directory.
fn fill(path: &Path, total: usize, file_size: usize) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let data: Vec<u8> = (0..file_size).map(|i| (i * 31 % 251) as u8).collect();
    for i in 0..total / file_size {
        let dir = path.join(format!("rootfs/d{}", i / 100));
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(format!("f{i}")), &data)?;
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn measure(d: &dyn Driver, label: &str, total: usize, file_size: usize, rounds: usize) {
    let image = Volume::new(VolumeType::Image, &format!("img-{label}"));
    let start = Instant::now();
    d.create_volume(&image, Some(&mut |p: &Path| fill(p, total, file_size))).unwrap();
    let fill_time = start.elapsed();
    let mut create = Vec::new();
    let mut snap = Vec::new();
    let mut vols = Vec::new();
    for i in 0..rounds {
        let v = Volume::new(VolumeType::Container, &format!("{label}-{i}"));
        let t = Instant::now();
        d.copy_volume(&v, &CopySource { volume: &image, snapshot: None, snapshots: &[] }).unwrap();
        create.push(t.elapsed());
        let t = Instant::now();
        d.create_snapshot(&v, "s0").unwrap();
        snap.push(t.elapsed());
        vols.push(v);
    }
    println!(
        "BENCH driver={} rootfs={} files={} rounds={} fill={:?} create_from_image_median={:?} snapshot_median={:?}",
        d.info().name,
        label,
        total / file_size,
        rounds,
        fill_time,
        median(create),
        median(snap)
    );
    for v in vols {
        d.delete_volume(&v).unwrap();
    }
    d.delete_volume(&image).unwrap();
}

#[test]
#[ignore = "benchmark: run by hand with --ignored --nocapture"]
fn bench_btrfs_create_from_image_and_snapshot() {
    if !require("bench_btrfs_create_from_image_and_snapshot", Tier::Btrfs, btrfs_probe()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let spec = PoolSpec::new("bench", tmp.path(), &[("size", "2GiB")]);
    let _guard = MountGuard(spec.mount_path());
    let d = load("btrfs", spec).unwrap();
    d.create_pool().unwrap();
    measure(d.as_ref(), "2MB", 2 << 20, 16 << 10, 50);
    measure(d.as_ref(), "200MB", 200 << 20, 128 << 10, 50);
    d.delete_pool().unwrap();
}

#[test]
#[ignore = "benchmark: run by hand with --ignored --nocapture"]
fn bench_dir_create_from_image_and_snapshot() {
    if !require("bench_dir_create_from_image_and_snapshot", Tier::Root, probe_root()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = load("dir", PoolSpec::new("bench", tmp.path(), &[])).unwrap();
    d.create_pool().unwrap();
    measure(d.as_ref(), "2MB", 2 << 20, 16 << 10, 50);
    measure(d.as_ref(), "200MB", 200 << 20, 128 << 10, 5);
    d.delete_pool().unwrap();
}
