//! LXD's default seccomp deny-list as a raw classic-BPF program: kernel module and
//! kexec calls, open_by_handle_at and the keyring calls fail with ENOSYS, `umount2`
//! with MNT_FORCE fails with EPERM, and x32-ABI syscalls are refused.

use std::collections::BTreeMap;
use std::io;

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const X32_BIT: u32 = 0x4000_0000;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// Syscalls denied with ENOSYS.
pub fn denied_syscalls() -> Vec<(&'static str, i64)> {
    vec![
        ("kexec_load", libc::SYS_kexec_load),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("open_by_handle_at", libc::SYS_open_by_handle_at),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("delete_module", libc::SYS_delete_module),
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
    ]
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Which parts of the filter are on (recorded in the runtime state so exec gets the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Flags {
    pub deny_default: bool,
    pub deny_compat: bool,
}

/// The flags for a config; None when no filter is needed.
pub fn flags(config: &BTreeMap<String, String>) -> Option<Flags> {
    let flag = |k: &str| config.get(k).map(|v| super::spec::is_true(v));
    let deny_default = flag("security.syscalls.deny_default").unwrap_or(true);
    let deny_compat = flag("security.syscalls.deny_compat").unwrap_or(false);
    (deny_default || deny_compat).then_some(Flags { deny_default, deny_compat })
}

/// The filter for a config: None when `security.syscalls.deny_default=false` and
/// `security.syscalls.deny_compat` is not set.
pub fn build(config: &BTreeMap<String, String>) -> Option<Vec<libc::sock_filter>> {
    flags(config).map(|f| program_with(f.deny_default, f.deny_compat))
}

/// The default program (deny-list on, compat syscalls allowed).
pub fn program() -> Vec<libc::sock_filter> {
    program_with(true, false)
}

/// `deny_compat` refuses every syscall made through another ABI (i386 on x86_64).
pub fn program_with(deny_default: bool, deny_compat: bool) -> Vec<libc::sock_filter> {
    let other_arch = if deny_compat { SECCOMP_RET_ERRNO | libc::ENOSYS as u32 } else { SECCOMP_RET_ALLOW };
    let mut p = vec![
        stmt(LD_W_ABS, 4),
        jump(JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(RET_K, other_arch),
        stmt(LD_W_ABS, 0),
        jump(JGE_K, X32_BIT, 0, 1),
        stmt(RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ];
    if deny_default {
        for (_, nr) in denied_syscalls() {
            p.push(jump(JEQ_K, nr as u32, 0, 1));
            p.push(stmt(RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
        }
        // umount2(target, flags): refuse MNT_FORCE (args[1], low word at offset 24).
        p.push(jump(JEQ_K, libc::SYS_umount2 as u32, 0, 3));
        p.push(stmt(LD_W_ABS, 24));
        p.push(jump(JSET_K, libc::MNT_FORCE as u32, 0, 1));
        p.push(stmt(RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32));
    }
    p.push(stmt(RET_K, SECCOMP_RET_ALLOW));
    p
}

/// Installs the filter on the calling thread (needs CAP_SYS_ADMIN in its user namespace).
pub fn install(prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: fprog points at a live program for the duration of the call.
    let rc = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog as *const libc::sock_fprog) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_shape() {
        let p = program();
        assert_eq!(p.last().map(|i| i.k), Some(SECCOMP_RET_ALLOW));
        // Every jump stays inside the program.
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == libc::BPF_JMP as u16 {
                assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < p.len(), "jump out of range at {i}");
            }
        }
        let mut c = BTreeMap::new();
        assert!(build(&c).is_some());
        c.insert("security.syscalls.deny_default".into(), "false".into());
        assert!(build(&c).is_none());
        c.insert("security.syscalls.deny_compat".into(), "true".into());
        let p = build(&c).unwrap();
        assert_eq!(p[2].k, SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
        assert!(p.len() < program().len());
    }

    /// In a forked child: install, then kexec_load and keyctl give ENOSYS while getpid works.
    #[test]
    fn filter_denies_in_child() {
        let pid = crate::sys::fork().unwrap();
        if pid == 0 {
            // SAFETY: prctl with integer args in the forked child.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            let ok = install(&program()).is_ok();
            // SAFETY: raw syscalls with harmless arguments.
            let (k, e1) = unsafe { (libc::syscall(libc::SYS_kexec_load, 0, 0, 0, 0), *libc::__errno_location()) };
            let (kc, e2) = unsafe { (libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0), *libc::__errno_location()) };
            let me = unsafe { libc::getpid() };
            let good = ok && k == -1 && e1 == libc::ENOSYS && kc == -1 && e2 == libc::ENOSYS && me > 0;
            crate::sys::exit_now(if good { 0 } else { 1 });
        }
        let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        assert_eq!(st, nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0));
    }
}
