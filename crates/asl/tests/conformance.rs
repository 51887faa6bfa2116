//! Runs the ASL conformance cases recorded on AWS Step Functions (`shared/asl-conformance`) and
//! checks that every case listed in `conformance-passing.txt` still passes.
//!
//! Every JSONPath case runs, except those that call services this runner does not emulate
//! (Lambda, SQS, SNS, DynamoDB, AWS SDK integrations...), which are skipped with the reason.
//! Cases that need S3 (Distributed Map `ItemReader`/`ResultWriter`) run against S3 held in
//! memory, set up from `conformance-s3-setup.json`: buckets and objects derived from each case's
//! own definition, input and expected result by `derive_s3_fixtures.py` (the recordings do not
//! include what their test uploaded). A case that needs S3 and has no fixture there is skipped.
//! JSONata cases are skipped. A case passes when the final status matches and, as the cases'
//! README says, the output (succeeded) or the error and cause (failed) match, with the
//! recording's placeholders as wildcards.
//!
//! `cargo test -p beacon-asl --test conformance -- --nocapture` prints the per-category table,
//! every failure and skip with its reason, and a final `N passed, M failed, K skipped` line.
//! To refresh the list after making more cases pass:
//! `BEACON_UPDATE_CONFORMANCE=1 cargo test -p beacon-asl --test conformance`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use beacon_asl::{ExecutionStatus, Interpreter, Sleeper, StateMachine, TaskRegistry};
use common::MemoryS3;
use serde_json::Value;

/// Wait states and retry delays return at once: the cases only check results.
struct NoSleep;

#[async_trait]
impl Sleeper for NoSleep {
    async fn sleep(&self, _d: Duration) {}
}

/// Services the runner serves itself.
const EMULATED: [&str; 1] = ["s3"];

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/asl-conformance/cases")
}

fn passing_list_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance-passing.txt")
}

fn s3_setup_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance-s3-setup.json")
}

#[derive(Debug)]
enum Outcome {
    Pass { history_matches: bool },
    Fail(String),
    Skip(String),
}

/// Why a case does not run, or `None` when it does.
fn skip_reason(case: &Value) -> Option<String> {
    if case["query_language"] != "JSONPath" {
        return Some("needs JSONata (not supported)".to_string());
    }
    let needs: Vec<&str> =
        case["needs"].as_array().map(|n| n.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if needs.iter().all(|n| EMULATED.contains(n)) {
        None
    } else {
        Some(format!("needs {} (not emulated)", needs.join(", ")))
    }
}

/// The fixture (`category/name` in `conformance-s3-setup.json`) of a case, if it has one.
fn s3_fixture<'a>(fixtures: &'a Value, key: &str) -> Option<&'a Value> {
    fixtures["fixtures"].as_array()?.iter().find(|f| f["case"] == key)
}

/// The S3 a case starts with: the buckets and objects of its fixture.
fn s3_for(fixture: Option<&Value>) -> MemoryS3 {
    let s3 = MemoryS3::default();
    if let Some(fixture) = fixture {
        for bucket in fixture["buckets"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            s3.create_bucket(bucket);
        }
        for object in fixture["objects"].as_array().into_iter().flatten() {
            let field = |name: &str| object[name].as_str().unwrap_or_default();
            s3.put_text(field("bucket"), field("key"), field("text"));
        }
    }
    s3
}

fn needs_s3(case: &Value) -> bool {
    case["needs"].as_array().is_some_and(|n| n.iter().any(|s| s == "s3"))
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
    let fixtures: Value =
        serde_json::from_str(&std::fs::read_to_string(s3_setup_path()).expect("read conformance-s3-setup.json"))
            .expect("conformance-s3-setup.json is JSON");

    let mut results: BTreeMap<String, (String, Outcome)> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read case");
        let case: Value = serde_json::from_str(&text).expect("case is JSON");
        let category = case["category"].as_str().unwrap_or("?").to_string();
        let name = case["name"].as_str().unwrap_or("?").to_string();
        let key = format!("{category}/{name}");
        let fixture = s3_fixture(&fixtures, &key);
        let skip = skip_reason(&case).or_else(|| {
            (needs_s3(&case) && fixture.is_none()).then(|| {
                "needs the S3 objects its recorded test uploaded; the recording does not include them".to_string()
            })
        });
        let outcome = match skip {
            Some(why) => Outcome::Skip(why),
            None => {
                let s3 = s3_for(fixture);
                let mut registry = TaskRegistry::new();
                s3.register_tasks(&mut registry);
                let interpreter =
                    Interpreter::new(registry).with_sleeper(Arc::new(NoSleep)).with_object_storage(Arc::new(s3));
                run_case(&interpreter, &case, &name).await
            }
        };
        results.insert(key, (category, outcome));
    }

    // Per-category table.
    #[derive(Default)]
    struct Row {
        cases: usize,
        passed: usize,
        same_events: usize,
        failed: usize,
        skipped: BTreeMap<String, usize>,
    }
    let mut table: BTreeMap<&str, Row> = BTreeMap::new();
    for (category, outcome) in results.values() {
        let row = table.entry(category.as_str()).or_default();
        row.cases += 1;
        match outcome {
            Outcome::Pass { history_matches } => {
                row.passed += 1;
                row.same_events += usize::from(*history_matches);
            }
            Outcome::Fail(_) => row.failed += 1,
            Outcome::Skip(why) => *row.skipped.entry(why.clone()).or_default() += 1,
        }
    }
    println!("\n| category | cases | passed | failed | skipped | passed with AWS's event types | skip reasons |");
    println!("|---|---|---|---|---|---|---|");
    let (mut cases, mut passed, mut failed, mut skipped, mut same) = (0, 0, 0, 0, 0);
    for (category, row) in &table {
        let skips: usize = row.skipped.values().sum();
        let reasons: Vec<String> = row.skipped.iter().map(|(why, n)| format!("{n} {why}")).collect();
        println!(
            "| {category} | {} | {} | {} | {skips} | {} | {} |",
            row.cases,
            row.passed,
            row.failed,
            row.same_events,
            reasons.join("; ")
        );
        cases += row.cases;
        passed += row.passed;
        failed += row.failed;
        skipped += skips;
        same += row.same_events;
    }
    println!("| total | {cases} | {passed} | {failed} | {skipped} | {same} | |\n");
    for (key, (_, outcome)) in &results {
        match outcome {
            Outcome::Fail(why) => println!("FAIL {key}: {why}"),
            Outcome::Skip(why) => println!("SKIP {key}: {why}"),
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
    } else {
        let listed = std::fs::read_to_string(passing_list_path()).expect("read conformance-passing.txt");
        let mut regressions = Vec::new();
        for line in listed.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !passing.contains(line) {
                let why = match results.get(line) {
                    Some((_, Outcome::Fail(w))) | Some((_, Outcome::Skip(w))) => w.clone(),
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
    println!("{passed} passed, {failed} failed, {skipped} skipped");
}

async fn run_case(interpreter: &Interpreter, case: &Value, name: &str) -> Outcome {
    let machine = match StateMachine::from_value(&case["definition"]) {
        Ok(m) => m,
        Err(e) => return Outcome::Fail(format!("definition rejected: {}", e.to_string().replace('\n', "; "))),
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
        (Some("TIMED_OUT"), ExecutionStatus::TimedOut) => Ok(()),
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
