//! Publishing: a volume (or snapshot) becomes a new unified image tarball.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::archive::{append_tree, Compression, Encoder, HashingWriter};
use super::metadata::{self, ImageMetadata};
use super::{Error, ImageFiles};

/// How to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Compression of the tarball (LXD defaults to gzip).
    pub compression: Compression,
    /// Architecture when the volume has no metadata.yaml.
    pub architecture: String,
    /// Properties to set (merged over the volume's metadata.yaml properties).
    pub properties: BTreeMap<String, String>,
    /// `creation_date` to record (Unix seconds).
    pub creation_date: i64,
}

/// A published image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// sha256 of the tarball.
    pub fingerprint: String,
    /// Bytes of the tarball.
    pub size: u64,
    /// The metadata written into it.
    pub metadata: ImageMetadata,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

/// Writes a unified image tarball of the volume at `src` (its `rootfs/`, `templates/` and a
/// fresh metadata.yaml) into `out`; returns the fingerprint of the bytes written.
pub fn publish(src: &Path, opts: &PublishOptions, out: &mut dyn Write) -> Result<Published, Error> {
    if !src.join("rootfs").is_dir() {
        return Err(Error::Metadata(format!("{} has no rootfs/", src.display())));
    }
    let meta = published_metadata(src, opts)?;
    let yaml = serde_yaml::to_string(&meta).map_err(|e| Error::Metadata(e.to_string()))?;

    let hashing = HashingWriter::new(out);
    let encoder = Encoder::new(hashing, opts.compression).map_err(io_err("compress", src))?;
    let mut builder = tar::Builder::new(encoder);
    append_metadata(&mut builder, &yaml, opts, src)?;
    for part in ["rootfs", "templates"] {
        let p = src.join(part);
        if p.is_dir() {
            append_tree(&mut builder, &p, part)?;
        }
    }
    let encoder = builder.into_inner().map_err(io_err("archive", src))?;
    let hashing = encoder.finish().map_err(io_err("compress", src))?;
    let (fingerprint, size, out) = hashing.finish();
    out.flush().map_err(io_err("flush", src))?;
    Ok(Published { fingerprint, size, metadata: meta })
}

/// The metadata.yaml of a published image: the volume's own (or a minimal one) with the
/// new creation date, no expiry and the requested properties.
pub(super) fn published_metadata(src: &Path, opts: &PublishOptions) -> Result<ImageMetadata, Error> {
    let mut meta = match fs::read(src.join("metadata.yaml")) {
        Ok(bytes) => metadata::parse(&bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => ImageMetadata {
            architecture: metadata::normalize_architecture(&opts.architecture)
                .ok_or_else(|| Error::Metadata(format!("unsupported architecture {:?}", opts.architecture)))?
                .to_string(),
            ..ImageMetadata::default()
        },
        Err(e) => return Err(Error::Io { op: "read", path: src.join("metadata.yaml"), source: e }),
    };
    meta.creation_date = opts.creation_date;
    meta.expiry_date = 0;
    meta.properties.extend(opts.properties.clone());
    Ok(meta)
}

/// Appends metadata.yaml (root-owned, 0644, dated at creation).
pub(super) fn append_metadata<W: Write>(builder: &mut tar::Builder<W>, yaml: &str, opts: &PublishOptions, src: &Path) -> Result<(), Error> {
    let mut header = tar::Header::new_gnu();
    header.set_size(yaml.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(opts.creation_date.max(0) as u64);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, "metadata.yaml", yaml.as_bytes()).map_err(io_err("archive", src))
}

/// Publishes into `images_dir` as `<fingerprint>`; returns the result and its files.
pub fn publish_to_dir(src: &Path, opts: &PublishOptions, images_dir: &Path) -> Result<(Published, ImageFiles), Error> {
    fs::create_dir_all(images_dir).map_err(io_err("mkdir", images_dir))?;
    let tmp = images_dir.join(format!(".publish-{}-{}", std::process::id(), rand::random::<u32>()));
    let result = (|| {
        let mut f = io::BufWriter::new(File::create(&tmp).map_err(io_err("create", &tmp))?);
        let published = publish(src, opts, &mut f)?;
        let f = f.into_inner().map_err(|e| Error::Io { op: "flush", path: tmp.clone(), source: e.into_error() })?;
        f.sync_all().map_err(io_err("sync", &tmp))?;
        let files = ImageFiles { meta: images_dir.join(&published.fingerprint), rootfs: None };
        fs::rename(&tmp, &files.meta).map_err(io_err("rename", &tmp))?;
        Ok((published, files))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
