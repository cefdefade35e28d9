//! Virtual-machine images in LXD's format: a metadata tarball (metadata.yaml, templates/)
//! and a qcow2 disk, split (`rootfs.img` multipart part) or unified (one tarball holding
//! `metadata.yaml` and `rootfs.img`). berth also reads `boot/vmlinuz`, `boot/initrd.img` and
//! `boot/cmdline` from the metadata tarball for direct kernel boot.
//!
//! The disk is untrusted: its header is checked here (magic, no backing file, no external
//! data file, no encryption, virtual size under a limit) and then by `qemu-img info`, so
//! nothing QEMU later opens can reach outside the volume.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::archive::{decompress, HashingReader};
use super::unpack::{normalize, UnpackOptions, UnpackStats, Unpacker};
use super::{io_err, Error, ImageFiles};
use crate::storage::vm_volume::{self, ROOT_DISK};

/// The qcow2 magic (`QFI\xfb`).
pub const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";
/// The name of the disk in a unified VM image (and LXD's multipart part name).
pub const IMAGE_DISK: &str = "rootfs.img";
/// How long `qemu-img info` may take on an untrusted disk.
const QEMU_IMG_TIMEOUT: Duration = Duration::from_secs(30);
/// qcow2 incompatible feature bit: the guest data lives in an external file.
const QCOW2_EXTERNAL_DATA_FILE: u64 = 1 << 2;

/// What an image creates: the API's `type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageType {
    /// A rootfs tree for containers.
    #[default]
    Container,
    /// A disk for virtual machines.
    VirtualMachine,
}

impl ImageType {
    /// `container` or `virtual-machine`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageType::Container => "container",
            ImageType::VirtualMachine => "virtual-machine",
        }
    }
}

/// What `qemu-img info` reported about an accepted disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInfo {
    /// Always `qcow2` for accepted image disks.
    pub format: String,
    /// Bytes the guest sees.
    pub virtual_size: u64,
}

/// Decides the image type from the stored files: a split image whose rootfs starts with
/// the qcow2 magic, or a unified tarball holding `rootfs.img`, is a VM image. The unified
/// scan stops at the first `rootfs/` or `rootfs.img` entry.
pub fn detect_type(files: &ImageFiles) -> Result<ImageType, Error> {
    if let Some(rootfs) = &files.rootfs {
        return Ok(if has_qcow2_magic(rootfs)? { ImageType::VirtualMachine } else { ImageType::Container });
    }
    let f = File::open(&files.meta).map_err(io_err("open", &files.meta))?;
    let mut archive = tar::Archive::new(decompress(io::BufReader::new(f))?);
    let entries = archive.entries().map_err(|e| Error::Corrupt { entry: String::new(), source: e })?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::Corrupt { entry: String::new(), source: e })?;
        let raw = entry.path_bytes().into_owned();
        let Ok(comps) = normalize(raw.strip_prefix(b"/").unwrap_or(&raw)) else { continue };
        match comps.first().map(Vec::as_slice) {
            Some(b"rootfs.img") if comps.len() == 1 => return Ok(ImageType::VirtualMachine),
            Some(b"rootfs") => return Ok(ImageType::Container),
            _ => {}
        }
    }
    Ok(ImageType::Container)
}

fn has_qcow2_magic(path: &Path) -> Result<bool, Error> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path).map_err(io_err("open", path))?;
    match f.read_exact(&mut magic) {
        Ok(()) => Ok(&magic == QCOW2_MAGIC),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(Error::Io { op: "read", path: path.to_path_buf(), source: e }),
    }
}

fn disk_err(reason: impl Into<String>) -> Error {
    Error::Disk(reason.into())
}

/// Checks an untrusted VM image disk: qcow2 header first (magic, backing file, external
/// data file, encryption, virtual size at most `max_virtual_size`), then `qemu-img info`
/// must agree (format qcow2, no backing file, same limit).
pub fn check_disk(path: &Path, max_virtual_size: u64) -> Result<DiskInfo, Error> {
    check_header(path, max_virtual_size)?;
    let info = qemu_img_info(path)?;
    let format = info.get("format").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    if format != "qcow2" {
        return Err(disk_err(format!("qemu-img reads the disk as {format:?}, not qcow2")));
    }
    if let Some(b) = info.get("backing-filename").or_else(|| info.get("full-backing-filename")) {
        return Err(disk_err(format!("the qcow2 disk has a backing file ({b}); images must be self-contained")));
    }
    if let Some(d) = info.pointer("/format-specific/data/data-file") {
        return Err(disk_err(format!("the qcow2 disk has an external data file ({d})")));
    }
    let virtual_size = info.get("virtual-size").and_then(|v| v.as_u64()).ok_or_else(|| disk_err("qemu-img reports no virtual size"))?;
    if virtual_size > max_virtual_size {
        return Err(too_large(virtual_size, max_virtual_size));
    }
    Ok(DiskInfo { format, virtual_size })
}

fn too_large(size: u64, max: u64) -> Error {
    disk_err(format!("the qcow2 disk's virtual size {size} bytes exceeds the limit of {max} bytes"))
}

/// The qcow2 header (version 2 and 3), big endian: magic, version, backing file offset
/// and size, cluster bits, size, crypt method, ..., incompatible features (v3, offset 72).
fn check_header(path: &Path, max_virtual_size: u64) -> Result<(), Error> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
    let mut h = [0u8; 80];
    let n = read_full(&mut f, &mut h).map_err(io_err("read", path))?;
    if n < 4 || &h[..4] != QCOW2_MAGIC {
        return Err(disk_err("not a qcow2 disk (bad magic; expected QFI\\xfb)"));
    }
    if n < 72 {
        return Err(disk_err("truncated qcow2 header"));
    }
    let be32 = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let be64 = |o: usize| u64::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3], h[o + 4], h[o + 5], h[o + 6], h[o + 7]]);
    let version = be32(4);
    if version != 2 && version != 3 {
        return Err(disk_err(format!("unsupported qcow2 version {version}")));
    }
    if be64(8) != 0 || be32(16) != 0 {
        return Err(disk_err("the qcow2 disk has a backing file; images must be self-contained"));
    }
    let size = be64(24);
    if size > max_virtual_size {
        return Err(too_large(size, max_virtual_size));
    }
    if be32(32) != 0 {
        return Err(disk_err("the qcow2 disk is encrypted"));
    }
    if version == 3 {
        if n < 80 {
            return Err(disk_err("truncated qcow2 header"));
        }
        if be64(72) & QCOW2_EXTERNAL_DATA_FILE != 0 {
            return Err(disk_err("the qcow2 disk has an external data file"));
        }
    }
    Ok(())
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Runs `qemu-img info -f qcow2 --output=json` with a timeout; the format is forced so
/// qemu-img never probes, and `-U` lets it read a disk another process holds.
fn qemu_img_info(path: &Path) -> Result<serde_json::Value, Error> {
    let mut child = Command::new("qemu-img")
        .args(["info", "-U", "-f", "qcow2", "--output=json"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| disk_err(format!("cannot run qemu-img (install qemu-utils): {e}")))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > QEMU_IMG_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(disk_err("qemu-img info timed out on the disk"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(Error::Io { op: "wait for qemu-img", path: path.to_path_buf(), source: e }),
        }
    }
    let out = child.wait_with_output().map_err(io_err("qemu-img info", path))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(disk_err(format!("qemu-img cannot read the disk: {}", err.trim())));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| disk_err(format!("unreadable qemu-img output: {e}")))
}

/// Unpacks a VM image into `dest` (the VM volume layout: metadata.yaml, templates/, boot/,
/// root.img), verifying the fingerprint from the very bytes unpacked, then checks the disk
/// and the layout.
pub fn unpack_files(files: &ImageFiles, fingerprint: &str, dest: &Path, opts: &UnpackOptions) -> Result<UnpackStats, Error> {
    let mut unpacker = Unpacker::new(dest, *opts)?;
    let mut hasher = Sha256::new();
    super::unpack_one(&mut unpacker, &files.meta, "", &mut hasher)?;
    let disk = dest.join(ROOT_DISK);
    match &files.rootfs {
        Some(rootfs) => {
            if fs::symlink_metadata(&disk).is_ok() {
                return Err(Error::Unsafe { entry: ROOT_DISK.into(), reason: "the metadata tarball may not hold the disk".into() });
            }
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&disk)
                .map_err(io_err("create", &disk))?;
            let f = File::open(rootfs).map_err(io_err("open", rootfs))?;
            let mut reader = HashingReader::new(f, &mut hasher);
            io::copy(&mut reader, &mut out).map_err(io_err("copy", &disk))?;
        }
        None => {
            let src = dest.join(IMAGE_DISK);
            match fs::symlink_metadata(&src) {
                Ok(m) if m.file_type().is_file() => {}
                Ok(_) => return Err(Error::Unsafe { entry: IMAGE_DISK.into(), reason: "not a regular file".into() }),
                Err(_) => return Err(Error::Metadata(format!("the image has no {IMAGE_DISK}"))),
            }
            if fs::symlink_metadata(&disk).is_ok() {
                return Err(Error::Unsafe { entry: ROOT_DISK.into(), reason: "reserved name in a VM image".into() });
            }
            fs::rename(&src, &disk).map_err(io_err("rename", &src))?;
        }
    }
    let actual = hex::encode(hasher.finalize());
    if fingerprint.is_empty() || !actual.starts_with(fingerprint) {
        return Err(Error::FingerprintMismatch { expected: fingerprint.to_string(), actual });
    }
    let stats = unpacker.finish()?;
    check_disk(&disk, opts.max_disk_size)?;
    vm_volume::check_layout(dest).map_err(|e| match e {
        vm_volume::Error::Layout { path, reason } => Error::Unsafe { entry: path, reason },
        vm_volume::Error::Io { op, path, source } => Error::Io { op, path, source },
    })?;
    Ok(stats)
}

#[cfg(test)]
#[path = "vm_tests.rs"]
mod tests;
