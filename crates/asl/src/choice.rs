//! Choice rules: comparison operators, `And`/`Or`/`Not`, and their evaluation.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use crate::definition::Problems;
use crate::json::numbers_equal;
use crate::path::{Sources, ValuePath};

/// One rule of a Choice state (top level or nested in `And`/`Or`/`Not`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ChoiceRule {
    And(Vec<ChoiceRule>),
    Or(Vec<ChoiceRule>),
    Not(Box<ChoiceRule>),
    Test { variable: ValuePath, test: Test },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Test {
    Compare { kind: Kind, ord: Ord5, operand: Operand },
    StringMatches(String),
    IsPresent(bool),
    IsNull(bool),
    IsNumeric(bool),
    IsString(bool),
    IsBoolean(bool),
    IsTimestamp(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Numeric,
    Boolean,
    Timestamp,
}

/// Equals, LessThan, GreaterThan, LessThanEquals, GreaterThanEquals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ord5 {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
}

impl Ord5 {
    fn accepts(self, o: Ordering) -> bool {
        match self {
            Ord5::Eq => o == Ordering::Equal,
            Ord5::Lt => o == Ordering::Less,
            Ord5::Gt => o == Ordering::Greater,
            Ord5::Le => o != Ordering::Greater,
            Ord5::Ge => o != Ordering::Less,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Literal(Value),
    Path(ValuePath),
}

const ORDS: [(&str, Ord5); 5] = [
    ("Equals", Ord5::Eq),
    ("LessThan", Ord5::Lt),
    ("GreaterThan", Ord5::Gt),
    ("LessThanEquals", Ord5::Le),
    ("GreaterThanEquals", Ord5::Ge),
];

const TYPE_TESTS: [&str; 6] = ["IsPresent", "IsNull", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp"];

/// Recognises an operator name: (kind, ordering, is a `...Path` variant).
fn comparison_operator(name: &str) -> Option<(Kind, Ord5, bool)> {
    let (base, is_path) = match name.strip_suffix("Path") {
        Some(b) => (b, true),
        None => (name, false),
    };
    if base == "BooleanEquals" {
        return Some((Kind::Boolean, Ord5::Eq, is_path));
    }
    for (prefix, kind) in [("String", Kind::String), ("Numeric", Kind::Numeric), ("Timestamp", Kind::Timestamp)] {
        if let Some(rest) = base.strip_prefix(prefix) {
            for (suffix, ord) in ORDS {
                if rest == suffix {
                    return Some((kind, ord, is_path));
                }
            }
        }
    }
    None
}

fn is_operator(name: &str) -> bool {
    comparison_operator(name).is_some() || name == "StringMatches" || TYPE_TESTS.contains(&name)
}

impl ChoiceRule {
    /// Compiles a rule; top-level rules carry `Next`, nested ones must not.
    pub(crate) fn compile(v: &Value, pointer: &str, top_level: bool, problems: &mut Problems) -> Option<ChoiceRule> {
        let Some(obj) = v.as_object() else {
            problems.push(pointer, "a choice rule must be a JSON object");
            return None;
        };
        for key in obj.keys() {
            let known = matches!(key.as_str(), "And" | "Or" | "Not" | "Variable" | "Comment")
                || ((key == "Next" || key == "Assign") && top_level)
                || is_operator(key);
            if !known {
                let msg = if key == "Next" {
                    "'Next' is only allowed on top-level choice rules, not inside And/Or/Not".to_string()
                } else if key == "Assign" {
                    "'Assign' is only allowed on top-level choice rules, not inside And/Or/Not".to_string()
                } else if key == "Condition" {
                    format!("'{key}' is not supported (it belongs to JSONata or variables)")
                } else {
                    format!("unknown field '{key}' in a choice rule")
                };
                problems.push(format!("{pointer}/{key}"), msg);
            }
        }
        if top_level {
            match obj.get("Next") {
                Some(Value::String(_)) => {}
                Some(_) => problems.push(format!("{pointer}/Next"), "'Next' must be a string"),
                None => problems.push(pointer, "a top-level choice rule needs 'Next' naming the state to go to"),
            }
        }
        let operators: Vec<&String> = obj.keys().filter(|k| is_operator(k)).collect();
        let combinators: Vec<&str> = ["And", "Or", "Not"].into_iter().filter(|k| obj.contains_key(*k)).collect();
        if operators.len() + combinators.len() != 1 {
            problems.push(
                pointer,
                format!(
                    "a choice rule needs exactly one comparison operator or And/Or/Not, found {}",
                    if operators.is_empty() && combinators.is_empty() {
                        "none".to_string()
                    } else {
                        operators
                            .iter()
                            .map(|s| s.as_str())
                            .chain(combinators.iter().copied())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            );
            return None;
        }
        if let Some(&comb) = combinators.first() {
            if obj.contains_key("Variable") {
                problems.push(format!("{pointer}/Variable"), format!("'Variable' does not belong next to '{comb}'"));
            }
            let ptr = format!("{pointer}/{comb}");
            let val = &obj[comb];
            if comb == "Not" {
                return ChoiceRule::compile(val, &ptr, false, problems).map(|r| ChoiceRule::Not(Box::new(r)));
            }
            let Some(items) = val.as_array().filter(|a| !a.is_empty()) else {
                problems.push(ptr, format!("'{comb}' must be a non-empty array of choice rules"));
                return None;
            };
            let mut rules = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let Some(r) = ChoiceRule::compile(item, &format!("{ptr}/{i}"), false, problems) {
                    rules.push(r);
                }
            }
            if rules.len() != items.len() {
                return None;
            }
            return Some(if comb == "And" { ChoiceRule::And(rules) } else { ChoiceRule::Or(rules) });
        }
        let variable = match obj.get("Variable") {
            Some(Value::String(s)) => match ValuePath::parse(s) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(format!("{pointer}/Variable"), e.to_string());
                    return None;
                }
            },
            Some(_) => {
                problems.push(format!("{pointer}/Variable"), "'Variable' must be a path string");
                return None;
            }
            None => {
                problems.push(pointer, "a comparison needs 'Variable', the path of the value to test");
                return None;
            }
        };
        let op = operators[0].as_str();
        let ptr = format!("{pointer}/{op}");
        let val = &obj[op];
        let test = compile_test(op, val, &ptr, problems)?;
        Some(ChoiceRule::Test { variable, test })
    }

    /// Evaluates the rule; an error is the cause of a `States.Runtime` failure.
    pub(crate) fn evaluate(&self, src: &Sources<'_>) -> Result<bool, String> {
        match self {
            ChoiceRule::And(rules) => {
                for r in rules {
                    if !r.evaluate(src)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            ChoiceRule::Or(rules) => {
                for r in rules {
                    if r.evaluate(src)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            ChoiceRule::Not(r) => r.evaluate(src).map(|b| !b),
            ChoiceRule::Test { variable, test } => {
                if let Test::IsPresent(expected) = test {
                    return Ok(variable.exists_in_sources(src) == *expected);
                }
                let value = variable.select_in(src).map_err(|_| undefined_path(variable))?;
                test.apply(&value, src)
            }
        }
    }
}

fn undefined_path(path: &ValuePath) -> String {
    format!("Invalid path '{}': The choice state's condition path references an undefined value.", path.as_str())
}

fn compile_test(op: &str, val: &Value, pointer: &str, problems: &mut Problems) -> Option<Test> {
    let want_bool = |problems: &mut Problems| match val {
        Value::Bool(b) => Some(*b),
        _ => {
            problems.push(pointer, format!("'{op}' must be true or false"));
            None
        }
    };
    match op {
        "IsPresent" => return want_bool(problems).map(Test::IsPresent),
        "IsNull" => return want_bool(problems).map(Test::IsNull),
        "IsNumeric" => return want_bool(problems).map(Test::IsNumeric),
        "IsString" => return want_bool(problems).map(Test::IsString),
        "IsBoolean" => return want_bool(problems).map(Test::IsBoolean),
        "IsTimestamp" => return want_bool(problems).map(Test::IsTimestamp),
        "StringMatches" => {
            return match val {
                Value::String(s) => Some(Test::StringMatches(s.clone())),
                _ => {
                    problems.push(pointer, "'StringMatches' must be a string pattern");
                    None
                }
            };
        }
        _ => {}
    }
    let (kind, ord, is_path) = comparison_operator(op)?;
    let operand = if is_path {
        let Some(text) = val.as_str() else {
            problems.push(pointer, format!("'{op}' must be a path string"));
            return None;
        };
        match ValuePath::parse(text) {
            Ok(p) => Operand::Path(p),
            Err(e) => {
                problems.push(pointer, e.to_string());
                return None;
            }
        }
    } else {
        let ok = match kind {
            Kind::String => val.is_string(),
            Kind::Numeric => val.is_number(),
            Kind::Boolean => val.is_boolean(),
            Kind::Timestamp => val.as_str().and_then(parse_timestamp).is_some(),
        };
        if !ok {
            let want = match kind {
                Kind::String => "a string",
                Kind::Numeric => "a number",
                Kind::Boolean => "true or false",
                Kind::Timestamp => "an RFC 3339 timestamp such as \"2016-08-18T17:33:00Z\"",
            };
            problems.push(pointer, format!("'{op}' must be {want}"));
            return None;
        }
        Operand::Literal(val.clone())
    };
    Some(Test::Compare { kind, ord, operand })
}

impl Test {
    fn apply(&self, value: &Value, src: &Sources<'_>) -> Result<bool, String> {
        Ok(match self {
            Test::IsPresent(expected) => *expected,
            Test::IsNull(expected) => value.is_null() == *expected,
            Test::IsNumeric(expected) => value.is_number() == *expected,
            Test::IsString(expected) => value.is_string() == *expected,
            Test::IsBoolean(expected) => value.is_boolean() == *expected,
            Test::IsTimestamp(expected) => value.as_str().and_then(parse_timestamp).is_some() == *expected,
            Test::StringMatches(pattern) => value.as_str().is_some_and(|s| string_matches(s, pattern)),
            Test::Compare { kind, ord, operand } => {
                let other = match operand {
                    Operand::Literal(v) => v.clone(),
                    Operand::Path(p) => p.select_in(src).map_err(|_| undefined_path(p))?,
                };
                compare(*kind, *ord, value, &other)
            }
        })
    }
}

/// Values of the wrong type never match (AWS does not fail the execution for them).
fn compare(kind: Kind, ord: Ord5, left: &Value, right: &Value) -> bool {
    let ordering = match (kind, left, right) {
        (Kind::String, Value::String(a), Value::String(b)) => {
            // Java compares strings by UTF-16 code units.
            Some(a.encode_utf16().cmp(b.encode_utf16()))
        }
        (Kind::Numeric, Value::Number(a), Value::Number(b)) => {
            if numbers_equal(a, b) {
                Some(Ordering::Equal)
            } else if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
                Some(x.cmp(&y))
            } else {
                match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) => x.partial_cmp(&y),
                    _ => None,
                }
            }
        }
        (Kind::Boolean, Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Kind::Timestamp, Value::String(a), Value::String(b)) => match (parse_timestamp(a), parse_timestamp(b)) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => None,
        },
        _ => None,
    };
    ordering.is_some_and(|o| ord.accepts(o))
}

/// RFC 3339 with the restrictions of the ASL spec: an uppercase `T` between date and time, and
/// an uppercase `Z` when there is no numeric offset.
pub(crate) fn parse_timestamp(s: &str) -> Option<DateTime<FixedOffset>> {
    if s.as_bytes().get(10) != Some(&b'T') || s.ends_with('z') {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok()
}

/// `*` matches any run of characters; `\*` is a literal star and `\\` a literal backslash.
pub(crate) fn string_matches(text: &str, pattern: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Star,
        Char(char),
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => toks.push(Tok::Char(n)),
                None => toks.push(Tok::Char('\\')),
            },
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Char(c)),
        }
    }
    let text: Vec<char> = text.chars().collect();
    // Classic wildcard matching with backtracking to the last star.
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(Tok::Star) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| *t == Tok::Star)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> ChoiceRule {
        let mut problems = Problems::new(None);
        let r = ChoiceRule::compile(&v, "/Choices/0", true, &mut problems);
        assert!(problems.is_empty(), "{:?}", problems.into_issues());
        r.unwrap()
    }

    fn eval(v: Value, input: Value) -> Result<bool, String> {
        let vars = crate::variables::Variables::default();
        rule(v).evaluate(&Sources::new(&input, &json!({}), &vars))
    }

    #[test]
    fn every_comparison_operator() {
        let input = json!({"s": "b", "n": 5, "b": true, "t": "2016-08-18T17:33:00Z",
                           "s2": "b", "n2": 5.0, "t2": "2016-08-18T18:33:00+01:00"});
        let cases = [
            ("StringEquals", json!("b"), true),
            ("StringLessThan", json!("c"), true),
            ("StringGreaterThan", json!("a"), true),
            ("StringLessThanEquals", json!("b"), true),
            ("StringGreaterThanEquals", json!("c"), false),
            ("NumericEquals", json!(5.0), true),
            ("NumericLessThan", json!(5), false),
            ("NumericGreaterThan", json!(4.5), true),
            ("NumericLessThanEquals", json!(5), true),
            ("NumericGreaterThanEquals", json!(6), false),
            ("BooleanEquals", json!(true), true),
            ("TimestampEquals", json!("2016-08-18T17:33:00Z"), true),
            ("TimestampLessThan", json!("2016-08-18T17:33:01Z"), true),
            ("TimestampGreaterThan", json!("2016-08-18T17:33:01Z"), false),
            ("TimestampLessThanEquals", json!("2016-08-18T17:33:00Z"), true),
            ("TimestampGreaterThanEquals", json!("2017-01-01T00:00:00Z"), false),
        ];
        for (op, operand, expected) in cases {
            let var = match &op[..1] {
                "S" => "$.s",
                "N" => "$.n",
                "B" => "$.b",
                _ => "$.t",
            };
            let r = json!({"Variable": var, op: operand, "Next": "X"});
            assert_eq!(eval(r, input.clone()).unwrap(), expected, "{op}");
        }
        // Path variants compare with another value of the input.
        assert!(eval(json!({"Variable": "$.s", "StringEqualsPath": "$.s2", "Next": "X"}), input.clone()).unwrap());
        assert!(eval(json!({"Variable": "$.n", "NumericEqualsPath": "$.n2", "Next": "X"}), input.clone()).unwrap());
        assert!(eval(json!({"Variable": "$.t", "TimestampEqualsPath": "$.t2", "Next": "X"}), input.clone()).unwrap());
        assert!(eval(json!({"Variable": "$.b", "BooleanEqualsPath": "$.b", "Next": "X"}), input).unwrap());
    }

    #[test]
    fn type_mismatch_is_false_not_an_error() {
        assert!(!eval(json!({"Variable": "$.n", "StringEquals": "5", "Next": "X"}), json!({"n": 5})).unwrap());
        assert!(!eval(json!({"Variable": "$.s", "NumericEquals": 5, "Next": "X"}), json!({"s": "5"})).unwrap());
    }

    #[test]
    fn missing_variable_is_an_error_except_for_is_present() {
        let err = eval(json!({"Variable": "$.x", "StringEquals": "a", "Next": "X"}), json!({})).unwrap_err();
        assert!(err.contains("Invalid path '$.x'"), "{err}");
        assert!(!eval(json!({"Variable": "$.x", "IsPresent": true, "Next": "X"}), json!({})).unwrap());
        assert!(eval(json!({"Variable": "$.x", "IsPresent": false, "Next": "X"}), json!({})).unwrap());
    }

    #[test]
    fn type_tests() {
        let input = json!({"null": null, "n": 1.5, "s": "x", "b": false, "t": "2016-08-18T17:33:00Z", "bad_t": "2016-08-18t17:33:00z"});
        let t =
            |var: &str, op: &str, v: bool| eval(json!({"Variable": var, op: v, "Next": "X"}), input.clone()).unwrap();
        assert!(t("$.null", "IsNull", true));
        assert!(t("$.n", "IsNull", false));
        assert!(t("$.n", "IsNumeric", true));
        assert!(t("$.s", "IsString", true));
        assert!(t("$.b", "IsBoolean", true));
        assert!(t("$.t", "IsTimestamp", true));
        assert!(t("$.bad_t", "IsTimestamp", false));
        assert!(t("$.s", "IsTimestamp", false));
    }

    // "Choice" page of the Step Functions developer guide: And/Or/Not examples.
    #[test]
    fn boolean_combinators() {
        let and = json!({"And": [
            {"Variable": "$.value", "IsPresent": true},
            {"Variable": "$.value", "NumericGreaterThanEquals": 20},
            {"Variable": "$.value", "NumericLessThan": 30}
        ], "Next": "ValueInTwenties"});
        assert!(eval(and.clone(), json!({"value": 25})).unwrap());
        assert!(!eval(and, json!({"value": 35})).unwrap());
        let not = json!({"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"});
        assert!(eval(not.clone(), json!({"type": "Public"})).unwrap());
        assert!(!eval(not, json!({"type": "Private"})).unwrap());
        let or = json!({"Or": [
            {"Variable": "$.a", "BooleanEquals": true},
            {"Variable": "$.b", "BooleanEquals": true}
        ], "Next": "X"});
        assert!(eval(or.clone(), json!({"a": false, "b": true})).unwrap());
        assert!(!eval(or, json!({"a": false, "b": false})).unwrap());
    }

    #[test]
    fn string_matches_wildcards() {
        // "StringMatches" example of the Choice page: "log-*.txt".
        assert!(string_matches("log-2020.txt", "log-*.txt"));
        assert!(!string_matches("log-2020.csv", "log-*.txt"));
        assert!(string_matches("anything", "*"));
        assert!(string_matches("", "*"));
        assert!(string_matches("a*b", r"a\*b"));
        assert!(!string_matches("axb", r"a\*b"));
        assert!(string_matches(r"a\b", r"a\\b"));
        assert!(string_matches("abcabcd", "*abcd"));
        assert!(string_matches("xaaay", "x*a*y"));
    }

    #[test]
    fn context_variables() {
        let r = rule(json!({"Variable": "$$.Execution.Name", "StringEquals": "e1", "Next": "X"}));
        let vars = crate::variables::Variables::default();
        assert!(r.evaluate(&Sources::new(&json!({}), &json!({"Execution": {"Name": "e1"}}), &vars)).unwrap());
    }

    #[test]
    fn workflow_variables() {
        let mut vars = crate::variables::Variables::default();
        vars.assign(json!({"limit": 3, "order": {"n": 5}}).as_object().unwrap().clone());
        let empty = json!({});
        let src = Sources::new(&empty, &empty, &vars);
        let r = rule(json!({"Variable": "$order.n", "NumericGreaterThanPath": "$limit", "Next": "X"}));
        assert!(r.evaluate(&src).unwrap());
        let r = rule(json!({"Variable": "$missing", "IsPresent": false, "Next": "X"}));
        assert!(r.evaluate(&src).unwrap());
    }

    #[test]
    fn malformed_rules_are_reported() {
        let bad = [
            json!({"Variable": "$.a", "Next": "X"}),
            json!({"Variable": "$.a", "StringEquals": 1, "Next": "X"}),
            json!({"Variable": "$.a", "NumericEquals": "1", "Next": "X"}),
            json!({"Variable": "$.a", "TimestampEquals": "yesterday", "Next": "X"}),
            json!({"Variable": "a", "StringEquals": "a", "Next": "X"}),
            json!({"Variable": "$.a", "StringEquals": "a"}),
            json!({"And": [], "Next": "X"}),
            json!({"Not": {"Variable": "$.a", "IsNull": true, "Next": "X"}, "Next": "X"}),
            json!({"Variable": "$.a", "StringEquals": "a", "NumericEquals": 1, "Next": "X"}),
            json!({"Variable": "$.a", "StringEqual": "a", "Next": "X"}),
        ];
        for b in bad {
            let mut problems = Problems::new(None);
            ChoiceRule::compile(&b, "/Choices/0", true, &mut problems);
            assert!(!problems.is_empty(), "{b} should be rejected");
        }
    }
}
