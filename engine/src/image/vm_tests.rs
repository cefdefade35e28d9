//! VM image tests: type detection, the disk checks (each rule refused by name), split and
//! unified unpacking into the VM volume layout, and failures that leave nothing behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::image::archive::Compression;
use crate::image::tests::{compress, TarMaker, META};
use crate::image::{ensure_image_volume, ImageFiles};
use crate::storage::drivers::{self, PoolSpec};
use crate::storage::{Volume, VolumeType};
use crate::testsupport::{probe_program, require, Tier};

fn qemu_img(test: &str) -> bool {
    require(test, Tier::Qemu, probe_program("qemu-img"))
}

fn make_qcow2(dir: &Path, name: &str, size: &str, extra: &[&str]) -> PathBuf {
    let p = dir.join(name);
    let out = Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).args(extra).arg(&p).arg(size).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    p
}

fn meta_tar(boot: bool) -> Vec<u8> {
    let mut t = TarMaker::new();
    t.file("metadata.yaml", META.as_bytes()).dir("templates/", 0o755).file("templates/hostname.tpl", b"{{ instance.name }}\n");
    if boot {
        t.dir("boot/", 0o755).file("boot/vmlinuz", b"KERNEL").file("boot/initrd.img", b"INITRD").file("boot/cmdline", b"console=ttyS0\n");
    }
    compress(&t.finish(), Compression::Gzip)
}

/// Stores a split image (meta, rootfs) in `dir`; returns its files and fingerprint.
fn store_split(dir: &Path, meta: &[u8], disk: &Path) -> (ImageFiles, String) {
    let images = dir.join("images");
    let (fp, _, files) = crate::image::store_upload(&images, &mut &meta[..], Some(&mut fs::File::open(disk).unwrap())).unwrap();
    (files, fp)
}

#[test]
fn split_vm_image_unpacks_to_the_vm_layout() {
    if !qemu_img("split_vm_image_unpacks_to_the_vm_layout") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = make_qcow2(tmp.path(), "root.qcow2", "64M", &[]);
    let (files, fp) = store_split(tmp.path(), &meta_tar(true), &disk);
    assert_eq!(detect_type(&files).unwrap(), ImageType::VirtualMachine);
    let info = check_disk(files.rootfs.as_ref().unwrap(), 1 << 30).unwrap();
    assert_eq!(info.virtual_size, 64 << 20);
    let dest = tmp.path().join("vol");
    fs::create_dir(&dest).unwrap();
    unpack_files(&files, &fp, &dest, &UnpackOptions::default()).unwrap();
    assert_eq!(fs::read(dest.join("root.img")).unwrap(), fs::read(&disk).unwrap());
    assert_eq!(fs::read(dest.join("boot/vmlinuz")).unwrap(), b"KERNEL");
    let boot = crate::storage::vm_volume::boot_files(&dest).unwrap().unwrap();
    assert_eq!(boot.cmdline.as_deref(), Some("console=ttyS0"));
    assert!(dest.join("metadata.yaml").is_file() && dest.join("templates/hostname.tpl").is_file());
    // A wrong fingerprint is refused.
    let dest2 = tmp.path().join("vol2");
    fs::create_dir(&dest2).unwrap();
    assert!(matches!(unpack_files(&files, &"0".repeat(64), &dest2, &UnpackOptions::default()), Err(Error::FingerprintMismatch { .. })));
}

#[test]
fn unified_vm_image_holds_rootfs_img() {
    if !qemu_img("unified_vm_image_holds_rootfs_img") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = fs::read(make_qcow2(tmp.path(), "d.qcow2", "16M", &[])).unwrap();
    let mut t = TarMaker::new();
    t.file("metadata.yaml", META.as_bytes()).file("rootfs.img", &disk);
    let data = compress(&t.finish(), Compression::Xz);
    let (fp, _, files) = crate::image::store_upload(&tmp.path().join("images"), &mut &data[..], None).unwrap();
    assert_eq!(detect_type(&files).unwrap(), ImageType::VirtualMachine);
    let dest = tmp.path().join("vol");
    fs::create_dir(&dest).unwrap();
    unpack_files(&files, &fp, &dest, &UnpackOptions::default()).unwrap();
    assert_eq!(fs::read(dest.join("root.img")).unwrap(), disk);
    assert!(!dest.join("rootfs.img").exists());
    // A container tarball is detected as such.
    let c = TarMaker::good_image();
    let (_, _, cfiles) = crate::image::store_upload(&tmp.path().join("images"), &mut &c[..], None).unwrap();
    assert_eq!(detect_type(&cfiles).unwrap(), ImageType::Container);
}

#[test]
fn bad_disks_are_refused_by_name() {
    if !qemu_img("bad_disks_are_refused_by_name") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let not_qcow = d.join("raw.img");
    fs::write(&not_qcow, vec![0u8; 4096]).unwrap();
    let e = check_disk(&not_qcow, 1 << 30).unwrap_err().to_string();
    assert!(e.contains("bad magic"), "{e}");

    let base = make_qcow2(d, "base.qcow2", "16M", &[]);
    let overlay = make_qcow2(d, "overlay.qcow2", "16M", &["-b", base.to_str().unwrap(), "-F", "qcow2"]);
    let e = check_disk(&overlay, 1 << 30).unwrap_err().to_string();
    assert!(e.contains("backing file"), "{e}");

    let big = make_qcow2(d, "big.qcow2", "2G", &[]);
    let e = check_disk(&big, 1 << 30).unwrap_err().to_string();
    assert!(e.contains("exceeds the limit"), "{e}");
    assert!(check_disk(&big, 4 << 30).is_ok());

    let ext = make_qcow2(d, "ext.qcow2", "16M", &["-o", &format!("data_file={}", d.join("ext.data").display())]);
    let e = check_disk(&ext, 1 << 30).unwrap_err().to_string();
    assert!(e.contains("external data file"), "{e}");

    // A header that passes our checks but that qemu-img cannot read.
    let mut broken = fs::read(&base).unwrap();
    broken[20..24].copy_from_slice(&40u32.to_be_bytes()); // cluster_bits
    let trunc = d.join("broken.qcow2");
    fs::write(&trunc, &broken).unwrap();
    let e = check_disk(&trunc, 1 << 30).unwrap_err().to_string();
    assert!(e.contains("qemu-img"), "{e}");
}

#[test]
fn a_symlinked_kernel_or_disk_is_refused_and_the_volume_removed() {
    if !qemu_img("a_symlinked_kernel_or_disk_is_refused_and_the_volume_removed") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = make_qcow2(tmp.path(), "root.qcow2", "16M", &[]);
    let mut t = TarMaker::new();
    t.file("metadata.yaml", META.as_bytes()).dir("boot/", 0o755).symlink("boot/vmlinuz", "/etc/shadow");
    let (files, fp) = store_split(tmp.path(), &t.finish(), &disk);
    let spec = PoolSpec::new("p", tmp.path(), &[]);
    let driver = drivers::load("dir", spec).unwrap();
    driver.create_pool().unwrap();
    match ensure_image_volume(driver.as_ref(), &files, &fp, &UnpackOptions::default()) {
        Err(Error::Unsafe { entry, .. }) => assert_eq!(entry, "boot/vmlinuz"),
        other => panic!("expected boot/vmlinuz to be refused, got {other:?}"),
    }
    assert!(driver.list_volumes().unwrap().is_empty(), "a failed unpack left a volume");

    // The metadata tarball may not carry the disk itself.
    let mut t = TarMaker::new();
    t.file("metadata.yaml", META.as_bytes()).file("root.img", b"QFI\xfbevil");
    let (files, fp) = store_split(tmp.path(), &t.finish(), &disk);
    assert!(matches!(ensure_image_volume(driver.as_ref(), &files, &fp, &UnpackOptions::default()), Err(Error::Unsafe { .. })));
    assert!(driver.list_volumes().unwrap().is_empty());
}

#[test]
fn instances_clone_the_vm_image_volume() {
    if !qemu_img("instances_clone_the_vm_image_volume") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = make_qcow2(tmp.path(), "root.qcow2", "16M", &[]);
    let (files, fp) = store_split(tmp.path(), &meta_tar(true), &disk);
    let driver = drivers::load("dir", PoolSpec::new("p", tmp.path(), &[])).unwrap();
    driver.create_pool().unwrap();
    let v1 = Volume::new(VolumeType::VirtualMachine, "v1");
    crate::image::create_from_image(driver.as_ref(), &files, &fp, &v1, &UnpackOptions::default()).unwrap();
    let path = driver.volume_path(&v1);
    assert_eq!(path, tmp.path().join("storage-pools/p/virtual-machines/v1"));
    assert_eq!(fs::read(path.join("root.img")).unwrap(), fs::read(&disk).unwrap());
    assert!(path.join("boot/initrd.img").is_file());
    assert!(driver.volume_exists(&Volume::new(VolumeType::Image, &fp)));
}
