//! The start handshake between the daemon and the container's setup processes: one
//! SOCK_SEQPACKET pair, each message a tag byte plus payload and at most one fd.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};

/// Message tags.
pub(crate) const USERNS_READY: u8 = b'U';
pub(crate) const MAPPED: u8 = b'M';
/// An idmapped detached mount for `plan.binds[payload]` (sent before MAPPED).
pub(crate) const BIND_FD: u8 = b'B';
pub(crate) const INIT_PID: u8 = b'P';
pub(crate) const MOUNTED: u8 = b'N';
pub(crate) const GO: u8 = b'G';
pub(crate) const FAILED: u8 = b'E';

pub(crate) fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(io::Error::from)
}

pub(crate) fn send(sock: BorrowedFd<'_>, tag: u8, payload: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    let mut buf = Vec::with_capacity(payload.len() + 1);
    buf.push(tag);
    buf.extend_from_slice(payload);
    let iov = [io::IoSlice::new(&buf)];
    let fds: Vec<RawFd> = fd.into_iter().collect();
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A received message; `None` tag means the peer closed (exec succeeded or it died).
pub(crate) struct Msg {
    pub tag: Option<u8>,
    pub payload: Vec<u8>,
    pub fd: Option<OwnedFd>,
}

pub(crate) fn recv(sock: BorrowedFd<'_>) -> io::Result<Msg> {
    let mut buf = vec![0u8; 4096];
    let mut cbuf = nix::cmsg_space!([RawFd; 1]);
    loop {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let r = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cbuf), MsgFlags::MSG_CMSG_CLOEXEC);
        let r = match r {
            Ok(r) => r,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fd = None;
        if let Ok(cmsgs) = r.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for f in fds {
                        // SAFETY: the kernel installed this descriptor for us.
                        let owned = unsafe { OwnedFd::from_raw_fd(f) };
                        if fd.is_none() {
                            fd = Some(owned);
                        }
                    }
                }
            }
        }
        let n = r.bytes;
        if n == 0 {
            return Ok(Msg { tag: None, payload: vec![], fd });
        }
        return Ok(Msg { tag: Some(buf[0]), payload: buf[1..n].to_vec(), fd });
    }
}

/// Waits for `want`; a FAILED message or EOF becomes an error carrying the child's text.
pub(crate) fn expect(sock: BorrowedFd<'_>, want: u8) -> Result<Msg, String> {
    let m = recv(sock).map_err(|e| format!("handshake: {e}"))?;
    match m.tag {
        Some(t) if t == want => Ok(m),
        Some(FAILED) => Err(String::from_utf8_lossy(&m.payload).into_owned()),
        Some(t) => Err(format!("handshake: unexpected message {:?}", t as char)),
        None => Err(format!("handshake: setup process exited while waiting for {:?}", want as char)),
    }
}
