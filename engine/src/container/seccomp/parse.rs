//! LXC's seccomp policy text (version 1 and 2), the format of LXD's `raw.seccomp` and of
//! the policies LXD builds from `security.syscalls.*`:
//!
//! ```text
//! 2
//! denylist [default action]          (or allowlist; blacklist/whitelist are aliases)
//! [all]                              (section: all, x86_64/amd64, i386/x86; others ignored)
//! reject_force_umount
//! kexec_load errno 38
//! mknod notify [1,8192,SCMP_CMP_MASKED_EQ,61440]
//! ```
//! A rule without an action takes the list's rule action: kill for a denylist, allow
//! for an allowlist. A list without a default action allows (denylist) or kills
//! (allowlist) every syscall no rule names.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("seccomp policy line {line}: {msg}")]
    Line { line: usize, msg: String },
    #[error("seccomp policy: {0}")]
    Policy(String),
}

/// What the kernel does with a matching syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Kill,
    Errno(u16),
    Allow,
    Trap,
}

/// The section a rule sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    All,
    Native,
    Compat,
    /// Another architecture's section: its rules never apply on this host.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & mask) == value`
    MaskedEq(u64),
}

/// One comparison of syscall argument `index` (0..6) with `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCmp {
    pub index: u8,
    pub value: u64,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Syscall {
    Name(String),
    Nr(u32),
    /// LXC's `reject_force_umount`: umount2 with MNT_FORCE fails with EACCES.
    RejectForceUmount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub arch: Arch,
    pub syscall: Syscall,
    pub action: Action,
    pub args: Vec<ArgCmp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub allowlist: bool,
    /// For syscalls no rule matches.
    pub default_action: Action,
    pub rules: Vec<Rule>,
}

fn action(words: &str, line: usize) -> Result<Option<Action>, ParseError> {
    let err = |msg: String| ParseError::Line { line, msg };
    let w = words.trim_start();
    if w.is_empty() || w.starts_with('#') || w.starts_with('[') {
        return Ok(None);
    }
    let first = w.split_whitespace().next().unwrap_or_default();
    Ok(Some(match first {
        "kill" => Action::Kill,
        "allow" => Action::Allow,
        "trap" => Action::Trap,
        "errno" => {
            let n = w.split_whitespace().nth(1).ok_or_else(|| err("errno without a number".into()))?;
            let n: u16 = n.parse().map_err(|_| err(format!("bad errno value {n:?}")))?;
            Action::Errno(n)
        }
        "notify" => return Err(err("the notify action (syscall interception) is not supported".into())),
        other => return Err(err(format!("unrecognized seccomp action {other:?}"))),
    }))
}

fn number(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// `[index,value,op]` or `[index,value,op,mask]`, as many as follow the action.
fn args(rest: &str, line: usize) -> Result<Vec<ArgCmp>, ParseError> {
    let err = |msg: String| ParseError::Line { line, msg };
    let mut out = Vec::new();
    let Some(start) = rest.find('[') else { return Ok(out) };
    for group in rest[start..].split(']') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let inner = group.strip_prefix('[').ok_or_else(|| err(format!("bad argument {group:?}")))?;
        let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
        if parts.len() != 3 && parts.len() != 4 {
            return Err(err(format!("argument {group:?}: want [index,value,op] or [index,value,op,mask]")));
        }
        let index = number(parts[0]).filter(|i| *i < 6).ok_or_else(|| err(format!("bad argument index {:?}", parts[0])))?;
        let value = number(parts[1]).ok_or_else(|| err(format!("bad argument value {:?}", parts[1])))?;
        let op = match parts[2] {
            "SCMP_CMP_NE" | "!=" => Op::Ne,
            "SCMP_CMP_LT" | "<" => Op::Lt,
            "SCMP_CMP_LE" | "<=" => Op::Le,
            "SCMP_CMP_EQ" | "==" => Op::Eq,
            "SCMP_CMP_GE" | ">=" => Op::Ge,
            "SCMP_CMP_GT" | ">" => Op::Gt,
            "SCMP_CMP_MASKED_EQ" | "&=" => {
                let mask = parts.get(3).and_then(|m| number(m)).ok_or_else(|| err("masked compare without a mask".into()))?;
                Op::MaskedEq(mask)
            }
            o => return Err(err(format!("bad argument operator {o:?}"))),
        };
        if out.len() == 6 {
            return Err(err("more than 6 argument comparisons".into()));
        }
        out.push(ArgCmp { index: index as u8, value, op });
    }
    Ok(out)
}

fn section(name: &str) -> Arch {
    match name.to_ascii_lowercase().as_str() {
        "all" => Arch::All,
        #[cfg(target_arch = "x86_64")]
        "x86_64" | "amd64" => Arch::Native,
        #[cfg(target_arch = "x86_64")]
        "x86" | "i386" => Arch::Compat,
        #[cfg(target_arch = "aarch64")]
        "arm64" | "aarch64" => Arch::Native,
        _ => Arch::Other,
    }
}

/// Parses a policy text.
pub fn parse(text: &str) -> Result<Policy, ParseError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let (_, version) = lines.next().ok_or_else(|| ParseError::Policy("empty policy".into()))?;
    match version.trim() {
        "1" => return parse_v1(lines),
        "2" => {}
        v => return Err(ParseError::Policy(format!("unsupported policy version {v:?} (want 1 or 2)"))),
    }
    let (n, kind) = lines.next().ok_or_else(|| ParseError::Policy("no denylist/allowlist line".into()))?;
    let kind = kind.trim();
    let (style, rest) = kind.split_once(' ').unwrap_or((kind, ""));
    let allowlist = match style {
        "denylist" | "blacklist" => false,
        "allowlist" | "whitelist" => true,
        s => return Err(ParseError::Line { line: n, msg: format!("bad seccomp policy style {s:?}") }),
    };
    let default_action = action(rest, n)?.unwrap_or(if allowlist { Action::Kill } else { Action::Allow });
    let rule_default = if allowlist { Action::Allow } else { Action::Kill };
    let mut arch = Arch::All;
    let mut rules = Vec::new();
    for (n, line) in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            if !name.contains(',') {
                arch = section(name.trim());
                continue;
            }
        }
        let (name, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if name.starts_with("reject_force_umount") {
            rules.push(Rule { arch, syscall: Syscall::RejectForceUmount, action: Action::Errno(libc::EACCES as u16), args: vec![] });
            continue;
        }
        let act = action(rest, n)?.unwrap_or(rule_default);
        let args = if rest.trim_start().starts_with('#') { Vec::new() } else { args(rest, n)? };
        rules.push(Rule { arch, syscall: Syscall::Name(name.to_string()), action: act, args });
    }
    Ok(Policy { allowlist, default_action, rules })
}

/// Version 1: one syscall number per line, all allowed, everything else killed.
fn parse_v1<'a>(lines: impl Iterator<Item = (usize, &'a str)>) -> Result<Policy, ParseError> {
    let mut rules = Vec::new();
    for (n, line) in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let nr = line
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<u32>().ok())
            .ok_or_else(|| ParseError::Line { line: n, msg: format!("want a syscall number, got {line:?}") })?;
        rules.push(Rule { arch: Arch::Native, syscall: Syscall::Nr(nr), action: Action::Allow, args: vec![] });
    }
    Ok(Policy { allowlist: true, default_action: Action::Kill, rules })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lxd_default_policy() {
        let p = parse(
            "2\ndenylist\n[all]\nreject_force_umount  # comment this to allow umount -f;  not recommended\n[all]\nkexec_load errno 38\nmount\n",
        )
        .unwrap();
        assert!(!p.allowlist);
        assert_eq!(p.default_action, Action::Allow);
        assert_eq!(p.rules[0].syscall, Syscall::RejectForceUmount);
        assert_eq!(p.rules[1].action, Action::Errno(38));
        // No action in a denylist: kill.
        assert_eq!(p.rules[2].action, Action::Kill);
    }

    #[test]
    fn allowlist_args_and_sections() {
        let p = parse(
            "2\nwhitelist errno 1\n[x86_64]\nread\nwrite # stdout\nmknod errno 1 [1,8192,SCMP_CMP_MASKED_EQ,61440] [0,0x10,>=]\n[arm]\nfoo\n",
        )
        .unwrap();
        assert!(p.allowlist);
        assert_eq!(p.default_action, Action::Errno(1));
        assert_eq!(p.rules[0].action, Action::Allow);
        assert_eq!(p.rules[0].arch, Arch::Native);
        assert_eq!(p.rules[1].syscall, Syscall::Name("write".into()));
        assert_eq!(
            p.rules[2].args,
            vec![
                ArgCmp { index: 1, value: 8192, op: Op::MaskedEq(61440) },
                ArgCmp { index: 0, value: 16, op: Op::Ge },
            ]
        );
        assert_eq!(p.rules[3].arch, Arch::Other);
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "3\ndenylist\n",
            "2\ngreylist\n",
            "2\ndenylist\nmount errno\n",
            "2\ndenylist\nmount explode\n",
            "2\ndenylist\nmount notify\n",
            "2\ndenylist\nmount errno 1 [7,0,==]\n",
            "2\ndenylist\nmount errno 1 [0,0,~~]\n",
            "2\ndenylist\nmount errno 1 [0,0,&=]\n",
            "1\nread\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        let p = parse("1\n0\n1\n").unwrap();
        assert_eq!(p.rules.len(), 2);
        assert_eq!(p.default_action, Action::Kill);
    }
}
