//! Resolving a dotted field path against an object's JSON rendering, following LXD's
//! reflection-based `filter.ValueOf` over the Go structs that JSON came from.
//!
//! JSON loses the Go types, so objects are classified by shape:
//! - the object itself (and any nested object with mixed value kinds) is a *struct*: the first
//!   path segment names a field;
//! - an object whose values are all strings is a `map[string]string`: the whole rest of the
//!   path is one key, and a missing key gives `""` (Go's zero value), not "no value";
//! - an object whose values are all objects is a map of maps: one segment per level.
//!
//! An empty object is a string map unless its field is a known map of maps (`devices`,
//! `expanded_devices`), so that it behaves as its Go type would.

use serde_json::{Map, Value};

/// Struct fields that are `time.Time` in LXD's API types. They render as JSON strings but
/// are not strings to LXD, so they never match a value (LXD's quirk, kept).
const TIME_FIELDS: &[&str] = &["created_at", "last_used_at", "expires_at", "uploaded_at"];

/// Struct fields that are `map[string]map[string]string` in LXD's API types.
const MAP_OF_MAPS_FIELDS: &[&str] = &["devices", "expanded_devices"];

/// The string at `path` in `obj`, or `None` when the path names no value or a value that is
/// not a string to LXD (bools, numbers, lists, objects, times, null), which never matches.
pub(super) fn string_at<'a>(obj: &'a Value, path: &str) -> Option<&'a str> {
    match obj {
        Value::Object(fields) => in_struct(fields, path),
        _ => None,
    }
}

/// Splits off the first segment; without a dot the rest is empty, as Go's `Join(parts[1:])`.
fn split_first(path: &str) -> (&str, Option<&str>) {
    match path.split_once('.') {
        Some((key, rest)) => (key, Some(rest)),
        None => (path, None),
    }
}

fn in_struct<'a>(fields: &'a Map<String, Value>, path: &str) -> Option<&'a str> {
    let (key, rest) = split_first(path);
    let child = fields.get(key)?;
    match rest {
        None if TIME_FIELDS.contains(&key) => None,
        None => child.as_str(),
        Some(rest) => in_member(child, key, rest),
    }
}

/// Continues the walk into `value`, the member called `key` of its parent.
fn in_member<'a>(value: &'a Value, key: &str, rest: &str) -> Option<&'a str> {
    let Value::Object(map) = value else {
        return None;
    };
    match Shape::of(map, key) {
        Shape::StringMap => Some(map.get(rest).and_then(Value::as_str).unwrap_or("")),
        Shape::MapOfMaps => {
            let (inner, tail) = split_first(rest);
            in_member(map.get(inner)?, inner, tail.unwrap_or(""))
        }
        Shape::Struct => in_struct(map, rest),
    }
}

/// The Go type an object most likely rendered from.
enum Shape {
    StringMap,
    MapOfMaps,
    Struct,
}

impl Shape {
    fn of(map: &Map<String, Value>, key: &str) -> Shape {
        if map.is_empty() {
            return if MAP_OF_MAPS_FIELDS.contains(&key) {
                Shape::MapOfMaps
            } else {
                Shape::StringMap
            };
        }
        if map.values().all(Value::is_string) {
            Shape::StringMap
        } else if map.values().all(Value::is_object) {
            Shape::MapOfMaps
        } else {
            Shape::Struct
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tests::lxd_instance;
    use serde_json::json;

    /// LXD value_test.go TestValueOf_Instance. Go returns typed values; we return the
    /// string a clause compares against, and `None` for the non-string ones (`created_at`,
    /// a `time.Time`, and `stateful`, a bool), which is what makes them never match.
    #[test]
    fn lxd_value_of_instance() {
        let instance = lxd_instance();
        let cases = [
            ("architecture", Some("x86_64")),
            ("created_at", None),
            ("config.image.os", Some("BusyBox")),
            ("name", Some("c1")),
            ("expanded_config.image.os", Some("BusyBox")),
            ("expanded_devices.root.pool", Some("default")),
            ("status", Some("Running")),
            ("stateful", None),
        ];
        for (field, want) in cases {
            assert_eq!(string_at(&instance, field), want, "{field}");
        }
    }

    #[test]
    fn non_strings_have_no_string() {
        let instance = lxd_instance();
        for field in [
            "ephemeral",
            "status_code",
            "profiles",
            "config",
            "expanded_devices",
            "last_used_at",
        ] {
            assert_eq!(string_at(&instance, field), None, "{field}");
        }
    }

    #[test]
    fn unknown_fields() {
        let instance = lxd_instance();
        // Unknown struct field or map-of-maps key: no value at all.
        for field in [
            "nope",
            "nope.deeper",
            "expanded_devices.eth0.type",
            "devices.root.path",
            "name.x",
        ] {
            assert_eq!(string_at(&instance, field), None, "{field}");
        }
        // Missing key of a string map: Go's zero value.
        assert_eq!(string_at(&instance, "config.user.missing"), Some(""));
        // `expanded_devices.root` asks the device's string map for key "".
        assert_eq!(string_at(&instance, "expanded_devices.root"), Some(""));
        // A top-level that is not an object has no fields.
        assert_eq!(string_at(&json!("c1"), "name"), None);
    }

    #[test]
    fn string_map_takes_the_whole_rest() {
        let obj = json!({"config": {"user.a.b.c": "deep", "user": "short"}});
        assert_eq!(string_at(&obj, "config.user.a.b.c"), Some("deep"));
        assert_eq!(string_at(&obj, "config.user"), Some("short"));
        // Not split further: "user.a" is not a key.
        assert_eq!(string_at(&obj, "config.user.a"), Some(""));
        // A time-named key inside a map is just a string.
        let obj = json!({"config": {"created_at": "x"}});
        assert_eq!(string_at(&obj, "config.created_at"), Some("x"));
    }

    #[test]
    fn nested_structs_are_walked() {
        // InstanceFull's `state` (a pointer in Go, which LXD cannot walk) and an image's
        // `update_source`: we resolve them by field name.
        let obj = json!({
            "state": {"status": "Running", "status_code": 103, "network": {"eth0": {"state": "up", "mtu": 1500}}},
            "update_source": {"server": "https://images.example", "protocol": "simplestreams"}
        });
        assert_eq!(string_at(&obj, "state.status"), Some("Running"));
        assert_eq!(string_at(&obj, "state.status_code"), None);
        assert_eq!(string_at(&obj, "state.network.eth0.state"), Some("up"));
        assert_eq!(string_at(&obj, "state.network.eth0.mtu"), None);
        assert_eq!(
            string_at(&obj, "update_source.server"),
            Some("https://images.example")
        );
    }

    #[test]
    fn image_properties() {
        let image = json!({"public": true, "properties": {"os": "Ubuntu"}, "architecture": "i686", "size": 12});
        assert_eq!(string_at(&image, "properties.os"), Some("Ubuntu"));
        assert_eq!(string_at(&image, "public"), None);
        assert_eq!(string_at(&image, "size"), None);
    }
}
