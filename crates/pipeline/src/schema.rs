//! Validation of unit results against a JSON Schema.
//!
//! BEACON's schemas use a small, common subset of JSON Schema (2020-12): `type` (a name or a list
//! of names), `required`, `properties`, `items`, `minimum`, `enum`. That subset is implemented
//! here rather than pulling in a full validator with its own HTTP and regex stacks; keywords
//! outside it are ignored, as the specification requires for unknown keywords.

use serde_json::Value;

/// The default schema of one unit's result (the file ships in `schemas/`).
pub const UNIT_RESULT_SCHEMA: &str = include_str!("../schemas/unit-result.schema.json");

/// The default unit schema, parsed.
pub fn default_unit_schema() -> Value {
    // The file is part of the build and covered by a test; it always parses.
    serde_json::from_str(UNIT_RESULT_SCHEMA).unwrap_or(Value::Null)
}

/// The unit schema the configuration names (`llm.schema`, `--schema FILE`), or the built-in one.
pub fn unit_schema(config: &crate::Config) -> Result<Value, crate::config::ConfigError> {
    let Some(path) = &config.llm.schema else {
        return Ok(default_unit_schema());
    };
    let invalid = |reason: String| crate::config::ConfigError::Invalid(format!("schema {}: {reason}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
    let schema: Value = serde_json::from_str(&text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    check_unit_schema(&schema).map_err(invalid)?;
    Ok(schema)
}

/// Whether `schema` can be a unit schema: unit results are JSON objects.
pub fn check_unit_schema(schema: &Value) -> Result<(), String> {
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => Ok(()),
        _ => Err("a unit schema must describe a JSON object (\"type\": \"object\")".into()),
    }
}

/// Every violation of `schema` in `value`, as `"<json pointer>: <problem>"`; empty when valid.
pub fn violations(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(schema, value, "", &mut out);
    out
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.as_i64().is_some() || value.as_u64().is_some() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(schema: &Value, value: &Value, pointer: &str, out: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    let at = if pointer.is_empty() { "/" } else { pointer };
    if let Some(t) = schema.get("type") {
        let names: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !names.is_empty() && !names.iter().any(|n| type_matches(n, value)) {
            out.push(format!("{at}: expected {}, found {}", names.join(" or "), type_name(value)));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        out.push(format!("{at}: value is not one of the allowed values"));
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64())
        && n < min
    {
        out.push(format!("{at}: {n} is below the minimum {min}"));
    }
    if let Value::Object(map) = value {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(name) {
                    out.push(format!("{at}: missing required property '{name}'"));
                }
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                if let Some(v) = map.get(name) {
                    check(sub, v, &format!("{pointer}/{}", escape(name)), out);
                }
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{pointer}/{i}"), out);
        }
    }
}

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_schema_parses_and_requires_summary() {
        let s = default_unit_schema();
        assert!(s.is_object());
        assert!(violations(&s, &json!({"summary": "ok"})).is_empty());
        let v = violations(&s, &json!({"title": "x"}));
        assert_eq!(v, vec!["/: missing required property 'summary'"]);
    }

    #[test]
    fn nested_types_are_checked_with_pointers() {
        let s = default_unit_schema();
        let v = violations(
            &s,
            &json!({"summary": "s", "fields": [{"name": "a", "value": 3}], "tables": [{"columns": [], "row_count": -1}]}),
        );
        assert_eq!(
            v,
            vec!["/fields/0/value: expected string, found number", "/tables/0/row_count: -1 is below the minimum 0"]
        );
    }

    #[test]
    fn a_configured_schema_file_replaces_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, r#"{"type": "object", "required": ["invoice_number"]}"#).unwrap();
        let mut config = crate::Config::default();
        assert_eq!(unit_schema(&config).unwrap(), default_unit_schema());
        config.llm.schema = Some(path.clone());
        assert_eq!(unit_schema(&config).unwrap()["required"][0], "invoice_number");
        std::fs::write(&path, "[1, 2]").unwrap();
        assert!(unit_schema(&config).unwrap_err().to_string().contains("type"));
        config.llm.schema = Some(dir.path().join("missing.json"));
        assert!(unit_schema(&config).unwrap_err().to_string().contains("missing.json"));
    }

    #[test]
    fn nullable_types_accept_null() {
        let s = default_unit_schema();
        assert!(violations(&s, &json!({"summary": "s", "dates": [{"text": "x", "iso": null}]})).is_empty());
        assert!(!violations(&s, &json!("not an object")).is_empty());
    }
}
