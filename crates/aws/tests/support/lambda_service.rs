// Shared by several test binaries, each using a part of it.
#![allow(dead_code)]

//! A local Lambda service for tests: the Lambda Invoke API (`POST
//! /2015-03-31/functions/{name}/invocations`, what `aws-sdk-lambda` and Step Functions call) in
//! front of real function processes (`beacon-lambda`), each polling its function's Lambda Runtime
//! API (`/2018-06-01/runtime/invocation/next`, what `lambda_runtime` speaks). A function can run
//! several instances, as Lambda scales a function out; they take invocations from one queue.
//!
//! What it answers follows the Lambda service: the function's response with status 200; a
//! function error with status 200, `X-Amz-Function-Error: Unhandled` and the error document the
//! runtime posted; an unknown function with 404 `ResourceNotFoundException`.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot};

/// The account the emulated functions' ARNs name.
pub const ACCOUNT: &str = "123456789012";
/// The region the emulated functions' ARNs name.
pub const REGION: &str = "us-east-1";
/// How long an invocation may run before it fails as a timed-out sandbox.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(300);

/// The ARN of function `name` in the emulated account.
pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
}

/// One function to run: its name, how many instances, and the environment of each.
pub struct FunctionSpec {
    pub name: String,
    pub instances: usize,
    pub env: Vec<(String, String)>,
    /// The first this many invocations are refused with 429 TooManyRequestsException, as
    /// Lambda refuses them when the function's concurrency is exhausted.
    pub throttled: usize,
}

/// How an invocation ended: the response body, or the function's error document.
enum Outcome {
    Response(Bytes),
    Error(Bytes),
}

/// One function's queue of invocations and the callers waiting for their outcomes.
#[derive(Clone)]
struct Queue {
    name: String,
    pending: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Bytes)>>>,
    send: mpsc::UnboundedSender<(String, Bytes)>,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>,
    /// The error document of a failed initialisation, if an instance posted one.
    init_error: Arc<Mutex<Option<Bytes>>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    /// Invocations still to refuse with a throttle.
    throttled: Arc<AtomicUsize>,
    /// Instances whose process is still running.
    running: Arc<AtomicUsize>,
}

impl Queue {
    fn new(name: &str, throttled: usize) -> Queue {
        let (send, receive) = mpsc::unbounded_channel();
        Queue {
            name: name.to_string(),
            pending: Arc::new(tokio::sync::Mutex::new(receive)),
            send,
            waiting: Arc::default(),
            init_error: Arc::default(),
            next_id: Arc::default(),
            throttled: Arc::new(AtomicUsize::new(throttled)),
            running: Arc::default(),
        }
    }

    /// Fails what waits for this function, and every later invocation, with `document` (the
    /// function cannot run: its initialisation failed or its processes are gone).
    fn fail_all(&self, document: Bytes) {
        *self.init_error.lock().unwrap() = Some(document.clone());
        for (_, caller) in self.waiting.lock().unwrap().drain() {
            let _ = caller.send(Outcome::Error(document.clone()));
        }
    }

    /// One instance's process ended; when it was the last, the function fails as Lambda fails
    /// a function whose runtime exits (`Runtime.ExitError`) instead of leaving callers waiting.
    fn instance_exited(&self) {
        if self.running.fetch_sub(1, Ordering::SeqCst) == 1 && self.init_error.lock().unwrap().is_none() {
            eprintln!("function {}: every instance exited", self.name);
            let document = serde_json::json!({
                "errorType": "Runtime.ExitError",
                "errorMessage": format!("the runtime of {} exited (see its log above)", self.name),
            });
            self.fail_all(Bytes::from(document.to_string()));
        }
    }

    fn finish(&self, id: &str, outcome: Outcome) -> StatusCode {
        match self.waiting.lock().unwrap().remove(id) {
            Some(caller) => {
                let _ = caller.send(outcome);
                StatusCode::ACCEPTED
            }
            None => StatusCode::BAD_REQUEST,
        }
    }
}

/// The running service: its Invoke API endpoint and the function processes.
pub struct LocalLambda {
    /// `http://127.0.0.1:PORT`: the Lambda endpoint to give the SDK.
    pub endpoint: String,
    processes: Vec<FunctionProcess>,
}

/// One function process: its function's name, the child, and the thread collecting its stdout.
type FunctionProcess = (String, Child, Option<std::thread::JoinHandle<Vec<String>>>);

impl LocalLambda {
    /// Starts the Invoke API and `instances` processes of `binary` per function, each with the
    /// Lambda runtime's environment and the function's own.
    pub async fn start(binary: &Path, functions: Vec<FunctionSpec>) -> LocalLambda {
        assert!(
            binary.is_file(),
            "{} is missing: build the workspace (cargo test --workspace builds every binary)",
            binary.display()
        );
        let mut queues = HashMap::new();
        let mut processes = Vec::new();
        for function in functions {
            let queue = Queue::new(&function.name, function.throttled);
            let runtime_api = serve(
                Router::new()
                    .route("/2018-06-01/runtime/invocation/next", get(next))
                    .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
                    .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
                    .route("/2018-06-01/runtime/init/error", post(init_error))
                    .with_state(queue.clone()),
            )
            .await;
            for _ in 0..function.instances {
                let mut child = Command::new(binary)
                    .env_clear()
                    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                    .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
                    .env("AWS_LAMBDA_FUNCTION_NAME", &function.name)
                    .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
                    .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                    .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
                    .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", function.name))
                    .env("AWS_REGION", REGION)
                    .envs(function.env.iter().map(|(k, v)| (k, v)))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
                let out = child.stdout.take().expect("the function's stdout");
                queue.running.fetch_add(1, Ordering::SeqCst);
                let instance = queue.clone();
                // Reads the function's log (EMF lines among it) until the process ends.
                let reader = std::thread::spawn(move || {
                    use std::io::BufRead;
                    let lines = std::io::BufReader::new(out).lines().map_while(Result::ok).collect();
                    instance.instance_exited();
                    lines
                });
                processes.push((function.name.clone(), child, Some(reader)));
            }
            queues.insert(function.name.clone(), queue);
        }
        let endpoint = serve(
            Router::new()
                .route("/2015-03-31/functions/{function}/invocations", post(invoke))
                .with_state(Arc::new(queues)),
        )
        .await;
        LocalLambda { endpoint: format!("http://{endpoint}"), processes }
    }

    /// Stops every function and returns what each printed, by function name.
    pub fn stop(mut self) -> HashMap<String, Vec<String>> {
        let mut printed: HashMap<String, Vec<String>> = HashMap::new();
        for (name, child, reader) in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
            if let Some(lines) = reader.take().and_then(|r| r.join().ok()) {
                printed.entry(name.clone()).or_default().extend(lines);
            }
        }
        printed
    }
}

impl Drop for LocalLambda {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Serves `app` on a free loopback port; returns `127.0.0.1:PORT`.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// The function a path segment names: a name, or an ARN (with an optional qualifier).
fn function_name(segment: &str) -> &str {
    match segment.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => segment,
    }
}

fn aws_error(status: StatusCode, kind: &str, message: String) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("x-amzn-errortype", HeaderValue::from_str(kind).unwrap());
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (status, headers, serde_json::json!({"Type": "User", "message": message}).to_string()).into_response()
}

fn function_error(document: Bytes) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("x-amz-function-error", HeaderValue::from_static("Unhandled"));
    headers.insert("x-amz-executed-version", HeaderValue::from_static("$LATEST"));
    (StatusCode::OK, headers, document).into_response()
}

async fn invoke(
    State(queues): State<Arc<HashMap<String, Queue>>>,
    UrlPath(function): UrlPath<String>,
    headers: HeaderMap,
    payload: Bytes,
) -> Response {
    let Some(queue) = queues.get(function_name(&function)) else {
        return aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("Function not found: {}", function_arn(function_name(&function))),
        );
    };
    let kind = headers.get("x-amz-invocation-type").and_then(|v| v.to_str().ok()).unwrap_or("RequestResponse");
    if kind != "RequestResponse" {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            format!("this emulator serves RequestResponse invocations only, not {kind}"),
        );
    }
    if let Some(document) = queue.init_error.lock().unwrap().clone() {
        return function_error(document);
    }
    let throttle = queue.throttled.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok();
    if throttle {
        return aws_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", "Rate Exceeded.".to_string());
    }
    let id = format!("{}-{}", queue.name, queue.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let (caller, outcome) = oneshot::channel();
    queue.waiting.lock().unwrap().insert(id.clone(), caller);
    let _ = queue.send.send((id.clone(), payload));
    match tokio::time::timeout(INVOCATION_TIMEOUT, outcome).await {
        Ok(Ok(Outcome::Response(body))) => {
            let mut headers = HeaderMap::new();
            headers.insert("x-amz-executed-version", HeaderValue::from_static("$LATEST"));
            (StatusCode::OK, headers, body).into_response()
        }
        Ok(Ok(Outcome::Error(document))) => function_error(document),
        Ok(Err(_)) | Err(_) => {
            queue.waiting.lock().unwrap().remove(&id);
            function_error(Bytes::from(
                serde_json::json!({"errorType": "Sandbox.Timedout", "errorMessage": format!("{id} timed out")})
                    .to_string(),
            ))
        }
    }
}

async fn next(State(queue): State<Queue>) -> Response {
    let Some((id, event)) = queue.pending.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
        + INVOCATION_TIMEOUT.as_millis();
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", HeaderValue::from_str(&id).unwrap());
    headers.insert("lambda-runtime-deadline-ms", HeaderValue::from_str(&deadline.to_string()).unwrap());
    headers.insert("lambda-runtime-invoked-function-arn", HeaderValue::from_str(&function_arn(&queue.name)).unwrap());
    (StatusCode::OK, headers, event).into_response()
}

async fn response(State(queue): State<Queue>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    queue.finish(&id, Outcome::Response(body))
}

async fn error(State(queue): State<Queue>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    queue.finish(&id, Outcome::Error(body))
}

async fn init_error(State(queue): State<Queue>, body: Bytes) -> StatusCode {
    eprintln!("function {} failed to start: {}", queue.name, String::from_utf8_lossy(&body));
    // The instance is gone: what was waiting for it fails now rather than at the timeout.
    queue.fail_all(body);
    StatusCode::ACCEPTED
}
