//! Copying a file's data extents only (`SEEK_DATA`/`SEEK_HOLE`), so holes stay holes: a
//! VM's sparse 10GiB `root.img` copies (snapshot, copy, restore on `dir`) in the space it
//! really uses. A plain `io::copy` would read the holes as zeros and write them out.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Copies `from` to the empty `to`, skipping holes; `to` ends with `from`'s length.
/// Returns the bytes of data copied.
pub fn copy_sparse(from: &File, to: &File) -> io::Result<u64> {
    let len = from.metadata()?.len();
    let mut copied = 0u64;
    let mut pos: i64 = 0;
    while (pos as u64) < len {
        let data = match seek(from, pos, libc::SEEK_DATA) {
            Ok(d) => d,
            // ENXIO: no data after `pos` (the rest is a hole).
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            Err(e) => return Err(e),
        };
        let hole = seek(from, data, libc::SEEK_HOLE)?;
        copied += copy_range(from, to, data, hole - data)?;
        pos = hole;
    }
    to.set_len(len)?;
    Ok(copied)
}

fn seek(f: &File, offset: i64, whence: libc::c_int) -> io::Result<i64> {
    // SAFETY: lseek on an open descriptor has no memory effects.
    let r = unsafe { libc::lseek(f.as_raw_fd(), offset, whence) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Copies `[off, off+len)` at the same offsets with `copy_file_range`, falling back to
/// positioned reads and writes where the kernel refuses it (cross-filesystem, EXDEV...).
fn copy_range(from: &File, to: &File, off: i64, len: i64) -> io::Result<u64> {
    let (mut in_off, mut out_off) = (off, off);
    let mut left = len as u64;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        // SAFETY: both descriptors are open; the offsets are valid pointers to locals.
        let n = unsafe { libc::copy_file_range(from.as_raw_fd(), &mut in_off, to.as_raw_fd(), &mut out_off, chunk, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL) => {
                    rw_range(from, to, in_off, left).map(|m| len as u64 - left + m)
                }
                _ => Err(e),
            };
        }
        if n == 0 {
            break;
        }
        left -= n as u64;
    }
    Ok(len as u64 - left)
}

fn rw_range(from: &File, to: &File, mut off: i64, mut left: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = from.read_at(&mut buf[..want], off as u64)?;
        if n == 0 {
            break;
        }
        to.write_all_at(&buf[..n], off as u64)?;
        off += n as i64;
        left -= n as u64;
        done += n as u64;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn holes_stay_holes_and_data_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        let mut src = File::create(&src_path).unwrap();
        src.set_len(256 << 20).unwrap();
        src.seek(SeekFrom::Start(100 << 20)).unwrap();
        src.write_all(b"in the middle").unwrap();
        src.seek(SeekFrom::Start((256 << 20) - 4)).unwrap();
        src.write_all(b"tail").unwrap();
        drop(src);
        let from = File::open(&src_path).unwrap();
        let to = File::options().read(true).write(true).create_new(true).open(dir.path().join("dst")).unwrap();
        let n = copy_sparse(&from, &to).unwrap();
        assert!(n < 16 << 20, "copied {n} bytes of a mostly empty file");
        let m = to.metadata().unwrap();
        assert_eq!(m.len(), 256 << 20);
        assert!(m.blocks() * 512 < 16 << 20, "destination is not sparse: {} blocks", m.blocks());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        File::open(&src_path).unwrap().read_to_end(&mut a).unwrap();
        File::open(dir.path().join("dst")).unwrap().read_to_end(&mut b).unwrap();
        assert!(a == b, "contents differ");
    }

    #[test]
    fn an_all_hole_file_copies_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("s")).unwrap();
        f.set_len(1 << 30).unwrap();
        let to = File::create(dir.path().join("d")).unwrap();
        assert_eq!(copy_sparse(&File::open(dir.path().join("s")).unwrap(), &to).unwrap(), 0);
        assert_eq!(to.metadata().unwrap().len(), 1 << 30);
    }
}
