//! Images: fingerprinting uploads, safe unpacking into a pool's image volume (once per
//! pool), instance volumes cloned from it, export of the original bytes, and publishing a
//! volume as a new image.
//!
//! An image is stored as LXD does: `<images>/<fingerprint>` (a unified tarball, or the
//! metadata tarball of a split image) and `<images>/<fingerprint>.rootfs` (split only).
//! The fingerprint is the sha256 of the file, or of metadata‖rootfs for split images.

pub mod archive;
mod export;
pub mod metadata;
mod sparse_tar;
pub mod unpack;
pub mod vm;
pub mod vm_publish;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::storage::drivers::{CopySource, Driver};
use crate::storage::{Volume, VolumeType};

pub use archive::Compression;
pub use export::{publish, publish_to_dir, PublishOptions, Published};
pub use metadata::ImageMetadata;
pub use unpack::{UnpackOptions, UnpackStats, Unpacker};
pub use vm::{detect_type, ImageType};

/// Errors of image handling. `Unsafe` and `TooLarge` name the archive entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An entry that would escape the destination or is not allowed.
    #[error("unsafe archive entry {entry:?}: {reason}")]
    Unsafe { entry: String, reason: String },
    /// The archive expands beyond the configured limit.
    #[error("archive entry {entry:?} exceeds the limit of {limit}")]
    TooLarge { entry: String, limit: String },
    /// The tar stream is malformed.
    #[error("corrupt archive at entry {entry:?}")]
    Corrupt { entry: String, #[source] source: io::Error },
    /// A compression or image format we do not read.
    #[error("unsupported image format: {0}")]
    UnsupportedFormat(String),
    /// metadata.yaml is missing or invalid.
    #[error("invalid image metadata: {0}")]
    Metadata(String),
    /// The bytes do not hash to the expected fingerprint.
    #[error("fingerprint mismatch: expected {expected}, got {actual}")]
    FingerprintMismatch { expected: String, actual: String },
    /// A file operation failed.
    #[error("{op} {path}")]
    Io { op: &'static str, path: PathBuf, #[source] source: io::Error },
    /// A VM image disk that is not a self-contained qcow2 within the limits.
    #[error("invalid VM disk: {0}")]
    Disk(String),
    /// The storage driver failed.
    #[error(transparent)]
    Storage(#[from] crate::storage::drivers::Error),
}

/// The stored files of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFiles {
    /// Unified tarball, or the metadata tarball of a split image.
    pub meta: PathBuf,
    /// The rootfs tarball of a split image.
    pub rootfs: Option<PathBuf>,
}

impl ImageFiles {
    /// The files of `fingerprint` in `images_dir`, split if `<fp>.rootfs` exists.
    pub fn in_dir(images_dir: &Path, fingerprint: &str) -> ImageFiles {
        let rootfs = images_dir.join(format!("{fingerprint}.rootfs"));
        ImageFiles { meta: images_dir.join(fingerprint), rootfs: rootfs.is_file().then_some(rootfs) }
    }

    /// Total size in bytes (the API's `size`).
    pub fn size(&self) -> Result<u64, Error> {
        let mut n = fs::metadata(&self.meta).map_err(io_err("stat", &self.meta))?.len();
        if let Some(r) = &self.rootfs {
            n += fs::metadata(r).map_err(io_err("stat", r))?.len();
        }
        Ok(n)
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

/// The fingerprint of stored image files.
pub fn fingerprint(files: &ImageFiles) -> Result<String, Error> {
    let mut hasher = Sha256::new();
    archive::sha256_update(&mut hasher, &files.meta)?;
    if let Some(r) = &files.rootfs {
        archive::sha256_update(&mut hasher, r)?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks that a (possibly abbreviated) fingerprint is hex.
pub fn valid_fingerprint(fp: &str) -> bool {
    !fp.is_empty() && fp.len() <= 64 && fp.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Streams an upload into `images_dir`, naming it by its fingerprint. For split images
/// pass the rootfs reader too. Returns the fingerprint, total size and files.
pub fn store_upload(images_dir: &Path, meta: &mut dyn Read, rootfs: Option<&mut dyn Read>) -> Result<(String, u64, ImageFiles), Error> {
    fs::create_dir_all(images_dir).map_err(io_err("mkdir", images_dir))?;
    let tag = format!("{}-{}", std::process::id(), rand::random::<u32>());
    let tmp_meta = images_dir.join(format!(".upload-{tag}"));
    let tmp_rootfs = images_dir.join(format!(".upload-{tag}.rootfs"));
    let mut hasher = Sha256::new();
    let result = (|| {
        let mut size = copy_hashing(meta, &tmp_meta, &mut hasher)?;
        if let Some(r) = rootfs {
            size += copy_hashing(r, &tmp_rootfs, &mut hasher)?;
        }
        let fp = hex::encode(hasher.finalize());
        let files = ImageFiles {
            meta: images_dir.join(&fp),
            rootfs: tmp_rootfs.exists().then(|| images_dir.join(format!("{fp}.rootfs"))),
        };
        if let Some(r) = &files.rootfs {
            fs::rename(&tmp_rootfs, r).map_err(io_err("rename", r))?;
        }
        fs::rename(&tmp_meta, &files.meta).map_err(io_err("rename", &files.meta))?;
        Ok((fp, size, files))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp_meta);
        let _ = fs::remove_file(&tmp_rootfs);
    }
    result
}

fn copy_hashing(from: &mut dyn Read, to: &Path, hasher: &mut Sha256) -> Result<u64, Error> {
    let mut out = File::create(to).map_err(io_err("create", to))?;
    let mut reader = archive::HashingReader::new(from, hasher);
    let n = io::copy(&mut reader, &mut out).map_err(io_err("write", to))?;
    out.sync_all().map_err(io_err("sync", to))?;
    Ok(n)
}

/// Reads metadata.yaml from the stored files (the metadata tarball for split images).
pub fn read_metadata(files: &ImageFiles) -> Result<ImageMetadata, Error> {
    let f = File::open(&files.meta).map_err(io_err("open", &files.meta))?;
    metadata::read_from_archive(f)
}

/// Unpacks image files into `dest` (metadata.yaml, templates/ and rootfs/), verifying the
/// fingerprint from the very bytes unpacked.
pub fn unpack_files(files: &ImageFiles, fingerprint: &str, dest: &Path, opts: &UnpackOptions) -> Result<UnpackStats, Error> {
    let mut unpacker = Unpacker::new(dest, *opts)?;
    let mut hasher = Sha256::new();
    unpack_one(&mut unpacker, &files.meta, "", &mut hasher)?;
    if let Some(r) = &files.rootfs {
        unpack_one(&mut unpacker, r, "rootfs", &mut hasher)?;
    }
    let actual = hex::encode(hasher.finalize());
    if !actual.starts_with(fingerprint) || fingerprint.is_empty() {
        return Err(Error::FingerprintMismatch { expected: fingerprint.to_string(), actual });
    }
    if !dest.join("rootfs").is_dir() {
        return Err(Error::Metadata("the image has no rootfs/".into()));
    }
    unpacker.finish()
}

fn unpack_one(unpacker: &mut Unpacker, path: &Path, prefix: &str, hasher: &mut Sha256) -> Result<(), Error> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    {
        let reader = archive::HashingReader::new(&mut file, hasher);
        unpacker.unpack(reader, prefix)?;
    }
    // Hash whatever the tar reader left unread (padding, trailing blocks).
    let mut rest = archive::HashingReader::new(&mut file, hasher);
    io::copy(&mut rest, &mut io::sink()).map_err(io_err("read", path))?;
    Ok(())
}

/// Makes sure the pool has the image volume `<pool>/images/<fingerprint>`, unpacking the
/// image once. Unpacking goes to a hidden temporary volume that is deleted on any failure
/// and renamed into place on success.
pub fn ensure_image_volume(driver: &dyn Driver, files: &ImageFiles, fingerprint: &str, opts: &UnpackOptions) -> Result<Volume, Error> {
    if !valid_fingerprint(fingerprint) || fingerprint.len() != 64 {
        return Err(Error::Metadata(format!("invalid fingerprint {fingerprint:?}")));
    }
    let vol = Volume::new(VolumeType::Image, fingerprint);
    if driver.volume_exists(&vol) {
        return Ok(vol);
    }
    let tmp = Volume::new(VolumeType::Image, &format!(".tmp-{fingerprint}-{}", rand::random::<u32>()));
    let image_type = vm::detect_type(files)?;
    let mut failure: Option<Error> = None;
    let created = driver.create_volume(
        &tmp,
        Some(&mut |path: &Path| match match image_type {
            ImageType::VirtualMachine => vm::unpack_files(files, fingerprint, path, opts),
            ImageType::Container => unpack_files(files, fingerprint, path, opts),
        } {
            Ok(_) => Ok(()),
            Err(e) => {
                let msg = e.to_string();
                failure = Some(e);
                Err(msg.into())
            }
        }),
    );
    if let Err(e) = created {
        return Err(failure.unwrap_or(Error::Storage(e)));
    }
    if let Err(e) = driver.rename_volume(&tmp, fingerprint) {
        let _ = driver.delete_volume(&tmp);
        // Another caller may have won the race; theirs is as good as ours.
        if driver.volume_exists(&vol) {
            return Ok(vol);
        }
        return Err(e.into());
    }
    Ok(vol)
}

/// Creates an instance (or custom) volume from an image: unpack once per pool, then a
/// cheap copy (btrfs snapshot, reflink copy on dir).
pub fn create_from_image(driver: &dyn Driver, files: &ImageFiles, fingerprint: &str, dst: &Volume, opts: &UnpackOptions) -> Result<(), Error> {
    let image = ensure_image_volume(driver, files, fingerprint, opts)?;
    driver.copy_volume(dst, &CopySource { volume: &image, snapshot: None, snapshots: &[] })?;
    Ok(())
}

/// Writes the exact stored bytes of an image (metadata/unified, then optionally the
/// rootfs into a second writer), failing if they do not hash to `fingerprint`.
pub fn export_files(files: &ImageFiles, fingerprint: &str, meta_out: &mut dyn Write, rootfs_out: Option<&mut dyn Write>) -> Result<u64, Error> {
    let mut hasher = Sha256::new();
    let mut n = copy_out(&files.meta, meta_out, &mut hasher)?;
    match (&files.rootfs, rootfs_out) {
        (Some(r), Some(out)) => n += copy_out(r, out, &mut hasher)?,
        (Some(_), None) => return Err(Error::Metadata("split image needs a rootfs writer".into())),
        _ => {}
    }
    let actual = hex::encode(hasher.finalize());
    if actual != fingerprint {
        return Err(Error::FingerprintMismatch { expected: fingerprint.to_string(), actual });
    }
    Ok(n)
}

fn copy_out(path: &Path, out: &mut dyn Write, hasher: &mut Sha256) -> Result<u64, Error> {
    let f = File::open(path).map_err(io_err("open", path))?;
    let mut reader = archive::HashingReader::new(f, hasher);
    io::copy(&mut reader, out).map_err(io_err("export", path))
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod root_tests;
