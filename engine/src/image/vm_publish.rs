//! Publishing a VM volume (or snapshot) as a split VM image: a gzip metadata tarball
//! (metadata.yaml, templates/, boot/) and the root disk converted to a compact qcow2.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::archive::{append_tree, Encoder, HashingWriter};
use super::export::{append_metadata, published_metadata};
use super::{archive, io_err, Error, ImageFiles, PublishOptions, Published};
use crate::storage::vm_volume::{self, BOOT_DIR};

/// Publishes the VM volume at `src` into `images_dir` as `<fp>` and `<fp>.rootfs`.
pub fn publish_to_dir(src: &Path, opts: &PublishOptions, images_dir: &Path) -> Result<(Published, ImageFiles), Error> {
    vm_volume::check_layout(src).map_err(|e| Error::Metadata(e.to_string()))?;
    fs::create_dir_all(images_dir).map_err(io_err("mkdir", images_dir))?;
    let tag = format!("{}-{}", std::process::id(), rand::random::<u32>());
    let tmp_meta = images_dir.join(format!(".publish-{tag}"));
    let tmp_rootfs = images_dir.join(format!(".publish-{tag}.rootfs"));
    let result = (|| {
        let meta = published_metadata(src, opts)?;
        let yaml = serde_yaml::to_string(&meta).map_err(|e| Error::Metadata(e.to_string()))?;
        let out = BufWriter::new(File::create(&tmp_meta).map_err(io_err("create", &tmp_meta))?);
        let encoder = Encoder::new(HashingWriter::new(out), opts.compression).map_err(io_err("compress", src))?;
        let mut builder = tar::Builder::new(encoder);
        append_metadata(&mut builder, &yaml, opts, src)?;
        for part in ["templates", BOOT_DIR] {
            let p = src.join(part);
            if p.is_dir() {
                append_tree(&mut builder, &p, part)?;
            }
        }
        let encoder = builder.into_inner().map_err(io_err("archive", src))?;
        let (_, meta_size, out) = encoder.finish().map_err(io_err("compress", src))?.finish();
        let f = out.into_inner().map_err(|e| Error::Io { op: "flush", path: tmp_meta.clone(), source: e.into_error() })?;
        f.sync_all().map_err(io_err("sync", &tmp_meta))?;

        convert_to_qcow2(&vm_volume::root_disk(src), &tmp_rootfs)?;
        let mut hasher = Sha256::new();
        archive::sha256_update(&mut hasher, &tmp_meta)?;
        archive::sha256_update(&mut hasher, &tmp_rootfs)?;
        let fingerprint = hex::encode(hasher.finalize());
        let rootfs_size = fs::metadata(&tmp_rootfs).map_err(io_err("stat", &tmp_rootfs))?.len();
        let files = ImageFiles { meta: images_dir.join(&fingerprint), rootfs: Some(images_dir.join(format!("{fingerprint}.rootfs"))) };
        if let Some(r) = &files.rootfs {
            fs::rename(&tmp_rootfs, r).map_err(io_err("rename", &tmp_rootfs))?;
        }
        fs::rename(&tmp_meta, &files.meta).map_err(io_err("rename", &tmp_meta))?;
        Ok((Published { fingerprint, size: meta_size + rootfs_size, metadata: meta }, files))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp_meta);
        let _ = fs::remove_file(&tmp_rootfs);
    }
    result
}

/// `qemu-img convert` of the root disk (qcow2 or raw, by its magic) to a fresh qcow2.
fn convert_to_qcow2(disk: &Path, out: &Path) -> Result<(), Error> {
    let mut magic = [0u8; 4];
    let is_qcow2 = {
        let mut f = File::open(disk).map_err(io_err("open", disk))?;
        io::Read::read_exact(&mut f, &mut magic).is_ok() && &magic == super::vm::QCOW2_MAGIC
    };
    let from = if is_qcow2 { "qcow2" } else { "raw" };
    let o = Command::new("qemu-img")
        .args(["convert", "-U", "-f", from, "-O", "qcow2"])
        .arg(disk)
        .arg(out)
        .output()
        .map_err(|e| Error::Disk(format!("cannot run qemu-img (install qemu-utils): {e}")))?;
    if !o.status.success() {
        return Err(Error::Disk(format!("qemu-img convert failed: {}", String::from_utf8_lossy(&o.stderr).trim())));
    }
    let f = File::options().write(true).open(out).map_err(io_err("open", out))?;
    f.sync_all().map_err(io_err("sync", out))
}
