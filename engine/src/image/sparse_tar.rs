//! Sparse files in tarballs (GNU "old" sparse format, entry type `S`), so a backup of a VM
//! with a sparse 10GiB `root.img` carries only its data; GNU tar, Go's archive/tar (LXD)
//! and tar-rs read it. The unpacker writes zero runs back as holes.

use std::fs::File;
use std::io::{self, Cursor, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// Sparse entries in the main GNU header.
const MAIN_SLOTS: usize = 4;
/// Sparse entries per extension block.
const EXT_SLOTS: usize = 21;

/// The data extents `(offset, length)` of a file, from `SEEK_DATA`/`SEEK_HOLE`; `None`
/// when the file has no holes (or the filesystem cannot tell).
pub fn data_extents(f: &File, len: u64) -> io::Result<Option<Vec<(u64, u64)>>> {
    let mut out = Vec::new();
    let mut pos: u64 = 0;
    while pos < len {
        let data = match seek(f, pos, libc::SEEK_DATA) {
            Ok(d) => d,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
            Err(e) => return Err(e),
        };
        if data >= len {
            break;
        }
        let hole = seek(f, data, libc::SEEK_HOLE)?.min(len);
        out.push((data, hole - data));
        pos = hole;
    }
    let stored: u64 = out.iter().map(|e| e.1).sum();
    Ok((stored < len).then_some(out))
}

fn seek(f: &File, offset: u64, whence: libc::c_int) -> io::Result<u64> {
    let off = i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: lseek on an open descriptor has no memory effects.
    let r = unsafe { libc::lseek(f.as_raw_fd(), off, whence) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as u64)
    }
}

/// Fills a 12-byte numeric field as tar-rs and GNU tar read it: octal, or base-256 when
/// the value does not fit in 11 octal digits.
fn num_field(dst: &mut [u8; 12], v: u64) {
    if v < 8_589_934_592 {
        let s = format!("{v:011o}");
        dst[..11].copy_from_slice(s.as_bytes());
        dst[11] = 0;
    } else {
        dst[..4].fill(0);
        dst[4..].copy_from_slice(&v.to_be_bytes());
        dst[0] |= 0x80;
    }
}

fn slot(offset: u64, len: u64) -> tar::GnuSparseHeader {
    let mut s = tar::GnuSparseHeader { offset: [0; 12], numbytes: [0; 12] };
    num_field(&mut s.offset, offset);
    num_field(&mut s.numbytes, len);
    s
}

/// Appends `file` (of real size `len`, with data `extents`) as a GNU sparse entry.
/// `header` carries the file's metadata already; its type, size and sparse map are set here.
pub fn append_sparse<W: Write>(builder: &mut tar::Builder<W>, header: &mut tar::Header, name: &str, file: File, len: u64, extents: &[(u64, u64)]) -> io::Result<()> {
    // The map ends with (len, 0) so readers see the trailing hole.
    let mut map: Vec<(u64, u64)> = extents.to_vec();
    map.push((len, 0));
    let stored: u64 = extents.iter().map(|e| e.1).sum();
    header.set_entry_type(tar::EntryType::GNUSparse);
    header.set_size(stored);
    let gnu = header.as_gnu_mut().ok_or_else(|| io::Error::other("sparse entries need a GNU header"))?;
    num_field(&mut gnu.realsize, len);
    let (main, rest) = map.split_at(map.len().min(MAIN_SLOTS));
    for (i, (o, l)) in main.iter().enumerate() {
        gnu.sparse[i] = slot(*o, *l);
    }
    gnu.isextended[0] = u8::from(!rest.is_empty());
    let mut ext_bytes = Vec::new();
    let chunks: Vec<&[(u64, u64)]> = rest.chunks(EXT_SLOTS).collect();
    for (ci, chunk) in chunks.iter().enumerate() {
        let mut ext = [0u8; 512];
        for (i, (o, l)) in chunk.iter().enumerate() {
            let s = slot(*o, *l);
            ext[i * 24..i * 24 + 12].copy_from_slice(&s.offset);
            ext[i * 24 + 12..i * 24 + 24].copy_from_slice(&s.numbytes);
        }
        ext[504] = u8::from(ci + 1 < chunks.len());
        ext_bytes.extend_from_slice(&ext);
    }
    let data = ExtentReader { file, extents: extents.to_vec(), idx: 0, done: 0 };
    builder.append_data(header, name, Cursor::new(ext_bytes).chain(data))
}

/// Reads the data extents of a file back to back, exactly as declared (zero-padded if the
/// file shrank meanwhile, so the archive stays well formed).
struct ExtentReader {
    file: File,
    extents: Vec<(u64, u64)>,
    idx: usize,
    done: u64,
}

impl Read for ExtentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(&(off, len)) = self.extents.get(self.idx) else { return Ok(0) };
            if self.done == len {
                self.idx += 1;
                self.done = 0;
                continue;
            }
            let want = buf.len().min((len - self.done) as usize);
            let n = self.file.read_at(&mut buf[..want], off + self.done)?;
            let n = if n == 0 {
                buf[..want].fill(0);
                want
            } else {
                n
            };
            self.done += n as u64;
            return Ok(n);
        }
    }
}

/// The block size below which zeros are written rather than skipped.
const HOLE_BLOCK: usize = 4096;
static ZERO_BLOCK: [u8; HOLE_BLOCK] = [0; HOLE_BLOCK];

/// Reads until `buf` is full or the stream ends, so runs line up with file blocks.
pub(super) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The runs of `buf` that are not whole blocks of zeros, as (offset, bytes).
pub(super) fn data_runs(buf: &[u8]) -> Vec<(usize, &[u8])> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, block) in buf.chunks(HOLE_BLOCK).enumerate() {
        let off = i * HOLE_BLOCK;
        let zero = block == &ZERO_BLOCK[..block.len()];
        match (zero, start) {
            (false, None) => start = Some(off),
            (true, Some(s)) => {
                out.push((s, &buf[s..off]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &buf[s..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    fn sparse_file(path: &std::path::Path, len: u64, writes: &[(u64, &[u8])]) {
        let mut f = File::create(path).unwrap();
        f.set_len(len).unwrap();
        for (o, d) in writes {
            f.seek(SeekFrom::Start(*o)).unwrap();
            f.write_all(d).unwrap();
        }
    }

    #[test]
    fn sparse_entries_round_trip_through_tar_rs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk");
        // Many extents (more than fit the main header) and a trailing hole; a real size
        // beyond 8GiB needs base-256 fields.
        let writes: Vec<(u64, Vec<u8>)> = (0..30u64).map(|i| (i * (1 << 20), format!("extent {i}").into_bytes())).collect();
        let refs: Vec<(u64, &[u8])> = writes.iter().map(|(o, d)| (*o, d.as_slice())).collect();
        let len = 9u64 << 30;
        sparse_file(&p, len, &refs);
        let f = File::open(&p).unwrap();
        let extents = data_extents(&f, len).unwrap().expect("holes");
        assert!(extents.len() >= 30, "{extents:?}");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o600);
        h.set_mtime(1);
        append_sparse(&mut b, &mut h, "backup/virtual-machine/root.img", f, len, &extents).unwrap();
        let tarball = b.into_inner().unwrap();
        assert!(tarball.len() < 1 << 20, "the archive holds only data: {} bytes", tarball.len());
        let mut a = tar::Archive::new(&tarball[..]);
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().entry_type(), tar::EntryType::GNUSparse);
        assert_eq!(e.size(), len);
        // The first 32MiB (all the data) read back as in the file.
        let mut got = vec![0u8; 32 << 20];
        e.read_exact(&mut got).unwrap();
        let mut want = vec![0u8; 32 << 20];
        File::open(&p).unwrap().read_exact_at(&mut want, 0).unwrap();
        assert!(got == want, "data differs");
    }

    #[test]
    fn unpacking_keeps_holes_for_sparse_and_zero_filled_entries() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk");
        sparse_file(&p, 1 << 30, &[(0, b"boot sector"), ((512 << 20) + 3, b"middle")]);
        let f = File::open(&p).unwrap();
        let extents = data_extents(&f, 1 << 30).unwrap().expect("holes");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        append_sparse(&mut b, &mut h, "sparse.img", f, 1 << 30, &extents).unwrap();
        // A plain entry of zeros with data in the middle: holes on the way out too.
        let mut plain = vec![0u8; 8 << 20];
        plain[4 << 20] = 1;
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_size(plain.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, "zeros.img", &plain[..]).unwrap();
        let tarball = b.into_inner().unwrap();
        let dest = dir.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        let mut u = crate::image::Unpacker::new(&dest, crate::image::UnpackOptions::default()).unwrap();
        u.unpack(&tarball[..], "").unwrap();
        u.finish().unwrap();
        let out = std::fs::metadata(dest.join("sparse.img")).unwrap();
        assert_eq!(out.len(), 1 << 30);
        assert!(out.blocks() * 512 < 1 << 20, "unpacked file is not sparse: {} blocks", out.blocks());
        let mut a = vec![0u8; 64];
        let mut b2 = vec![0u8; 64];
        File::open(&p).unwrap().read_exact_at(&mut a, 512 << 20).unwrap();
        File::open(dest.join("sparse.img")).unwrap().read_exact_at(&mut b2, 512 << 20).unwrap();
        assert_eq!(a, b2);
        let z = std::fs::metadata(dest.join("zeros.img")).unwrap();
        assert_eq!(z.len(), 8 << 20);
        assert!(z.blocks() * 512 <= 64 << 10, "zero blocks were written: {} blocks", z.blocks());
        assert_eq!(std::fs::read(dest.join("zeros.img")).unwrap(), plain);
    }

    #[test]
    fn files_without_holes_are_not_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("full");
        std::fs::write(&p, vec![7u8; 100_000]).unwrap();
        assert_eq!(data_extents(&File::open(&p).unwrap(), 100_000).unwrap(), None);
    }
}
