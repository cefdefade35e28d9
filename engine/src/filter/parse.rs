//! Tokenising a filter string into raw clauses, following LXD's `filter.Parse`.
//!
//! Tokens are split on whitespace (runs collapse, as Go's `strings.Fields`). Each clause is
//! `[not] FIELD OP VALUE`, optionally followed by `and`/`or` and another clause.

use super::FilterError;

/// How a clause combines with the result of everything to its left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logical {
    /// `and`; also what the first clause uses against the initial `true`.
    And,
    /// `or`.
    Or,
}

impl Logical {
    /// The keyword as written in a filter.
    pub fn as_str(self) -> &'static str {
        match self {
            Logical::And => "and",
            Logical::Or => "or",
        }
    }
}

/// One clause as written, before its value is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawClause {
    pub prev: Logical,
    pub not: bool,
    pub field: String,
    pub operator: String,
    pub value: String,
}

/// Splits `expr` into clauses; an empty or blank string gives none.
pub(super) fn parse(expr: &str) -> Result<Vec<RawClause>, FilterError> {
    let parts: Vec<&str> = expr.split_whitespace().collect();
    let mut clauses = Vec::new();
    let mut index = 0;
    let mut prev = Logical::And;

    while index < parts.len() {
        // `not` is the only keyword LXD compares case-insensitively.
        let not = parts[index].eq_ignore_ascii_case("not");
        if not {
            index += 1;
            if index == parts.len() {
                return Err(FilterError::IncompleteNot);
            }
        }

        let field = parts[index];
        index += 1;
        let Some(&operator) = parts.get(index) else {
            return Err(FilterError::NoOperator {
                field: field.to_owned(),
            });
        };
        index += 1;
        let Some(&first) = parts.get(index) else {
            return Err(FilterError::NoValue {
                field: field.to_owned(),
            });
        };
        let value = if let Some(opened) = first.strip_prefix('"') {
            match opened.strip_suffix('"') {
                // A quote that closes within its own token. LXD 5.0.2 does not see this
                // closing quote and keeps scanning; we take the token's inside (see mod docs).
                Some(inner) => inner.to_owned(),
                None => {
                    let mut value = opened.to_owned();
                    loop {
                        index += 1;
                        let Some(&part) = parts.get(index) else {
                            return Err(FilterError::UnterminatedQuote {
                                field: field.to_owned(),
                            });
                        };
                        value.push(' ');
                        if let Some(last) = part.strip_suffix('"') {
                            value.push_str(last);
                            break;
                        }
                        value.push_str(part);
                    }
                    value
                }
            }
        } else {
            first.to_owned()
        };
        index += 1;

        clauses.push(RawClause {
            prev,
            not,
            field: field.to_owned(),
            operator: operator.to_owned(),
            value,
        });

        if let Some(&logical) = parts.get(index) {
            // Only lowercase `and`/`or`, as in LXD.
            prev = match logical {
                "and" => Logical::And,
                "or" => Logical::Or,
                other => {
                    return Err(FilterError::InvalidComposition {
                        token: other.to_owned(),
                    });
                }
            };
            index += 1;
            if index == parts.len() {
                return Err(FilterError::UnterminatedCompound);
            }
        }
    }

    Ok(clauses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(prev: Logical, not: bool, field: &str, operator: &str, value: &str) -> RawClause {
        RawClause {
            prev,
            not,
            field: field.into(),
            operator: operator.into(),
            value: value.into(),
        }
    }

    /// LXD clause_test.go TestParse_Error: every case and its exact message.
    #[test]
    fn lxd_parse_errors() {
        let cases = [
            ("not", "incomplete not clause"),
            ("foo", "clause has no operator"),
            ("not foo", "clause has no operator"),
            ("foo eq", "clause has no value"),
            ("foo eq \"bar", "unterminated quote"),
            ("foo eq bar and", "unterminated compound clause"),
            ("foo eq \"bar egg\" and", "unterminated compound clause"),
            ("foo eq bar xxx", "invalid clause composition"),
        ];
        for (expr, message) in cases {
            let err = parse(expr).expect_err(expr);
            assert_eq!(
                err.to_string(),
                format!("Invalid filter: {message}"),
                "{expr}"
            );
        }
    }

    /// LXD clause_test.go TestParse.
    #[test]
    fn lxd_parse() {
        let clauses = parse("foo eq \"bar egg\" or not baz eq yuk").unwrap();
        assert_eq!(
            clauses,
            vec![
                raw(Logical::And, false, "foo", "eq", "bar egg"),
                raw(Logical::Or, true, "baz", "eq", "yuk"),
            ]
        );
    }

    #[test]
    fn blank_is_no_clauses() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse(" \t\n ").unwrap().is_empty());
    }

    #[test]
    fn not_is_case_insensitive() {
        for not in ["not", "NOT", "Not", "nOt"] {
            let clauses = parse(&format!("{not} name eq c1")).unwrap();
            assert_eq!(
                clauses,
                vec![raw(Logical::And, true, "name", "eq", "c1")],
                "{not}"
            );
        }
    }

    #[test]
    fn and_or_must_be_lowercase() {
        for logical in ["AND", "And", "OR", "Or", "&&", "||"] {
            let err = parse(&format!("name eq c1 {logical} name eq c2")).unwrap_err();
            assert_eq!(
                err,
                FilterError::InvalidComposition {
                    token: logical.into()
                }
            );
            assert_eq!(
                err.to_string(),
                "Invalid filter: invalid clause composition"
            );
        }
    }

    #[test]
    fn operators_are_kept_verbatim() {
        let clauses = parse("a == 1 and b NE 2 and c ne 3").unwrap();
        let ops: Vec<&str> = clauses.iter().map(|c| c.operator.as_str()).collect();
        assert_eq!(ops, ["==", "NE", "ne"]);
    }

    #[test]
    fn quoted_values() {
        let value = |expr: &str| parse(expr).unwrap().remove(0).value;
        // Whitespace runs inside quotes collapse to one space, as with strings.Fields.
        assert_eq!(value("d eq \"two   words\""), "two words");
        assert_eq!(value("d eq \"a b c\" and x eq y"), "a b c");
        assert_eq!(value("d eq \"a \""), "a ");
        assert_eq!(value("d eq \" a\""), " a");
        // Our deliberate fix of the 5.0.2 single-token quote.
        assert_eq!(value("d eq \"x\""), "x");
        assert_eq!(value("d eq \"\""), "");
        let clauses = parse("name eq \"c1\" and status eq \"Running\"").unwrap();
        assert_eq!(
            clauses,
            vec![
                raw(Logical::And, false, "name", "eq", "c1"),
                raw(Logical::And, false, "status", "eq", "Running"),
            ]
        );
        // A lone quote opens a quoted value that never closes.
        assert_eq!(
            parse("d eq \"").unwrap_err(),
            FilterError::UnterminatedQuote { field: "d".into() }
        );
        // A quote in the middle of a token is just a character.
        assert_eq!(value("d eq a\"b"), "a\"b");
    }

    #[test]
    fn left_to_right_logicals() {
        let clauses = parse("a eq 1 or b eq 2 and not c eq 3").unwrap();
        let prevs: Vec<Logical> = clauses.iter().map(|c| c.prev).collect();
        assert_eq!(prevs, [Logical::And, Logical::Or, Logical::And]);
        assert!(clauses[2].not);
    }

    #[test]
    fn error_context() {
        assert_eq!(
            parse("a eq 1 or b").unwrap_err(),
            FilterError::NoOperator { field: "b".into() }
        );
        assert_eq!(
            parse("a eq 1 or b ne").unwrap_err(),
            FilterError::NoValue { field: "b".into() }
        );
        assert_eq!(
            parse("not not").unwrap_err(),
            FilterError::NoOperator {
                field: "not".into()
            }
        );
    }
}
