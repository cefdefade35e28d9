//! The server-side `?filter=` language of LXD 5.0.2 (`lxd/filter`), evaluated over the JSON
//! rendering of an object (`api.Instance`, `api.InstanceFull`, `api.Image`, …).
//!
//! # Syntax
//!
//! ```text
//! filter := clause { ("and" | "or") clause }
//! clause := ["not"] FIELD OP VALUE
//! ```
//!
//! Tokens are split on whitespace.
//! - **Evaluation** is strictly left to right with no precedence and no parentheses:
//!   `a or b and c` is `(a or b) and c`. The first clause is combined with `true` by `and`,
//!   so an empty filter matches everything.
//! - **Keywords**: `not` is case-insensitive. `and`/`or` must be lowercase; any other token
//!   there is an error.
//! - **OP**: exactly `ne` negates the comparison; *every other token* (`eq`, `==`, `NE`, …)
//!   means `eq`, as in LXD.
//! - **VALUE**: `"two words"` spans tokens, and whitespace runs inside it collapse to a single
//!   space. A quoted value that closes in its own token (`"c1"`) is unquoted. Here we differ
//!   from LXD 5.0.2 on purpose. LXD only looks for the closing quote in *later* tokens, so
//!   there `name eq "c1"` fails with "unterminated quote", and a quote in a later clause gives
//!   a garbled value. None of LXD's tests rely on that bug, and `lxc` never quotes.
//! - **FIELD** is a dotted path over the object's JSON field names (see the `value` module).
//!   `config.image.os` takes the whole rest of the path as one key of a string map.
//!   `expanded_devices.root.path` goes one level per dot through a map of maps. An unknown
//!   field has no value, so `eq` is false and `ne` is true.
//! - **Matching**: a string field matches VALUE as a case-insensitive regex, anchored as
//!   `^VALUE$` unless VALUE contains `^` or `$`. If VALUE is not a valid regex, the match is
//!   case-insensitive equality instead. Regexes use Rust `regex` syntax, which is close to Go's
//!   RE2. Non-string fields never match, another LXD quirk we keep: bools, numbers, lists,
//!   objects, null, and times (`created_at`, `last_used_at`, `expires_at`, `uploaded_at`,
//!   which are JSON strings but `time.Time` to LXD). So `ephemeral eq false` is false and
//!   `ephemeral ne false` is true.
//!
//! # Plugin predicates
//!
//! A clause whose FIELD is `plugin.<name>` (e.g. `plugin.owner eq alice`) is not looked up in
//! the object. [`Filter::matches_with`] asks a [`PredicateResolver`] for predicate `<name>`,
//! with the raw VALUE and the whole object. `Some(answer)` is the comparison result, which
//! `ne` and `not` still negate. `None` (unknown predicate) behaves like an unknown field:
//! `eq` false, `ne` true. [`Filter::predicates`] lists the names a filter uses, so the API can
//! reject unknown ones with a 400 before evaluating anything. [`Filter::matches`] knows no
//! predicates.
//!
//! Clauses whose outcome cannot change the result are skipped: `false and …` and
//! `true or …`. A resolver may therefore be called for fewer clauses, or fewer objects, than
//! appear in the filter.
//!
//! # Cost
//!
//! Parse once per request. Regexes are compiled at parse time, one per clause. Evaluation
//! allocates nothing of its own: the path walk borrows from the object, and short-circuited
//! clauses are not looked up at all.

mod parse;
mod pattern;
mod value;

#[cfg(test)]
mod tests;

pub use parse::Logical;
use pattern::Pattern;

/// The FIELD prefix that routes a clause to a plugin predicate.
pub const PREDICATE_PREFIX: &str = "plugin.";

/// A filter that does not parse. The display text is LXD's, prefixed with `Invalid filter: `,
/// ready for a 400 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// `not` was the last token.
    #[error("Invalid filter: incomplete not clause")]
    IncompleteNot,
    /// A field with nothing after it.
    #[error("Invalid filter: clause has no operator")]
    NoOperator {
        /// The field token.
        field: String,
    },
    /// A field and operator with nothing after them.
    #[error("Invalid filter: clause has no value")]
    NoValue {
        /// The field token.
        field: String,
    },
    /// A `"` that no later token closes.
    #[error("Invalid filter: unterminated quote")]
    UnterminatedQuote {
        /// The field of the clause whose value is open.
        field: String,
    },
    /// `and`/`or` was the last token.
    #[error("Invalid filter: unterminated compound clause")]
    UnterminatedCompound,
    /// A token other than lowercase `and`/`or` after a clause.
    #[error("Invalid filter: invalid clause composition")]
    InvalidComposition {
        /// The offending token.
        token: String,
    },
    /// `plugin.` with no predicate name (berth's extension, not LXD's).
    #[error("Invalid filter: clause has an empty plugin predicate name")]
    EmptyPredicateName,
}

/// Answers `plugin.<name>` clauses; implemented by the plugin host.
pub trait PredicateResolver {
    /// The result of predicate `name` with the clause's `value` on `obj`, or `None` when no
    /// plugin provides `name`.
    fn predicate(&self, name: &str, value: &str, obj: &serde_json::Value) -> Option<bool>;
}

/// A resolver that knows no predicates.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPredicates;

impl PredicateResolver for NoPredicates {
    fn predicate(&self, _name: &str, _value: &str, _obj: &serde_json::Value) -> Option<bool> {
        None
    }
}

/// What a clause compares against.
#[derive(Debug, Clone)]
enum Target {
    /// A field of the object, and the compiled value.
    Field(Pattern),
    /// A plugin predicate, whose name is the field after [`PREDICATE_PREFIX`].
    Predicate,
}

/// One `[not] FIELD OP VALUE` clause.
#[derive(Debug, Clone)]
pub struct Clause {
    prev: Logical,
    not: bool,
    field: String,
    operator: String,
    value: String,
    target: Target,
    /// `ne` xor `not`: whether the comparison result is inverted.
    invert: bool,
}

impl Clause {
    /// How this clause combines with everything to its left.
    pub fn prev_logical(&self) -> Logical {
        self.prev
    }

    /// Whether the clause starts with `not`.
    pub fn not(&self) -> bool {
        self.not
    }

    /// The dotted field path, as written.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The operator token, as written; only `ne` differs from `eq`.
    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// The value, unquoted.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The plugin predicate name when the field is `plugin.<name>`.
    pub fn predicate(&self) -> Option<&str> {
        match self.target {
            Target::Predicate => self.field.strip_prefix(PREDICATE_PREFIX),
            Target::Field(_) => None,
        }
    }

    fn eval(&self, obj: &serde_json::Value, resolver: &dyn PredicateResolver) -> bool {
        let matched = match &self.target {
            Target::Field(pattern) => {
                value::string_at(obj, &self.field).is_some_and(|s| pattern.is_match(s))
            }
            Target::Predicate => {
                let name = self
                    .field
                    .strip_prefix(PREDICATE_PREFIX)
                    .unwrap_or_default();
                resolver.predicate(name, &self.value, obj).unwrap_or(false)
            }
        };
        matched ^ self.invert
    }
}

/// A parsed filter expression.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    clauses: Vec<Clause>,
}

impl Filter {
    /// Parses an expression; an empty string matches everything.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        let clauses = parse::parse(expr)?
            .into_iter()
            .map(|raw| {
                let target = match raw.field.strip_prefix(PREDICATE_PREFIX) {
                    Some("") => return Err(FilterError::EmptyPredicateName),
                    Some(_) => Target::Predicate,
                    None => Target::Field(Pattern::compile(&raw.value)),
                };
                Ok(Clause {
                    invert: (raw.operator == "ne") ^ raw.not,
                    prev: raw.prev,
                    not: raw.not,
                    field: raw.field,
                    operator: raw.operator,
                    value: raw.value,
                    target,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Filter { clauses })
    }

    /// Whether the filter has no clauses (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// The clauses, in order.
    pub fn clauses(&self) -> &[Clause] {
        &self.clauses
    }

    /// The plugin predicate names used, each once, in order of first use.
    pub fn predicates(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for name in self.clauses.iter().filter_map(Clause::predicate) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// Whether the object matches; `plugin.*` clauses are treated as unknown predicates.
    pub fn matches(&self, obj: &serde_json::Value) -> bool {
        self.matches_with(obj, &NoPredicates)
    }

    /// Whether the object matches, asking `resolver` for `plugin.*` clauses.
    pub fn matches_with(&self, obj: &serde_json::Value, resolver: &dyn PredicateResolver) -> bool {
        let mut result = true;
        for clause in &self.clauses {
            result = match (clause.prev, result) {
                // The clause cannot change the result; skip its lookup or predicate call.
                (Logical::And, false) | (Logical::Or, true) => result,
                _ => clause.eval(obj, resolver),
            };
        }
        result
    }
}
