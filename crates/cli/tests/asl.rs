//! `beacon asl validate|run`: any state machine, locally.

mod common;

use common::*;
use serde_json::{Value, json};

fn write(s: &Scratch, name: &str, value: &Value) -> std::path::PathBuf {
    let path = s.path(name);
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    path
}

fn run_json(out: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

/// The definition's placeholders with the values a deployment gives them.
const SUBSTITUTIONS: &[&str] = &[
    "DocumentProcessorFunctionArn=arn:aws:lambda:us-east-1:123456789012:function:doc",
    "LlmProcessorFunctionArn=arn:aws:lambda:us-east-1:123456789012:function:llm",
    "ResultIntegratorFunctionArn=arn:aws:lambda:us-east-1:123456789012:function:int",
    "UnitFailureRecorderFunctionArn=arn:aws:lambda:us-east-1:123456789012:function:fail",
    "BatchPreparerFunctionArn=arn:aws:lambda:us-east-1:123456789012:function:batch-prepare",
    "BatchCollectorFunctionArn=arn:aws:lambda:us-east-1:123456789012:function:batch-collect",
    "BatchPoolFunctionArn=arn:aws:lambda:us-east-1:123456789012:function:batch-pool",
    "DistributedThreshold=40",
    "BatchThreshold=100",
    "InlineMaxConcurrency=10",
    "DistributedBatchSize=10",
    "DistributedMaxConcurrency=25",
    "ToleratedFailurePercentage=5",
    "BucketName=beacon-documents",
    "ModelId=anthropic.claude-3-haiku-20240307-v1:0",
    "BatchMinRecords=100",
    "BatchPollSeconds=60",
    "BatchTimeoutHours=24",
    "BatchRoleArn=arn:aws:iam::123456789012:role/beacon-batch",
    "BatchOnFailure=on-demand",
];

#[test]
fn validates_the_beacon_state_machine_with_its_substitutions() {
    let s = Scratch::new();
    let out = s
        .beacon()
        .args(["asl", "validate"])
        .arg(repo_root().join("deploy/statemachine/beacon.asl.json"))
        .args(SUBSTITUTIONS.iter().flat_map(|sub| ["--sub", sub]))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("valid (24 states)"), "{}", stdout(&out));
    // Without the substitutions the placeholders are named.
    let out = s
        .beacon()
        .args(["asl", "validate"])
        .arg(repo_root().join("deploy/statemachine/beacon.asl.json"))
        .output()
        .unwrap();
    assert_exit(&out, 3);
    assert!(stderr(&out).contains("InlineMaxConcurrency"), "{}", stderr(&out));
}

#[test]
fn invalid_definitions_name_the_state_and_field() {
    let s = Scratch::new();
    let f = write(&s, "bad.json", &json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}));
    let out = s.beacon().args(["asl", "validate"]).arg(&f).output().unwrap();
    assert_exit(&out, 3);
    let err = stderr(&out);
    assert!(err.contains("Nowhere") && err.contains("/States/A/Next"), "{err}");
}

#[test]
fn runs_a_state_machine_and_prints_the_result() {
    let s = Scratch::new();
    let f = write(
        &s,
        "m.json",
        &json!({
            "StartAt": "Check",
            "States": {
                "Check": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 1, "Next": "Big"}], "Default": "Small"},
                "Big": {"Type": "Pass", "Parameters": {"size": "big", "greeting.$": "States.Format('hello {}', $.name)"}, "End": true},
                "Small": {"Type": "Fail", "Error": "TooSmall", "Cause": "n must be above 1"}
            }
        }),
    );
    let out =
        s.beacon().args(["asl", "run"]).arg(&f).args(["--input", r#"{"n": 5, "name": "BEACON"}"#]).output().unwrap();
    assert_exit(&out, 0);
    assert_eq!(run_json(&out), json!({"status": "SUCCEEDED", "output": {"size": "big", "greeting": "hello BEACON"}}));

    let input = s.path("input.json");
    std::fs::write(&input, r#"{"n": 0}"#).unwrap();
    let out = s
        .beacon()
        .args(["asl", "run", "--history"])
        .arg(&f)
        .arg("--input")
        .arg(format!("@{}", input.display()))
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let v = run_json(&out);
    assert_eq!(
        (v["status"].as_str(), v["error"].as_str(), v["cause"].as_str()),
        (Some("FAILED"), Some("TooSmall"), Some("n must be above 1"))
    );
    let types: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        vec!["ExecutionStarted", "ChoiceStateEntered", "ChoiceStateExited", "FailStateEntered", "ExecutionFailed"]
    );
}

#[test]
fn unserved_resources_fail_the_task_and_commands_serve_them() {
    let s = Scratch::new();
    let lambda = "arn:aws:lambda:us-east-1:123456789012:function:echo";
    let f = write(
        &s,
        "t.json",
        &json!({
            "StartAt": "Call",
            "States": {
                "Call": {
                    "Type": "Task", "Resource": lambda, "ResultPath": "$.echoed",
                    "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error", "Next": "Caught"}],
                    "End": true
                },
                "Caught": {"Type": "Pass", "End": true}
            }
        }),
    );
    let out = s.beacon().args(["asl", "run"]).arg(&f).args(["--input", r#"{"x": 1}"#]).output().unwrap();
    assert_exit(&out, 0);
    let v = run_json(&out);
    assert_eq!(v["output"]["error"]["Error"], "States.TaskFailed");
    assert!(v["output"]["error"]["Cause"].as_str().unwrap().contains(lambda), "the cause names the resource: {v}");

    std::fs::write(s.path("beacon.toml"), format!("[asl.resources]\n\"{lambda}\" = [\"sh\", \"-c\", \"cat\"]\n"))
        .unwrap();
    let out = s.beacon().args(["asl", "run"]).arg(&f).args(["--input", r#"{"x": 1}"#]).output().unwrap();
    assert_exit(&out, 0);
    assert_eq!(run_json(&out)["output"], json!({"x": 1, "echoed": {"x": 1}}));
}
