//! The OpenAI-compatible client over real HTTP against a small axum server on loopback: the
//! request it sends, throttling with a `retry-after` hint retried by `Retrying`, rejections,
//! timeouts and connection errors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use beacon_llm::openai::OpenAiChat;
use beacon_llm::retry::{RetryPolicy, Retrying, Sleep};
use beacon_llm::{ClientStats, CompletionRequest, LlmClient, LlmError, Usage};
use serde_json::{Value, json};

/// What the server answers, one scripted response per request (the last one repeats), and what
/// it received.
#[derive(Clone, Default)]
struct Script {
    responses: Arc<Mutex<Vec<Canned>>>,
    received: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

/// One scripted HTTP response.
#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn reply(status: u16, headers: &[(&str, &str)], body: Value) -> Canned {
    let headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    Canned { status, headers, body: body.to_string() }
}

impl IntoResponse for Canned {
    fn into_response(self) -> Response {
        let mut builder = Response::builder().status(self.status).header("content-type", "application/json");
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder.body(axum::body::Body::from(self.body)).unwrap()
    }
}

fn answer(text: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "served",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 9, "total_tokens": 51}
    })
}

async fn chat(State(script): State<Script>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    script.received.lock().unwrap().push((headers, body));
    let mut responses = script.responses.lock().unwrap();
    let next = if responses.len() > 1 { responses.remove(0) } else { responses[0].clone() };
    next.into_response()
}

/// Starts the server on a free loopback port; returns its base URL (`http://127.0.0.1:PORT/v1`).
async fn serve(responses: Vec<Canned>) -> (String, Script) {
    let script = Script { responses: Arc::new(Mutex::new(responses)), ..Script::default() };
    let app = Router::new().route("/v1/chat/completions", post(chat)).with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), script)
}

fn request() -> CompletionRequest {
    CompletionRequest {
        system: "You analyse one unit of a document and answer with JSON only.".into(),
        instruction: "Return a JSON object with a `summary`.".into(),
        content: "Sales grew by 4% this quarter.".into(),
        content_label: "page 1".into(),
        language: Some("en".into()),
        max_tokens: 300,
        temperature: 0.0,
        attachments: Vec::new(),
    }
}

/// Records the waits `Retrying` asks for and returns at once.
#[derive(Default)]
struct RecordingSleep(Mutex<Vec<Duration>>);

#[async_trait]
impl Sleep for RecordingSleep {
    async fn sleep(&self, duration: Duration) {
        self.0.lock().unwrap().push(duration);
    }
}

#[tokio::test]
async fn throttled_then_answered_is_retried_with_the_servers_hint() {
    let (base_url, script) = serve(vec![
        reply(429, &[("retry-after", "7")], json!({"error": {"message": "Rate limit reached", "type": "requests"}})),
        reply(200, &[], answer("{\"summary\": \"Sales grew.\"}")),
    ])
    .await;
    let client = OpenAiChat::new(&base_url, "test-model", Some("sk-test".into()), Duration::from_secs(10)).unwrap();

    let sleeper = Arc::new(RecordingSleep::default());
    let stats = ClientStats::default();
    let policy = RetryPolicy {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        max_attempts: 3,
        throttle_budget: Duration::from_secs(60),
        hedge: false, // the fake sleeper returns at once
    };
    let retrying = Retrying::new(client, policy, stats.clone()).with_sleeper(sleeper.clone());
    let completion = retrying.complete(&request()).await.unwrap();

    assert_eq!(completion.text, "{\"summary\": \"Sales grew.\"}");
    assert_eq!(completion.usage, Usage { input_tokens: 42, output_tokens: 9 });
    assert_eq!(completion.stop_reason, "end_turn");
    assert_eq!(completion.model, "test-model");
    assert_eq!((completion.attempts, completion.throttles), (2, 1));
    assert_eq!(*sleeper.0.lock().unwrap(), vec![Duration::from_secs(7)], "the retry-after hint was the wait");
    let snapshot = stats.snapshot();
    assert_eq!((snapshot.requests, snapshot.throttles, snapshot.retries), (2, 1, 1));

    let received = script.received.lock().unwrap();
    assert_eq!(received.len(), 2);
    let (headers, body) = &received[0];
    assert_eq!(headers.get("authorization").unwrap(), "Bearer sk-test");
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["max_tokens"], 300);
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    assert_eq!(body["messages"][0], json!({"role": "system", "content": request().system}));
    assert_eq!(
        body["messages"][1]["content"],
        "Return a JSON object with a `summary`.\n--- CONTENT ---\npage 1\nSales grew by 4% this quarter."
    );
}

#[tokio::test]
async fn the_raw_client_reports_throttling_with_retry_after_ms() {
    let (base_url, script) = serve(vec![reply(
        429,
        &[("retry-after-ms", "1500"), ("retry-after", "2")],
        json!({"error": {"message": "slow down"}}),
    )])
    .await;
    let client = OpenAiChat::builder(&base_url, "m").json_response(false).build().unwrap();
    match client.complete(&request()).await {
        Err(LlmError::Throttled { provider, message, retry_after }) => {
            assert_eq!(provider, "openai");
            assert_eq!(message, "slow down");
            assert_eq!(retry_after, Some(Duration::from_millis(1500)));
        }
        other => panic!("{other:?}"),
    }
    let received = script.received.lock().unwrap();
    let (headers, body) = &received[0];
    assert!(headers.get("authorization").is_none(), "no key, no header");
    assert!(body.get("response_format").is_none(), "json_response(false) leaves the field out");
}

#[tokio::test]
async fn rejections_carry_the_error_type_and_are_not_retried() {
    let (base_url, script) = serve(vec![reply(
        400,
        &[],
        json!({"error": {"message": "max_tokens is too large", "type": "invalid_request_error", "param": "max_tokens", "code": null}}),
    )])
    .await;
    let client = OpenAiChat::new(&base_url, "m", None, Duration::from_secs(10)).unwrap();
    let retrying = Retrying::new(client, RetryPolicy::default(), ClientStats::default());
    match retrying.complete(&request()).await {
        Err(LlmError::Rejected { kind, message, .. }) => {
            assert_eq!(kind, "invalid_request_error");
            assert_eq!(message, "max_tokens is too large");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(script.received.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn server_errors_are_transient() {
    let (base_url, _script) = serve(vec![reply(503, &[], json!({"error": "loading model"}))]).await;
    let client = OpenAiChat::new(&base_url, "m", None, Duration::from_secs(10)).unwrap();
    match client.complete(&request()).await {
        Err(LlmError::Transient { message, .. }) => assert!(message.contains("loading model"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_slow_server_times_out_and_a_closed_port_is_a_connection_error() {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            // Longer than the client's timeout: the client gives up, the test does not wait.
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let slow = OpenAiChat::new(format!("http://{addr}/v1"), "m", None, Duration::from_millis(200)).unwrap();
    match slow.complete(&request()).await {
        Err(LlmError::Transient { message, .. }) => assert!(message.contains("timed out"), "{message}"),
        other => panic!("{other:?}"),
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let closed = OpenAiChat::new(format!("http://127.0.0.1:{port}/v1"), "m", None, Duration::from_secs(5)).unwrap();
    match closed.complete(&request()).await {
        Err(LlmError::Transient { message, .. }) => assert!(message.contains("cannot connect"), "{message}"),
        other => panic!("{other:?}"),
    }
}
