//! A matcher for the common shape of name patterns, e.g. `[a-z][a-z0-9-]*` or
//! `web-[0-9]{1,3}`: a sequence of ASCII character classes and literal characters,
//! each with an optional `*`, `+`, `?` or `{n}`/`{n,}`/`{n,m}`. Such a pattern needs
//! no regex compilation, which otherwise happens on every call (nothing survives
//! between calls). Anything else (groups, alternation, escapes, `.`, anchors,
//! negated classes, flags, non-ASCII) is `None` and goes to `regex-lite`, so the
//! accepted language is exactly the regex's: the whole name must match.

/// Largest repetition count accepted here (the regex takes the rest).
const MAX_REPEAT: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    /// Bit `b` set: ASCII byte `b` matches.
    set: u128,
    min: u32,
    max: Option<u32>,
}

/// A parsed simple pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simple {
    items: Vec<Item>,
}

/// Characters that stand for themselves, in and out of classes.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn bit(b: u8) -> u128 {
    1u128 << b
}

impl Simple {
    /// `None` unless the whole pattern is of the simple shape.
    pub fn parse(pattern: &str) -> Option<Simple> {
        let p = pattern.as_bytes();
        let mut items = Vec::new();
        let mut i = 0;
        while i < p.len() {
            let set = match p[i] {
                b'[' => {
                    let (set, next) = class(p, i + 1)?;
                    i = next;
                    set
                }
                b if plain(b) || b == b'-' => {
                    i += 1;
                    bit(b)
                }
                _ => return None,
            };
            let (min, max, next) = quantifier(p, i)?;
            i = next;
            items.push(Item { set, min, max });
        }
        Some(Simple { items })
    }

    /// Whether the whole of `name` matches.
    pub fn is_match(&self, name: &str) -> bool {
        let s = name.as_bytes();
        let n = s.len();
        // reach[q]: the items so far can match exactly s[..q].
        let mut reach = vec![false; n + 1];
        reach[0] = true;
        for item in &self.items {
            let mut next = vec![false; n + 1];
            for p in 0..=n {
                if !reach[p] {
                    continue;
                }
                let mut count: u32 = 0;
                let mut q = p;
                loop {
                    if count >= item.min {
                        next[q] = true;
                    }
                    if item.max.is_some_and(|m| count >= m) || q == n {
                        break;
                    }
                    let b = s[q];
                    if b >= 128 || item.set & bit(b) == 0 {
                        break;
                    }
                    q += 1;
                    count += 1;
                }
            }
            reach = next;
        }
        reach[n]
    }
}

/// A bracket class starting after `[`: plain characters, ranges between two
/// plain characters, and `-` first or last. Returns the set and the index after `]`.
fn class(p: &[u8], mut i: usize) -> Option<(u128, usize)> {
    let start = i;
    let mut set = 0u128;
    loop {
        let b = *p.get(i)?;
        match b {
            b']' if i > start => return Some((set, i + 1)),
            b'-' if i == start || p.get(i + 1) == Some(&b']') => {
                set |= bit(b'-');
                i += 1;
            }
            b if plain(b) => {
                if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&c| plain(c)) {
                    let hi = p[i + 2];
                    if hi < b {
                        return None;
                    }
                    for c in b..=hi {
                        set |= bit(c);
                    }
                    i += 3;
                    // `[a-c-e]` and friends: leave them to the regex.
                    if p.get(i) == Some(&b'-') && p.get(i + 1) != Some(&b']') {
                        return None;
                    }
                } else {
                    set |= bit(b);
                    i += 1;
                }
            }
            _ => return None,
        }
    }
}

/// An optional quantifier at `i`: (min, max, index after it).
fn quantifier(p: &[u8], i: usize) -> Option<(u32, Option<u32>, usize)> {
    let (min, max, next) = match p.get(i) {
        Some(b'*') => (0, None, i + 1),
        Some(b'+') => (1, None, i + 1),
        Some(b'?') => (0, Some(1), i + 1),
        Some(b'{') => {
            let close = i + p[i..].iter().position(|&b| b == b'}')?;
            let body = std::str::from_utf8(&p[i + 1..close]).ok()?;
            let num = |s: &str| -> Option<u32> {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                s.parse().ok().filter(|&n| n <= MAX_REPEAT)
            };
            let (min, max) = match body.split_once(',') {
                None => {
                    let n = num(body)?;
                    (n, Some(n))
                }
                Some((lo, "")) => (num(lo)?, None),
                Some((lo, hi)) => {
                    let (lo, hi) = (num(lo)?, num(hi)?);
                    if hi < lo {
                        return None;
                    }
                    (lo, Some(hi))
                }
            };
            (min, max, close + 1)
        }
        _ => return Some((1, Some(1), i)),
    };
    // Lazy/possessive suffixes or stacked quantifiers: the regex decides.
    if matches!(p.get(next), Some(b'*' | b'+' | b'?' | b'{')) {
        return None;
    }
    Some((min, max, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_lite::Regex;

    const PATTERNS: &[&str] = &[
        "[a-z][a-z0-9-]*",
        "[a-z]+",
        "web-[0-9]{1,3}",
        "web-[0-9]{2}",
        "a{2,}b?",
        "[-a-c]*x",
        "[a-c-]+",
        "[A-Z_][A-Za-z0-9_]{0,5}",
        "x*x*x*y",
        "",
        "a?a?a?aaa",
        "[0-9]{0}z",
    ];
    const NOT_SIMPLE: &[&str] = &[
        "a|b", "(a)", "a.b", "\\d+", "^a$", "[^a]", "[a-]b-]", "a**", "a+?", "[]a]", "[z-a]", "é",
        "a{", "a{1,x}", "(?i)a", "[a-c-e]", "a b",
    ];

    fn names() -> Vec<String> {
        let alphabet = ["", "a", "b", "x", "y", "z", "0", "9", "-", "_", "A", "Z", "é", " "];
        let mut out = vec![String::new()];
        for len in 1..=4 {
            let mut next = Vec::new();
            for prefix in out.iter().filter(|s| s.chars().count() == len - 1) {
                for c in alphabet.iter().filter(|c| !c.is_empty()) {
                    next.push(format!("{prefix}{c}"));
                }
            }
            out.extend(next);
        }
        out.extend(["web-1", "web-12", "web-123", "web-1234", "aab", "aaab", "xxy", "aaa", "aaaa", "z"].map(String::from));
        out
    }

    #[test]
    fn agrees_with_the_regex() {
        let names = names();
        for pattern in PATTERNS {
            let simple = Simple::parse(pattern).unwrap_or_else(|| panic!("{pattern} is simple"));
            let re = Regex::new(&format!("^(?:{pattern})$")).unwrap();
            for name in &names {
                assert_eq!(simple.is_match(name), re.is_match(name), "{pattern:?} on {name:?}");
            }
        }
    }

    #[test]
    fn anything_else_goes_to_the_regex() {
        for pattern in NOT_SIMPLE {
            assert_eq!(Simple::parse(pattern), None, "{pattern:?}");
        }
    }
}
