//! Root-tier tests of the drivers on real filesystems (dir on the test's tmpdir, btrfs on a
//! loop file the test creates).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::storage::{Volume, VolumeType};
use crate::testsupport::{probe_root, require, Tier};

/// Unmounts whatever a test left mounted, even when it fails half way.
pub(crate) struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if util::is_mountpoint(&self.0) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

pub(crate) fn btrfs_probe() -> std::result::Result<(), String> {
    probe_root()?;
    match btrfs::probe() {
        DriverStatus::Operational { .. } => Ok(()),
        DriverStatus::NotOperational { reason } => Err(reason),
    }
}

/// Fills a volume with a small tree exercising every file kind.
pub(crate) fn fill_sample(path: &Path) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    fs::create_dir_all(path.join("rootfs/etc"))?;
    fs::write(path.join("rootfs/etc/hostname"), b"original\n")?;
    fs::write(path.join("rootfs/owned"), b"x")?;
    std::os::unix::fs::chown(path.join("rootfs/owned"), Some(1000), Some(1001))?;
    fs::set_permissions(path.join("rootfs/owned"), fs::Permissions::from_mode(0o4750))?;
    std::os::unix::fs::symlink("/etc/hostname", path.join("rootfs/link"))?;
    nix::sys::stat::mknod(
        &path.join("rootfs/null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )?;
    nix::unistd::mkfifo(&path.join("rootfs/fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    fs::write(path.join("rootfs/big"), vec![7u8; 1 << 20])?;
    Ok(())
}

pub(crate) fn check_sample(path: &Path) {
    let root = path.join("rootfs");
    let owned = fs::metadata(root.join("owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid(), owned.mode() & 0o7777), (1000, 1001, 0o4750));
    assert_eq!(fs::read_link(root.join("link")).unwrap(), Path::new("/etc/hostname"));
    let null = fs::symlink_metadata(root.join("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert!(fs::symlink_metadata(root.join("fifo")).unwrap().file_type().is_fifo());
    assert_eq!(fs::read(root.join("big")).unwrap().len(), 1 << 20);
}

fn hostname(d: &dyn Driver, vol: &Volume) -> String {
    fs::read_to_string(d.volume_path(vol).join("rootfs/etc/hostname")).unwrap()
}

/// The snapshot/restore/rename/delete cycle every driver must pass.
pub(crate) fn volume_cycle(d: &dyn Driver) {
    let image = Volume::new(VolumeType::Image, "f00d");
    d.create_volume(&image, Some(&mut |p: &Path| fill_sample(p))).unwrap();
    check_sample(&d.volume_path(&image));

    // A failing filler leaves nothing behind.
    let broken = Volume::new(VolumeType::Custom, "broken");
    let err = d.create_volume(&broken, Some(&mut |p: &Path| {
        fs::write(p.join("partial"), b"x")?;
        Err("boom".into())
    }));
    assert!(matches!(err, Err(Error::Fill { .. })), "{err:?}");
    assert!(!d.volume_path(&broken).exists());

    let c1 = Volume::in_project(VolumeType::Container, "p1", "c1");
    d.copy_volume(&c1, &CopySource { volume: &image, snapshot: None, snapshots: &[] }).unwrap();
    assert!(d.volume_path(&c1).ends_with("containers/p1_c1"));
    check_sample(&d.volume_path(&c1));

    d.create_snapshot(&c1, "snap0").unwrap();
    assert!(matches!(d.create_snapshot(&c1, "snap0"), Err(Error::AlreadyExists { .. })));
    fs::write(d.volume_path(&c1).join("rootfs/etc/hostname"), b"changed\n").unwrap();
    d.create_snapshot(&c1, "snap1").unwrap();
    assert_eq!(d.list_snapshots(&c1).unwrap(), vec!["snap0", "snap1"]);
    assert_eq!(fs::read_to_string(d.snapshot_path(&c1, "snap0").join("rootfs/etc/hostname")).unwrap(), "original\n");

    d.restore_snapshot(&c1, "snap0").unwrap();
    assert_eq!(hostname(d, &c1), "original\n");
    check_sample(&d.volume_path(&c1));

    d.rename_snapshot(&c1, "snap1", "later").unwrap();
    assert_eq!(d.list_snapshots(&c1).unwrap(), vec!["later", "snap0"]);

    // Copy with snapshots, from a snapshot.
    let c2 = Volume::new(VolumeType::Container, "c2");
    let snaps = vec!["snap0".to_string()];
    d.copy_volume(&c2, &CopySource { volume: &c1, snapshot: Some("later"), snapshots: &snaps }).unwrap();
    assert_eq!(hostname(d, &c2), "changed\n");
    assert_eq!(d.list_snapshots(&c2).unwrap(), vec!["snap0"]);

    d.rename_volume(&c1, "c1b").unwrap();
    let c1b = c1.renamed("c1b");
    assert!(!d.volume_exists(&c1));
    assert_eq!(d.list_snapshots(&c1b).unwrap(), vec!["later", "snap0"]);

    let mut names: Vec<String> = d.list_volumes().unwrap().into_iter().map(|v| format!("{}/{}/{}", v.vtype.as_str(), v.project, v.name)).collect();
    names.sort();
    assert_eq!(names, vec!["container/default/c2", "container/p1/c1b", "image/default/f00d"]);

    let used = d.volume_usage(&c2).unwrap();
    assert!((1 << 20..16 << 20).contains(&used), "volume usage {used}");
    let usage = d.usage().unwrap();
    assert!(usage.space_total > 0 && usage.space_used > 0, "{usage:?}");

    d.delete_snapshot(&c1b, "later").unwrap();
    assert!(matches!(d.delete_snapshot(&c1b, "later"), Err(Error::NotFound { .. })));
    for v in [&c1b, &c2, &image] {
        d.delete_volume(v).unwrap();
    }
    assert!(d.list_volumes().unwrap().is_empty());
    assert!(!c1b.snapshots_dir_in(&d.spec().mount_path()).exists());
}

#[test]
fn root_dir_pool_lifecycle() {
    if !require("root_dir_pool_lifecycle", Tier::Root, probe_root()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = load("dir", PoolSpec::new("default", tmp.path(), &[])).unwrap();
    let stored = d.create_pool().unwrap();
    assert_eq!(stored["source"], tmp.path().join("storage-pools/default").display().to_string());
    assert!(tmp.path().join("storage-pools/default/containers-snapshots").is_dir());
    volume_cycle(d.as_ref());
    assert!(matches!(d.set_quota(&Volume::new(VolumeType::Custom, "nope"), Some(1)), Err(Error::NotFound { .. })));
    d.delete_pool().unwrap();
    assert!(!tmp.path().join("storage-pools/default").exists());
}

#[test]
fn root_dir_pool_refuses_delete_with_volumes_and_bind_mounts_source() {
    if !require("root_dir_pool_refuses_delete_with_volumes_and_bind_mounts_source", Tier::Root, probe_root()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("elsewhere");
    let spec = PoolSpec::new("p2", &tmp.path().join("data"), &[("source", src.to_str().unwrap())]);
    let _guard = MountGuard(spec.mount_path());
    let d = load("dir", spec.clone()).unwrap();
    d.create_pool().unwrap();
    assert!(util::is_mountpoint(&spec.mount_path()));
    d.create_volume(&Volume::new(VolumeType::Custom, "v"), None).unwrap();
    assert!(src.join("custom/v").is_dir(), "volume lands in source= through the bind mount");
    assert!(matches!(d.delete_pool(), Err(Error::Busy { .. })));
    d.delete_volume(&Volume::new(VolumeType::Custom, "v")).unwrap();
    d.delete_pool().unwrap();
    assert!(!util::is_mountpoint(&spec.mount_path()));
    assert!(src.is_dir(), "a user's source directory is kept");
}

#[test]
fn root_btrfs_loop_pool_lifecycle() {
    if !require("root_btrfs_loop_pool_lifecycle", Tier::Btrfs, btrfs_probe()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let spec = PoolSpec::new("bt", tmp.path(), &[("size", "1GiB")]);
    let _guard = MountGuard(spec.mount_path());
    let d = load("btrfs", spec.clone()).unwrap();
    let stored = d.create_pool().unwrap();
    let file = spec.default_loop_file();
    assert_eq!(stored["source"], file.display().to_string());
    assert_eq!(fs::metadata(&file).unwrap().len(), 1 << 30);
    assert!(fs::metadata(&file).unwrap().blocks() * 512 < 64 << 20, "loop file is sparse");
    assert!(is_btrfs(&spec.mount_path()));
    assert_eq!(loop_devices_of(&file).len(), 1);

    volume_cycle(d.as_ref());

    // Instance volumes are subvolume snapshots of the image volume, snapshots read-only.
    let image = Volume::new(VolumeType::Image, "abc");
    d.create_volume(&image, Some(&mut |p: &Path| fill_sample(p))).unwrap();
    let c = Volume::new(VolumeType::Container, "c");
    d.copy_volume(&c, &CopySource { volume: &image, snapshot: None, snapshots: &[] }).unwrap();
    assert!(is_subvolume(&d.volume_path(&c)));
    d.create_snapshot(&c, "s0").unwrap();
    assert!(fs::write(d.snapshot_path(&c, "s0").join("rootfs/new"), b"x").is_err(), "snapshots are read-only");

    // Quota: a 16 MiB limit stops a 64 MiB write; removing it lets the write through.
    d.set_quota(&c, Some(16 << 20)).unwrap();
    let big = d.volume_path(&c).join("rootfs/fill");
    let wrote = write_synced(&big, 64 << 20);
    assert!(wrote.is_err(), "write past the qgroup limit must fail");
    fs::remove_file(&big).unwrap();
    d.set_quota(&c, None).unwrap();
    write_synced(&big, 32 << 20).unwrap();
    fs::remove_file(&big).unwrap();

    // Reload after unmount: mount() brings it back, volumes intact.
    assert!(d.unmount().unwrap());
    assert!(!is_btrfs(&spec.mount_path()));
    wait_detached(&file);
    let d = load("btrfs", PoolSpec { config: stored.clone(), ..spec.clone() }).unwrap();
    assert!(d.mount().unwrap());
    check_sample(&d.volume_path(&c));

    // A second pool on a (new) subvolume of this one, bind-mounted.
    let src = spec.mount_path().join("custom/nested-pool");
    let nspec = PoolSpec::new("nested", &tmp.path().join("data2"), &[("source", src.to_str().unwrap())]);
    let _g2 = MountGuard(nspec.mount_path());
    let n = load("btrfs", nspec.clone()).unwrap();
    n.create_pool().unwrap();
    assert!(is_subvolume(&src));
    assert!(util::is_mountpoint(&nspec.mount_path()));
    n.create_volume(&Volume::new(VolumeType::Custom, "v"), None).unwrap();
    assert!(is_subvolume(&src.join("custom/v")));
    n.delete_volume(&Volume::new(VolumeType::Custom, "v")).unwrap();
    n.delete_pool().unwrap();
    assert!(!util::is_mountpoint(&nspec.mount_path()));
    assert!(src.is_dir(), "source= stays");
    d.delete_volume(&Volume::new(VolumeType::Custom, "nested-pool")).unwrap();

    d.delete_volume(&c).unwrap();
    d.delete_volume(&image).unwrap();
    d.delete_pool().unwrap();
    assert!(!util::is_mountpoint(&spec.mount_path()));
    assert!(!file.exists());
    wait_detached(&file);
}

#[test]
fn root_dir_pool_on_btrfs_uses_reflink() {
    if !require("root_dir_pool_on_btrfs_uses_reflink", Tier::Btrfs, btrfs_probe()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bspec = PoolSpec::new("host", tmp.path(), &[("size", "512MiB")]);
    let _g1 = MountGuard(bspec.mount_path());
    let b = load("btrfs", bspec.clone()).unwrap();
    b.create_pool().unwrap();
    let src = bspec.mount_path().join("custom/dirpool");
    fs::create_dir(&src).unwrap();
    let dspec = PoolSpec::new("d", &tmp.path().join("data"), &[("source", src.to_str().unwrap())]);
    let _g2 = MountGuard(dspec.mount_path());
    let d = load("dir", dspec).unwrap();
    d.create_pool().unwrap();
    let v = Volume::new(VolumeType::Custom, "v");
    d.create_volume(&v, Some(&mut |p: &Path| fill_sample(p))).unwrap();
    let stats = util::copy_tree(&d.volume_path(&v), &d.volume_path(&v.renamed("w"))).unwrap();
    assert!(stats.reflinked >= 2 && stats.copied == 0, "{stats:?}");
    check_sample(&d.volume_path(&v.renamed("w")));
    d.delete_volume(&v).unwrap();
    d.delete_volume(&v.renamed("w")).unwrap();
    d.delete_pool().unwrap();
    fs::remove_dir(&src).unwrap();
    b.delete_pool().unwrap();
}

#[test]
fn root_btrfs_send_receive_round_trip() {
    if !require("root_btrfs_send_receive_round_trip", Tier::Btrfs, btrfs_probe()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let spec = PoolSpec::new("sr", tmp.path(), &[("size", "512MiB")]);
    let _guard = MountGuard(spec.mount_path());
    let d = load("btrfs", spec).unwrap();
    d.create_pool().unwrap();
    let v = Volume::new(VolumeType::Container, "c");
    d.create_volume(&v, Some(&mut |p: &Path| fill_sample(p))).unwrap();
    d.create_snapshot(&v, "s0").unwrap();
    fs::write(d.volume_path(&v).join("rootfs/etc/hostname"), b"second\n").unwrap();
    d.create_snapshot(&v, "s1").unwrap();
    fs::write(d.volume_path(&v).join("rootfs/etc/hostname"), b"current\n").unwrap();

    let mut s0 = Vec::new();
    let mut s1 = Vec::new();
    let mut cur = Vec::new();
    assert_eq!(d.send_volume(&v, Some("s0"), None, &mut s0).unwrap(), s0.len() as u64);
    d.send_volume(&v, Some("s1"), Some("s0"), &mut s1).unwrap();
    d.send_volume(&v, None, Some("s1"), &mut cur).unwrap();
    assert!(s1.len() < s0.len() / 4, "incremental stream is small: {} vs {}", s1.len(), s0.len());

    let r = Volume::new(VolumeType::Container, "restored");
    d.receive_volume(&r, Some("s0"), &mut s0.as_slice()).unwrap();
    d.receive_volume(&r, Some("s1"), &mut s1.as_slice()).unwrap();
    d.receive_volume(&r, None, &mut cur.as_slice()).unwrap();
    assert_eq!(d.list_snapshots(&r).unwrap(), vec!["s0", "s1"]);
    assert_eq!(hostname(d.as_ref(), &r), "current\n");
    assert_eq!(fs::read_to_string(d.snapshot_path(&r, "s1").join("rootfs/etc/hostname")).unwrap(), "second\n");
    check_sample(&d.volume_path(&r));
    // Garbage is refused and leaves nothing.
    let bad = Volume::new(VolumeType::Container, "bad");
    assert!(d.receive_volume(&bad, None, &mut &b"not a stream"[..]).is_err());
    assert!(!d.volume_exists(&bad));
    for vol in [&v, &r] {
        d.delete_volume(vol).unwrap();
    }
    d.delete_pool().unwrap();
}

fn write_synced(path: &Path, len: usize) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = fs::File::create(path)?;
    let chunk = vec![0x5au8; 1 << 20];
    for _ in 0..len / chunk.len() {
        f.write_all(&chunk)?;
    }
    f.sync_all()
}

fn wait_detached(file: &Path) {
    for _ in 0..50 {
        if loop_devices_of(file).is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("loop device of {} still attached: {:?}", file.display(), loop_devices_of(file));
}
