//! The server-side `?filter=` language of LXD (`lxd/filter`), evaluated over the JSON
//! rendering of an object.
//!
//! CONTRACT: `Filter::parse(&str) -> Result<Filter, FilterError>`,
//! `Filter::matches(&serde_json::Value) -> bool`.

/// A parsed filter expression.
#[derive(Debug, Clone, Default)]
pub struct Filter {}

/// A filter that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid filter: {0}")]
pub struct FilterError(pub String);

impl Filter {
    /// Parses an expression; an empty string matches everything.
    pub fn parse(_expr: &str) -> Result<Filter, FilterError> {
        Ok(Filter {})
    }

    /// Whether the object matches.
    pub fn matches(&self, _obj: &serde_json::Value) -> bool {
        true
    }
}
