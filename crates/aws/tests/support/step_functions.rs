//! Step Functions' execution API served by BEACON's embedded engine, in front of moto: the
//! Step Functions that `beacon run --engine aws` talks to in the tests.
//!
//! moto's Step Functions cannot run `beacon.asl.json` (its ASL parser knows no `ItemBatcher`),
//! and no other emulator runs offline. This front answers the execution actions itself and
//! passes every other request (CloudFormation, S3, the other Step Functions actions) to moto
//! unchanged, so one endpoint is the whole account, as `--aws-endpoint` expects:
//!
//! - `StartExecution` reads the state machine's definition from moto (where CloudFormation put
//!   it, substitutions done) and runs it on `beacon_asl::Interpreter`: each Task whose resource
//!   is a Lambda function ARN is invoked through the Lambda Invoke API (`beacon_aws::lambda_invoke`
//!   pointed at a `LocalLambda`), the distributed Map reads and writes the stack's bucket in
//!   moto's S3. Bedrock batch tasks are not served (a run that reaches them fails, saying so).
//! - `DescribeExecution`, `GetExecutionHistory`, `ListExecutions`, `ListMapRuns` and
//!   `DescribeMapRun` answer from what the engine recorded: its history events have Step
//!   Functions' shapes; a Map Run's item counts come from its child executions' inputs (a batch
//!   of `Items` counts each item, as AWS counts them) and ends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use beacon_asl::{ExecutionObserver, ExecutionStatus, HistoryEvent, Interpreter, StateMachine, TaskRegistry};
use serde_json::{Value, json};

/// What the front needs besides itself.
pub struct Backends {
    /// moto's endpoint: every request the front does not answer goes there.
    pub moto: String,
    /// The Lambda Invoke API the Tasks' functions are invoked through.
    pub lambda: String,
    /// The stack's bucket (the distributed Map's `ItemReader` and `ResultWriter`).
    pub bucket: String,
}

/// The running front on a free loopback port; stopped when dropped.
pub struct LocalStepFunctions {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    server: tokio::task::JoinHandle<()>,
}

impl LocalStepFunctions {
    /// Starts the front on this runtime.
    pub async fn start(backends: Backends) -> LocalStepFunctions {
        let credentials = aws_sdk_lambda::config::Credentials::new("test", "test", None, None, "local-step-functions");
        let lambda = aws_sdk_lambda::Client::from_conf(
            aws_sdk_lambda::config::Builder::new()
                .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
                .region(aws_sdk_lambda::config::Region::new("us-east-1"))
                .endpoint_url(&backends.lambda)
                .credentials_provider(credentials)
                // As on Step Functions: an Invoke API error reaches the definition's Retry.
                .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
                .build(),
        );
        let store = beacon_store::Store::s3_with_credentials(
            &backends.bucket,
            Some("us-east-1"),
            Some(&backends.moto),
            Arc::new(object_store::StaticCredentialProvider::new(object_store::aws::AwsCredential {
                key_id: "test".into(),
                secret_key: "test".into(),
                token: None,
            })),
        )
        .expect("a store on moto's S3");
        let front = Front(Arc::new(Inner {
            http: reqwest::Client::new(),
            lambda,
            store,
            backends,
            executions: Mutex::new(BTreeMap::new()),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(front);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        LocalStepFunctions { endpoint, server }
    }
}

impl Drop for LocalStepFunctions {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone)]
struct Front(Arc<Inner>);

struct Inner {
    http: reqwest::Client,
    lambda: aws_sdk_lambda::Client,
    store: beacon_store::Store,
    backends: Backends,
    /// By execution ARN.
    executions: Mutex<BTreeMap<String, Arc<Execution>>>,
}

/// One execution the engine runs (or ran).
struct Execution {
    arn: String,
    name: String,
    state_machine_arn: String,
    input: String,
    started: f64,
    record: Mutex<Record>,
}

#[derive(Default)]
struct Record {
    status: &'static str,
    output: Option<String>,
    error: Option<String>,
    cause: Option<String>,
    stopped: Option<f64>,
    events: Vec<HistoryEvent>,
    /// Child executions of distributed Maps, by name (`<map run id>-<index>`).
    children: BTreeMap<String, Child>,
}

#[derive(Default)]
struct Child {
    items: u64,
    /// `Some(true)` once succeeded, `Some(false)` once failed, timed out or aborted.
    succeeded: Option<bool>,
}

impl ExecutionObserver for Execution {
    fn on_event(&self, event: &HistoryEvent) {
        self.record.lock().unwrap().events.push(event.clone());
    }

    fn on_child_event(&self, execution: &str, event: &HistoryEvent) {
        let mut record = self.record.lock().unwrap();
        let child = record.children.entry(execution.to_string()).or_default();
        match event.event_type.as_str() {
            "ExecutionStarted" => {
                let input: Value =
                    event.details["input"].as_str().and_then(|i| serde_json::from_str(i).ok()).unwrap_or_default();
                child.items = input["Items"].as_array().map_or(1, |items| items.len() as u64);
            }
            "ExecutionSucceeded" => child.succeeded = Some(true),
            "ExecutionFailed" | "ExecutionTimedOut" | "ExecutionAborted" => child.succeeded = Some(false),
            _ => {}
        }
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Step Functions' error response (awsJson1_0).
fn sfn_error(kind: &str, message: impl Into<String>) -> Response {
    let body = json!({"__type": kind, "message": message.into()});
    (StatusCode::BAD_REQUEST, [("content-type", "application/x-amz-json-1.0")], body.to_string()).into_response()
}

fn sfn_ok(body: Value) -> Response {
    (StatusCode::OK, [("content-type", "application/x-amz-json-1.0")], body.to_string()).into_response()
}

async fn handle(State(front): State<Front>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let action = headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .and_then(|t| t.strip_prefix("AWSStepFunctions."))
        .map(str::to_string);
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    match action.as_deref() {
        Some("StartExecution") => front.start_execution(&headers, &request).await,
        Some("DescribeExecution") => front.with_execution(&request["executionArn"], |e| e.describe()),
        Some("GetExecutionHistory") => front.with_execution(&request["executionArn"], |e| e.history()),
        Some("ListExecutions") => front.list_executions(&request),
        Some("ListMapRuns") => front.with_execution(&request["executionArn"], |e| e.map_runs()),
        Some("DescribeMapRun") => front.describe_map_run(request["mapRunArn"].as_str().unwrap_or_default()),
        _ => front.to_moto(method, &uri, &headers, body).await,
    }
}

impl Front {
    /// Passes a request to moto as it came and its answer back as moto gave it.
    async fn to_moto(&self, method: Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Response {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = self.0.http.request(method, format!("{}{path}", self.0.backends.moto)).body(body);
        // The body's length is reqwest's to say: a request made here (DescribeStateMachine) has
        // another body than the one whose headers it borrows.
        for (name, value) in headers.iter().filter(|(name, _)| !matches!(name.as_str(), "host" | "content-length")) {
            request = request.header(name, value);
        }
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(e) => return (StatusCode::BAD_GATEWAY, format!("moto: {e}")).into_response(),
        };
        let status = answer.status();
        let mut passed = HeaderMap::new();
        for (name, value) in answer.headers() {
            if !matches!(name.as_str(), "transfer-encoding" | "connection" | "content-length") {
                passed.append(name, value.clone());
            }
        }
        let bytes = answer.bytes().await.unwrap_or_default();
        (status, passed, bytes).into_response()
    }

    /// The definition of `state_machine_arn`, as moto has it.
    async fn definition(&self, headers: &HeaderMap, state_machine_arn: &str) -> Result<String, Response> {
        let mut headers = headers.clone();
        headers.insert("x-amz-target", HeaderValue::from_static("AWSStepFunctions.DescribeStateMachine"));
        let body = json!({"stateMachineArn": state_machine_arn}).to_string();
        let answer = self.to_moto(Method::POST, &Uri::from_static("/"), &headers, body.into()).await;
        if answer.status() != StatusCode::OK {
            return Err(answer);
        }
        let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX).await.unwrap_or_default();
        let described: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        described["definition"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| sfn_error("InvalidDefinition", "moto described the state machine without a definition"))
    }

    async fn start_execution(&self, headers: &HeaderMap, request: &Value) -> Response {
        let state_machine_arn = request["stateMachineArn"].as_str().unwrap_or_default().to_string();
        let name = request["name"].as_str().map(str::to_string).unwrap_or_else(|| format!("{:x}", now().to_bits()));
        let input = request["input"].as_str().unwrap_or("{}").to_string();
        let definition = match self.definition(headers, &state_machine_arn).await {
            Ok(definition) => definition,
            Err(answer) => return answer,
        };
        let machine = match StateMachine::parse(&definition) {
            Ok(machine) => machine,
            Err(e) => return sfn_error("InvalidDefinition", e.to_string()),
        };
        let input_value: Value = match serde_json::from_str(&input) {
            Ok(value) => value,
            Err(e) => return sfn_error("InvalidExecutionInput", e.to_string()),
        };
        let arn = format!("{}:{name}", state_machine_arn.replacen(":stateMachine:", ":execution:", 1));
        let execution = Arc::new(Execution {
            arn: arn.clone(),
            name: name.clone(),
            state_machine_arn,
            input,
            started: now(),
            record: Mutex::new(Record { status: "RUNNING", ..Record::default() }),
        });
        {
            let mut executions = self.0.executions.lock().unwrap();
            if executions.contains_key(&arn) {
                return sfn_error("ExecutionAlreadyExists", format!("Execution Already Exists: '{arn}'"));
            }
            executions.insert(arn.clone(), execution.clone());
        }
        let interpreter = Interpreter::new(self.registry(&definition))
            .with_observer(execution.clone())
            .with_object_storage(Arc::new(beacon_pipeline::buckets::StoreBucket::new(
                self.0.backends.bucket.clone(),
                self.0.store.clone(),
            )));
        let started = execution.started;
        tokio::spawn(async move {
            let result = interpreter.execute(&machine, &name, input_value).await;
            let mut record = execution.record.lock().unwrap();
            record.stopped = Some(now());
            match result.status {
                ExecutionStatus::Succeeded { output } => {
                    record.status = "SUCCEEDED";
                    record.output = Some(output.to_string());
                }
                ExecutionStatus::Failed { error, cause } => {
                    record.status = "FAILED";
                    (record.error, record.cause) = (Some(error), Some(cause));
                }
                ExecutionStatus::TimedOut => record.status = "TIMED_OUT",
            }
        });
        sfn_ok(json!({"executionArn": arn, "startDate": started}))
    }

    /// A handler for every Lambda function ARN the definition names as a Task resource.
    fn registry(&self, definition: &str) -> TaskRegistry {
        fn resources(value: &Value, found: &mut BTreeMap<String, String>) {
            match value {
                Value::Object(fields) => {
                    if let Some(Value::String(resource)) = fields.get("Resource")
                        && resource.starts_with("arn:aws:lambda:")
                    {
                        found.insert(resource.clone(), resource.clone());
                    }
                    fields.values().for_each(|v| resources(v, found));
                }
                Value::Array(items) => items.iter().for_each(|v| resources(v, found)),
                _ => {}
            }
        }
        let mut functions = BTreeMap::new();
        resources(&serde_json::from_str(definition).unwrap_or_default(), &mut functions);
        let mut registry = TaskRegistry::new();
        beacon_aws::lambda_invoke::register(&mut registry, &self.0.lambda, &functions);
        registry
    }

    fn with_execution(&self, arn: &Value, answer: impl FnOnce(&Execution) -> Value) -> Response {
        let arn = arn.as_str().unwrap_or_default();
        match self.0.executions.lock().unwrap().get(arn) {
            Some(execution) => sfn_ok(answer(execution)),
            None => sfn_error("ExecutionDoesNotExist", format!("Execution Does Not Exist: '{arn}'")),
        }
    }

    fn list_executions(&self, request: &Value) -> Response {
        let state_machine_arn = request["stateMachineArn"].as_str().unwrap_or_default();
        let executions = self.0.executions.lock().unwrap();
        let mut listed: Vec<&Arc<Execution>> =
            executions.values().filter(|e| e.state_machine_arn == state_machine_arn).collect();
        listed.sort_by(|a, b| b.started.total_cmp(&a.started));
        let listed: Vec<Value> = listed.into_iter().map(|e| e.summary()).collect();
        sfn_ok(json!({"executions": listed}))
    }

    fn describe_map_run(&self, map_run_arn: &str) -> Response {
        let executions = self.0.executions.lock().unwrap();
        let found = executions.values().find_map(|e| e.describe_map_run(map_run_arn));
        match found {
            Some(described) => sfn_ok(described),
            None => sfn_error("ResourceNotFound", format!("Map Run Does Not Exist: '{map_run_arn}'")),
        }
    }
}

/// A history event as Step Functions' JSON protocol sends it (timestamps in epoch seconds).
fn wire_event(event: &HistoryEvent) -> Value {
    let mut value = serde_json::to_value(event).unwrap();
    value["timestamp"] = json!(event.timestamp.timestamp_millis() as f64 / 1000.0);
    value
}

impl Execution {
    fn summary(&self) -> Value {
        let record = self.record.lock().unwrap();
        json!({
            "executionArn": self.arn,
            "stateMachineArn": self.state_machine_arn,
            "name": self.name,
            "status": record.status,
            "startDate": self.started,
            "stopDate": record.stopped,
        })
    }

    fn describe(&self) -> Value {
        let mut described = self.summary();
        let record = self.record.lock().unwrap();
        described["input"] = json!(self.input);
        for (key, value) in [("output", &record.output), ("error", &record.error), ("cause", &record.cause)] {
            if let Some(value) = value {
                described[key] = json!(value);
            }
        }
        described
    }

    fn history(&self) -> Value {
        let record = self.record.lock().unwrap();
        json!({"events": record.events.iter().map(wire_event).collect::<Vec<_>>()})
    }

    /// The Map Runs started so far: one `MapRunStarted` event each.
    fn map_run_arns(record: &Record) -> Vec<(String, f64)> {
        record
            .events
            .iter()
            .filter(|e| e.event_type == "MapRunStarted")
            .filter_map(|e| {
                let arn = e.details["mapRunArn"].as_str()?.to_string();
                Some((arn, e.timestamp.timestamp_millis() as f64 / 1000.0))
            })
            .collect()
    }

    fn map_runs(&self) -> Value {
        let record = self.record.lock().unwrap();
        let runs: Vec<Value> = Self::map_run_arns(&record)
            .into_iter()
            .map(|(arn, started)| {
                json!({
                    "executionArn": self.arn,
                    "mapRunArn": arn,
                    "stateMachineArn": child_machine_arn(&arn),
                    "startDate": started,
                })
            })
            .collect();
        json!({"mapRuns": runs})
    }

    fn describe_map_run(&self, map_run_arn: &str) -> Option<Value> {
        let record = self.record.lock().unwrap();
        let (_, started) = Self::map_run_arns(&record).into_iter().find(|(arn, _)| arn == map_run_arn)?;
        let id = map_run_arn.rsplit(':').next().unwrap_or_default();
        let children: Vec<&Child> = record
            .children
            .iter()
            .filter(|(name, _)| name.strip_prefix(id).is_some_and(|rest| rest.starts_with('-')))
            .map(|(_, child)| child)
            .collect();
        let count = |end: Option<bool>| children.iter().filter(move |c| c.succeeded == end);
        let items = |end: Option<bool>| count(end).map(|c| c.items).sum::<u64>();
        let ended = record.events.iter().rev().find_map(|e| match e.event_type.as_str() {
            "MapRunSucceeded" => Some("SUCCEEDED"),
            "MapRunFailed" => Some("FAILED"),
            _ => None,
        });
        let counts = |succeeded: u64, failed: u64, running: u64| {
            json!({
                "pending": 0, "running": running, "succeeded": succeeded, "failed": failed,
                "timedOut": 0, "aborted": 0, "total": succeeded + failed + running, "resultsWritten": 0,
            })
        };
        Some(json!({
            "mapRunArn": map_run_arn,
            "executionArn": self.arn,
            "status": ended.unwrap_or("RUNNING"),
            "startDate": started,
            "maxConcurrency": 0,
            "toleratedFailurePercentage": 0.0,
            "toleratedFailureCount": 0,
            "itemCounts": counts(items(Some(true)), items(Some(false)), items(None)),
            "executionCounts": counts(
                count(Some(true)).count() as u64,
                count(Some(false)).count() as u64,
                count(None).count() as u64,
            ),
        }))
    }
}

/// The ARN of the child state machine a Map Run runs: `...:mapRun:<machine>/<label>:<id>` →
/// `...:stateMachine:<machine>/<label>`.
fn child_machine_arn(map_run_arn: &str) -> String {
    let without_id = map_run_arn.rsplit_once(':').map_or(map_run_arn, |(head, _)| head);
    without_id.replacen(":mapRun:", ":stateMachine:", 1)
}
