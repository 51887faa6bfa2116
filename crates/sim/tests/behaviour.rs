//! Quotas, latency, faults, the OpenAI endpoint and the stats, through a real socket.
//!
//! Tests that depend on time run on tokio's paused clock: the simulator reads tokio's clock, so
//! `tokio::time::advance` moves its sliding window and its timeline without any real waiting.

mod common;

use std::time::Duration;

use beacon_sim::faults::{Fault, FaultPlan};
use beacon_sim::{QuotaMode, SimConfig, SimServer, estimate_tokens};
use common::{HttpResponse, send, send_to};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

const CONTENT: &str = "Return JSON.\n--- CONTENT ---\npage 1\nBEACON reads documents. It is fast.\nPoint A\n";

fn converse_body(max_tokens: u64) -> String {
    json!({
        "messages": [{"role": "user", "content": [{"text": CONTENT}]}],
        "inferenceConfig": {"maxTokens": max_tokens}
    })
    .to_string()
}

fn chat_body(max_tokens: u64) -> String {
    json!({
        "model": "gpt-sim",
        "messages": [
            {"role": "system", "content": "You analyse documents."},
            {"role": "user", "content": CONTENT}
        ],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "response_format": {"type": "json_object"}
    })
    .to_string()
}

async fn start(config: SimConfig) -> SimServer {
    SimServer::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

async fn converse(sim: &SimServer) -> HttpResponse {
    send(sim, "POST", "/model/m/converse", &converse_body(512)).await
}

async fn chat(sim: &SimServer) -> HttpResponse {
    send(sim, "POST", "/v1/chat/completions", &chat_body(512)).await
}

/// Polls `condition` until it holds, failing after a generous deadline.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn openai_endpoint_answers_in_openais_shape_with_the_same_answer() {
    let sim = start(SimConfig::default()).await;
    let response = chat(&sim).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json = response.json();
    assert!(json["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(json["object"], "chat.completion");
    assert!(json["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(json["model"], "gpt-sim");
    let choice = &json["choices"][0];
    assert_eq!((choice["index"].as_u64(), choice["finish_reason"].as_str()), (Some(0), Some("stop")));
    assert_eq!(choice["message"]["role"], "assistant");
    let usage = &json["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        usage["prompt_tokens"].as_u64().unwrap(),
        estimate_tokens(&format!("You analyse documents.\n{CONTENT}"))
    );

    // The same deterministic answer the Converse endpoint gives for the same content.
    let bedrock = converse(&sim).await.json();
    let bedrock_text = bedrock["output"]["message"]["content"][0]["text"].as_str().unwrap();
    let content = choice["message"]["content"].as_str().unwrap();
    assert_eq!(content, bedrock_text);
    let answer: Value = serde_json::from_str(content).unwrap();
    assert_eq!(answer["title"], "page 1");

    // Running out of max_tokens is `length`.
    let short = send(&sim, "POST", "/v1/chat/completions", &chat_body(3)).await.json();
    assert_eq!(short["choices"][0]["finish_reason"], "length");
    assert_eq!(short["usage"]["completion_tokens"], 3);

    let stats = sim.stats();
    assert_eq!((stats.requests, stats.succeeded), (3, 3));
    sim.shutdown().await;
}

#[tokio::test]
async fn openai_bad_requests_are_invalid_request_errors() {
    let sim = start(SimConfig::default()).await;
    let response = send(&sim, "POST", "/v1/chat/completions", r#"{"model":"m","messages":[]}"#).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"]["type"], "invalid_request_error");
    let unknown = send(&sim, "POST", "/v1/embeddings", "{}").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["type"], "invalid_request_error");
    assert_eq!(sim.stats().rejected, 1);
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn sliding_window_throttles_both_apis_with_their_own_shapes() {
    let sim = start(SimConfig { rpm: Some(2), ..SimConfig::default() }).await;
    assert_eq!(converse(&sim).await.status, 200);
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(chat(&sim).await.status, 200);

    tokio::time::advance(Duration::from_millis(500)).await;
    let throttled = chat(&sim).await;
    assert_eq!(throttled.status, 429);
    // The first request leaves the window 39.5 s from now: rounded up.
    assert_eq!(throttled.header("retry-after"), Some("40"));
    let error = &throttled.json()["error"];
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("rate_limit_error"), Some("rate_limit_exceeded"))
    );
    assert!(error["message"].as_str().unwrap().contains("requests per min"), "{error}");

    // Bedrock's throttling carries no retry hint.
    let bedrock = converse(&sim).await;
    assert_eq!(bedrock.status, 429);
    assert_eq!(bedrock.header("retry-after"), None);
    assert_eq!(bedrock.body, r#"{"message":"Too many requests, please wait before trying again."}"#);

    // Not a bucket: 39 s later it is still full; at 60 s after the first, it admits again.
    tokio::time::advance(Duration::from_secs(39)).await;
    assert_eq!(converse(&sim).await.status, 429);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(converse(&sim).await.status, 200);

    let stats = sim.stats();
    assert_eq!((stats.requests, stats.succeeded, stats.throttled), (6, 3, 3));
    assert_eq!(stats.max_rpm_observed, 2);
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn tokens_per_minute_reserve_max_tokens_then_count_actual_usage() {
    let input = estimate_tokens(&format!("\n{CONTENT}"));
    // Room for one reservation of input + 512, not two; answered, the first leaves room.
    let tpm = 2 * input + 512 + 100;
    let sim = start(SimConfig { tpm: Some(tpm), ..SimConfig::default() }).await;
    let first = converse(&sim).await.json();
    let used = first["usage"]["totalTokens"].as_u64().unwrap();
    assert!(used + input + 512 <= tpm, "the actual usage ({used}) leaves room for another reservation");
    assert_eq!(converse(&sim).await.status, 200);
    // Now actual usage 2 × used is counted; a request whose reservation does not fit is throttled
    // with Bedrock's tokens message, and one larger than the whole quota as well.
    let too_big = send(&sim, "POST", "/model/m/converse", &converse_body(tpm)).await;
    assert_eq!(too_big.status, 429);
    assert_eq!(too_big.body, r#"{"message":"Too many tokens, please wait before trying again."}"#);
    let openai = send(&sim, "POST", "/v1/chat/completions", &chat_body(tpm)).await;
    assert_eq!(openai.status, 429);
    assert_eq!(openai.header("retry-after"), Some("60"), "never fits: a minute");
    assert!(openai.json()["error"]["message"].as_str().unwrap().contains("tokens per min"));

    let stats = sim.stats();
    assert_eq!((stats.succeeded, stats.throttled), (2, 2));
    assert!(stats.max_tpm_observed <= tpm, "{stats:?}");
    assert_eq!(
        stats.max_tpm_observed,
        used + input + 512,
        "the peak is the first's usage plus the second's reservation"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn burst_keeps_the_token_bucket_unless_the_window_is_asked_for() {
    let config = SimConfig { rpm: Some(6000), burst: Some(1), ..SimConfig::default() };
    assert_eq!(config.effective_quota_mode(), QuotaMode::TokenBucket);
    let window = SimConfig { quota_mode: Some(QuotaMode::SlidingWindow), ..config.clone() };
    assert_eq!(window.effective_quota_mode(), QuotaMode::SlidingWindow);
    assert_eq!(SimConfig { rpm: Some(60), ..SimConfig::default() }.effective_quota_mode(), QuotaMode::SlidingWindow);

    // With the window, the burst of 1 does not matter: three at once are fine.
    let sim = start(window).await;
    for _ in 0..3 {
        assert_eq!(converse(&sim).await.status, 200);
    }
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn latency_is_base_plus_per_output_token() {
    let config = SimConfig { latency_ms: 1000, latency_per_output_token_ms: 10.0, ..SimConfig::default() };
    let sim = start(config).await;
    let started = tokio::time::Instant::now();
    let json = converse(&sim).await.json();
    let output = json["usage"]["outputTokens"].as_u64().unwrap();
    let expected = 1000 + 10 * output;
    assert_eq!(json["metrics"]["latencyMs"].as_u64(), Some(expected));
    assert_eq!(started.elapsed(), Duration::from_millis(expected));
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn latency_spread_is_seeded() {
    let latencies = |seed| async move {
        let config = SimConfig { latency_ms: 1000, latency_spread: 0.3, seed, ..SimConfig::default() };
        let sim = start(config).await;
        let mut latencies = Vec::new();
        for _ in 0..20 {
            latencies.push(converse(&sim).await.json()["metrics"]["latencyMs"].as_u64().unwrap());
        }
        sim.shutdown().await;
        latencies
    };
    let first = latencies(9).await;
    assert_eq!(first, latencies(9).await);
    assert_ne!(first, latencies(10).await);
    assert!(first.iter().all(|ms| (700..=1300).contains(ms)), "{first:?}");
}

/// The status of each of `n` sequential requests, alternating the two APIs.
async fn outcomes(config: SimConfig, n: usize) -> (Vec<(u16, bool)>, beacon_sim::SimStats) {
    let sim = start(config).await;
    let mut outcomes = Vec::new();
    for i in 0..n {
        let response = if i % 2 == 0 { converse(&sim).await } else { chat(&sim).await };
        // Whether a client could use the answer: JSON of the right shape whose text is JSON.
        let usable = serde_json::from_str::<Value>(&response.body).ok().and_then(|json| {
            let text = json["output"]["message"]["content"][0]["text"]
                .as_str()
                .or(json["choices"][0]["message"]["content"].as_str())?
                .to_string();
            serde_json::from_str::<Value>(&text).ok()
        });
        if response.status == 503 {
            if i % 2 == 0 {
                assert_eq!(response.header("x-amzn-ErrorType"), Some("ServiceUnavailableException"));
                assert!(response.json()["message"].is_string());
            } else {
                assert_eq!(response.json()["error"]["type"], "server_error");
            }
        }
        outcomes.push((response.status, usable.is_some()));
    }
    let stats = sim.stats();
    sim.shutdown().await;
    (outcomes, stats)
}

#[tokio::test]
async fn faults_are_seeded_counted_and_shaped() {
    let config = SimConfig { fault_503: 0.2, fault_malformed: 0.3, seed: 11, ..SimConfig::default() };
    let (first, stats) = outcomes(config.clone(), 60).await;
    let (again, _) = outcomes(config.clone(), 60).await;
    assert_eq!(first, again, "the same seed fails the same requests");
    let (other, _) = outcomes(SimConfig { seed: 12, ..config }, 60).await;
    assert_ne!(first, other);

    let unavailable = first.iter().filter(|(status, _)| *status == 503).count() as u64;
    let malformed = first.iter().filter(|(status, usable)| *status == 200 && !usable).count() as u64;
    let ok = first.iter().filter(|(status, usable)| *status == 200 && *usable).count() as u64;
    assert_eq!(stats.faults.unavailable, unavailable);
    assert_eq!(stats.faults.malformed, malformed);
    assert_eq!(stats.faults.hung, 0);
    assert_eq!((stats.requests, stats.succeeded), (60, ok));
    assert!(unavailable > 0 && malformed > 0 && ok > 0, "{first:?}");
    assert_eq!(unavailable + malformed + ok, 60);
}

#[tokio::test]
async fn faults_come_before_the_quota() {
    // A zero quota throttles everything, but 503s are decided first and take no quota.
    let sim = start(SimConfig { rpm: Some(0), fault_503: 1.0, ..SimConfig::default() }).await;
    assert_eq!(converse(&sim).await.status, 503);
    let stats = sim.stats();
    assert_eq!((stats.throttled, stats.faults.unavailable), (0, 1));
    sim.shutdown().await;
}

/// Sends a Converse request from another task, as a client that may give up.
fn spawn_converse(sim: &SimServer) -> tokio::task::JoinHandle<HttpResponse> {
    let addr = sim.local_addr();
    tokio::spawn(async move { send_to(addr, "POST", "/model/m/converse", &converse_body(512)).await })
}

#[tokio::test]
async fn a_hung_request_never_answers_and_blocks_nothing_else() {
    // A seed whose first request hangs and whose second does not.
    let plan = FaultPlan { hang: 0.5, ..FaultPlan::default() };
    let seed = (0..1000)
        .find(|seed| {
            let mut rng = StdRng::seed_from_u64(*seed);
            plan.decide(&mut rng) == Some(Fault::Hang) && plan.decide(&mut rng).is_none()
        })
        .unwrap();
    let sim = start(SimConfig { fault_hang: 0.5, seed, ..SimConfig::default() }).await;
    let hung = spawn_converse(&sim);
    eventually("the first request to hang", || sim.stats().faults.hung == 1).await;
    let second = chat(&sim).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(send(&sim, "GET", "/health", "").await.status, 200);
    assert!(!hung.is_finished(), "the hung request got an answer");
    // The client gives up; the simulator still shuts down promptly.
    hung.abort();
    assert!(hung.await.unwrap_err().is_cancelled());
    let stats = sim.stats();
    assert_eq!((stats.requests, stats.succeeded, stats.faults.hung, stats.in_flight), (2, 1, 1, 0));
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_hung_requests() {
    let sim = start(SimConfig { fault_hang: 1.0, ..SimConfig::default() }).await;
    let hung = spawn_converse(&sim);
    eventually("the request to hang", || sim.stats().faults.hung == 1).await;
    sim.shutdown().await;
    let response = hung.await.unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.header("x-amzn-ErrorType"), Some("ServiceUnavailableException"));
}

#[tokio::test]
async fn in_flight_cap_throttles_concurrent_requests() {
    // The first request waits out a minute of latency; the others arrive meanwhile.
    let config = SimConfig { max_in_flight: Some(1), latency_ms: 60_000, ..SimConfig::default() };
    let sim = start(config).await;
    let slow = spawn_converse(&sim);
    eventually("one request in flight", || sim.stats().in_flight == 1).await;
    let bedrock = converse(&sim).await;
    assert_eq!(bedrock.status, 429);
    assert_eq!(
        bedrock.header("x-amzn-ErrorType"),
        Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/")
    );
    let openai = chat(&sim).await;
    assert_eq!(openai.status, 429);
    assert_eq!(openai.header("retry-after"), Some("1"));
    let stats = send(&sim, "GET", "/_stats", "").await.json();
    assert_eq!((stats["in_flight"].as_u64(), stats["throttled"].as_u64()), (Some(1), Some(2)));
    // Shutting down cuts the minute short.
    sim.shutdown().await;
    assert_eq!(slow.await.unwrap().status, 503);
}

#[tokio::test(start_paused = true)]
async fn stats_have_totals_and_a_per_second_timeline() {
    let sim = start(SimConfig { rpm: Some(2), ..SimConfig::default() }).await;
    converse(&sim).await;
    chat(&sim).await;
    tokio::time::advance(Duration::from_millis(2500)).await;
    assert_eq!(converse(&sim).await.status, 429);
    send(&sim, "POST", "/model/m/converse", "{bad").await;

    let stats = send(&sim, "GET", "/_stats", "").await.json();
    let timeline = stats["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 3, "{stats}");
    assert_eq!(timeline[0]["second"], 0);
    assert_eq!((timeline[0]["requests"].as_u64(), timeline[0]["ok"].as_u64()), (Some(2), Some(2)));
    assert!(timeline[0]["input_tokens"].as_u64().unwrap() > 0 && timeline[0]["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        timeline[1],
        json!({"second": 1, "requests": 0, "ok": 0, "throttled": 0, "input_tokens": 0, "output_tokens": 0})
    );
    assert_eq!((timeline[2]["requests"].as_u64(), timeline[2]["throttled"].as_u64()), (Some(2), Some(1)));

    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["ok"], 2);
    assert_eq!(stats["throttled"], 1);
    assert_eq!(stats["rejected"], 1);
    assert_eq!(stats["faults"], json!({"unavailable": 0, "hung": 0, "malformed": 0}));
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(stats["max_rpm_observed"], 2);
    assert_eq!(stats["input_tokens"], timeline[0]["input_tokens"]);
    assert!(stats.get("succeeded").is_none());

    // The old endpoint: the same object plus `succeeded`.
    let mut legacy = send(&sim, "GET", "/sim/stats", "").await.json();
    assert_eq!(legacy["succeeded"], 2);
    legacy.as_object_mut().unwrap().remove("succeeded");
    assert_eq!(legacy, stats);
    assert_eq!(sim.timeline().len(), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_configurations_are_refused() {
    for config in [
        SimConfig { fault_503: 1.5, ..SimConfig::default() },
        SimConfig { fault_503: 0.6, fault_hang: 0.6, ..SimConfig::default() },
        SimConfig { latency_spread: -0.1, ..SimConfig::default() },
        SimConfig { latency_per_output_token_ms: f64::NAN, ..SimConfig::default() },
    ] {
        let err = SimServer::start("127.0.0.1:0".parse().unwrap(), config.clone()).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{config:?}");
    }
}
