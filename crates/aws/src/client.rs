//! The LLM client stack a [`Config`] asks for, shared by `beacon run` and the Lambda functions.

use std::sync::Arc;
use std::time::Duration;

use beacon_llm::bedrock::BedrockConverse;
use beacon_llm::cache::{Cached, DirectoryCache};
use beacon_llm::invoke::BedrockInvoke;
use beacon_llm::limiter::{GcraLimiter, Quota};
use beacon_llm::offline::OfflineAnalyzer;
use beacon_llm::openai::OpenAiChat;
use beacon_llm::pacer::PacerConfig;
use beacon_llm::retry::{RetryPolicy, Retrying};
use beacon_llm::stack::{self, Pacing};
use beacon_llm::{ClientStats, LlmClient, Timed};
use beacon_pipeline::config::BedrockApi;
use beacon_pipeline::{Config, ProviderKind};

use crate::DynamoLimiter;

/// The client stack the configuration asks for, outermost first:
/// cache → retry → pacer (the told quota as an upper bound, or a learned rate) → provider.
pub async fn build_client(config: &Config, stats: ClientStats) -> Result<Arc<dyn LlmClient>, beacon_llm::LlmError> {
    let r = &config.retry;
    let policy = RetryPolicy {
        base_delay: Duration::from_millis(r.base_delay_ms),
        max_delay: Duration::from_millis(r.max_delay_ms),
        max_attempts: r.max_attempts,
        throttle_budget: Duration::from_secs(r.throttle_budget_secs),
        hedge: r.hedge,
    };
    let p = &config.provider;
    let model = p.model.clone().unwrap_or_default();
    let timeout = Duration::from_secs(config.llm.request_timeout_secs.max(1));
    let provider: Arc<dyn LlmClient> = match (p.kind, p.api) {
        // The offline analyzer needs no quota, no retry and no cache: it answers at once.
        (ProviderKind::Offline, _) => {
            return Ok(Arc::new(Retrying::new(Timed::new(OfflineAnalyzer, stats.clone()), policy, stats)));
        }
        (ProviderKind::Bedrock, BedrockApi::Converse) => {
            let mut b = BedrockConverse::builder(model.clone()).read_timeout(timeout);
            if let Some(e) = &p.endpoint {
                b = b.endpoint(e.clone());
            }
            if let Some(region) = &p.region {
                b = b.region(region.clone());
            }
            Arc::new(b.build().await?)
        }
        (ProviderKind::Bedrock, BedrockApi::Invoke) => {
            Arc::new(BedrockInvoke::new(model.clone(), p.endpoint.clone(), p.region.clone()).await?)
        }
        (ProviderKind::Openai, _) => {
            let key_var = p.api_key_env.as_deref().unwrap_or("OPENAI_API_KEY");
            let key = std::env::var(key_var).ok().filter(|k| !k.is_empty());
            Arc::new(OpenAiChat::new(p.endpoint.clone().unwrap_or_default(), model.clone(), key, timeout)?)
        }
    };
    let quota = Quota { rpm: config.quota.rpm, tpm: config.quota.tpm, tpd: config.quota.tpd };
    // The limiter is the told quota's hard bound: a whole minute's quota at most in any 60 s
    // window. The pacer above it keeps bursts small and learns from throttles.
    let pacer = PacerConfig { burst_secs: config.quota.burst_secs, ..PacerConfig::default() };
    let pacing = if let Some(table) = &config.quota.shared_table {
        let limiter =
            DynamoLimiter::connect(table, &model, quota, p.region.as_deref(), config.quota.shared_endpoint.as_deref())
                .await
                .map_err(|error| beacon_llm::LlmError::Config {
                    provider: "the shared rate limiter".into(),
                    message: error.to_string(),
                })?;
        // Shared, it is also where the processes pace each other: each one's own pacer sees
        // only its share of the traffic.
        Pacing::Told { quota, limiter: Arc::new(limiter.with_pacing(pacer)) }
    } else if config.quota.is_known() {
        Pacing::Told { quota, limiter: Arc::new(GcraLimiter::new(quota).with_burst(1.0)) }
    } else {
        Pacing::Unknown
    };
    let paced = stack::paced(provider, policy, stats.clone(), pacing, pacer);
    if !config.llm.cache {
        return Ok(paced);
    }
    let cache = DirectoryCache::new(config.data_dir.join("cache"));
    Ok(Arc::new(Cached::new(paced, Arc::new(cache), model, stats)))
}
