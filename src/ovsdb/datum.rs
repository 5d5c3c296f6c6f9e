//! OVSDB values in their JSON encoding (RFC 7047, 5.1): an atom is a JSON
//! string, number or boolean, or `["uuid", "..."]`; a set of other than one
//! element is `["set", [...]]`; a map is `["map", [[key, value], ...]]`.
//! These read them leniently (a column's value as ovsdb-server sends it)
//! and never panic on anything else: what does not fit reads as empty.

use serde_json::{Value, json};

/// The elements of a set-valued column (one atom reads as a set of one).
pub fn set(v: &Value) -> Vec<&Value> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, Value::Array(items)]) if tag == "set" => items.iter().collect(),
        Some([tag, _]) if tag == "map" => Vec::new(),
        _ if v.is_null() => Vec::new(),
        _ => vec![v],
    }
}

/// The pairs of a map-valued column.
pub fn map(v: &Value) -> Vec<(&Value, &Value)> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, Value::Array(pairs)]) if tag == "map" => pairs
            .iter()
            .filter_map(|p| match p.as_array().map(Vec::as_slice) {
                Some([k, v]) => Some((k, v)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The value of string key `key` in a map-valued column.
pub fn map_get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    map(v)
        .into_iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// The UUID of a `["uuid", "..."]` atom.
pub fn uuid(v: &Value) -> Option<&str> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, Value::String(u)]) if tag == "uuid" => Some(u),
        _ => None,
    }
}

/// The UUIDs of a set of references.
pub fn uuids(v: &Value) -> Vec<&str> {
    set(v).into_iter().filter_map(uuid).collect()
}

/// An optional column (a set of at most one atom): the atom, if any.
pub fn optional(v: &Value) -> Option<&Value> {
    match set(v).as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// A set in the encoding a transaction writes.
pub fn to_set(items: Vec<Value>) -> Value {
    json!(["set", items])
}

/// A map of strings in the encoding a transaction writes.
pub fn to_map<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> Value {
    let v: Vec<Value> = pairs.into_iter().map(|(k, v)| json!([k, v])).collect();
    json!(["map", v])
}

/// A reference to row `u`.
pub fn to_uuid(u: &str) -> Value {
    json!(["uuid", u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_read_as_ovsdb_server_sends_them() {
        let s = json!(["set", [["uuid", "a"], ["uuid", "b"]]]);
        assert_eq!(uuids(&s), ["a", "b"]);
        assert_eq!(uuids(&json!(["uuid", "c"])), ["c"]);
        assert!(set(&json!(["set", []])).is_empty());
        assert_eq!(optional(&json!(["set", []])), None);
        assert_eq!(optional(&json!(10)), Some(&json!(10)));
        let m = json!(["map", [["datapath-id", "0000000000000001"], ["x", "y"]]]);
        assert_eq!(map_get(&m, "datapath-id"), Some(&json!("0000000000000001")));
        assert_eq!(map_get(&m, "nope"), None);
        // Nothing odd panics.
        for odd in [
            json!(null),
            json!([]),
            json!(["set"]),
            json!(["map", [[1]]]),
            json!({"a": 1}),
        ] {
            let _ = (
                set(&odd),
                map(&odd),
                uuid(&odd),
                uuids(&odd),
                optional(&odd),
            );
        }
        assert_eq!(
            to_map([("a", "b".to_owned())]),
            json!(["map", [["a", "b"]]])
        );
    }
}
