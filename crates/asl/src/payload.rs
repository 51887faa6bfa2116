//! Payload templates: `Parameters`, `ResultSelector` and `ItemSelector`.
//!
//! A key ending in `.$` takes its value from a path into the effective input (`$...`), a path
//! into the context object (`$$...`), or an intrinsic function call; the `.$` is dropped from the
//! output key. Other values are copied as they are. Objects nested in objects and arrays are
//! processed the same way.

use serde_json::{Map, Value};

use crate::definition::Problems;
use crate::intrinsics::{IntrinsicCall, IntrinsicError};
use crate::json::to_compact;
use crate::path::{Sources, ValuePath};

/// A payload template compiled from the definition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PayloadTemplate {
    /// A value with no `.$` keys anywhere below it.
    Static(Value),
    Object(Vec<(String, Field)>),
    Array(Vec<PayloadTemplate>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field {
    Template(PayloadTemplate),
    /// `"key.$": "$.path"` or `"key.$": "$$.path"`; the string is the key as written.
    Path(String, ValuePath),
    /// `"key.$": "States.X(...)"`.
    Intrinsic(String, IntrinsicCall),
}

/// Why a payload template could not be filled in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PayloadError {
    /// A path selected nothing; the message is AWS's wording.
    #[error("The JSONPath '{path}' specified for the field '{field}' could not be found in the input '{input}'")]
    PathNotFound { path: String, field: String, input: String },
    /// A variable reference did not resolve.
    #[error("The variable reference '{path}' specified for the field '{field}' could not be resolved: {reason}")]
    Variable { path: String, field: String, reason: String },
    /// An intrinsic function failed.
    #[error("The function '{call}' specified for the field '{field}' failed: {source}")]
    Intrinsic { call: String, field: String, source: IntrinsicError },
}

impl PayloadError {
    /// Missing paths are `States.Runtime`; failing functions are `States.IntrinsicFailure`.
    pub(crate) fn error_name(&self) -> &'static str {
        match self {
            PayloadError::PathNotFound { .. } | PayloadError::Variable { .. } => crate::errors::RUNTIME,
            PayloadError::Intrinsic { source: IntrinsicError::PathNotFound { .. }, .. } => crate::errors::RUNTIME,
            PayloadError::Intrinsic { .. } => crate::errors::INTRINSIC_FAILURE,
        }
    }
}

impl PayloadTemplate {
    /// Compiles a template, reporting bad `.$` values to `problems`.
    pub(crate) fn compile(value: &Value, pointer: &str, problems: &mut Problems) -> PayloadTemplate {
        if !contains_dynamic_key(value) {
            return PayloadTemplate::Static(value.clone());
        }
        match value {
            Value::Object(map) => {
                let mut fields = Vec::with_capacity(map.len());
                for (key, v) in map {
                    let ptr = format!("{pointer}/{}", crate::definition::escape_pointer(key));
                    match key.strip_suffix(".$") {
                        Some(out_key) => {
                            let Some(text) = v.as_str() else {
                                problems.push(
                                    ptr,
                                    format!(
                                        "the value of '{key}' must be a string holding a path or \
                                         an intrinsic function, because the key ends in '.$'"
                                    ),
                                );
                                continue;
                            };
                            if let Some(field) = compile_dynamic(key, text, &ptr, problems) {
                                fields.push((out_key.to_string(), field));
                            }
                        }
                        None => {
                            fields.push((key.clone(), Field::Template(PayloadTemplate::compile(v, &ptr, problems))))
                        }
                    }
                }
                PayloadTemplate::Object(fields)
            }
            Value::Array(items) => PayloadTemplate::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| PayloadTemplate::compile(v, &format!("{pointer}/{i}"), problems))
                    .collect(),
            ),
            other => PayloadTemplate::Static(other.clone()),
        }
    }

    /// Fills in the template from `input` (`$`) and `context` (`$$`).
    #[cfg(test)]
    pub(crate) fn evaluate(&self, input: &Value, context: &Value) -> Result<Value, PayloadError> {
        self.evaluate_in(&Sources::new(input, context, &crate::variables::Variables::default()))
    }

    /// Fills in the template from the input (`$`), the context object (`$$`) and the variables.
    pub(crate) fn evaluate_in(&self, src: &Sources<'_>) -> Result<Value, PayloadError> {
        match self {
            PayloadTemplate::Static(v) => Ok(v.clone()),
            PayloadTemplate::Array(items) => {
                items.iter().map(|t| t.evaluate_in(src)).collect::<Result<Vec<_>, _>>().map(Value::Array)
            }
            PayloadTemplate::Object(fields) => {
                let mut out = Map::with_capacity(fields.len());
                for (key, field) in fields {
                    let v = match field {
                        Field::Template(t) => t.evaluate_in(src)?,
                        Field::Path(written_key, path) => path.select_in(src).map_err(|e| match path {
                            ValuePath::Input(_) => PayloadError::PathNotFound {
                                path: path.as_str().to_string(),
                                field: written_key.clone(),
                                input: to_compact(src.input),
                            },
                            ValuePath::Context(_) => PayloadError::PathNotFound {
                                path: path.as_str().to_string(),
                                field: written_key.clone(),
                                input: to_compact(src.context),
                            },
                            ValuePath::Variable { .. } => PayloadError::Variable {
                                path: path.as_str().to_string(),
                                field: written_key.clone(),
                                reason: e.to_string(),
                            },
                        })?,
                        Field::Intrinsic(written_key, call) => {
                            call.evaluate_in(src).map_err(|source| match source {
                                IntrinsicError::PathNotFound { path, source } => match ValuePath::parse(&path) {
                                    Ok(ValuePath::Variable { .. }) => PayloadError::Variable {
                                        path,
                                        field: written_key.clone(),
                                        reason: source.to_string(),
                                    },
                                    Ok(ValuePath::Context(_)) => PayloadError::PathNotFound {
                                        path,
                                        field: written_key.clone(),
                                        input: to_compact(src.context),
                                    },
                                    _ => PayloadError::PathNotFound {
                                        path,
                                        field: written_key.clone(),
                                        input: to_compact(src.input),
                                    },
                                },
                                other => PayloadError::Intrinsic {
                                    call: call.as_str().to_string(),
                                    field: written_key.clone(),
                                    source: other,
                                },
                            })?
                        }
                    };
                    out.insert(key.clone(), v);
                }
                Ok(Value::Object(out))
            }
        }
    }
}

fn compile_dynamic(key: &str, text: &str, pointer: &str, problems: &mut Problems) -> Option<Field> {
    if IntrinsicCall::looks_like_call(text) {
        match IntrinsicCall::parse(text) {
            Ok(call) => return Some(Field::Intrinsic(key.to_string(), call)),
            Err(e) => {
                problems.push(pointer, e.to_string());
                return None;
            }
        }
    }
    if !text.starts_with('$') {
        problems.push(
            pointer,
            format!(
                "the value of '{key}' must be a path starting with '$' or '$$', or an intrinsic \
                 function such as States.Format(...), got '{text}'"
            ),
        );
        return None;
    }
    match ValuePath::parse(text) {
        Ok(p) => Some(Field::Path(key.to_string(), p)),
        Err(e) => {
            problems.push(pointer, e.to_string());
            None
        }
    }
}

fn contains_dynamic_key(v: &Value) -> bool {
    match v {
        Value::Object(map) => map.iter().any(|(k, v)| k.ends_with(".$") || contains_dynamic_key(v)),
        Value::Array(items) => items.iter().any(contains_dynamic_key),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(v: Value) -> PayloadTemplate {
        let mut problems = Problems::new(None);
        let t = PayloadTemplate::compile(&v, "/Parameters", &mut problems);
        assert!(problems.is_empty(), "{:?}", problems.into_issues());
        t
    }

    // The "Parameters" example of the "Manipulate parameters in Step Functions workflows" page.
    #[test]
    fn parameters_example_from_the_docs() {
        let t = compile(json!({
            "comment": "Selecting what I care about.",
            "MyDetails": {
                "size.$": "$.product.details.size",
                "exists.$": "$.product.availability",
                "StaticValue": "foo"
            }
        }));
        let input = json!({
            "comment": "Example for Parameters.",
            "product": {
                "details": {"color": "blue", "size": "small", "material": "cotton"},
                "availability": "in stock",
                "sku": "2317",
                "cost": "$23"
            }
        });
        assert_eq!(
            t.evaluate(&input, &json!({})).unwrap(),
            json!({
                "comment": "Selecting what I care about.",
                "MyDetails": {"size": "small", "exists": "in stock", "StaticValue": "foo"}
            })
        );
    }

    #[test]
    fn context_and_intrinsics_and_arrays() {
        let t = compile(json!({
            "name.$": "$$.Execution.Name",
            "greeting.$": "States.Format('hi {}', $.who)",
            "list": [{"x.$": "$.who"}, "plain $.who"]
        }));
        let out = t.evaluate(&json!({"who": "bob"}), &json!({"Execution": {"Name": "e1"}})).unwrap();
        assert_eq!(out, json!({"name": "e1", "greeting": "hi bob", "list": [{"x": "bob"}, "plain $.who"]}));
    }

    #[test]
    fn missing_path_uses_aws_wording() {
        let t = compile(json!({"a.$": "$.nope"}));
        let err = t.evaluate(&json!({"b": 1}), &json!({})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "The JSONPath '$.nope' specified for the field 'a.$' could not be found in the input '{\"b\":1}'"
        );
        assert_eq!(err.error_name(), "States.Runtime");
    }

    #[test]
    fn bad_dynamic_values_are_reported() {
        let mut problems = Problems::new(None);
        PayloadTemplate::compile(
            &json!({"a.$": 3, "b.$": "nope", "c.$": "States.Nope()", "d.$": "$.x["}),
            "/P",
            &mut problems,
        );
        let issues = problems.into_issues();
        let pointers: Vec<&str> = issues.iter().map(|i| i.pointer.as_str()).collect();
        assert_eq!(pointers, vec!["/P/a.$", "/P/b.$", "/P/c.$", "/P/d.$"]);
    }
}
