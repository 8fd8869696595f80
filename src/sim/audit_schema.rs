//! The spec's `AuditLog` schema, kept as JSON beside this file (`audit_log_schema.json`:
//! the OpenAPI schema with its `$ref`s inlined and descriptions dropped; a test checks it
//! against the spec), and the small JSON Schema check the organization file's events go
//! through: `type`, `enum`, `properties`, `items`, `required` and `anyOf`, the only
//! keywords the schema uses.

use std::sync::OnceLock;

use serde_json::Value;

/// The `AuditLog` schema, as shipped.
pub const AUDIT_LOG_SCHEMA: &str = include_str!("audit_log_schema.json");

/// The parsed schema (`null` if the shipped file were not JSON, which a unit test rules out).
pub fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::from_str(AUDIT_LOG_SCHEMA).unwrap_or(Value::Null))
}

/// Every `AuditLogEventType`, in the spec's order.
pub fn event_types() -> &'static [String] {
    static TYPES: OnceLock<Vec<String>> = OnceLock::new();
    TYPES.get_or_init(|| {
        schema()["properties"]["type"]["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect()
    })
}

/// Whether `kind` is one of the spec's event types.
pub fn is_event_type(kind: &str) -> bool {
    event_types().iter().any(|t| t == kind)
}

/// Whether an event type is tenant-scoped: the spec lists only those under
/// `tenant_only=true`, and names `role.bound_to_resource` / `role.unbound_from_resource`
/// as tenant-scoped besides the `tenant.*` types.
pub fn is_tenant_scoped(kind: &str) -> bool {
    kind.starts_with("tenant.")
        || kind == "role.bound_to_resource"
        || kind == "role.unbound_from_resource"
}

/// Checks `event` against the `AuditLog` schema: `Err((path, message))` names the first
/// problem, its path relative to the event (`actor.session.ip_address`).
pub fn check_event(event: &Value) -> Result<(), (String, String)> {
    check(schema(), event, "")
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn check(schema: &Value, v: &Value, path: &str) -> Result<(), (String, String)> {
    if let Some(alts) = schema.get("anyOf").and_then(Value::as_array) {
        if alts.iter().any(|a| check(a, v, path).is_ok()) {
            return Ok(());
        }
        // The branch of the value's own type says what is wrong inside it.
        let own = alts.iter().find(|a| a["type"] == json_type(v));
        return match own {
            Some(a) => check(a, v, path),
            None => Err((
                path.to_owned(),
                format!("expected an object or null, got {}", json_type(v)),
            )),
        };
    }
    if let Some(want) = schema.get("type").and_then(Value::as_str)
        && json_type(v) != want
    {
        return Err((
            path.to_owned(),
            format!("expected {want}, got {}", json_type(v)),
        ));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let shown = if allowed.len() > 8 {
            "one of the values the spec lists".to_owned()
        } else {
            allowed
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err((
            path.to_owned(),
            format!("unknown value {v} (expected {shown})"),
        ));
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if v.get(key).is_none() {
                return Err((join(path, key), "missing (required)".to_owned()));
            }
        }
    }
    if let (Some(props), Some(map)) = (
        schema.get("properties").and_then(Value::as_object),
        v.as_object(),
    ) {
        for (key, value) in map {
            if let Some(s) = props.get(key) {
                check(s, value, &join(path, key))?;
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), v.as_array()) {
        for (i, item) in list.iter().enumerate() {
            check(items, item, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_shipped_schema_lists_all_145_event_types() {
        assert!(schema().is_object());
        assert_eq!(event_types().len(), 145);
        assert!(is_event_type("login.failed"));
        assert!(!is_event_type("login.exploded"));
        assert!(is_tenant_scoped("tenant.user.added"));
        assert!(!is_tenant_scoped("user.added"));
    }

    #[test]
    fn an_event_is_checked_down_to_its_payload() {
        let good = json!({"id": "a", "type": "login.failed", "effective_at": 1,
            "actor": {"type": "session", "session": {"user": {"id": "u", "email": "e"},
                "ip_address": "203.0.113.5"}},
            "login.failed": {"error_code": "x", "error_message": "y"}});
        assert_eq!(check_event(&good), Ok(()));
        assert_eq!(
            check_event(
                &json!({"id": "a", "type": "login.failed", "effective_at": 1, "actor": null})
            ),
            Ok(())
        );
        let cases = [
            (json!({"id": "a", "type": "login.failed"}), "effective_at"),
            (
                json!({"id": "a", "type": "nope", "effective_at": 1}),
                "type",
            ),
            (
                json!({"id": "a", "type": "login.failed", "effective_at": 1,
                    "actor": {"type": "robot"}}),
                "actor.type",
            ),
            (
                json!({"id": "a", "type": "login.failed", "effective_at": 1,
                    "actor": {"type": "session", "session": {"ip_address": 5}}}),
                "actor.session.ip_address",
            ),
            (
                json!({"id": "a", "type": "api_key.created", "effective_at": 1,
                    "api_key.created": {"id": "k", "data": {"scopes": [1]}}}),
                "api_key.created.data.scopes[0]",
            ),
            (
                json!({"id": "a", "type": "login.failed", "effective_at": 1.5}),
                "effective_at",
            ),
        ];
        for (event, path) in cases {
            let got = check_event(&event).unwrap_err();
            assert_eq!(got.0, path, "{event}: {got:?}");
        }
    }
}
