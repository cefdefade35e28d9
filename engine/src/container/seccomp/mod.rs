//! Seccomp filters as LXD configures them: `security.syscalls.{deny_default,deny,allow,
//! deny_compat}` and `raw.seccomp` become a policy in LXC's text format (`parse`), which
//! is compiled to a classic-BPF program (`bpf`) without libseccomp. The default deny-list
//! makes kernel module and kexec calls, open_by_handle_at and the keyring calls fail with
//! ENOSYS and `umount2` with MNT_FORCE with EACCES; x32-ABI syscalls are always refused.

use std::collections::BTreeMap;
use std::io;

mod bpf;
mod parse;
mod table;

pub use bpf::CompileError;
pub use parse::ParseError;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Compile(#[from] CompileError),
}

/// berth's default deny-list in LXC's policy format: LXD's (`reject_force_umount`, kexec,
/// open_by_handle_at, module loading) plus the keyring calls.
pub const DEFAULT_POLICY: &str = "reject_force_umount  # comment this to allow umount -f;  not recommended
[all]
kexec_load errno 38
kexec_file_load errno 38
open_by_handle_at errno 38
init_module errno 38
finit_module errno 38
delete_module errno 38
keyctl errno 38
add_key errno 38
request_key errno 38
";

/// Which parts of the filter were on, as written by berthd before policies existed
/// (still read from the runtime state of containers started by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Flags {
    pub deny_default: bool,
    pub deny_compat: bool,
}

/// What a container's filter is made from; kept in the runtime state so exec gets the same.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Spec {
    /// The policy in LXC's text format.
    pub text: String,
    /// Refuse every syscall made through the compat ABI (i386 on x86_64).
    pub deny_compat: bool,
}

impl Spec {
    pub fn program(&self) -> Result<Vec<libc::sock_filter>, SeccompError> {
        Ok(bpf::compile(&parse::parse(&self.text)?, self.deny_compat)?)
    }
}

impl From<Flags> for Spec {
    fn from(f: Flags) -> Self {
        let mut text = String::from("2\ndenylist\n[all]\n");
        if f.deny_default {
            text.push_str(DEFAULT_POLICY);
        }
        Spec { text, deny_compat: f.deny_compat }
    }
}

/// The first non-empty value of `keys` (current name, then its legacy alias).
fn get<'a>(config: &'a BTreeMap<String, String>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().filter_map(|k| config.get(*k)).map(|v| v.trim()).find(|v| !v.is_empty())
}

fn with_newline(s: &str) -> String {
    if s.ends_with('\n') { s.to_string() } else { format!("{s}\n") }
}

/// The policy for an instance config, built as LXD's `seccompGetPolicyContent` does:
/// `raw.seccomp` replaces everything; `security.syscalls.allow` gives an allowlist;
/// otherwise a denylist of the default policy (unless `deny_default=false`) and
/// `security.syscalls.deny`. None when that filter would allow everything.
pub fn spec(config: &BTreeMap<String, String>) -> Option<Spec> {
    let flag = |keys: &[&str]| get(config, keys).map(super::spec::is_true);
    if let Some(raw) = get(config, &["raw.seccomp"]) {
        return Some(Spec { text: with_newline(raw), deny_compat: false });
    }
    if let Some(allow) = get(config, &["security.syscalls.allow", "security.syscalls.whitelist"]) {
        return Some(Spec { text: format!("2\nallowlist\n[all]\n{}", with_newline(allow)), deny_compat: false });
    }
    let deny_default = flag(&["security.syscalls.deny_default", "security.syscalls.blacklist_default"]).unwrap_or(true);
    let deny_compat = flag(&["security.syscalls.deny_compat", "security.syscalls.blacklist_compat"]).unwrap_or(false);
    let deny = get(config, &["security.syscalls.deny", "security.syscalls.blacklist"]);
    if !deny_default && !deny_compat && deny.is_none() {
        return None;
    }
    let mut text = String::from("2\ndenylist\n[all]\n");
    if deny_default {
        text.push_str(DEFAULT_POLICY);
    }
    if let Some(d) = deny {
        text.push_str("[all]\n");
        text.push_str(&with_newline(d));
    }
    Some(Spec { text, deny_compat })
}

/// The default program (deny-list on, compat syscalls allowed).
pub fn program() -> Vec<libc::sock_filter> {
    program_with(true, false)
}

/// The program berthd used before policies: the default deny-list and/or refusing the
/// compat ABI.
pub fn program_with(deny_default: bool, deny_compat: bool) -> Vec<libc::sock_filter> {
    let spec = Spec::from(Flags { deny_default, deny_compat });
    // The fixed default policy always parses and compiles (tested below).
    spec.program().unwrap_or_else(|_| vec![libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: bpf::RET_KILL_PROCESS }])
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

    fn cfg(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn program_shape() {
        let p = program();
        assert_eq!(p.last().map(|i| i.code), Some((libc::BPF_RET | libc::BPF_K) as u16));
        // Every conditional jump stays inside the program.
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == libc::BPF_JMP as u16 {
                let far = if ins.code == (libc::BPF_JMP | libc::BPF_JA) as u16 { ins.k as usize } else { ins.jt.max(ins.jf) as usize };
                assert!(i + 1 + far < p.len(), "jump out of range at {i}");
            }
        }
    }

    #[test]
    fn specs_from_config() {
        let s = spec(&cfg(&[])).unwrap();
        assert!(s.text.starts_with("2\ndenylist\n") && s.text.contains("kexec_load errno 38"));
        assert!(!s.deny_compat);
        assert!(spec(&cfg(&[("security.syscalls.deny_default", "false")])).is_none());
        let s = spec(&cfg(&[("security.syscalls.deny_default", "false"), ("security.syscalls.deny_compat", "true")])).unwrap();
        assert!(s.deny_compat && !s.text.contains("kexec"));
        // The default list is kept next to security.syscalls.deny.
        let s = spec(&cfg(&[("security.syscalls.deny", "sethostname errno 1")])).unwrap();
        assert!(s.text.contains("kexec_load errno 38") && s.text.ends_with("[all]\nsethostname errno 1\n"));
        let s = spec(&cfg(&[("security.syscalls.blacklist", "mount")])).unwrap();
        assert!(s.text.ends_with("mount\n"));
        let s = spec(&cfg(&[("security.syscalls.allow", "read\nwrite")])).unwrap();
        assert_eq!(s.text, "2\nallowlist\n[all]\nread\nwrite\n");
        let s = spec(&cfg(&[("raw.seccomp", "2\ndenylist\nmount")])).unwrap();
        assert_eq!(s.text, "2\ndenylist\nmount\n");
        for s in [spec(&cfg(&[])).unwrap(), Spec::from(Flags { deny_default: true, deny_compat: true })] {
            assert!(s.program().is_ok());
        }
        assert!(spec(&cfg(&[("raw.seccomp", "2\nmaybelist\n")])).unwrap().program().is_err());
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
