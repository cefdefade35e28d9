//! Root-tier: image import → instance volume → publish → import again, on dir and btrfs.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::tests::{compress, TarMaker, META};
use super::*;
use crate::storage::drivers::{self, is_subvolume, PoolSpec};
use crate::testsupport::{probe_root, require, Tier};

/// A privileged image: a device node, foreign ownership, an xattr, a hardlink.
fn rich_image() -> Vec<u8> {
    let mut t = TarMaker::new();
    t.file("metadata.yaml", META.as_bytes())
        .dir("rootfs/", 0o755)
        .dir("rootfs/etc/", 0o755)
        .file("rootfs/etc/hostname", b"image\n")
        .hardlink("rootfs/etc/hostname.bak", "rootfs/etc/hostname")
        .symlink("rootfs/etc/mtab", "/proc/self/mounts")
        .dir("rootfs/dev/", 0o755)
        .entry("rootfs/dev/null", tar::EntryType::Char, None, 0o666, b"");
    let mut data = t.finish();
    // Append an owned file with an xattr through a second builder on the same bytes.
    data.truncate(data.len() - 1024); // drop the end-of-archive blocks
    let mut b = tar::Builder::new(data);
    b.append_pax_extensions([("SCHILY.xattr.user.berth", b"yes".as_slice())]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("rootfs/owned").unwrap();
    h.set_size(3);
    h.set_mode(0o4750);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, b"abc".as_slice()).unwrap();
    b.into_inner().unwrap()
}

fn check_rich(root: &Path, hostname: &str) {
    let rootfs = root.join("rootfs");
    assert_eq!(fs::read_to_string(rootfs.join("etc/hostname")).unwrap(), hostname);
    assert_eq!(fs::read_link(rootfs.join("etc/mtab")).unwrap(), Path::new("/proc/self/mounts"));
    let null = fs::symlink_metadata(rootfs.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    let owned = fs::metadata(rootfs.join("owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid(), owned.permissions().mode() & 0o7777), (1000, 1001, 0o4750));
    let xattrs = archive::read_xattrs(&rootfs.join("owned"));
    assert!(xattrs.iter().any(|(k, v)| k == "user.berth" && v == b"yes"), "{xattrs:?}");
}

fn round_trip(driver_name: &str, config: &[(&str, &str)]) {
    let tmp = tempfile::tempdir().unwrap();
    let spec = PoolSpec::new("img", tmp.path(), config);
    let _guard = crate::storage::drivers::root_tests_guard(spec.mount_path());
    let d = drivers::load(driver_name, spec).unwrap();
    d.create_pool().unwrap();
    let images = tmp.path().join("images");
    let opts = UnpackOptions { allow_devices: true, ..UnpackOptions::default() };

    let upload = compress(&rich_image(), Compression::Gzip);
    let (fp, _, files) = store_upload(&images, &mut upload.as_slice(), None).unwrap();
    let c1 = Volume::new(VolumeType::Container, "c1");
    create_from_image(d.as_ref(), &files, &fp, &c1, &opts).unwrap();
    check_rich(&d.volume_path(&c1), "image\n");
    if driver_name == "btrfs" {
        assert!(is_subvolume(&d.volume_path(&c1)));
    }
    // The image volume is unpacked once per pool: a marker put in it shows up in the next clone.
    let image_vol = Volume::new(VolumeType::Image, &fp);
    fs::write(d.volume_path(&image_vol).join("marker"), b"1").unwrap();
    let c2 = Volume::new(VolumeType::Container, "c2");
    create_from_image(d.as_ref(), &files, &fp, &c2, &opts).unwrap();
    assert!(d.volume_path(&c2).join("marker").exists());

    // Publish a changed c1; importing the result gives the change back with everything kept.
    fs::write(d.volume_path(&c1).join("rootfs/etc/hostname"), b"published\n").unwrap();
    let popts = PublishOptions {
        compression: Compression::Xz,
        architecture: "x86_64".into(),
        properties: BTreeMap::from([("description".to_string(), "from c1".to_string())]),
        creation_date: 1_750_000_000,
    };
    let (published, pfiles) = publish_to_dir(&d.volume_path(&c1), &popts, &images).unwrap();
    assert_eq!(fingerprint(&pfiles).unwrap(), published.fingerprint);
    let meta = read_metadata(&pfiles).unwrap();
    assert_eq!(meta.properties["description"], "from c1");
    assert_eq!(meta.properties["os"], "busybox");
    assert_eq!(meta.creation_date, 1_750_000_000);
    let c3 = Volume::new(VolumeType::Container, "c3");
    create_from_image(d.as_ref(), &pfiles, &published.fingerprint, &c3, &opts).unwrap();
    check_rich(&d.volume_path(&c3), "published\n");
    let h = d.volume_path(&c3).join("rootfs/etc");
    assert_eq!(fs::metadata(h.join("hostname")).unwrap().ino(), fs::metadata(h.join("hostname.bak")).unwrap().ino());

    for v in d.list_volumes().unwrap() {
        d.delete_volume(&v).unwrap();
    }
    d.delete_pool().unwrap();
}

#[test]
fn root_image_round_trip_dir() {
    if !require("root_image_round_trip_dir", Tier::Root, probe_root()) {
        return;
    }
    round_trip("dir", &[]);
}

#[test]
fn root_image_round_trip_btrfs() {
    if !require("root_image_round_trip_btrfs", Tier::Btrfs, drivers::root_tests_btrfs_probe()) {
        return;
    }
    round_trip("btrfs", &[("size", "512MiB")]);
}
