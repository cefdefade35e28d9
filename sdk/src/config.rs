//! Typed reads of a configuration map (`list<tuple<string, string>>`).

use crate::units::{parse_bool, parse_size, ParseError};

/// Helpers on a config map as the WIT bindings deliver it.
pub trait ConfigMap {
    /// The value of `key`, if set.
    fn value(&self, key: &str) -> Option<&str>;

    /// `key` read as an LXD boolean; unset or unparsable is `false`, as LXD's
    /// `shared.IsTrue` does.
    fn is_true(&self, key: &str) -> bool {
        self.value(key).and_then(parse_bool).unwrap_or(false)
    }

    /// `key` read as a byte size; `None` when unset.
    fn size(&self, key: &str) -> Option<Result<u64, ParseError>> {
        self.value(key).map(parse_size)
    }

    /// Keys starting with `prefix`, with their values.
    fn with_prefix<'a>(&'a self, prefix: &'a str) -> Vec<(&'a str, &'a str)>;
}

impl ConfigMap for [(String, String)] {
    fn value(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn with_prefix<'a>(&'a self, prefix: &'a str) -> Vec<(&'a str, &'a str)> {
        self.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

impl ConfigMap for Vec<(String, String)> {
    fn value(&self, key: &str) -> Option<&str> {
        self.as_slice().value(key)
    }

    fn with_prefix<'a>(&'a self, prefix: &'a str) -> Vec<(&'a str, &'a str)> {
        self.as_slice().with_prefix(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads() {
        let c = vec![
            ("limits.memory".to_string(), "1GiB".to_string()),
            ("security.privileged".to_string(), "yes".to_string()),
            ("user.a".to_string(), "x".to_string()),
        ];
        assert_eq!(c.value("limits.memory"), Some("1GiB"));
        assert_eq!(c.size("limits.memory"), Some(Ok(1 << 30)));
        assert!(c.is_true("security.privileged"));
        assert!(!c.is_true("security.nesting"));
        assert_eq!(c.with_prefix("user."), vec![("user.a", "x")]);
    }
}
