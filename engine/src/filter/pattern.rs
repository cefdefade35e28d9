//! A clause value compiled once: LXD's case-insensitive regex, or its equality fallback.

use regex::{Regex, RegexBuilder};

/// Bound on the compiled size of one clause's regex; a value past it is matched literally.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How a clause value matches a string field.
#[derive(Debug, Clone)]
pub(super) enum Pattern {
    /// `(?i)^VALUE$`, or `(?i)VALUE` when the value has its own `^` or `$`.
    Regex(Regex),
    /// The value is not a valid regex: case-insensitive equality, as Go's `EqualFold`.
    Literal(String),
}

impl Pattern {
    /// Compiles `value` the way LXD's `filter.Match` does on every comparison.
    pub fn compile(value: &str) -> Pattern {
        // LXD anchors by plain concatenation, so `a|b` becomes `^a|b$`; kept as is.
        let source = if value.contains('^') || value.contains('$') {
            format!("(?i){value}")
        } else {
            format!("(?i)^{value}$")
        };
        match RegexBuilder::new(&source)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(regex) => Pattern::Regex(regex),
            Err(_) => Pattern::Literal(value.to_owned()),
        }
    }

    pub fn is_match(&self, field: &str) -> bool {
        match self {
            Pattern::Regex(regex) => regex.is_match(field),
            Pattern::Literal(value) => equal_fold(field, value),
        }
    }
}

/// Unicode case-insensitive equality, rune by rune like Go's `strings.EqualFold`, without
/// allocating.
fn equal_fold(a: &str, b: &str) -> bool {
    let mut a = a.chars();
    let mut b = b.chars();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) => {
                if x != y && !x.to_lowercase().eq(y.to_lowercase()) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_and_case_insensitive() {
        let p = Pattern::compile("c1");
        assert!(matches!(p, Pattern::Regex(_)));
        assert!(p.is_match("c1"));
        assert!(p.is_match("C1"));
        assert!(!p.is_match("c10"));
        assert!(!p.is_match("xc1"));
        assert!(Pattern::compile("c.*").is_match("C-anything"));
        assert!(Pattern::compile("").is_match(""));
        assert!(!Pattern::compile("").is_match("x"));
    }

    #[test]
    fn own_anchors_disable_ours() {
        assert!(Pattern::compile("^c").is_match("c1"));
        assert!(!Pattern::compile("^c").is_match("xc1"));
        assert!(Pattern::compile("1$").is_match("abc1"));
        assert!(Pattern::compile("[^x]").is_match("xxa"));
        // LXD's concatenation does not group alternations.
        let p = Pattern::compile("c1|c2");
        assert!(p.is_match("c1-suffix"));
        assert!(p.is_match("prefix-c2"));
        assert!(!p.is_match("prefix-c1"));
    }

    #[test]
    fn invalid_regex_is_case_insensitive_equality() {
        let p = Pattern::compile("web(1");
        assert!(matches!(p, Pattern::Literal(_)));
        assert!(p.is_match("WEB(1"));
        assert!(!p.is_match("web(12"));
        let p = Pattern::compile("*star");
        assert!(p.is_match("*STAR"));
    }

    #[test]
    fn equal_fold_is_unicode_aware() {
        assert!(equal_fold("Straße", "STRAßE"));
        assert!(equal_fold("ÉTÉ", "été"));
        assert!(!equal_fold("a", "ab"));
        assert!(!equal_fold("ab", "a"));
        assert!(equal_fold("", ""));
    }
}
