//! `beacon-lambda` through the real Lambda protocols: a local Lambda service hands the binary its
//! invocations through the Runtime API, and the tasks are invoked through the Lambda Invoke API
//! by BEACON's own Lambda task handler (`beacon_aws::lambda_invoke`, `aws-sdk-lambda`), as the
//! embedded engine does for a deployed definition. S3 is moto. The answers, the objects written
//! and the error names (which Step Functions' Retry/Catch match) are checked.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use beacon_asl::{TaskContext, TaskFailure, TaskRegistry};
use beacon_store::Store;
use serde_json::{Value, json};
use support::Moto;
use support::lambda_service::{FunctionSpec, LocalLambda, function_arn};

const BUCKET: &str = "beacon-lambda-test";

/// The environment the template gives every function, for this test's moto and data dir.
fn function_env(task: &str, moto: &Moto, data: &Path) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("BEACON_TASK", task),
        ("BEACON_BUCKET", BUCKET),
        ("BEACON_S3_ENDPOINT", &moto.endpoint),
        ("BEACON_PROVIDER", "offline"),
        ("BEACON_DATA_DIR", &data.display().to_string()),
        ("BEACON_STATE_MACHINE", "test-beacon"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Invokes `function` through the Invoke API with BEACON's Lambda task handler.
async fn invoke(tasks: &TaskRegistry, function: &str, input: Value) -> Result<Value, TaskFailure> {
    let ctx = TaskContext {
        execution_name: "exec-1".into(),
        state_name: "Test".into(),
        attempt: 1,
        key: "Test@1#1".into(),
        context: Value::Null,
    };
    tasks.get(&function_arn(function)).expect("a handler for the function").invoke(input, ctx).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_as_lambda_functions_on_s3_and_fail_with_their_error_names() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket(BUCKET);
    // SAFETY: set once, before this test's store and SDK clients read the environment; same
    // values for every test of this binary.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    }
    let store = Store::s3(BUCKET, Some("us-east-1"), Some(&moto.endpoint)).unwrap();
    store
        .put("uploads/three-pages.txt", b"Invoice INV-1\n\x0cTotal: $5.00\n\x0cDue 2026-04-30.\n".to_vec())
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_beacon-lambda"));
    let spec = |task: &str| FunctionSpec {
        name: format!("beacon-{task}"),
        instances: 1,
        env: function_env(task, &moto, data.path()),
        // The unit analysis meets one throttle first.
        throttled: usize::from(task == "llm-processor"),
    };
    let lambda = LocalLambda::start(binary, vec![spec("document-processor"), spec("llm-processor")]).await;
    let client = beacon_aws::lambda_invoke::client(Some("us-east-1"), Some(&lambda.endpoint)).await;
    let functions: BTreeMap<String, String> = ["document-processor", "llm-processor", "result-integrator"]
        .into_iter()
        .map(|task| (task.to_string(), function_arn(&format!("beacon-{task}"))))
        .collect();
    let mut tasks = TaskRegistry::new();
    beacon_aws::lambda_invoke::register(&mut tasks, &client, &functions);

    let processed = invoke(
        &tasks,
        "beacon-document-processor",
        json!({"document": {"key": "uploads/three-pages.txt", "name": "three-pages.txt"}, "options": {}}),
    )
    .await
    .expect("the document was processed");
    assert_eq!(processed["unitCount"], 3);
    let id = processed["documentId"].as_str().unwrap().to_string();
    assert!(store.exists(&format!("units/{id}/000002.json")).await.unwrap());
    assert_eq!(processed["itemsKey"], format!("units/{id}/items.json"));

    // A failure keeps its error name (Step Functions' Retry and Catch match it); the cause is
    // the function's error document, as Step Functions reports it.
    let missing = invoke(
        &tasks,
        "beacon-document-processor",
        json!({"document": {"key": "uploads/none.pdf", "name": "none.pdf"}, "options": {}}),
    )
    .await
    .expect_err("a missing upload fails");
    assert_eq!(missing.error, "Beacon.StoreError");
    let document: Value = serde_json::from_str(&missing.cause).expect("the cause is the error document");
    assert!(document["errorMessage"].as_str().unwrap().contains("uploads/none.pdf"), "{document}");

    // A throttle reaches the flow as Step Functions names it (the SDK does not retry it away):
    // the definition's Retry rules decide.
    let unit = json!({"documentId": id, "language": "en", "index": 1, "run": "exec-1", "path": "inline"});
    let throttled = invoke(&tasks, "beacon-llm-processor", unit).await.expect_err("the first call is throttled");
    assert_eq!(throttled.error, "Lambda.TooManyRequestsException", "{throttled:?}");
    let analysed = invoke(
        &tasks,
        "beacon-llm-processor",
        json!({"documentId": id, "language": "en", "index": 1, "run": "exec-1", "path": "inline"}),
    )
    .await
    .expect("the unit was analysed");
    assert_eq!(analysed["index"], 1);
    assert!(analysed["usage"]["input_tokens"].as_u64().unwrap() > 0, "{analysed}");
    let record: Value =
        serde_json::from_slice(&store.get(&format!("results/{id}/exec-1/000001.json")).await.unwrap()).unwrap();
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["path"], "inline");
    let bad = invoke(&tasks, "beacon-llm-processor", json!({"index": "one"})).await.expect_err("malformed input");
    assert_eq!(bad.error, "Beacon.InvalidInput");

    // A function the service does not have fails as Step Functions names the API error.
    let missing_function = invoke(&tasks, "beacon-result-integrator", json!({})).await.expect_err("no such function");
    assert_eq!(missing_function.error, "Lambda.ResourceNotFoundException", "{missing_function:?}");

    // Each invocation printed its metrics in CloudWatch embedded metric format.
    let printed = lambda.stop();
    let emf: Vec<Value> = printed["beacon-llm-processor"]
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert_eq!(emf.len(), 2, "{emf:?}");
    for line in &emf {
        if let Err(problem) = valid_emf(line) {
            panic!("not valid embedded metric format ({problem}): {line}");
        }
    }
    assert_eq!(emf[0]["UnitsSucceeded"], 1.0);
    assert!(emf[0]["InputTokens"].as_f64().unwrap() > 0.0, "{}", emf[0]);
    assert_eq!(emf[0]["StateMachine"], "test-beacon");
    assert_eq!(emf[1]["TaskErrors"], 1.0);
}

/// Checks a line against the embedded metric format specification: `_aws` with an integer
/// `Timestamp` and `CloudWatchMetrics` directives, each with a `Namespace`, `Dimensions` whose
/// names are string members of the line, and `Metrics` whose names are numeric members with a
/// CloudWatch unit.
fn valid_emf(line: &Value) -> Result<(), String> {
    const UNITS: &[&str] = &[
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];
    let aws = line.get("_aws").and_then(Value::as_object).ok_or("no _aws object")?;
    aws.get("Timestamp").and_then(Value::as_u64).ok_or("Timestamp is not an integer of milliseconds")?;
    let directives = aws.get("CloudWatchMetrics").and_then(Value::as_array).ok_or("no CloudWatchMetrics array")?;
    if directives.is_empty() {
        return Err("CloudWatchMetrics is empty".into());
    }
    for directive in directives {
        let namespace = directive.get("Namespace").and_then(Value::as_str).ok_or("no Namespace")?;
        if namespace.is_empty() || namespace.len() > 1024 {
            return Err("Namespace must be 1 to 1024 characters".into());
        }
        for set in directive.get("Dimensions").and_then(Value::as_array).ok_or("no Dimensions array")? {
            let set = set.as_array().ok_or("a dimension set is not an array")?;
            if set.len() > 30 {
                return Err("more than 30 dimensions in a set".into());
            }
            for name in set {
                let name = name.as_str().ok_or("a dimension name is not a string")?;
                line.get(name).and_then(Value::as_str).ok_or(format!("dimension {name} is not a string member"))?;
            }
        }
        let metrics = directive.get("Metrics").and_then(Value::as_array).ok_or("no Metrics array")?;
        if metrics.is_empty() || metrics.len() > 100 {
            return Err("1 to 100 metrics per directive".into());
        }
        for metric in metrics {
            let name = metric.get("Name").and_then(Value::as_str).ok_or("a metric has no Name")?;
            line.get(name).and_then(Value::as_f64).ok_or(format!("metric {name} is not a numeric member"))?;
            if let Some(unit) = metric.get("Unit") {
                let unit = unit.as_str().ok_or("Unit is not a string")?;
                if !UNITS.contains(&unit) {
                    return Err(format!("{unit} is not a CloudWatch unit"));
                }
            }
        }
    }
    Ok(())
}
