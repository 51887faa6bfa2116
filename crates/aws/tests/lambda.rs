//! `beacon-lambda` through the real Lambda Runtime API protocol: a local Runtime API (what the
//! Lambda service offers a function) hands the binary its invocations; S3 is moto. The answers,
//! the objects written and the error names (which Step Functions' Retry/Catch match) are checked.

mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use beacon_store::Store;
use serde_json::{Value, json};
use support::Moto;
use tokio::sync::{mpsc, oneshot};

const BUCKET: &str = "beacon-lambda-test";

/// How an invocation ended: the function's response, or its error (`errorType`, message).
type Outcome = Result<Value, (String, String)>;

#[derive(Clone)]
struct RuntimeApi {
    events: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>>,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>,
}

async fn next(State(api): State<RuntimeApi>) -> impl IntoResponse {
    let Some((id, event)) = api.events.lock().await.recv().await else {
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    let mut headers = HeaderMap::new();
    let deadline = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 60_000;
    headers.insert("lambda-runtime-aws-request-id", HeaderValue::from_str(&id).unwrap());
    headers.insert("lambda-runtime-deadline-ms", HeaderValue::from_str(&deadline.to_string()).unwrap());
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:beacon-test"),
    );
    (StatusCode::OK, headers, event.to_string())
}

fn finish(api: &RuntimeApi, id: &str, outcome: Outcome) -> StatusCode {
    if let Some(sender) = api.waiting.lock().unwrap().remove(id) {
        let _ = sender.send(outcome);
    }
    StatusCode::ACCEPTED
}

async fn response(State(api): State<RuntimeApi>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    finish(&api, &id, Ok(serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

async fn error(State(api): State<RuntimeApi>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    finish(&api, &id, Err((text("errorType"), text("errorMessage"))))
}

/// A Runtime API on a free port, and a function process (`beacon-lambda`) polling it.
struct Function {
    send: mpsc::UnboundedSender<(String, Value)>,
    api: RuntimeApi,
    child: Child,
    invocations: usize,
    /// Reads the function's stdout (its log, EMF lines among it) until the process ends.
    stdout: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Function {
    async fn start(task: &str, moto: &Moto, data: &std::path::Path) -> Function {
        let (send, receive) = mpsc::unbounded_channel();
        let api = RuntimeApi { events: Arc::new(tokio::sync::Mutex::new(receive)), waiting: Arc::default() };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let child = Command::new(env!("CARGO_BIN_EXE_beacon-lambda"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", format!("beacon-{task}"))
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "stream")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/beacon-{task}"))
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("BEACON_TASK", task)
            .env("BEACON_BUCKET", BUCKET)
            .env("BEACON_S3_ENDPOINT", &moto.endpoint)
            .env("BEACON_PROVIDER", "offline")
            .env("BEACON_DATA_DIR", data)
            .env("BEACON_STATE_MACHINE", "test-beacon")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start beacon-lambda");
        let mut child = child;
        let out = child.stdout.take().expect("the function's stdout");
        let stdout = std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(out).lines().map_while(Result::ok).collect()
        });
        Function { send, api, child, invocations: 0, stdout: Some(stdout) }
    }

    /// Stops the function and returns what it printed.
    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdout.take().map(|reader| reader.join().unwrap_or_default()).unwrap_or_default()
    }

    /// One invocation with `event`; waits (with a deadline) for the function's answer.
    async fn invoke(&mut self, event: Value) -> Outcome {
        self.invocations += 1;
        let id = format!("request-{}", self.invocations);
        let (sender, receiver) = oneshot::channel();
        self.api.waiting.lock().unwrap().insert(id.clone(), sender);
        self.send.send((id, event)).unwrap();
        tokio::time::timeout(Duration::from_secs(60), receiver).await.expect("the function answered").unwrap()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_as_lambda_functions_on_s3_and_fail_with_their_error_names() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket(BUCKET);
    // SAFETY: set once, before this test's store reads the environment; same values for every
    // test of this binary.
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

    let mut documents = Function::start("document-processor", &moto, data.path()).await;
    let processed = documents
        .invoke(json!({"document": {"key": "uploads/three-pages.txt", "name": "three-pages.txt"}, "options": {}}))
        .await
        .expect("the document was processed");
    assert_eq!(processed["unitCount"], 3);
    let id = processed["documentId"].as_str().unwrap().to_string();
    assert!(store.exists(&format!("units/{id}/000002.json")).await.unwrap());
    assert_eq!(processed["itemsKey"], format!("units/{id}/items.json"));

    // A failure keeps its error name: Step Functions' Retry and Catch match it.
    let missing =
        documents.invoke(json!({"document": {"key": "uploads/none.pdf", "name": "none.pdf"}, "options": {}})).await;
    let (error, cause) = missing.expect_err("a missing upload fails");
    assert_eq!(error, "Beacon.StoreError");
    assert!(cause.contains("uploads/none.pdf"), "{cause}");

    let mut units = Function::start("llm-processor", &moto, data.path()).await;
    let analysed = units
        .invoke(json!({"documentId": id, "language": "en", "index": 1, "run": "exec-1", "path": "inline"}))
        .await
        .expect("the unit was analysed");
    assert_eq!(analysed["index"], 1);
    assert!(analysed["usage"]["input_tokens"].as_u64().unwrap() > 0, "{analysed}");
    let record: Value =
        serde_json::from_slice(&store.get(&format!("results/{id}/exec-1/000001.json")).await.unwrap()).unwrap();
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["path"], "inline");
    let bad = units.invoke(json!({"index": "one"})).await.expect_err("a malformed input fails");
    assert_eq!(bad.0, "Beacon.InvalidInput");

    // Each invocation printed its metrics in CloudWatch embedded metric format.
    let emf: Vec<Value> = units
        .stop()
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
