//! The real Bedrock client (AWS SDK, signing, HTTP, error parsing) against `beacon-sim` on
//! loopback: throttling travels as Bedrock's `ThrottlingException` and is retried by `Retrying`.

use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use beacon_llm::bedrock::BedrockConverse;
use beacon_llm::retry::{RetryPolicy, Retrying};
use beacon_llm::{ClientStats, CompletionRequest, LlmClient, LlmError};
use beacon_sim::{SimConfig, SimServer};

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

async fn start_sim(config: SimConfig) -> SimServer {
    SimServer::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

async fn client_for(sim: &SimServer, model: &str) -> BedrockConverse {
    BedrockConverse::builder(model)
        .endpoint(format!("http://{}", sim.local_addr()))
        .region("us-east-1")
        .static_credentials("AKIDEXAMPLE", "not-a-secret")
        .build()
        .await
        .unwrap()
}

fn request(n: usize) -> CompletionRequest {
    CompletionRequest {
        system: "You analyse one unit of a document and answer with JSON only.".into(),
        instruction: "Return a JSON object with at least a `summary`.".into(),
        content: format!("Report {n}\nSales grew by {n}% this quarter. Costs were flat.\nNorth led.\n"),
        content_label: format!("page {n}"),
        language: Some("en".into()),
        max_tokens: 512,
        temperature: 0.0,
        attachments: Vec::new(),
    }
}

#[tokio::test]
async fn concurrent_calls_are_throttled_and_retried_until_they_succeed() {
    // Two requests at once, then one every 100 ms: six concurrent calls must be throttled.
    let sim = start_sim(SimConfig { rpm: Some(600), burst: Some(2), ..SimConfig::default() }).await;
    let stats = ClientStats::default();
    let policy = RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_attempts: 3,
        throttle_budget: Duration::from_secs(120),
        hedge: true,
    };
    let client = Arc::new(Retrying::new(client_for(&sim, MODEL).await, policy, stats.clone()));

    let calls: Vec<_> = (0..6)
        .map(|n| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.complete(&request(n)).await })
        })
        .collect();
    let mut completions = Vec::new();
    for call in calls {
        completions.push(call.await.unwrap().unwrap());
    }

    let sim_stats = sim.stats();
    let client_stats = stats.snapshot();
    assert_eq!(sim_stats.succeeded, 6);
    assert!(sim_stats.throttled >= 1, "{sim_stats:?}");
    assert_eq!(client_stats.throttles, sim_stats.throttled);
    assert_eq!(client_stats.requests, sim_stats.requests);
    assert_eq!(client_stats.retries, sim_stats.throttled);
    assert_eq!(client_stats.failures, 0);
    let throttles: u64 = completions.iter().map(|c| u64::from(c.throttles)).sum();
    assert_eq!(throttles, sim_stats.throttled);

    for (n, completion) in completions.iter().enumerate() {
        assert_eq!(completion.model, MODEL);
        assert_eq!(completion.stop_reason, "end_turn");
        assert_eq!(completion.attempts, completion.throttles + 1);
        assert!(completion.usage.input_tokens > 0 && completion.usage.output_tokens > 0);
        let answer: serde_json::Value = serde_json::from_str(&completion.text).unwrap();
        assert!(answer["summary"].is_string(), "{answer}");
        assert_eq!(answer["title"], format!("page {n}"));
        assert_eq!(
            answer["summary"],
            format!("Report {n} Sales grew by {n}% this quarter. Costs were flat. North led.")
        );
    }
    let input: u64 = completions.iter().map(|c| c.usage.input_tokens).sum();
    assert_eq!(input, sim_stats.input_tokens);
    sim.shutdown().await;
}

#[tokio::test]
async fn arn_model_ids_reach_the_simulator() {
    let sim = start_sim(SimConfig::default()).await;
    let arn = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123";
    let completion = client_for(&sim, arn).await.complete(&request(1)).await.unwrap();
    assert_eq!(completion.model, arn);
    assert_eq!(sim.stats().succeeded, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_requests_are_rejected_without_retrying() {
    let sim = start_sim(SimConfig::default()).await;
    let stats = ClientStats::default();
    let client = Retrying::new(client_for(&sim, MODEL).await, RetryPolicy::default(), stats.clone());
    let bad = CompletionRequest { max_tokens: 0, ..request(1) };
    match client.complete(&bad).await {
        Err(LlmError::Rejected { provider, kind, message }) => {
            assert_eq!(provider, "bedrock");
            assert_eq!(kind, "ValidationException");
            assert!(message.contains("maxTokens"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.stats().rejected, 1);
    assert_eq!(stats.snapshot().requests, 1);
    assert_eq!(stats.snapshot().failures, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_are_rejected() {
    let sim = start_sim(SimConfig::default()).await;
    // An endpoint with a path prefix sends Converse to a path the simulator does not serve.
    let client = BedrockConverse::builder(MODEL)
        .endpoint(format!("http://{}/not-bedrock", sim.local_addr()))
        .region("us-east-1")
        .static_credentials("AKIDEXAMPLE", "not-a-secret")
        .build()
        .await
        .unwrap();
    match client.complete(&request(1)).await {
        Err(LlmError::Rejected { kind, .. }) => assert_eq!(kind, "UnknownOperationException"),
        other => panic!("{other:?}"),
    }
    sim.shutdown().await;
}

/// A credentials provider that never finds any, like the default chain on a bare machine.
#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err(CredentialsError::not_loaded("no credentials in this test")))
    }
}

#[tokio::test]
async fn missing_credentials_are_a_config_error() {
    let sim = start_sim(SimConfig::default()).await;
    let client = BedrockConverse::builder(MODEL)
        .endpoint(format!("http://{}", sim.local_addr()))
        .region("us-east-1")
        .credentials_provider(NoCredentials)
        .build()
        .await
        .unwrap();
    match client.complete(&request(1)).await {
        Err(LlmError::Config { message, .. }) => assert!(message.contains("AWS_PROFILE"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.stats().requests, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_sdk_parses_the_simulators_throttling_as_throttling_exception() {
    use aws_sdk_bedrockruntime::config::retry::RetryConfig;
    use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
    use aws_sdk_bedrockruntime::operation::converse::ConverseError;
    use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};

    // A quota of zero throttles every request.
    let sim = start_sim(SimConfig { rpm: Some(0), ..SimConfig::default() }).await;
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(format!("http://{}", sim.local_addr()))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDEXAMPLE", "not-a-secret", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .build();
    let message =
        Message::builder().role(ConversationRole::User).content(ContentBlock::Text("hi".into())).build().unwrap();
    let err = aws_sdk_bedrockruntime::Client::from_conf(config)
        .converse()
        .model_id(MODEL)
        .messages(message)
        .send()
        .await
        .unwrap_err();
    let service_error = err.as_service_error().expect("a service error");
    assert!(matches!(service_error, ConverseError::ThrottlingException(_)), "{service_error:?}");
    assert_eq!(service_error.message(), Some("Too many requests, please wait before trying again."));
    assert_eq!(sim.stats().throttled, 1);
    sim.shutdown().await;
}
