//! Compiles a parsed policy to a classic-BPF seccomp program, without libseccomp.
//!
//! Layout: dispatch on the audit arch (native, compat, anything else is killed); each
//! arch part refuses what must always fail (x32 calls on x86_64; the whole compat ABI
//! with `deny_compat`), then runs one block per rule — "load nr; not this syscall →
//! next block; argument checks, failing → next block; return the action" — and ends
//! with the default action. Every conditional jump stays inside its block, so the u8
//! jump offsets of classic BPF never overflow; the arch dispatch uses `BPF_JA`.

use super::parse::{Action, ArgCmp, Arch, Op, Policy, Rule, Syscall};
use super::table;

pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;
const X32_BIT: u32 = 0x4000_0000;

#[cfg(target_arch = "x86_64")]
pub const AUDIT_ARCH_NATIVE: u32 = 0xc000_003e;
#[cfg(target_arch = "x86_64")]
pub const AUDIT_ARCH_COMPAT: Option<u32> = Some(0x4000_0003);
#[cfg(target_arch = "aarch64")]
pub const AUDIT_ARCH_NATIVE: u32 = 0xc000_00b7;
#[cfg(target_arch = "aarch64")]
pub const AUDIT_ARCH_COMPAT: Option<u32> = None;

#[cfg(target_arch = "x86_64")]
const NATIVE_TABLE: &[(&str, u32)] = table::X86_64;
#[cfg(target_arch = "x86_64")]
const COMPAT_TABLE: &[(&str, u32)] = table::I386;
#[cfg(not(target_arch = "x86_64"))]
const NATIVE_TABLE: &[(&str, u32)] = &[];
#[cfg(not(target_arch = "x86_64"))]
const COMPAT_TABLE: &[(&str, u32)] = &[];

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// The kernel's limit on a classic-BPF program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error("seccomp program of {0} instructions exceeds the kernel's limit of 4096")]
    TooLong(usize),
    #[error("seccomp rules name syscalls, but this architecture has no syscall table")]
    NoTable,
}

pub fn ret_of(a: Action) -> u32 {
    match a {
        Action::Kill => RET_KILL_PROCESS,
        Action::Errno(e) => RET_ERRNO | u32::from(e),
        Action::Allow => RET_ALLOW,
        Action::Trap => RET_TRAP,
    }
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jmp(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// One instruction of a block whose "fail" target (the next block) is not known yet.
enum Ins {
    Fixed(libc::sock_filter),
    /// A jump whose true (`on_true`) or false branch goes to the block's end.
    FailOn { ins: libc::sock_filter, on_true: bool },
}

fn arg_offsets(index: u8) -> (u32, u32) {
    let lo = 16 + 8 * u32::from(index);
    (lo, lo + 4)
}

/// Instructions that fall through when the comparison holds and jump to the block's
/// end when it does not.
fn arg_check(c: &ArgCmp, out: &mut Vec<Ins>) {
    let (lo_off, hi_off) = arg_offsets(c.index);
    let (v_hi, v_lo) = ((c.value >> 32) as u32, c.value as u32);
    let fixed = |i| Ins::Fixed(i);
    let fail_t = |ins| Ins::FailOn { ins, on_true: true };
    let fail_f = |ins| Ins::FailOn { ins, on_true: false };
    match c.op {
        Op::Eq => out.extend([
            fixed(stmt(LD_W_ABS, hi_off)),
            fail_f(jmp(JEQ_K, v_hi, 0, 0)),
            fixed(stmt(LD_W_ABS, lo_off)),
            fail_f(jmp(JEQ_K, v_lo, 0, 0)),
        ]),
        Op::MaskedEq(m) => out.extend([
            fixed(stmt(LD_W_ABS, hi_off)),
            fixed(stmt(AND_K, (m >> 32) as u32)),
            fail_f(jmp(JEQ_K, v_hi & (m >> 32) as u32, 0, 0)),
            fixed(stmt(LD_W_ABS, lo_off)),
            fixed(stmt(AND_K, m as u32)),
            fail_f(jmp(JEQ_K, v_lo & m as u32, 0, 0)),
        ]),
        // Holds when either word differs.
        Op::Ne => out.extend([
            fixed(stmt(LD_W_ABS, hi_off)),
            fixed(jmp(JEQ_K, v_hi, 0, 2)),
            fixed(stmt(LD_W_ABS, lo_off)),
            fail_t(jmp(JEQ_K, v_lo, 0, 0)),
        ]),
        // hi > v_hi holds; hi < v_hi fails; equal → compare lo.
        Op::Gt | Op::Ge => out.extend([
            fixed(stmt(LD_W_ABS, hi_off)),
            fixed(jmp(JGT_K, v_hi, 3, 0)),
            fail_f(jmp(JEQ_K, v_hi, 0, 0)),
            fixed(stmt(LD_W_ABS, lo_off)),
            fail_f(jmp(if c.op == Op::Gt { JGT_K } else { JGE_K }, v_lo, 0, 0)),
        ]),
        // hi < v_hi holds; hi > v_hi fails; equal → compare lo.
        Op::Lt | Op::Le => out.extend([
            fixed(stmt(LD_W_ABS, hi_off)),
            fixed(jmp(JGE_K, v_hi, 0, 3)),
            fail_f(jmp(JEQ_K, v_hi, 0, 0)),
            fixed(stmt(LD_W_ABS, lo_off)),
            fail_t(jmp(if c.op == Op::Lt { JGE_K } else { JGT_K }, v_lo, 0, 0)),
        ]),
    }
}

fn block(nr: u32, args: &[ArgCmp], action: Action, out: &mut Vec<libc::sock_filter>) {
    let mut body = Vec::new();
    for a in args {
        arg_check(a, &mut body);
    }
    body.push(Ins::Fixed(stmt(RET_K, ret_of(action))));
    out.push(stmt(LD_W_ABS, 0));
    // Blocks hold at most 6 checks of 6 instructions, so every offset fits in u8.
    out.push(jmp(JEQ_K, nr, 0, body.len() as u8));
    let len = body.len();
    for (i, ins) in body.into_iter().enumerate() {
        out.push(match ins {
            Ins::Fixed(f) => f,
            Ins::FailOn { mut ins, on_true } => {
                let off = (len - i - 1) as u8;
                if on_true { ins.jt = off } else { ins.jf = off }
                ins
            }
        });
    }
}

fn lookup(table: &[(&str, u32)], name: &str) -> Option<u32> {
    table.iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr)
}

/// The blocks of one arch part. Names the arch does not know are skipped, as LXC does.
fn part(rules: &[Rule], arch: Arch, table: &[(&str, u32)], out: &mut Vec<libc::sock_filter>) -> Result<(), CompileError> {
    for r in rules.iter().filter(|r| r.arch == Arch::All || r.arch == arch) {
        match &r.syscall {
            Syscall::RejectForceUmount => {
                if let Some(nr) = lookup(table, "umount2") {
                    let force = libc::MNT_FORCE as u64;
                    block(nr, &[ArgCmp { index: 1, value: force, op: Op::MaskedEq(force) }], r.action, out);
                }
            }
            Syscall::Nr(nr) => block(*nr, &r.args, r.action, out),
            Syscall::Name(name) => {
                if table.is_empty() {
                    return Err(CompileError::NoTable);
                }
                if let Some(nr) = lookup(table, name) {
                    block(nr, &r.args, r.action, out);
                }
            }
        }
    }
    Ok(())
}

/// The program for `policy`; `deny_compat` refuses every call through the compat ABI.
pub fn compile(policy: &Policy, deny_compat: bool) -> Result<Vec<libc::sock_filter>, CompileError> {
    let enosys = RET_ERRNO | libc::ENOSYS as u32;
    let default = ret_of(policy.default_action);
    let mut native = vec![stmt(LD_W_ABS, 0)];
    if cfg!(target_arch = "x86_64") {
        native.push(jmp(JGE_K, X32_BIT, 0, 1));
        native.push(stmt(RET_K, enosys));
    } else {
        native.clear();
    }
    part(&policy.rules, Arch::Native, NATIVE_TABLE, &mut native)?;
    native.push(stmt(RET_K, default));

    let mut compat = Vec::new();
    if deny_compat {
        compat.push(stmt(RET_K, enosys));
    } else {
        part(&policy.rules, Arch::Compat, COMPAT_TABLE, &mut compat)?;
        compat.push(stmt(RET_K, default));
    }

    // 0 ld arch; 1 jeq native; 2 ja native; [3 jeq compat; 4 ja compat]; kill; native…; compat…
    let mut p = vec![stmt(LD_W_ABS, 4)];
    let head = if AUDIT_ARCH_COMPAT.is_some() { 6 } else { 4 };
    p.push(jmp(JEQ_K, AUDIT_ARCH_NATIVE, 0, 1));
    p.push(stmt(JA, (head - 3) as u32));
    if let Some(c) = AUDIT_ARCH_COMPAT {
        p.push(jmp(JEQ_K, c, 0, 1));
        p.push(stmt(JA, (head - 5 + native.len()) as u32));
    }
    p.push(stmt(RET_K, RET_KILL_PROCESS));
    p.extend(native);
    if AUDIT_ARCH_COMPAT.is_some() {
        p.extend(compat);
    }
    if p.len() > MAX_INSNS {
        return Err(CompileError::TooLong(p.len()));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    /// Runs a classic-BPF seccomp program on (arch, nr, args) like the kernel would.
    pub(crate) fn run(p: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    let o = i.k as usize;
                    acc = u32::from_ne_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
                }
                AND_K => acc &= i.k,
                JA => pc += i.k as usize,
                JEQ_K | JGE_K | JGT_K => {
                    let t = match i.code {
                        JEQ_K => acc == i.k,
                        JGE_K => acc >= i.k,
                        _ => acc > i.k,
                    };
                    pc += if t { i.jt } else { i.jf } as usize;
                }
                RET_K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
            assert!(pc < p.len(), "fell off the program");
        }
    }

    const NATIVE: u32 = AUDIT_ARCH_NATIVE;
    const NR_MOUNT: u32 = libc::SYS_mount as u32;
    const NR_GETPID: u32 = libc::SYS_getpid as u32;

    #[test]
    fn denylist_and_defaults() {
        let p = compile(&parse("2\ndenylist\nreject_force_umount\n[all]\nmount errno 1\nchroot\n").unwrap(), false).unwrap();
        assert_eq!(run(&p, NATIVE, NR_MOUNT, [0; 6]), RET_ERRNO | 1);
        assert_eq!(run(&p, NATIVE, libc::SYS_chroot as u32, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(run(&p, NATIVE, NR_GETPID, [0; 6]), RET_ALLOW);
        let um = libc::SYS_umount2 as u32;
        assert_eq!(run(&p, NATIVE, um, [0, libc::MNT_FORCE as u64 | 8, 0, 0, 0, 0]), RET_ERRNO | libc::EACCES as u32);
        assert_eq!(run(&p, NATIVE, um, [0, 8, 0, 0, 0, 0]), RET_ALLOW);
        // x32 calls and unknown arches.
        assert_eq!(run(&p, NATIVE, NR_MOUNT | X32_BIT, [0; 6]), RET_ERRNO | libc::ENOSYS as u32);
        assert_eq!(run(&p, 0x1234, NR_GETPID, [0; 6]), RET_KILL_PROCESS);
        if let Some(c) = AUDIT_ARCH_COMPAT {
            // i386 mount is 21: denied through the compat table too.
            assert_eq!(run(&p, c, 21, [0; 6]), RET_ERRNO | 1);
            assert_eq!(run(&p, c, 20, [0; 6]), RET_ALLOW);
            let p = compile(&parse("2\ndenylist\n").unwrap(), true).unwrap();
            assert_eq!(run(&p, c, 20, [0; 6]), RET_ERRNO | libc::ENOSYS as u32);
        }
    }

    #[test]
    fn allowlist() {
        let p = compile(&parse("2\nallowlist\n[all]\ngetpid\nwrite\n").unwrap(), false).unwrap();
        assert_eq!(run(&p, NATIVE, NR_GETPID, [0; 6]), RET_ALLOW);
        assert_eq!(run(&p, NATIVE, NR_MOUNT, [0; 6]), RET_KILL_PROCESS);
        let p = compile(&parse("2\nallowlist errno 38\ngetpid\n").unwrap(), false).unwrap();
        assert_eq!(run(&p, NATIVE, NR_MOUNT, [0; 6]), RET_ERRNO | 38);
    }

    #[test]
    fn argument_comparisons() {
        let big = 0x1_0000_0005u64;
        let cases: &[(&str, u64, bool)] = &[
            ("==", big, true),
            ("==", 5, false),
            ("!=", 5, true),
            ("!=", big, false),
            (">", big - 1, true),
            (">", big, false),
            (">=", big, true),
            (">=", big + 1, false),
            ("<", big + 1, true),
            ("<", big, false),
            ("<=", big, true),
            ("<=", 4, false),
            ("<", 0x2_0000_0000, true),
            (">", 0x2_0000_0000, false),
        ];
        for (op, v, hit) in cases {
            let p = compile(&parse(&format!("2\ndenylist\nmount errno 1 [2,{v},{op}]\n")).unwrap(), false).unwrap();
            let r = run(&p, NATIVE, NR_MOUNT, [0, 0, big, 0, 0, 0]);
            assert_eq!(r == RET_ERRNO | 1, *hit, "arg {big:#x} {op} {v:#x}");
        }
        let p = compile(&parse("2\ndenylist\nmknod errno 1 [1,8192,SCMP_CMP_MASKED_EQ,61440] [0,7,==]\n").unwrap(), false).unwrap();
        let nr = libc::SYS_mknod as u32;
        assert_eq!(run(&p, NATIVE, nr, [7, 0o20644, 0, 0, 0, 0]), RET_ERRNO | 1);
        assert_eq!(run(&p, NATIVE, nr, [8, 0o20644, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, NATIVE, nr, [7, 0o60644, 0, 0, 0, 0]), RET_ALLOW);
    }

    #[test]
    fn long_allowlist_stays_in_range() {
        let names: Vec<&str> = NATIVE_TABLE.iter().map(|(n, _)| *n).collect();
        let p = compile(&parse(&format!("2\nallowlist\n{}\n", names.join("\n"))).unwrap(), false).unwrap();
        assert_eq!(run(&p, NATIVE, NR_MOUNT, [0; 6]), RET_ALLOW);
        assert_eq!(run(&p, NATIVE, 9999, [0; 6]), RET_KILL_PROCESS);
    }
}
