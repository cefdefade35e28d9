//! LXD's match_test.go ported to JSON objects, plus the semantics clients rely on and the
//! plugin predicate extension.

use super::*;
use serde_json::{json, Value};
use std::cell::RefCell;

/// The instance of LXD's value_test.go / match_test.go, as LXD 5.0.2 renders it to JSON.
pub(super) fn lxd_instance() -> Value {
    json!({
        "architecture": "x86_64",
        "config": {"image.os": "BusyBox"},
        "devices": {},
        "ephemeral": false,
        "profiles": [],
        "stateful": false,
        "description": "",
        "created_at": "2020-01-29T11:10:32Z",
        "expanded_config": {"image.os": "BusyBox"},
        "expanded_devices": {
            "root": {"path": "/", "pool": "default", "type": "disk"}
        },
        "name": "c1",
        "status": "Running",
        "status_code": 0,
        "last_used_at": "0001-01-01T00:00:00Z",
        "location": "",
        "type": "",
        "project": ""
    })
}

/// The image of LXD's match_test.go.
fn lxd_image() -> Value {
    json!({
        "auto_update": false,
        "properties": {"os": "Ubuntu"},
        "public": true,
        "expires_at": "0001-01-01T00:00:00Z",
        "profiles": null,
        "aliases": null,
        "architecture": "i686",
        "cached": false,
        "filename": "",
        "fingerprint": "",
        "size": 0,
        "type": "",
        "created_at": "0001-01-01T00:00:00Z",
        "last_used_at": "0001-01-01T00:00:00Z",
        "uploaded_at": "0001-01-01T00:00:00Z"
    })
}

fn check(obj: &Value, cases: &[(&str, bool)]) {
    for &(expr, want) in cases {
        let filter = Filter::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(filter.matches(obj), want, "{expr}");
    }
}

/// LXD match_test.go TestMatch_Instance.
#[test]
fn lxd_match_instance() {
    check(
        &lxd_instance(),
        &[
            ("architecture eq x86_64", true),
            ("architecture eq i686", false),
            ("name eq c1 and status eq Running", true),
            (
                "config.image.os eq BusyBox and expanded_devices.root.path eq /",
                true,
            ),
            ("name eq c2 or status eq Running", true),
            ("name eq c2 or name eq c3", false),
        ],
    );
}

/// LXD match_test.go TestMatch_Image.
#[test]
fn lxd_match_image() {
    check(
        &lxd_image(),
        &[
            ("properties.os eq Ubuntu", true),
            ("architecture eq x86_64", false),
        ],
    );
}

/// LXD clause_test.go TestParse, through the public API.
#[test]
fn lxd_parse_clauses() {
    let filter = Filter::parse("foo eq \"bar egg\" or not baz eq yuk").unwrap();
    let [first, second] = filter.clauses() else {
        panic!("want 2 clauses")
    };
    assert!(!first.not());
    assert_eq!(first.prev_logical().as_str(), "and");
    assert_eq!(
        (first.field(), first.operator(), first.value()),
        ("foo", "eq", "bar egg")
    );
    assert!(second.not());
    assert_eq!(second.prev_logical().as_str(), "or");
    assert_eq!(
        (second.field(), second.operator(), second.value()),
        ("baz", "eq", "yuk")
    );
}

/// LXD clause_test.go TestParse_Error, through the public API, plus our own error.
#[test]
fn parse_errors() {
    let cases = [
        ("not", FilterError::IncompleteNot),
        (
            "foo",
            FilterError::NoOperator {
                field: "foo".into(),
            },
        ),
        (
            "not foo",
            FilterError::NoOperator {
                field: "foo".into(),
            },
        ),
        (
            "foo eq",
            FilterError::NoValue {
                field: "foo".into(),
            },
        ),
        (
            "foo eq \"bar",
            FilterError::UnterminatedQuote {
                field: "foo".into(),
            },
        ),
        ("foo eq bar and", FilterError::UnterminatedCompound),
        ("foo eq \"bar egg\" and", FilterError::UnterminatedCompound),
        (
            "foo eq bar xxx",
            FilterError::InvalidComposition {
                token: "xxx".into(),
            },
        ),
        ("plugin. eq x", FilterError::EmptyPredicateName),
        (
            "name eq c1 or not plugin. ne x",
            FilterError::EmptyPredicateName,
        ),
    ];
    for (expr, want) in cases {
        assert_eq!(Filter::parse(expr).unwrap_err(), want, "{expr}");
    }
    assert_eq!(
        Filter::parse("foo eq bar xxx").unwrap_err().to_string(),
        "Invalid filter: invalid clause composition"
    );
}

#[test]
fn empty_filter_matches_everything() {
    let filter = Filter::parse("   ").unwrap();
    assert!(filter.is_empty());
    assert!(filter.matches(&lxd_instance()));
    assert!(filter.matches(&Value::Null));
    assert!(Filter::default().matches(&lxd_image()));
}

#[test]
fn strictly_left_to_right() {
    check(
        &lxd_instance(),
        &[
            // With precedence this would be `true or (false and false)` = true.
            ("name eq c1 or name eq c2 and status eq Stopped", false),
            ("name eq c2 and name eq c3 or status eq Running", true),
            ("name eq c2 or name eq c1 and status eq Running", true),
            (
                "not name eq c1 or status eq Running and architecture eq i686",
                false,
            ),
        ],
    );
}

#[test]
fn operators() {
    check(
        &lxd_instance(),
        &[
            ("name ne c1", false),
            ("name ne c2", true),
            // Anything but `ne` is `eq`, including the uppercase spelling.
            ("name == c1", true),
            ("name NE c1", true),
            ("name gt c1", true),
            ("name lt zz", false),
            ("not name eq c1", false),
            ("NOT name ne c1", true),
            ("Not name ne c2", false),
        ],
    );
}

#[test]
fn string_values_are_regexes() {
    check(
        &lxd_instance(),
        &[
            ("name eq C1", true),
            ("status eq running", true),
            ("name eq c", false),
            ("name eq c.", true),
            ("name eq ^c", true),
            ("name eq 1$", true),
            ("name eq ^1", false),
            ("architecture eq x86_.*", true),
            ("name eq c1|nope", true),
            // An invalid regex is compared literally.
            ("name eq c1(", false),
        ],
    );
    check(
        &json!({"name": "Web(1"}),
        &[("name eq web(1", true), ("name eq web(", false)],
    );
}

#[test]
fn unknown_and_missing_fields() {
    check(
        &lxd_instance(),
        &[
            ("nope eq x", false),
            ("nope ne x", true),
            ("not nope eq x", true),
            ("expanded_devices.eth0.type eq nic", false),
            ("expanded_devices.eth0.type ne nic", true),
            ("devices.root.path eq .*", false),
            // A missing string-map key is Go's "", which `.*` matches.
            ("config.user.foo eq .*", true),
            ("config.user.foo eq bar", false),
            ("config.user.foo ne bar", true),
            ("config.user.foo eq \"\"", true),
        ],
    );
}

#[test]
fn non_string_fields_never_match() {
    check(
        &lxd_instance(),
        &[
            ("ephemeral eq false", false),
            ("ephemeral ne false", true),
            ("stateful eq .*", false),
            ("status_code eq 0", false),
            ("status_code ne 0", true),
            ("created_at eq 2020-01-29T11:10:32Z", false),
            ("created_at eq .*", false),
            ("created_at ne 2020-01-29T11:10:32Z", true),
            ("profiles eq .*", false),
            ("config eq .*", false),
        ],
    );
    check(
        &lxd_image(),
        &[
            ("public eq true", false),
            ("public ne true", true),
            ("size eq 0", false),
        ],
    );
}

#[test]
fn quoted_values() {
    let obj = json!({"name": "c1", "description": "My  web server"});
    check(
        &obj,
        &[
            // Whitespace inside quotes collapses to one space, so a double space never matches.
            ("description eq \"my web server\"", false),
            ("description eq \"my .*server\"", true),
            ("description eq \"My  web server\"", false),
            ("name eq \"c1\"", true),
            ("name eq \"c1\" and description eq \"my.*\"", true),
        ],
    );
}

#[test]
fn nested_objects() {
    let full = json!({
        "name": "c1",
        "state": {"status": "Running", "pid": 42, "network": {"eth0": {"state": "up", "mtu": 1500}}}
    });
    check(
        &full,
        &[
            ("state.status eq running", true),
            ("state.pid eq 42", false),
            ("state.network.eth0.state eq UP", true),
            ("state.network.eth1.state eq up", false),
        ],
    );
}

/// Records every call and answers from a fixed table.
struct Recorder {
    calls: RefCell<Vec<(String, String)>>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            calls: RefCell::new(Vec::new()),
        }
    }
}

impl PredicateResolver for Recorder {
    fn predicate(&self, name: &str, value: &str, obj: &Value) -> Option<bool> {
        self.calls
            .borrow_mut()
            .push((name.to_owned(), value.to_owned()));
        let config = |key: &str| {
            obj.get("config")
                .and_then(|c| c.get(key))
                .and_then(Value::as_str)
        };
        match name {
            "owner" => Some(config("user.owner") == Some(value)),
            "has-tag" => {
                Some(config("user.tags").is_some_and(|t| t.split(',').any(|x| x == value)))
            }
            "dotted.name" => Some(true),
            _ => None,
        }
    }
}

#[test]
fn plugin_predicates() {
    let obj = json!({"name": "c1", "config": {"user.owner": "alice", "user.tags": "web,prod"}});
    let resolver = Recorder::new();
    let cases = [
        ("plugin.owner eq alice", true),
        ("plugin.owner eq bob", false),
        ("plugin.owner ne bob", true),
        ("not plugin.owner eq alice", false),
        ("plugin.has-tag eq prod and name eq c1", true),
        ("plugin.has-tag eq \"two words\"", false),
        ("plugin.dotted.name eq anything", true),
        // Unknown predicate: like an unknown field.
        ("plugin.nope eq x", false),
        ("plugin.nope ne x", true),
        // The value is not a regex for predicates: passed through verbatim.
        ("plugin.owner eq ali.*", false),
    ];
    for (expr, want) in cases {
        let filter = Filter::parse(expr).unwrap();
        assert_eq!(filter.matches_with(&obj, &resolver), want, "{expr}");
    }
    let calls = resolver.calls.borrow();
    assert_eq!(calls[0], ("owner".to_owned(), "alice".to_owned()));
    assert!(calls.contains(&("has-tag".to_owned(), "two words".to_owned())));
    assert!(calls.contains(&("dotted.name".to_owned(), "anything".to_owned())));
}

#[test]
fn plain_matches_knows_no_predicates() {
    let obj = json!({"name": "c1", "config": {"user.owner": "alice"}});
    check(
        &obj,
        &[
            ("plugin.owner eq alice", false),
            ("plugin.owner ne alice", true),
        ],
    );
    // `plugin` is not looked up as an object field.
    check(
        &json!({"plugin": {"owner": "alice"}}),
        &[("plugin.owner eq alice", false)],
    );
}

#[test]
fn predicate_names_listed_once() {
    let filter = Filter::parse(
        "plugin.owner eq a or name eq c1 and not plugin.tag ne b or plugin.owner eq c",
    )
    .unwrap();
    assert_eq!(filter.predicates(), ["owner", "tag"]);
    assert_eq!(filter.clauses()[2].predicate(), Some("tag"));
    assert_eq!(filter.clauses()[1].predicate(), None);
    assert!(Filter::parse("name eq c1").unwrap().predicates().is_empty());
}

#[test]
fn decided_clauses_are_skipped() {
    let obj = json!({"name": "c1", "config": {"user.owner": "alice"}});
    let resolver = Recorder::new();
    let filter =
        Filter::parse("name eq c2 and plugin.owner eq alice or name eq c1 or plugin.tag eq x")
            .unwrap();
    assert!(filter.matches_with(&obj, &resolver));
    assert!(resolver.calls.borrow().is_empty());
}

#[test]
fn one_filter_many_objects() {
    let filter = Filter::parse("status eq running and not config.user.tier eq db").unwrap();
    let objects: Vec<Value> = (0..500)
        .map(|i| {
            let status = if i % 2 == 0 { "Running" } else { "Stopped" };
            let tier = if i % 5 == 0 { "db" } else { "web" };
            json!({"name": format!("c{i}"), "status": status, "config": {"user.tier": tier}})
        })
        .collect();
    let count = objects.iter().filter(|o| filter.matches(o)).count();
    // Even i not divisible by 5: 250 - 50.
    assert_eq!(count, 200);
}
