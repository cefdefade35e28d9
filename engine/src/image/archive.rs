//! Compression by magic bytes, hashing readers/writers, and a tar writer for directory trees.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::Error;

/// A compression format of image and backup tarballs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// Parses LXD's `compression_algorithm` names (`gzip`, `xz`, `zstd`, `none`).
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "none" | "" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "xz" => Some(Compression::Xz),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Detects the compression from the first bytes; unsupported formats are refused by name.
pub fn detect(magic: &[u8]) -> Result<Compression, Error> {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Compression::Gzip)
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Ok(Compression::Xz)
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Compression::Zstd)
    } else if magic.starts_with(b"BZh") {
        Err(Error::UnsupportedFormat("bzip2".into()))
    } else if magic.starts_with(b"hsqs") {
        Err(Error::UnsupportedFormat("squashfs (use a rootfs tarball)".into()))
    } else if magic.starts_with(b"QFI\xfb") {
        Err(Error::UnsupportedFormat("a qcow2 disk where a tarball is expected (a VM image's disk is its rootfs part or rootfs.img)".into()))
    } else {
        Ok(Compression::None)
    }
}

/// Wraps `r` in the decoder its magic bytes call for.
pub fn decompress<'a, R: BufRead + 'a>(mut r: R) -> Result<Box<dyn Read + 'a>, Error> {
    let magic = r.fill_buf().map_err(|e| Error::Io { op: "read", path: "archive".into(), source: e })?;
    Ok(match detect(magic)? {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(r).map_err(|e| Error::Io { op: "zstd", path: "archive".into(), source: e })?)
        }
    })
}

/// A compressing writer that must be finished to flush its trailer.
pub enum Encoder<W: Write> {
    /// No compression.
    None(W),
    /// gzip.
    Gzip(flate2::write::GzEncoder<W>),
    /// xz.
    Xz(xz2::write::XzEncoder<W>),
    /// zstd.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Starts compressing into `w`.
    pub fn new(w: W, c: Compression) -> io::Result<Encoder<W>> {
        Ok(match c {
            Compression::None => Encoder::None(w),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(w, flate2::Compression::default())),
            Compression::Xz => Encoder::Xz(xz2::write::XzEncoder::new(w, 6)),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(w, 3)?),
        })
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// Hashes and counts every byte read through it.
pub struct HashingReader<'a, R> {
    inner: R,
    hasher: &'a mut Sha256,
    /// Bytes read so far.
    pub count: u64,
}

impl<'a, R: Read> HashingReader<'a, R> {
    /// Wraps `inner`, feeding `hasher`.
    pub fn new(inner: R, hasher: &'a mut Sha256) -> Self {
        HashingReader { inner, hasher, count: 0 }
    }
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Hashes and counts every byte written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    /// Bytes written so far.
    pub count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), count: 0 }
    }

    /// The hex sha256 of everything written, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (hex::encode(self.hasher.finalize()), self.count, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Appends the tree under `src` to `builder` with names starting at `prefix` (no trailing
/// slash; empty for the top). Keeps numeric ownership, modes, mtimes, symlinks, device
/// nodes, fifos, hardlinks (as link entries) and xattrs (as `SCHILY.xattr.*` records).
/// Sockets are skipped, as tar does.
pub fn append_tree<W: Write>(builder: &mut tar::Builder<W>, src: &Path, prefix: &str) -> Result<(), Error> {
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    append_entry(builder, src, prefix, &mut links)
}

fn tar_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { op: "archive", path: path.to_path_buf(), source }
}

fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &str,
    links: &mut HashMap<(u64, u64), String>,
) -> Result<(), Error> {
    let meta = fs::symlink_metadata(path).map_err(tar_err(path))?;
    let ft = meta.file_type();
    if std::os::unix::fs::FileTypeExt::is_socket(&ft) {
        return Ok(());
    }
    if !name.is_empty() {
        let xattrs = read_xattrs(path);
        if !xattrs.is_empty() {
            let recs: Vec<(String, Vec<u8>)> = xattrs.into_iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v)).collect();
            builder.append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).map_err(tar_err(path))?;
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        if ft.is_file() && meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                builder.append_link(&mut header, name, first).map_err(tar_err(path))?;
                return Ok(());
            }
            links.insert((meta.dev(), meta.ino()), name.to_string());
        }
        if ft.is_file() {
            let f = fs::File::open(path).map_err(tar_err(path))?;
            // Files with holes (a VM's root.img) go in as GNU sparse entries.
            let extents = if meta.blocks() * 512 < meta.len() { super::sparse_tar::data_extents(&f, meta.len()).map_err(tar_err(path))? } else { None };
            match extents {
                Some(ext) => super::sparse_tar::append_sparse(builder, &mut header, name, f, meta.len(), &ext).map_err(tar_err(path))?,
                None => builder.append_data(&mut header, name, f).map_err(tar_err(path))?,
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(tar_err(path))?;
            header.set_size(0);
            builder.append_link(&mut header, name, target).map_err(tar_err(path))?;
        } else {
            if std::os::unix::fs::FileTypeExt::is_char_device(&ft) || std::os::unix::fs::FileTypeExt::is_block_device(&ft) {
                let rdev = meta.rdev();
                header.set_device_major(libc::major(rdev)).map_err(tar_err(path))?;
                header.set_device_minor(libc::minor(rdev)).map_err(tar_err(path))?;
            }
            header.set_size(0);
            let dir_name = if ft.is_dir() { format!("{name}/") } else { name.to_string() };
            builder.append_data(&mut header, dir_name, io::empty()).map_err(tar_err(path))?;
        }
    }
    if ft.is_dir() {
        let mut children: Vec<_> = fs::read_dir(path)
            .map_err(tar_err(path))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(tar_err(path))?;
        children.sort();
        for child in children {
            let Some(child_name) = child.to_str() else {
                return Err(Error::Io {
                    op: "archive (non-UTF-8 name)",
                    path: path.join(&child),
                    source: io::Error::from(io::ErrorKind::InvalidData),
                });
            };
            let full = if name.is_empty() { child_name.to_string() } else { format!("{name}/{child_name}") };
            append_entry(builder, &path.join(&child), &full, links)?;
        }
    }
    Ok(())
}

/// All xattrs of `path` (not following symlinks); empty when unsupported.
pub fn read_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(cpath) = CString::new(path.as_os_str().as_bytes()) else { return Vec::new() };
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffer is valid for its length; the path is NUL-terminated.
    let n = unsafe { libc::llistxattr(cpath.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for raw in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let (Ok(cname), Ok(name)) = (CString::new(raw), std::str::from_utf8(raw)) else { continue };
        let mut value = vec![0u8; 65536];
        // SAFETY: as above.
        let len = unsafe { libc::lgetxattr(cpath.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if len >= 0 {
            value.truncate(len as usize);
            out.push((name.to_string(), value));
        }
    }
    out
}

/// sha256 of a file's bytes, hex.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut hasher = Sha256::new();
    sha256_update(&mut hasher, path)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Feeds a file's bytes into `hasher`.
pub fn sha256_update(hasher: &mut Sha256, path: &Path) -> Result<(), Error> {
    let mut f = fs::File::open(path).map_err(tar_err(path))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(tar_err(path))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}
