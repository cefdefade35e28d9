//! Root tier: seccomp policies set through the real `lxc` 5.0.2 client —
//! `security.syscalls.deny` (kept next to the default deny-list), allow-list mode,
//! `raw.seccomp`, and the 400s for keys LXD declares mutually exclusive.
//!
//! The denied syscall is sethostname(2), made observable by busybox `hostname NAME`
//! (allowed in an unprivileged container's own UTS namespace unless the filter says no).

mod ct_support;

use berth_tests::Daemon;
use ct_support::{can_run, exec, make_container, Reaper};
use serde_json::{json, Value};

/// Enough for busybox init, sh and the applets used here, and for berthd's exec path
/// after the filter is installed (close_range, execve); sethostname is not in it.
const ALLOW: &[&str] = &[
    "read", "write", "open", "openat", "close", "close_range", "stat", "fstat", "lstat", "newfstatat", "statx", "poll",
    "ppoll", "lseek", "mmap", "mprotect", "munmap", "brk", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "sigaltstack", "ioctl", "pread64", "pwrite64", "readv", "writev", "access",
    "faccessat", "faccessat2", "pipe", "pipe2", "select", "pselect6", "dup", "dup2", "dup3", "nanosleep",
    "clock_nanosleep", "clock_gettime", "gettimeofday", "time", "alarm", "getpid", "getppid", "gettid", "clone",
    "clone3", "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "kill", "tgkill",
    "tkill", "uname", "fcntl", "getdents", "getdents64", "getcwd", "chdir", "fchdir", "getuid", "getgid",
    "geteuid", "getegid", "getresuid", "getresgid", "setuid", "setgid", "setresuid", "setresgid", "getgroups",
    "setgroups", "setsid", "setpgid", "getpgid", "getpgrp", "getsid", "umask", "getrlimit", "prlimit64",
    "sysinfo", "prctl", "arch_prctl", "set_tid_address", "set_robust_list", "futex", "rseq", "getrandom",
    "madvise", "mremap", "readlink", "readlinkat", "reboot", "restart_syscall", "sched_yield",
    "sched_getaffinity", "capget", "capset", "unlink", "unlinkat", "mkdir", "mkdirat", "rename", "renameat",
];

#[test]
fn lxc_seccomp_deny_allow_raw_and_exclusions() {
    if !can_run("lxc_seccomp_deny_allow_raw_and_exclusions") {
        return;
    }
    let d = Daemon::start();
    let _reaper = Reaper(d.data_dir().to_path_buf());
    // Defaults: no filter entries for sethostname, so it works.
    make_container(&d, "sc-default", &[]);
    // A deny entry with an action (EPERM), next to the default list, and one without
    // (LXC's rule for a denylist entry without action: kill).
    make_container(&d, "sc-deny", &["security.syscalls.deny=sethostname errno 1"]);
    make_container(&d, "sc-kill", &["security.syscalls.deny=sethostname"]);
    let allow = format!("security.syscalls.allow={}", ALLOW.join("\n"));
    make_container(&d, "sc-allow", &[allow.as_str()]);
    make_container(&d, "sc-raw", &["raw.seccomp=2\ndenylist\n[all]\nsethostname errno 13\n"]);
    for c in ["sc-default", "sc-deny", "sc-kill", "sc-allow", "sc-raw"] {
        d.lxc_ok(&["start", c]);
    }

    let (code, _, err) = exec(&d, "sc-default", &["hostname", "renamed"]);
    assert_eq!(code, 0, "default filter: {err}");
    assert_eq!(exec(&d, "sc-default", &["hostname"]).1.trim(), "renamed");

    let (code, _, err) = exec(&d, "sc-deny", &["hostname", "renamed"]);
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "deny errno 1: {err}");
    assert_eq!(exec(&d, "sc-deny", &["hostname"]).1.trim(), "sc-deny");
    assert_eq!(exec(&d, "sc-deny", &["echo", "ok"]).1, "ok\n");

    // Killed by SIGSYS: 128 + 31.
    let (code, _, _) = exec(&d, "sc-kill", &["hostname", "renamed"]);
    assert_eq!(code, 128 + nix::libc::SIGSYS);
    assert_eq!(exec(&d, "sc-kill", &["hostname"]).1.trim(), "sc-kill");

    // Allow-list: what is listed works (init keeps running), the rest kills.
    assert_eq!(exec(&d, "sc-allow", &["echo", "ok"]), (0, "ok\n".into(), String::new()));
    let (code, _, _) = exec(&d, "sc-allow", &["hostname", "renamed"]);
    assert_eq!(code, 128 + nix::libc::SIGSYS);
    assert_eq!(d.get("/1.0/instances/sc-allow")["metadata"]["status"], "Running");

    let (code, _, err) = exec(&d, "sc-raw", &["hostname", "renamed"]);
    assert_ne!(code, 0);
    assert!(err.contains("Permission denied"), "raw.seccomp errno 13: {err}");

    // The default deny-list stays on next to security.syscalls.deny: umount -f is refused
    // (EACCES from reject_force_umount) rather than reaching the kernel.
    let (_, _, err) = exec(&d, "sc-deny", &["sh", "-c", "mkdir -p /tmp/m && busybox umount -f /tmp/m"]);
    assert!(err.contains("Permission denied"), "umount -f: {err}");

    // Mutually exclusive keys: 400 through the API, an error through lxc.
    let r = d.req("PATCH", "/1.0/instances/sc-deny", Some(json!({"config": {"security.syscalls.allow": "read"}})));
    assert_eq!(r.status, 400, "{}", r.json());
    let r = d.req("PATCH", "/1.0/instances/sc-allow", Some(json!({"config": {"raw.seccomp": "2\ndenylist\n"}})));
    assert_eq!(r.status, 400, "{}", r.json());
    let r = d.req("PATCH", "/1.0/instances/sc-allow", Some(json!({"config": {"security.syscalls.deny_default": "true"}})));
    assert_eq!(r.status, 400, "{}", r.json());
    let o = d.lxc(&["config", "set", "sc-raw", "security.syscalls.deny", "mount"]);
    assert!(!o.status.success());
    let r = d.req(
        "POST",
        "/1.0/instances",
        Some(json!({"name": "sc-bad", "source": {"type": "none"},
                    "config": {"security.syscalls.allow": "read", "security.syscalls.deny": "mount"}})),
    );
    assert_eq!(r.status, 400, "{}", r.json());

    // A raw.seccomp LXC cannot parse is accepted as config (as LXD does) and fails the start.
    make_container(&d, "sc-badraw", &["raw.seccomp=2\ngreylist\n"]);
    let o = d.lxc(&["start", "sc-badraw"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("greylist"), "{}", String::from_utf8_lossy(&o.stderr));
    let st: Value = d.get("/1.0/instances/sc-badraw");
    assert_eq!(st["metadata"]["status"], "Stopped");

    for c in ["sc-default", "sc-deny", "sc-kill", "sc-allow", "sc-raw"] {
        d.lxc_ok(&["stop", "--force", c]);
    }
}
