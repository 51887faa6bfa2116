//! `${Name}` substitution, as AWS SAM and CloudFormation apply `DefinitionSubstitutions`.

use std::collections::{BTreeMap, BTreeSet};

use crate::definition::{DefinitionError, DefinitionIssue};

/// Replaces every `${Name}` (names of `[A-Za-z0-9_]`) with its value from `substitutions`.
///
/// This is plain text substitution, applied before the definition is parsed, so values are
/// inserted verbatim (a value meant to be a JSON string must sit inside quotes in the
/// definition). `$${` is not an escape. Text such as `${not valid}` that is not a placeholder is
/// left alone. Placeholders without a value are an error naming each of them.
///
/// ```
/// use std::collections::BTreeMap;
/// let subs = BTreeMap::from([("Fn".to_string(), "local:echo".to_string())]);
/// let out = beacon_asl::substitute(r#"{"Resource": "${Fn}"}"#, &subs).unwrap();
/// assert_eq!(out, r#"{"Resource": "local:echo"}"#);
/// ```
pub fn substitute(definition_text: &str, substitutions: &BTreeMap<String, String>) -> Result<String, DefinitionError> {
    let mut out = String::with_capacity(definition_text.len());
    let mut missing = BTreeSet::new();
    let mut rest = definition_text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let name_len = after.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
        if name_len > 0 && after.as_bytes().get(name_len) == Some(&b'}') {
            let name = &after[..name_len];
            match substitutions.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    missing.insert(name.to_string());
                    out.push_str(&rest[at..at + 3 + name_len]);
                }
            }
            rest = &after[name_len + 1..];
        } else {
            out.push_str("${");
            rest = after;
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        return Ok(out);
    }
    Err(DefinitionError {
        issues: missing
            .into_iter()
            .map(|name| DefinitionIssue {
                state: None,
                pointer: String::new(),
                message: format!(
                    "no value for the substitution placeholder ${{{name}}}; add '{name}' to the \
                     definition substitutions"
                ),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn replaces_every_occurrence() {
        let out = substitute("${A}-${B}-${A}", &subs(&[("A", "1"), ("B", "two")])).unwrap();
        assert_eq!(out, "1-two-1");
    }

    #[test]
    fn unknown_placeholders_are_all_named() {
        let err = substitute("${A} ${Zed} ${Why} ${Zed}", &subs(&[("A", "1")])).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.issues.len(), 2);
        assert!(text.contains("${Why}") && text.contains("${Zed}"), "{text}");
    }

    #[test]
    fn non_placeholders_are_left_alone() {
        let s = subs(&[("X", "1")]);
        assert_eq!(substitute("$${X}", &s).unwrap(), "$1");
        assert_eq!(substitute("${not valid} ${} ${X", &s).unwrap(), "${not valid} ${} ${X");
        assert_eq!(substitute("$.a.b $$.Execution", &s).unwrap(), "$.a.b $$.Execution");
        assert_eq!(substitute("héllo ${X} wörld", &s).unwrap(), "héllo 1 wörld");
    }
}
