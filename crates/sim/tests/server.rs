//! The simulator over a real socket, spoken to with hand-written HTTP/1.1 so that the test sees
//! exactly the bytes a client would.

use beacon_sim::{SimConfig, SimServer, SimStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

use common::send;

const REQUEST: &str = r#"{"system":[{"text":"You analyse documents."}],"messages":[{"role":"user","content":[{"text":"Return JSON.\n--- CONTENT ---\npage 1\nBEACON reads documents. It is fast.\nPoint A\n"}]}],"inferenceConfig":{"maxTokens":512,"temperature":0.0}}"#;

async fn start(config: SimConfig) -> SimServer {
    SimServer::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

#[tokio::test]
async fn converse_answers_like_bedrock() {
    let sim = start(SimConfig::default()).await;
    let response = send(&sim, "POST", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", REQUEST).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(response.header("x-amzn-RequestId").is_some());
    let json = response.json();
    assert_eq!(json["output"]["message"]["role"], "assistant");
    assert_eq!(json["stopReason"], "end_turn");
    let usage = &json["usage"];
    assert_eq!(
        usage["totalTokens"].as_u64().unwrap(),
        usage["inputTokens"].as_u64().unwrap() + usage["outputTokens"].as_u64().unwrap()
    );
    assert!(json["metrics"]["latencyMs"].is_u64());

    let text = json["output"]["message"]["content"][0]["text"].as_str().unwrap();
    let answer: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(answer["title"], "page 1");
    assert_eq!(answer["summary"], "BEACON reads documents. It is fast. Point A");
    assert_eq!(answer["language"], "en");

    let stats = sim.stats();
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.succeeded, 1);
    assert_eq!(stats.input_tokens, usage["inputTokens"].as_u64().unwrap());
    assert_eq!(stats.output_tokens, usage["outputTokens"].as_u64().unwrap());
    sim.shutdown().await;
}

#[tokio::test]
async fn quota_throttles_with_bedrocks_exact_error() {
    // One request per minute: the second request in the same instant is throttled whatever the
    // machine's speed.
    let sim = start(SimConfig { rpm: Some(1), burst: Some(1), ..SimConfig::default() }).await;
    let first = send(&sim, "POST", "/model/m/converse", REQUEST).await;
    assert_eq!(first.status, 200);
    let second = send(&sim, "POST", "/model/m/converse", REQUEST).await;
    assert_eq!(second.status, 429);
    assert_eq!(
        second.header("x-amzn-ErrorType"),
        Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/")
    );
    assert_eq!(second.body, r#"{"message":"Too many requests, please wait before trying again."}"#);
    let stats = sim.stats();
    assert_eq!((stats.requests, stats.succeeded, stats.throttled), (2, 1, 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_requests_are_validation_errors() {
    let sim = start(SimConfig::default()).await;
    for body in ["{not json", r#"{"messages":[]}"#] {
        let response = send(&sim, "POST", "/model/m/converse", body).await;
        assert_eq!(response.status, 400);
        assert_eq!(response.header("x-amzn-ErrorType"), Some("ValidationException"));
        assert!(response.json()["message"].as_str().unwrap().len() > 10);
    }
    let unknown = send(&sim, "POST", "/model/m/invoke-with-magic", REQUEST).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.header("x-amzn-ErrorType"), Some("UnknownOperationException"));
    assert_eq!(sim.stats().rejected, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn max_tokens_truncates_the_answer() {
    let sim = start(SimConfig::default()).await;
    let body = REQUEST.replace(r#""maxTokens":512"#, r#""maxTokens":3"#);
    let json = send(&sim, "POST", "/model/m/converse", &body).await.json();
    assert_eq!(json["stopReason"], "max_tokens");
    assert_eq!(json["usage"]["outputTokens"], 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn health_and_stats_endpoints() {
    let sim = start(SimConfig::default()).await;
    let health = send(&sim, "GET", "/health", "").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    send(&sim, "POST", "/model/m/converse", REQUEST).await;
    let stats: SimStats = serde_json::from_str(&send(&sim, "GET", "/sim/stats", "").await.body).unwrap();
    assert_eq!(stats, sim.stats());
    assert_eq!(stats.succeeded, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn serve_runs_on_a_given_listener() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(beacon_sim::serve(listener, SimConfig::default()));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    server.abort();
}
