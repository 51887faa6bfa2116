//! Turning a model's answer text into the unit result JSON.
//!
//! Models wrap JSON in prose or Markdown code fences more often than not; the parser takes the
//! first complete JSON object in the text and validates it against the unit schema.

use serde_json::Value;

/// Why an answer could not be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AnswerError {
    #[error("the answer contains no JSON object")]
    NoJson,
    /// Every violation, as `"<json pointer>: <problem>"`.
    #[error("the answer's JSON does not follow the unit schema: {}", .0.join("; "))]
    Schema(Vec<String>),
}

impl AnswerError {
    /// The problems one by one, as a repair request quotes them to the model.
    pub fn problems(&self) -> Vec<String> {
        match self {
            AnswerError::NoJson => vec![self.to_string()],
            AnswerError::Schema(problems) => problems.clone(),
        }
    }
}

/// Parse `text` into a JSON object valid under `schema`.
pub fn parse_answer(text: &str, schema: &Value) -> Result<Value, AnswerError> {
    let value = first_json_object(text).ok_or(AnswerError::NoJson)?;
    let problems = crate::schema::violations(schema, &value);
    if problems.is_empty() { Ok(value) } else { Err(AnswerError::Schema(problems)) }
}

/// The first `{...}` in `text` that parses as a JSON object.
fn first_json_object(text: &str) -> Option<Value> {
    for (start, _) in text.match_indices('{') {
        let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        if let Some(Ok(value @ Value::Object(_))) = stream.next() {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::default_unit_schema;

    #[test]
    fn accepts_plain_and_fenced_json() {
        let s = default_unit_schema();
        assert_eq!(parse_answer(r#"{"summary":"a"}"#, &s).unwrap()["summary"], "a");
        let fenced = "Here you go:\n```json\n{\"summary\": \"b\", \"headings\": [\"H\"]}\n```\n";
        assert_eq!(parse_answer(fenced, &s).unwrap()["headings"][0], "H");
    }

    #[test]
    fn skips_braces_that_are_not_json() {
        let s = default_unit_schema();
        let text = "The set {a, b} is small. {\"summary\": \"c\"}";
        assert_eq!(parse_answer(text, &s).unwrap()["summary"], "c");
    }

    #[test]
    fn rejects_missing_json_and_schema_violations() {
        let s = default_unit_schema();
        assert_eq!(parse_answer("no json here", &s), Err(AnswerError::NoJson));
        let err = parse_answer(r#"{"title": "t", "headings": "H"}"#, &s).unwrap_err();
        assert_eq!(
            err.problems(),
            vec!["/: missing required property 'summary'", "/headings: expected array, found string"]
        );
        assert!(err.to_string().ends_with("'summary'; /headings: expected array, found string"), "{err}");
        assert_eq!(AnswerError::NoJson.problems(), vec!["the answer contains no JSON object"]);
    }
}
