//! The InvokeModel client through the real AWS SDK (signing, HTTP, error parsing) against a small
//! axum server on loopback that answers like Bedrock's `/model/{id}/invoke`: the body sent, the
//! answer parsed, and a `ThrottlingException` classified. (`beacon sim` serves Converse only.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use beacon_llm::invoke::BedrockInvoke;
use beacon_llm::{CompletionRequest, LlmClient, LlmError, Usage};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, HeaderMap, Value)>>>);

async fn invoke(State(seen): State<Seen>, Path(model): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.0.lock().unwrap().push((model.clone(), headers, body));
    if model == "busy-model" {
        return Response::builder()
            .status(429)
            .header("content-type", "application/json")
            .header("x-amzn-errortype", "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/")
            .header("x-amzn-requestid", "req-1")
            .header("retry-after", "4")
            .body(axum::body::Body::from(r#"{"message":"Too many requests, please wait before trying again."}"#))
            .unwrap();
    }
    let answer = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [{"type": "text", "text": "{\"summary\": \"Sales grew.\"}"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 31, "output_tokens": 8}
    });
    ([("content-type", "application/json")], answer.to_string()).into_response()
}

async fn serve() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new().route("/model/{model}/invoke", post(invoke)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

async fn client(endpoint: &str, model: &str) -> BedrockInvoke {
    BedrockInvoke::builder(model)
        .endpoint(endpoint)
        .region("us-east-1")
        .static_credentials("AKIDEXAMPLE", "not-a-secret")
        .build()
        .await
        .unwrap()
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

#[tokio::test]
async fn the_anthropic_body_is_sent_signed_and_the_answer_parsed() {
    let (endpoint, seen) = serve().await;
    let completion = client(&endpoint, "test-model").await.complete(&request()).await.unwrap();
    assert_eq!(completion.text, "{\"summary\": \"Sales grew.\"}");
    assert_eq!(completion.usage, Usage { input_tokens: 31, output_tokens: 8 });
    assert_eq!(completion.stop_reason, "end_turn");
    assert_eq!(completion.model, "test-model");

    let seen = seen.0.lock().unwrap();
    let (model, headers, body) = &seen[0];
    assert_eq!(model, "test-model");
    let auth = headers.get("authorization").unwrap().to_str().unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{auth}");
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
    assert_eq!(body["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(body["max_tokens"], 300);
    assert_eq!(body["system"], request().system);
    assert_eq!(
        body["messages"][0]["content"][0]["text"],
        "Return a JSON object with a `summary`.\n--- CONTENT ---\npage 1\nSales grew by 4% this quarter."
    );
}

#[tokio::test]
async fn a_throttling_exception_is_throttled_with_the_hint() {
    let (endpoint, _seen) = serve().await;
    match client(&endpoint, "busy-model").await.complete(&request()).await {
        Err(LlmError::Throttled { provider, message, retry_after }) => {
            assert_eq!(provider, "bedrock");
            assert!(message.starts_with("Too many requests"), "{message}");
            assert!(message.contains("req-1"), "the request id is kept: {message}");
            assert_eq!(retry_after, Some(Duration::from_secs(4)));
        }
        other => panic!("{other:?}"),
    }
}
