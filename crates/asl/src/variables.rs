//! Workflow variables: values a state stores with `Assign` and later states read as `$name`.
//!
//! Scoping follows AWS: the top-level states of a machine share one scope. Each Parallel branch
//! and each inline Map iteration runs in a scope of its own, which reads the variables of the
//! enclosing scopes as they were when the Parallel or Map state started, but may not assign
//! them; what it assigns itself is gone when the branch or iteration ends. The iterations of a
//! Distributed Map are child executions and see no outer variables at all.
//!
//! A state's assignments take effect when the state exits: every expression in the state,
//! `Assign` included, reads the values the variables had when the state was entered.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::definition::Problems;
use crate::payload::PayloadTemplate;

/// Longest variable name AWS accepts.
const MAX_NAME_CHARS: usize = 80;

/// The variables one scope can see.
#[derive(Debug, Clone, Default)]
pub(crate) struct Variables {
    /// Variables of the enclosing scopes: readable, not assignable.
    outer: Arc<Map<String, Value>>,
    /// Variables this scope assigned.
    own: Map<String, Value>,
}

impl Variables {
    /// The value of `$name`, if it is in scope.
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.own.get(name).or_else(|| self.outer.get(name))
    }

    /// The scope of a Parallel branch or inline Map iteration started from this one. Clone the
    /// result for each branch or iteration: the outer values are shared, not copied.
    pub(crate) fn nested(&self) -> Variables {
        if self.own.is_empty() {
            return Variables { outer: self.outer.clone(), own: Map::new() };
        }
        let mut all = (*self.outer).clone();
        all.extend(self.own.iter().map(|(k, v)| (k.clone(), v.clone())));
        Variables { outer: Arc::new(all), own: Map::new() }
    }

    /// The name of the first variable in `values` that belongs to an enclosing scope, which
    /// this scope may not assign.
    pub(crate) fn outer_name<'a>(&self, values: &'a Map<String, Value>) -> Option<&'a str> {
        values.keys().find(|k| self.outer.contains_key(k.as_str())).map(String::as_str)
    }

    /// Stores the values a state assigned (checked with [`Variables::outer_name`] first).
    pub(crate) fn assign(&mut self, values: Map<String, Value>) {
        self.own.extend(values);
    }
}

/// True for a name `Assign` may set: a letter or `_`, then letters, digits and `_`.
pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
        && name.chars().count() <= MAX_NAME_CHARS
}

/// Compiles an `Assign` object: each key names a variable (with `.$` when the value is a path
/// or an intrinsic function), each value is a payload template.
pub(crate) fn compile_assign(value: &Value, pointer: &str, problems: &mut Problems) -> Option<PayloadTemplate> {
    let Some(obj) = value.as_object() else {
        problems.push(pointer, "'Assign' must be an object of variable names and values");
        return None;
    };
    for key in obj.keys() {
        let name = key.strip_suffix(".$").unwrap_or(key);
        if !is_valid_name(name) {
            problems.push(
                format!("{pointer}/{}", crate::definition::escape_pointer(key)),
                format!(
                    "'{name}' is not a valid variable name: use a letter or '_' followed by letters, digits \
                     and '_', at most {MAX_NAME_CHARS} characters"
                ),
            );
        }
    }
    Some(PayloadTemplate::compile(value, pointer, problems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn names() {
        assert!(is_valid_name("x"));
        assert!(is_valid_name("_count2"));
        assert!(is_valid_name("größe"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("2x"));
        assert!(!is_valid_name("a-b"));
        assert!(!is_valid_name("a.b"));
        assert!(!is_valid_name(&"x".repeat(81)));
    }

    #[test]
    fn nested_scopes_read_outer_values_and_keep_their_own() {
        let mut top = Variables::default();
        top.assign(map(json!({"x": 1})));
        let mut inner = top.nested();
        assert_eq!(inner.get("x"), Some(&json!(1)));
        assert_eq!(inner.outer_name(&map(json!({"y": 2, "x": 3}))), Some("x"));
        inner.assign(map(json!({"y": 2})));
        assert_eq!(inner.get("y"), Some(&json!(2)));
        assert_eq!(top.get("y"), None);
        let deeper = inner.nested();
        assert_eq!(deeper.get("x"), Some(&json!(1)));
        assert_eq!(deeper.get("y"), Some(&json!(2)));
        assert_eq!(deeper.outer_name(&map(json!({"y": 0}))), Some("y"));
    }
}
