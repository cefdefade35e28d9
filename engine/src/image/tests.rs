//! Image tests: one per malicious-archive rule, a good archive, compression, fingerprints.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::archive::{Compression, Encoder};
use super::*;
use crate::storage::drivers::{self, PoolSpec};

pub(crate) const META: &str = "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: busybox\n";

/// Builds tarballs with raw names, so tests can write what tar-rs would refuse.
pub(crate) struct TarMaker {
    b: tar::Builder<Vec<u8>>,
    uid: u64,
}

impl TarMaker {
    pub(crate) fn new() -> TarMaker {
        TarMaker { b: tar::Builder::new(Vec::new()), uid: nix::unistd::geteuid().as_raw() as u64 }
    }

    pub(crate) fn entry(&mut self, name: &str, kind: tar::EntryType, link: Option<&str>, mode: u32, data: &[u8]) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                old.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(self.uid);
        h.set_gid(self.uid);
        h.set_mtime(1_600_000_000);
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub(crate) fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name, tar::EntryType::Regular, None, 0o644, data)
    }

    pub(crate) fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(name, tar::EntryType::Directory, None, mode, b"")
    }

    pub(crate) fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, tar::EntryType::Symlink, Some(target), 0o777, b"")
    }

    pub(crate) fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, tar::EntryType::Link, Some(target), 0o644, b"")
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }

    /// A small but complete unified image.
    pub(crate) fn good_image() -> Vec<u8> {
        let mut t = TarMaker::new();
        t.file("metadata.yaml", META.as_bytes())
            .dir("rootfs/", 0o755)
            .dir("rootfs/etc/", 0o755)
            .file("rootfs/etc/hostname", b"image\n")
            .symlink("rootfs/etc/mtab", "/proc/self/mounts")
            .symlink("rootfs/etc/rel", "../etc/hostname")
            .hardlink("rootfs/etc/hostname2", "rootfs/etc/hostname")
            .dir("rootfs/ro/", 0o555)
            .file("rootfs/ro/inside", b"x")
            .dir("templates/", 0o755)
            .file("templates/hostname.tpl", b"{{ container.name }}\n");
        t.finish()
    }
}

pub(crate) fn compress(data: &[u8], c: Compression) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new(), c).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn unpack_bytes(data: &[u8], dest: &Path, opts: UnpackOptions) -> Result<UnpackStats, Error> {
    let mut u = Unpacker::new(dest, opts)?;
    u.unpack(data, "")?;
    u.finish()
}

fn expect_unsafe(data: Vec<u8>, entry: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    match unpack_bytes(&data, &dest, UnpackOptions::default()) {
        Err(Error::Unsafe { entry: e, .. }) => assert_eq!(e, entry),
        other => panic!("expected an unsafe-entry error for {entry}, got {other:?}"),
    }
    tmp
}

#[test]
fn good_archive_unpacks_with_links_modes_and_times() {
    let tmp = tempfile::tempdir().unwrap();
    let stats = unpack_bytes(&TarMaker::good_image(), tmp.path(), UnpackOptions::default()).unwrap();
    assert_eq!(stats.entries, 11);
    let root = tmp.path().join("rootfs");
    assert_eq!(fs::read(root.join("etc/hostname")).unwrap(), b"image\n");
    assert_eq!(fs::read_link(root.join("etc/mtab")).unwrap(), Path::new("/proc/self/mounts"));
    assert_eq!(fs::metadata(root.join("etc/hostname2")).unwrap().ino(), fs::metadata(root.join("etc/hostname")).unwrap().ino());
    let ro = fs::metadata(root.join("ro")).unwrap();
    assert_eq!(ro.permissions().mode() & 0o7777, 0o555);
    assert_eq!(ro.mtime(), 1_600_000_000);
    assert_eq!(fs::read(root.join("ro/inside")).unwrap(), b"x");
    assert!(tmp.path().join("templates/hostname.tpl").is_file());
    fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn rejects_dotdot_component() {
    let mut t = TarMaker::new();
    t.file("rootfs/../../escape", b"x");
    let tmp = expect_unsafe(t.finish(), "rootfs/../../escape");
    assert!(!tmp.path().join("escape").exists());
}

#[test]
fn rejects_absolute_path() {
    let mut t = TarMaker::new();
    t.file("/tmp/berth-absolute-escape", b"x");
    expect_unsafe(t.finish(), "/tmp/berth-absolute-escape");
    assert!(!Path::new("/tmp/berth-absolute-escape").exists());
}

#[test]
fn leading_slash_inside_the_layout_is_stripped_like_gnu_tar() {
    let mut t = TarMaker::new();
    t.file("metadata.yaml", b"architecture: x86_64\n");
    t.dir("rootfs", 0o755);
    t.file("/rootfs/etc-inittab", b"::sysinit:/bin/true\n");
    let dir = tempfile::tempdir().unwrap();
    let mut u = Unpacker::new(dir.path(), UnpackOptions::default()).unwrap();
    u.unpack(std::io::Cursor::new(t.finish()), "").unwrap();
    assert_eq!(std::fs::read(dir.path().join("rootfs/etc-inittab")).unwrap(), b"::sysinit:/bin/true\n");
}

#[test]
fn never_writes_through_a_symlink_created_by_the_archive() {
    let outside = tempfile::tempdir().unwrap();
    let mut t = TarMaker::new();
    t.symlink("a", outside.path().to_str().unwrap()).file("a/passwd", b"owned");
    expect_unsafe(t.finish(), "a/passwd");
    assert!(!outside.path().join("passwd").exists(), "the write went through the symlink");
}

#[test]
fn never_replaces_a_file_through_a_symlink_leaf() {
    // `x -> /outside/victim` then a hardlink or file named x must replace the link, not follow it.
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs::write(&victim, b"safe").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut t = TarMaker::new();
    t.symlink("x", victim.to_str().unwrap()).file("x", b"evil");
    unpack_bytes(&t.finish(), tmp.path(), UnpackOptions::default()).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"safe");
    assert_eq!(fs::read(tmp.path().join("x")).unwrap(), b"evil");
}

#[test]
fn rejects_relative_symlink_pointing_outside() {
    let mut t = TarMaker::new();
    t.dir("rootfs/", 0o755).symlink("rootfs/up", "../../etc/shadow");
    expect_unsafe(t.finish(), "rootfs/up");
}

#[test]
fn rejects_hardlink_pointing_outside() {
    let mut t = TarMaker::new();
    t.hardlink("rootfs/shadow", "../../etc/shadow");
    expect_unsafe(t.finish(), "rootfs/shadow");
}

#[test]
fn rejects_hardlink_to_a_later_or_missing_entry() {
    let mut t = TarMaker::new();
    t.hardlink("rootfs/early", "rootfs/late").file("rootfs/late", b"x");
    expect_unsafe(t.finish(), "rootfs/early");
}

#[test]
fn rejects_device_nodes_for_unprivileged_images() {
    let mut t = TarMaker::new();
    t.entry("rootfs/dev/sda", tar::EntryType::Block, None, 0o660, b"");
    expect_unsafe(t.finish(), "rootfs/dev/sda");
}

#[test]
fn rejects_archives_expanding_past_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = TarMaker::new();
    t.file("small", &[1u8; 600]).file("big", &[2u8; 600]);
    let opts = UnpackOptions { max_bytes: 1000, ..UnpackOptions::default() };
    match unpack_bytes(&t.finish(), tmp.path(), opts) {
        Err(Error::TooLarge { entry, .. }) => assert_eq!(entry, "big"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn detects_compression_by_magic() {
    let tar = TarMaker::good_image();
    for c in [Compression::None, Compression::Gzip, Compression::Xz, Compression::Zstd] {
        let data = compress(&tar, c);
        assert_eq!(archive::detect(&data).unwrap(), c);
        let tmp = tempfile::tempdir().unwrap();
        unpack_bytes(&data, tmp.path(), UnpackOptions::default()).unwrap();
        assert_eq!(fs::read(tmp.path().join("rootfs/etc/hostname")).unwrap(), b"image\n", "{c:?}");
        fs::set_permissions(tmp.path().join("rootfs/ro"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(metadata::read_from_archive(data.as_slice()).unwrap().properties["os"], "busybox");
    }
    assert!(matches!(archive::detect(b"BZh91AY"), Err(Error::UnsupportedFormat(_))));
    assert!(matches!(archive::detect(b"hsqs...."), Err(Error::UnsupportedFormat(_))));
}

#[test]
fn fingerprints_are_sha256_of_file_or_meta_then_rootfs() {
    let tmp = tempfile::tempdir().unwrap();
    let unified = compress(&TarMaker::good_image(), Compression::Gzip);
    let (fp, size, files) = store_upload(tmp.path(), &mut unified.as_slice(), None).unwrap();
    assert_eq!(fp, hex::encode(Sha256::digest(&unified)));
    assert_eq!(size, unified.len() as u64);
    assert_eq!(files, ImageFiles { meta: tmp.path().join(&fp), rootfs: None });
    assert_eq!(fingerprint(&files).unwrap(), fp);

    let mut m = TarMaker::new();
    m.file("metadata.yaml", META.as_bytes());
    let meta = compress(&m.finish(), Compression::Xz);
    let mut r = TarMaker::new();
    r.dir("etc/", 0o755).file("etc/hostname", b"split\n");
    let rootfs = compress(&r.finish(), Compression::Zstd);
    let (fp2, _, files2) = store_upload(tmp.path(), &mut meta.as_slice(), Some(&mut rootfs.as_slice())).unwrap();
    let mut h = Sha256::new();
    h.update(&meta);
    h.update(&rootfs);
    assert_eq!(fp2, hex::encode(h.finalize()));
    assert_eq!(ImageFiles::in_dir(tmp.path(), &fp2), files2);
    assert_eq!(fingerprint(&files2).unwrap(), fp2);

    // Split images unpack the rootfs tarball under rootfs/.
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    unpack_files(&files2, &fp2, &dest, &UnpackOptions::default()).unwrap();
    assert_eq!(fs::read(dest.join("rootfs/etc/hostname")).unwrap(), b"split\n");
    assert!(dest.join("metadata.yaml").is_file());

    // Export gives the exact original bytes.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    export_files(&files2, &fp2, &mut a, Some(&mut b)).unwrap();
    assert_eq!((a, b), (meta, rootfs));
    assert!(matches!(export_files(&files, &fp2, &mut Vec::new(), None), Err(Error::FingerprintMismatch { .. })));
    // A wrong fingerprint is caught while unpacking.
    let dest2 = tmp.path().join("dest2");
    fs::create_dir(&dest2).unwrap();
    assert!(matches!(unpack_files(&files, &fp2, &dest2, &UnpackOptions::default()), Err(Error::FingerprintMismatch { .. })));
}

#[test]
fn failed_unpack_leaves_no_volume_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let driver = drivers::load("dir", PoolSpec::new("default", tmp.path(), &[])).unwrap();
    driver.create_pool().unwrap();
    let mut t = TarMaker::new();
    t.file("metadata.yaml", META.as_bytes()).dir("rootfs/", 0o755).file("rootfs/ok", b"1").symlink("rootfs/a", "/etc").file("rootfs/a/passwd", b"x");
    let images = tmp.path().join("images");
    let (fp, _, files) = store_upload(&images, &mut t.finish().as_slice(), None).unwrap();
    match ensure_image_volume(driver.as_ref(), &files, &fp, &UnpackOptions::default()) {
        Err(Error::Unsafe { entry, .. }) => assert_eq!(entry, "rootfs/a/passwd"),
        other => panic!("expected Unsafe, got {other:?}"),
    }
    assert!(driver.list_volumes().unwrap().is_empty());
    assert!(util_dir_is_empty(&tmp.path().join("storage-pools/default/images")));
}

fn util_dir_is_empty(p: &Path) -> bool {
    fs::read_dir(p).unwrap().next().is_none()
}

#[test]
fn truncated_and_garbage_archives_fail_without_panicking() {
    let good = compress(&TarMaker::good_image(), Compression::Gzip);
    // (A cut gzip trailer alone goes unnoticed by tar; image fingerprints cover that.)
    for cut in [1, 10, 100, good.len() / 2] {
        let tmp = tempfile::tempdir().unwrap();
        let r = unpack_bytes(&good[..cut], tmp.path(), UnpackOptions::default());
        assert!(matches!(r, Err(Error::Corrupt { .. }) | Err(Error::Io { .. })), "cut at {cut}: {r:?}");
    }
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let tmp = tempfile::tempdir().unwrap();
    assert!(unpack_bytes(&garbage, tmp.path(), UnpackOptions::default()).is_err());
}

#[test]
fn rejects_archives_with_too_many_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = TarMaker::new();
    for i in 0..20 {
        t.file(&format!("f{i}"), b"");
    }
    let opts = UnpackOptions { max_entries: 10, ..UnpackOptions::default() };
    assert!(matches!(unpack_bytes(&t.finish(), tmp.path(), opts), Err(Error::TooLarge { entry, .. }) if entry == "f10"));
}
