//! Creating inodes from inside a running container: a forked helper joins the
//! container's mount and user namespaces as its root, resolves the path in-root and
//! hands back the new file's descriptor over a socket.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use super::super::{ioe, msg, Error};
use crate::sys;

#[derive(Debug)]
pub(super) struct Creator {
    userns: OwnedFd,
    mntns: OwnedFd,
}

pub(super) enum Op<'a> {
    Open { path: &'a Path, flags: i32, mode: u32 },
    Mkdir { path: &'a Path, mode: u32 },
    Symlink { path: &'a Path, target: &'a Path },
}

impl Creator {
    pub(super) fn open(pid: i32) -> Result<Self, Error> {
        let o = |ns: &str| -> Result<OwnedFd, Error> {
            Ok(std::fs::File::open(format!("/proc/{pid}/ns/{ns}")).map_err(ioe(format!("open {ns} namespace")))?.into())
        };
        Ok(Creator { userns: o("user")?, mntns: o("mnt")? })
    }

    /// Runs `op` in a forked helper; returns the opened descriptor for `Op::Open`.
    pub(super) fn run(&self, op: Op<'_>) -> Result<Option<OwnedFd>, Error> {
        let (psock, csock) = msg::pair().map_err(ioe("socketpair"))?;
        let pid = sys::fork().map_err(ioe("fork"))?;
        if pid == 0 {
            drop(psock);
            let code = match self.child(&op) {
                Ok(fd) => {
                    let raw = fd.as_ref().map(|f| f.as_raw_fd());
                    let _ = msg::send(csock.as_fd(), msg::GO, b"", raw);
                    0
                }
                Err(e) => {
                    let _ = msg::send(csock.as_fd(), msg::FAILED, e.as_bytes(), None);
                    1
                }
            };
            sys::exit_now(code);
        }
        drop(csock);
        let r = msg::expect(psock.as_fd(), msg::GO);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        r.map(|m| m.fd).map_err(Error::Setup)
    }

    fn child(&self, op: &Op<'_>) -> Result<Option<OwnedFd>, String> {
        let e = |what: &str| {
            let what = what.to_string();
            move |err: std::io::Error| format!("{what}: {err}")
        };
        sys::setns(self.mntns.as_fd(), libc::CLONE_NEWNS).map_err(e("setns mnt"))?;
        sys::setns(self.userns.as_fd(), libc::CLONE_NEWUSER).map_err(e("setns user"))?;
        nix::unistd::setresgid(0.into(), 0.into(), 0.into()).map_err(|x| format!("setgid: {x}"))?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into()).map_err(|x| format!("setuid: {x}"))?;
        let root = sys::open_path(Path::new("/")).map_err(e("open /"))?;
        let parent_of = |p: &Path| -> Result<(OwnedFd, std::ffi::OsString), String> {
            let name = p.file_name().ok_or_else(|| format!("{} does not name a file", p.display()))?;
            let parent = sys::open_in_root(root.as_fd(), p.parent().unwrap_or(Path::new("/")), libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(e("open parent"))?;
            Ok((parent, name.to_os_string()))
        };
        match op {
            Op::Open { path, flags, mode } => {
                let fd = sys::open_in_root(root.as_fd(), path, *flags, *mode).map_err(e(&format!("open {}", path.display())))?;
                Ok(Some(fd))
            }
            Op::Mkdir { path, mode } => {
                let (parent, name) = parent_of(path)?;
                nix::sys::stat::mkdirat(&parent, name.as_os_str(), nix::sys::stat::Mode::from_bits_truncate(*mode))
                    .map_err(|x| format!("mkdir {}: {x}", path.display()))?;
                Ok(None)
            }
            Op::Symlink { path, target } => {
                let (parent, name) = parent_of(path)?;
                nix::unistd::symlinkat(*target, &parent, name.as_os_str()).map_err(|x| format!("symlink {}: {x}", path.display()))?;
                Ok(None)
            }
        }
    }
}
