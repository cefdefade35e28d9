//! The byte side of a console attached over a unix socket (a container's console relay, a
//! VM's QEMU `console.sock`), shared by both drivers' `ConsoleSession`s.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use super::Error;

/// Two clones of one socket, so reads and writes never wait on each other's lock.
pub(crate) struct SocketConsole {
    reader: Mutex<UnixStream>,
    writer: Mutex<UnixStream>,
}

fn lock(m: &Mutex<UnixStream>) -> std::sync::MutexGuard<'_, UnixStream> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SocketConsole {
    pub(crate) fn new(stream: &UnixStream) -> Result<SocketConsole, Error> {
        let dup = || stream.try_clone().map_err(|e| Error::failed("console attach", e));
        Ok(SocketConsole { reader: Mutex::new(dup()?), writer: Mutex::new(dup()?) })
    }

    pub(crate) fn write(&self, data: &[u8]) -> Result<(), Error> {
        lock(&self.writer).write_all(data).map_err(|e| Error::failed("console write", e))
    }

    /// The next bytes; None once the other side closed (or on an error).
    pub(crate) fn read(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 16 * 1024];
        match lock(&self.reader).read(&mut buf) {
            Ok(0) | Err(_) => None,
            Ok(k) => {
                buf.truncate(k);
                Some(buf)
            }
        }
    }

    /// Ends both directions (a blocked `read` returns None).
    pub(crate) fn close(&self) {
        let _ = lock(&self.writer).shutdown(std::net::Shutdown::Both);
    }
}
