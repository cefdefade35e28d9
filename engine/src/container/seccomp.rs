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

/// The filter for a config, or None when `security.syscalls.deny_default=false`.
pub fn build(config: &BTreeMap<String, String>) -> Option<Vec<libc::sock_filter>> {
    if config.get("security.syscalls.deny_default").is_some_and(|v| !super::spec::is_true(v)) {
        return None;
    }
    Some(program())
}

/// The default program.
pub fn program() -> Vec<libc::sock_filter> {
    let mut p = vec![
        stmt(LD_W_ABS, 4),
        // Other architectures (i386 compat) are not filtered by this list.
        jump(JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(RET_K, SECCOMP_RET_ALLOW),
        stmt(LD_W_ABS, 0),
        jump(JGE_K, X32_BIT, 0, 1),
        stmt(RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ];
    for (_, nr) in denied_syscalls() {
        p.push(jump(JEQ_K, nr as u32, 0, 1));
        p.push(stmt(RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    }
    // umount2(target, flags): refuse MNT_FORCE (args[1], low word at offset 24).
    p.push(jump(JEQ_K, libc::SYS_umount2 as u32, 0, 3));
    p.push(stmt(LD_W_ABS, 24));
    p.push(jump(JSET_K, libc::MNT_FORCE as u32, 0, 1));
    p.push(stmt(RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32));
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
