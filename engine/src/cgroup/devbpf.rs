//! cgroup v2 device control: v2 has no `devices.allow`; access is decided by an eBPF
//! program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup. The v1 rules
//! (`c 1:3 rwm`, `b *:* m`, `a`) are compiled to an allow-list program (deny by default)
//! that replaces whatever berthd attached before.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::Error;

const BPF_PROG_LOAD: i64 = 5;
const BPF_PROG_ATTACH: i64 = 8;
const BPF_PROG_DETACH: i64 = 9;
const BPF_PROG_GET_FD_BY_ID: i64 = 13;
const BPF_PROG_QUERY: i64 = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `bpf_cgroup_dev_ctx.access_type`: low 16 bits the type, high 16 bits the access.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: u8 = 1;
const ACC_READ: u8 = 2;
const ACC_WRITE: u8 = 4;

/// One device rule in v1 syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// None: any type (`a`).
    pub kind: Option<char>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// ACC_* bits.
    pub access: u8,
}

fn bad(rule: &str) -> Error {
    Error::Invalid(format!("bad device rule {rule:?}"))
}

impl Rule {
    /// Parses `TYPE MAJOR:MINOR ACCESS` (`*` for any number) or `a`.
    pub fn parse(rule: &str) -> Result<Rule, Error> {
        let parts: Vec<&str> = rule.split_whitespace().collect();
        let kind = match parts.first().copied() {
            Some("a") => return Ok(Rule { kind: None, major: None, minor: None, access: ACC_MKNOD | ACC_READ | ACC_WRITE }),
            Some("c") => 'c',
            Some("b") => 'b',
            _ => return Err(bad(rule)),
        };
        let (Some(nums), Some(acc)) = (parts.get(1), parts.get(2)) else { return Err(bad(rule)) };
        let (ma, mi) = nums.split_once(':').ok_or_else(|| bad(rule))?;
        let num = |s: &str| -> Result<Option<u32>, Error> { if s == "*" { Ok(None) } else { s.parse().map(Some).map_err(|_| bad(rule)) } };
        let mut access = 0;
        for c in acc.chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => return Err(bad(rule)),
            };
        }
        Ok(Rule { kind: Some(kind), major: num(ma)?, minor: num(mi)?, access })
    }
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const JNE32_K: u8 = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn i(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: dst | (src << 4), off, imm }
}

/// The program: r2 = type, r3 = access, r4 = major, r5 = minor; one block per rule
/// that returns 1 when everything it names matches; 0 at the end.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        i(LDX_W, 2, 1, 0, 0),
        i(AND32_K, 2, 0, 0, 0xffff),
        i(LDX_W, 3, 1, 0, 0),
        i(RSH32_K, 3, 0, 0, 16),
        i(LDX_W, 4, 1, 4, 0),
        i(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules {
        // Checks as (insns, index of the jump in them); their jumps skip to the block end.
        let mut checks: Vec<Vec<Insn>> = Vec::new();
        if let Some(k) = r.kind {
            checks.push(vec![i(JNE32_K, 2, 0, 0, if k == 'b' { DEV_BLOCK } else { DEV_CHAR })]);
        }
        let all = ACC_MKNOD | ACC_READ | ACC_WRITE;
        if r.access & all != all {
            checks.push(vec![i(MOV32_X, 0, 3, 0, 0), i(AND32_K, 0, 0, 0, i32::from(!r.access & all)), i(JNE32_K, 0, 0, 0, 0)]);
        }
        if let Some(m) = r.major {
            checks.push(vec![i(JNE32_K, 4, 0, 0, m as i32)]);
        }
        if let Some(m) = r.minor {
            checks.push(vec![i(JNE32_K, 5, 0, 0, m as i32)]);
        }
        let body_len: usize = checks.iter().map(Vec::len).sum::<usize>() + 2;
        let mut done = 0;
        for c in checks {
            let n = c.len();
            for (k, mut ins) in c.into_iter().enumerate() {
                if k == n - 1 {
                    ins.off = (body_len - done - k - 1) as i16;
                }
                p.push(ins);
            }
            done += n;
        }
        p.push(i(MOV32_K, 0, 0, 0, 1));
        p.push(i(EXIT, 0, 0, 0, 0));
    }
    p.push(i(MOV32_K, 0, 0, 0, 0));
    p.push(i(EXIT, 0, 0, 0, 0));
    p
}

fn bpf(cmd: i64, attr: &mut [u64; 16]) -> io::Result<i64> {
    // SAFETY: attr is a zeroed, 128-byte bpf_attr image valid for the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), std::mem::size_of_val(attr)) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn put_u32(attr: &mut [u64; 16], byte_off: usize, v: u32) {
    let word = &mut attr[byte_off / 8];
    let shift = (byte_off % 8) * 8;
    *word = (*word & !(0xffff_ffffu64 << shift)) | (u64::from(v) << shift);
}

fn load(prog: &[Insn]) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut attr = [0u64; 16];
    put_u32(&mut attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE);
    put_u32(&mut attr, 4, prog.len() as u32);
    attr[1] = prog.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: the kernel returned a new program fd we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Ids of the device programs attached to the cgroup.
fn attached(cg: &OwnedFd) -> io::Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = [0u64; 16];
    put_u32(&mut attr, 0, cg.as_raw_fd() as u32);
    put_u32(&mut attr, 4, BPF_CGROUP_DEVICE);
    attr[2] = ids.as_mut_ptr() as u64;
    put_u32(&mut attr, 24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut attr)?;
    let n = (attr[3] & 0xffff_ffff) as usize;
    Ok(ids[..n.min(ids.len())].to_vec())
}

fn attach_detach(cmd: i64, cg: &OwnedFd, prog: &OwnedFd) -> io::Result<()> {
    let mut attr = [0u64; 16];
    put_u32(&mut attr, 0, cg.as_raw_fd() as u32);
    put_u32(&mut attr, 4, prog.as_raw_fd() as u32);
    put_u32(&mut attr, 8, BPF_CGROUP_DEVICE);
    if cmd == BPF_PROG_ATTACH {
        put_u32(&mut attr, 12, BPF_F_ALLOW_MULTI);
    }
    bpf(cmd, &mut attr).map(|_| ())
}

fn fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = [0u64; 16];
    put_u32(&mut attr, 0, id);
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?;
    // SAFETY: a new fd for the program, owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches the program for `rules` to the cgroup directory `dir`, then detaches the
/// device programs that were attached before (so the new rules replace the old).
pub fn apply(dir: &Path, rules: &[Rule]) -> Result<(), Error> {
    let io = |what: &str| {
        let path = dir.join(what);
        move |source: io::Error| Error::Io { path, source }
    };
    let cg: OwnedFd = std::fs::File::open(dir).map_err(io("open"))?.into();
    let old = attached(&cg).map_err(io("BPF_PROG_QUERY"))?;
    let prog = load(&program(rules)).map_err(io("BPF_PROG_LOAD"))?;
    attach_detach(BPF_PROG_ATTACH, &cg, &prog).map_err(io("BPF_PROG_ATTACH"))?;
    for id in old {
        let fd = fd_by_id(id).map_err(io("BPF_PROG_GET_FD_BY_ID"))?;
        attach_detach(BPF_PROG_DETACH, &cg, &fd).map_err(io("BPF_PROG_DETACH"))?;
    }
    Ok(())
}

/// How many device programs are attached to the cgroup directory `dir`.
pub fn attached_count(dir: &Path) -> Result<usize, Error> {
    let cg: OwnedFd = std::fs::File::open(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?.into();
    attached(&cg).map(|v| v.len()).map_err(|source| Error::Io { path: dir.join("BPF_PROG_QUERY"), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Interprets the generated program the way the kernel would for one access.
    fn run(p: &[Insn], kind: i32, access: u8, major: u32, minor: u32) -> u32 {
        let ctx = [(u32::from(access) << 16) | kind as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0;
        loop {
            let ins = p[pc];
            let (dst, src) = ((ins.regs & 0xf) as usize, (ins.regs >> 4) as usize);
            pc += 1;
            match ins.code {
                LDX_W => {
                    assert_eq!(src, 1);
                    r[dst] = u64::from(ctx[ins.off as usize / 4]);
                }
                AND32_K => r[dst] = u64::from(r[dst] as u32 & ins.imm as u32),
                RSH32_K => r[dst] = u64::from((r[dst] as u32) >> ins.imm),
                MOV32_K => r[dst] = u64::from(ins.imm as u32),
                MOV32_X => r[dst] = u64::from(r[src] as u32),
                JNE32_K => {
                    if r[dst] as u32 != ins.imm as u32 {
                        pc += ins.off as usize;
                    }
                }
                EXIT => return r[0] as u32,
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn rules_parse() {
        assert_eq!(Rule::parse("c 1:3 rwm").unwrap(), Rule { kind: Some('c'), major: Some(1), minor: Some(3), access: 7 });
        assert_eq!(Rule::parse("b *:* m").unwrap(), Rule { kind: Some('b'), major: None, minor: None, access: ACC_MKNOD });
        assert_eq!(Rule::parse("a").unwrap().kind, None);
        for bad in ["", "x 1:3 rwm", "c 1:3", "c 13 rw", "c 1:3 rwx", "c a:3 r"] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn program_decides_like_devices_allow() {
        let rules: Vec<Rule> = ["c *:* m", "c 1:3 rwm", "c 136:* rw", "b 8:0 r"].iter().map(|r| Rule::parse(r).unwrap()).collect();
        let p = program(&rules);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 1, 5), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 8, 1), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 136, 42), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 136, 42), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_WRITE, 8, 0), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 136, 0), 0);
        assert_eq!(run(&program(&[]), DEV_CHAR, ACC_READ, 1, 3), 0);
        assert_eq!(run(&program(&[Rule::parse("a").unwrap()]), DEV_BLOCK, ACC_WRITE, 8, 0), 1);
    }
}
