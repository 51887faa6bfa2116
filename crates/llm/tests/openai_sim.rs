//! The OpenAI-compatible client against `beacon-sim`'s `/v1/chat/completions` on loopback: an
//! answer with usage, and the simulator's rate limit classified as throttling with its hint.

use std::time::Duration;

use beacon_llm::openai::OpenAiChat;
use beacon_llm::{CompletionRequest, LlmClient, LlmError};
use beacon_sim::{SimConfig, SimServer};
use serde_json::Value;

fn request() -> CompletionRequest {
    CompletionRequest {
        system: "You analyse one unit of a document and answer with JSON only.".into(),
        instruction: "Return a JSON object with at least a `summary`.".into(),
        content: "Quarterly report\nSales grew by 4% this quarter. Costs were flat.\n".into(),
        content_label: "page 1".into(),
        language: Some("en".into()),
        max_tokens: 1024,
        temperature: 0.0,
        attachments: Vec::new(),
    }
}

#[tokio::test]
async fn the_simulator_answers_and_then_throttles() {
    // One request admitted at once, refilled once a second: the second call in a row is throttled.
    let config = SimConfig { rpm: Some(60), burst: Some(1), ..SimConfig::default() };
    let sim = SimServer::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    let client =
        OpenAiChat::new(format!("http://{}/v1", sim.local_addr()), "sim-model", None, Duration::from_secs(10)).unwrap();

    let completion = client.complete(&request()).await.unwrap();
    let answer: Value = serde_json::from_str(&completion.text).unwrap();
    assert!(answer["summary"].is_string(), "{answer}");
    assert!(completion.usage.input_tokens > 0 && completion.usage.output_tokens > 0, "{:?}", completion.usage);
    assert_eq!(completion.stop_reason, "end_turn");
    assert_eq!(completion.model, "sim-model");

    match client.complete(&request()).await {
        Err(LlmError::Throttled { retry_after, message, .. }) => {
            assert!(retry_after.is_some_and(|d| d >= Duration::from_secs(1)), "{retry_after:?}");
            assert!(message.contains("Rate limit"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let stats = sim.stats();
    assert_eq!((stats.requests, stats.succeeded, stats.throttled), (2, 1, 1));
    sim.shutdown().await;
}
