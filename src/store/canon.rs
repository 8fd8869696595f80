//! Content identity of an object (a hash that ignores key order and volatile fields) and
//! the field-level difference between two versions.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// SHA-256 of the object's canonical JSON (keys sorted at every level, no insignificant
/// whitespace) with the top-level `volatile` fields left out.
pub fn content_hash(value: &Value, volatile: &[&str]) -> [u8; 32] {
    let mut text = String::new();
    match value {
        Value::Object(map) if !volatile.is_empty() => {
            let kept: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| !volatile.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            write_canonical(&Value::Object(kept), &mut text);
        }
        other => write_canonical(other, &mut text),
    }
    Sha256::digest(text.as_bytes()).into()
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The current values of the object's volatile fields, as a JSON object of the ones present.
pub fn volatile_values(value: &Value, volatile: &[&str]) -> Option<String> {
    if volatile.is_empty() {
        return None;
    }
    let mut map = Map::new();
    if let Value::Object(obj) = value {
        for field in volatile {
            if let Some(v) = obj.get(*field) {
                map.insert((*field).to_owned(), v.clone());
            }
        }
    }
    Some(Value::Object(map).to_string())
}

/// One changed field between two versions of an object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    /// Where, as a JSON path (`$.owner.user.role`).
    pub path: String,
    /// The old value; `None` when the field did not exist.
    pub old: Option<Value>,
    /// The new value; `None` when the field no longer exists.
    pub new: Option<Value>,
}

/// The fields that differ between `old` and `new`, depth-first in the order the fields
/// appear. Arrays are compared whole (a changed `model_ids` is one change). Top-level
/// `volatile` fields are ignored.
pub fn field_changes(old: &Value, new: &Value, volatile: &[&str]) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    diff_into("$", old, new, volatile, &mut changes);
    changes
}

fn diff_into(path: &str, old: &Value, new: &Value, skip: &[&str], out: &mut Vec<FieldChange>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
            for key in keys {
                if skip.contains(&key.as_str()) {
                    continue;
                }
                let child = child_path(path, key);
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff_into(&child, x, y, &[], out),
                    (x, y) => out.push(FieldChange {
                        path: child,
                        old: x.cloned(),
                        new: y.cloned(),
                    }),
                }
            }
        }
        (a, b) if a != b => out.push(FieldChange {
            path: path.to_owned(),
            old: Some(a.clone()),
            new: Some(b.clone()),
        }),
        _ => {}
    }
}

fn child_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("{parent}.{key}")
    } else {
        format!("{parent}.{}", Value::String(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_ignores_key_order_and_volatile_fields() {
        let a = json!({"id": "k", "name": "x", "last_used_at": 1, "owner": {"a": 1, "b": 2}});
        let b = json!({"owner": {"b": 2, "a": 1}, "last_used_at": 99, "name": "x", "id": "k"});
        assert_eq!(
            content_hash(&a, &["last_used_at"]),
            content_hash(&b, &["last_used_at"])
        );
        assert_ne!(content_hash(&a, &[]), content_hash(&b, &[]));
        let c = json!({"id": "k", "name": "y", "last_used_at": 1, "owner": {"a": 1, "b": 2}});
        assert_ne!(
            content_hash(&a, &["last_used_at"]),
            content_hash(&c, &["last_used_at"])
        );
    }

    #[test]
    fn field_changes_name_nested_paths_and_skip_volatile() {
        let old = json!({"id": "k", "last_used_at": 1, "owner": {"user": {"role": "member"}},
                         "model_ids": ["a"], "gone": true});
        let new = json!({"id": "k", "last_used_at": 2, "owner": {"user": {"role": "owner"}},
                         "model_ids": ["a", "b"], "new field": 1});
        let changes = field_changes(&old, &new, &["last_used_at"]);
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.owner.user.role",
                "$.model_ids",
                "$.gone",
                "$.\"new field\""
            ]
        );
        assert_eq!(changes[0].old, Some(json!("member")));
        assert_eq!(changes[0].new, Some(json!("owner")));
        assert_eq!(changes[2].new, None);
        assert_eq!(changes[3].old, None);
    }
}
