//! berth-console: holds a container's console pty master (fd 3; fd 4 keeps the slave
//! open), appends its output to the console log, relays one attached client over a unix
//! socket, and exits when the container's init exits. Kept tiny on purpose: one runs per
//! container and it must survive the daemon.
//!
//! Usage: berth-console <init-pid> <log-file> <socket-path>
//!
//! The log is capped: past `LOG_CAP` bytes it starts over, so a chatty console cannot
//! fill the disk.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

const LOG_CAP: u64 = 8 << 20;

fn log_write(logf: &mut std::fs::File, data: &[u8]) {
    if logf.metadata().map(|m| m.len() + data.len() as u64 > LOG_CAP).unwrap_or(false) {
        let _ = logf.set_len(0);
    }
    let _ = logf.write_all(data);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: berth-console <init-pid> <log-file> <socket-path>");
        std::process::exit(2);
    }
    let code = match run(&args[1], &args[2], &args[3]) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth-console: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run(pid: &str, log: &str, sock: &str) -> std::io::Result<()> {
    let pid: i32 = pid.parse().map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: fd 3 is the pty master handed over by the daemon.
    let master = unsafe { std::fs::File::from_raw_fd(3) };
    // SAFETY: plain syscall.
    let pfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pfd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pfd as i32) };
    let mut logf = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let _ = std::fs::remove_file(sock);
    let listener = UnixListener::bind(sock)?;
    listener.set_nonblocking(true)?;
    let mut client: Option<UnixStream> = None;
    let mut buf = [0u8; 4096];
    let mut m = &master;
    loop {
        let mut fds = vec![
            libc::pollfd { fd: master.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        if let Some(c) = &client {
            fds.push(libc::pollfd { fd: c.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        // SAFETY: valid pollfd array.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(std::io::Error::last_os_error());
        }
        if fds[0].revents & libc::POLLIN != 0 {
            if let Ok(k) = m.read(&mut buf) {
                log_write(&mut logf, &buf[..k]);
                if let Some(c) = &mut client {
                    if c.write_all(&buf[..k]).is_err() {
                        client = None;
                    }
                }
            }
        }
        if fds[1].revents & libc::POLLIN != 0 {
            if let Ok((s, _)) = listener.accept() {
                let _ = s.set_nonblocking(false);
                client = Some(s);
            }
        }
        if fds.len() > 3 && fds[3].revents != 0 {
            let mut drop_client = true;
            if let Some(c) = &mut client {
                if let Ok(k) = c.read(&mut buf) {
                    if k > 0 {
                        drop_client = false;
                        let _ = m.write_all(&buf[..k]);
                    }
                }
            }
            if drop_client {
                client = None;
            }
        }
        if fds[2].revents != 0 {
            // init exited: drain what is left and go.
            // SAFETY: F_SETFL on our master fd.
            unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
            while let Ok(k) = m.read(&mut buf) {
                if k == 0 {
                    break;
                }
                log_write(&mut logf, &buf[..k]);
            }
            let _ = std::fs::remove_file(sock);
            return Ok(());
        }
        if fds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 && fds[0].revents & libc::POLLIN == 0 {
            // No slave open anywhere yet: avoid spinning.
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
