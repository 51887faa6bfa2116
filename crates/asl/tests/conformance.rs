//! Runs the ASL conformance cases recorded on AWS Step Functions (`shared/asl-conformance`) and
//! checks that every case listed in `conformance-passing.txt` still passes.
//!
//! Only pure JSONPath cases run (no `needs`, no `features`). A case passes when the final status
//! matches and, as the cases' README says, the output (succeeded) or the error and cause (failed)
//! match, with the recording's placeholders as wildcards.
//!
//! To refresh the list after making more cases pass:
//! `BEACON_UPDATE_CONFORMANCE=1 cargo test -p beacon-asl --test conformance`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use beacon_asl::{ExecutionStatus, Interpreter, Sleeper, StateMachine, TaskRegistry};
use serde_json::Value;

/// Wait states and retry delays return at once: the cases only check results.
struct NoSleep;

#[async_trait]
impl Sleeper for NoSleep {
    async fn sleep(&self, _d: Duration) {}
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/asl-conformance/cases")
}

fn passing_list_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance-passing.txt")
}

#[derive(Debug)]
enum Outcome {
    Pass { history_matches: bool },
    Fail(String),
    Unsupported(String),
}

#[tokio::test]
async fn conformance() {
    let dir = cases_dir();
    if !dir.is_dir() {
        println!("SKIP: no conformance cases at {} (the shared asl-conformance checkout is absent)", dir.display());
        return;
    }
    let mut files: Vec<PathBuf> = Vec::new();
    for category in std::fs::read_dir(&dir).expect("read cases dir") {
        let category = category.expect("dir entry").path();
        if category.is_dir() {
            for f in std::fs::read_dir(&category).expect("read category") {
                let f = f.expect("dir entry").path();
                if f.extension().is_some_and(|e| e == "json") {
                    files.push(f);
                }
            }
        }
    }
    files.sort();

    let interpreter = Interpreter::new(TaskRegistry::new()).with_sleeper(Arc::new(NoSleep));
    let mut results: BTreeMap<String, (String, Outcome)> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read case");
        let case: Value = serde_json::from_str(&text).expect("case is JSON");
        let category = case["category"].as_str().unwrap_or("?").to_string();
        let name = case["name"].as_str().unwrap_or("?").to_string();
        let pure = case["query_language"] == "JSONPath"
            && case["needs"].as_array().is_some_and(|n| n.is_empty())
            && case.get("features").is_none_or(|f| f.as_array().is_some_and(|a| a.is_empty()));
        if !pure {
            continue;
        }
        let outcome = run_case(&interpreter, &case, &name).await;
        results.insert(format!("{category}/{name}"), (category, outcome));
    }

    // Per-category table.
    let mut table: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    for (category, outcome) in results.values() {
        let row = table.entry(category.as_str()).or_default();
        row[0] += 1;
        match outcome {
            Outcome::Pass { history_matches } => {
                row[1] += 1;
                if *history_matches {
                    row[3] += 1;
                }
            }
            Outcome::Unsupported(_) => row[2] += 1,
            Outcome::Fail(_) => {}
        }
    }
    println!("\n| category | cases | pass | unsupported | pass with same event types |");
    println!("|---|---|---|---|---|");
    let mut total = [0usize; 4];
    for (category, row) in &table {
        println!("| {category} | {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
        for i in 0..4 {
            total[i] += row[i];
        }
    }
    println!("| total | {} | {} | {} | {} |\n", total[0], total[1], total[2], total[3]);
    for (key, (_, outcome)) in &results {
        match outcome {
            Outcome::Fail(why) => println!("FAIL {key}: {why}"),
            Outcome::Unsupported(why) => println!("UNSUPPORTED {key}: {why}"),
            Outcome::Pass { .. } => {}
        }
    }

    let passing: BTreeSet<&str> =
        results.iter().filter(|(_, (_, o))| matches!(o, Outcome::Pass { .. })).map(|(k, _)| k.as_str()).collect();
    if std::env::var_os("BEACON_UPDATE_CONFORMANCE").is_some() {
        let mut body = String::from(
            "# Conformance cases (category/name) that pass; the conformance test fails if one stops passing.\n\
             # Regenerate: BEACON_UPDATE_CONFORMANCE=1 cargo test -p beacon-asl --test conformance\n",
        );
        for k in &passing {
            body.push_str(k);
            body.push('\n');
        }
        std::fs::write(passing_list_path(), body).expect("write passing list");
        println!("wrote {} passing cases to {}", passing.len(), passing_list_path().display());
        return;
    }
    let listed = std::fs::read_to_string(passing_list_path()).expect("read conformance-passing.txt");
    let mut regressions = Vec::new();
    for line in listed.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !passing.contains(line) {
            let why = match results.get(line) {
                Some((_, Outcome::Fail(w))) | Some((_, Outcome::Unsupported(w))) => w.clone(),
                _ => "case not found".to_string(),
            };
            regressions.push(format!("{line}: {why}"));
        }
    }
    let newly: Vec<&&str> = passing.iter().filter(|k| !listed.lines().any(|l| l.trim() == **k)).collect();
    if !newly.is_empty() {
        println!("{} cases pass but are not listed; consider regenerating the list: {newly:?}", newly.len());
    }
    assert!(
        regressions.is_empty(),
        "{} listed conformance cases no longer pass:\n{}",
        regressions.len(),
        regressions.join("\n")
    );
}

async fn run_case(interpreter: &Interpreter, case: &Value, name: &str) -> Outcome {
    let machine = match StateMachine::from_value(&case["definition"]) {
        Ok(m) => m,
        Err(e) => return Outcome::Unsupported(e.to_string().replace('\n', "; ")),
    };
    // Some recordings store the execution input as the JSON text AWS received.
    let input = match &case["input"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        other => other.clone(),
    };
    let result = interpreter.execute(&machine, name, input).await;
    let expected = &case["expected"];
    let expected_events: Vec<&str> =
        case["event_types"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let history_matches = result.event_types() == expected_events;
    if !history_matches && std::env::var_os("BEACON_CONFORMANCE_VERBOSE").is_some() {
        println!("EVENTS {name}:\n  got      {:?}\n  expected {expected_events:?}", result.event_types());
    }
    let verdict = match (expected["status"].as_str(), &result.status) {
        (Some("SUCCEEDED"), ExecutionStatus::Succeeded { output }) => {
            if output_matches(&expected["output"], output) {
                Ok(())
            } else {
                Err(format!("output {output} != expected {}", expected["output"]))
            }
        }
        (Some("FAILED"), ExecutionStatus::Failed { error, cause }) => {
            if !text_matches(&expected["error"], error) {
                Err(format!("error {error:?} != expected {}", expected["error"]))
            } else if !text_matches(&expected["cause"], cause) {
                Err(format!("cause {cause:?} != expected {}", expected["cause"]))
            } else {
                Ok(())
            }
        }
        (status, actual) => Err(format!("expected status {status:?}, got {actual:?}")),
    };
    match verdict {
        Ok(()) => Outcome::Pass { history_matches },
        Err(why) => Outcome::Fail(why),
    }
}

/// `null` in the recording means AWS gave no error or cause; the interpreter reports "".
fn text_matches(expected: &Value, actual: &str) -> bool {
    match expected {
        Value::Null => actual.is_empty(),
        Value::String(e) => string_matches(e, actual),
        _ => false,
    }
}

const WHOLE_WILDCARDS: [&str; 4] = ["timestamp", "datetime", "snf_role_arn", "RandomNumberGenerated"];

fn is_whole_wildcard(s: &str) -> bool {
    WHOLE_WILDCARDS.contains(&s) || (s.starts_with('<') && s.ends_with('>') && !s[1..].contains('<'))
}

/// `<...>` inside a string matches any text.
fn string_matches(expected: &str, actual: &str) -> bool {
    if is_whole_wildcard(expected) {
        return true;
    }
    let mut literals = Vec::new();
    let mut rest = expected;
    while let Some(open) = rest.find('<') {
        match rest[open..].find('>') {
            Some(close) => {
                literals.push(&rest[..open]);
                rest = &rest[open + close + 1..];
            }
            None => break,
        }
    }
    if literals.is_empty() {
        return expected == actual;
    }
    literals.push(rest);
    // literals[0] is a prefix, the last a suffix, the middle ones appear in order.
    let Some(mut remaining) = actual.strip_prefix(literals[0]) else {
        return false;
    };
    let last = literals.len() - 1;
    for lit in &literals[1..last] {
        match remaining.find(lit) {
            Some(at) => remaining = &remaining[at + lit.len()..],
            None => return false,
        }
    }
    remaining.ends_with(literals[last])
}

fn output_matches(expected: &Value, actual: &Value) -> bool {
    if values_match(expected, actual) {
        return true;
    }
    // Some recordings keep the output as the JSON text AWS returned.
    if let (Value::String(text), false) = (expected, actual.is_string())
        && let Ok(parsed) = serde_json::from_str::<Value>(text)
    {
        return values_match(&parsed, actual);
    }
    false
}

fn values_match(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(e), _) if is_whole_wildcard(e) => true,
        (Value::String(e), Value::String(a)) => string_matches(e, a),
        (Value::Number(e), Value::Number(a)) => e.as_f64() == a.as_f64(),
        (Value::Array(e), Value::Array(a)) => e.len() == a.len() && e.iter().zip(a).all(|(e, a)| values_match(e, a)),
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len() && e.iter().all(|(k, ev)| a.get(k).is_some_and(|av| values_match(ev, av)))
        }
        _ => expected == actual,
    }
}

#[test]
fn wildcard_matching() {
    assert!(string_matches("<ArnPart_0idx>", "anything"));
    assert!(string_matches("timestamp", "2024-01-01"));
    assert!(string_matches("arn:<partition>:states:<region>:x", "arn:aws:states:eu-west-1:x"));
    assert!(!string_matches("arn:<partition>:states", "arn:aws:lambda"));
    assert!(string_matches("exact", "exact"));
    assert!(!string_matches("exact", "exactly"));
    assert!(output_matches(&Value::String("[1, 2]".into()), &serde_json::json!([1, 2])));
}
