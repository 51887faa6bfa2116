//! `beacon plan`: what running documents would take and cost, before any model call.
//!
//! Each document is split as `beacon run` would split it; every unit's request is built by the
//! same prompt code and its input tokens estimated as the rate limiter estimates them. The output
//! is estimated from the answer the built-in extractive analyzer writes for the unit (the
//! simulator answers the same way; a real model writes more or less, within `max_tokens`). The
//! strategy follows the state machine's thresholds (`[strategy]`), or `--strategy`; cost is the
//! configured price of the model, on demand and in batch; the time is what the configured quota
//! allows (requests and tokens per minute), or unknown without one.

use beacon_ingest::{Document, FLAG_NEEDS_OCR, UnitKind};
use beacon_llm::limiter::estimate_input_tokens;
use beacon_llm::offline::{OfflineAnalyzer, estimate_tokens};
use beacon_llm::{ATTACHMENT_TOKEN_ESTIMATE, LlmClient};
use serde::Serialize;

use crate::config::{Config, QuotaConfig, StrategyConfig};
use crate::pricing::cost_usd;
use crate::{ProviderKind, prompt};

/// How a document's units are processed (the state machine's ChooseStrategy branches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Inline Map: every unit in this execution.
    Inline,
    /// Distributed Map: units in child executions.
    Distributed,
    /// Bedrock batch inference (half price, asynchronous).
    Batch,
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "inline" => Ok(Strategy::Inline),
            "distributed" => Ok(Strategy::Distributed),
            "batch" => Ok(Strategy::Batch),
            other => Err(format!("unknown strategy '{other}' (expected inline, distributed, batch or auto)")),
        }
    }
}

impl Strategy {
    /// `--strategy`: `auto` (the state machine chooses by unit count) is `None`.
    pub fn parse_choice(s: &str) -> Result<Option<Strategy>, String> {
        if s.eq_ignore_ascii_case("auto") { Ok(None) } else { s.parse().map(Some) }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Strategy::Inline => "inline",
            Strategy::Distributed => "distributed",
            Strategy::Batch => "batch",
        })
    }
}

/// The strategy for a document of `units` units, as the state machine's ChooseStrategy picks
/// it: `forced`, or by the thresholds (more than `batch_threshold` units: batch, when batch
/// inference is available, i.e. with Bedrock; more than `distributed_threshold`: distributed).
pub fn choose_strategy(
    units: usize,
    thresholds: &StrategyConfig,
    forced: Option<Strategy>,
    batch_available: bool,
) -> Strategy {
    forced.unwrap_or(if units > thresholds.batch_threshold as usize && batch_available {
        Strategy::Batch
    } else if units > thresholds.distributed_threshold as usize {
        Strategy::Distributed
    } else {
        Strategy::Inline
    })
}

/// One document's plan.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentPlan {
    pub file: String,
    pub format: String,
    pub units: usize,
    /// Model calls: the units with something to read.
    pub requests: usize,
    pub strategy: Strategy,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Pictures sent with units (images, scanned pages, attached pages), counted in the input.
    pub attachments: u64,
    /// USD at on-demand and batch prices; `None` when the model has no known price.
    pub cost_on_demand_usd: Option<f64>,
    pub cost_batch_usd: Option<f64>,
    /// USD at the price of the chosen strategy.
    pub cost_usd: Option<f64>,
    /// Minutes of model calls the configured quota allows (`None`: no quota configured, or
    /// batch, which Bedrock completes asynchronously, typically within 24 hours).
    pub minutes: Option<f64>,
}

/// Whether the run would send `unit` with a picture or page (as `llm-processor` decides).
fn sends_attachment(unit: &beacon_ingest::Unit, config: &Config) -> bool {
    let reads_images = config.provider.kind != ProviderKind::Offline;
    match unit.kind {
        UnitKind::Image => reads_images,
        UnitKind::Page if config.llm.attach_pages => true,
        UnitKind::Page => {
            reads_images && config.llm.render_scanned_pages && unit.flags.iter().any(|f| f == FLAG_NEEDS_OCR)
        }
        _ => false,
    }
}

/// Plans one split document.
pub async fn plan_document(
    file: &str,
    document: &Document,
    config: &Config,
    schema: &serde_json::Value,
    forced: Option<Strategy>,
) -> DocumentPlan {
    let language = document.language.as_deref();
    let (mut input_tokens, mut output_tokens, mut attachments) = (0u64, 0u64, 0u64);
    for unit in &document.units {
        let request = prompt::unit_request(unit, language, schema, &config.llm);
        let attached = sends_attachment(unit, config);
        if unit.text.trim().is_empty() && !attached {
            // `llm-processor` makes no call for a unit with nothing to read.
            continue;
        }
        input_tokens += estimate_input_tokens(&request);
        if attached {
            attachments += 1;
            input_tokens += ATTACHMENT_TOKEN_ESTIMATE;
        }
        let answer = OfflineAnalyzer.complete(&request).await.map(|c| estimate_tokens(&c.text)).unwrap_or(0);
        output_tokens += answer.min(u64::from(config.llm.max_tokens));
    }
    let strategy = choose_strategy(document.units.len(), &config.strategy, forced, config.batch_available());
    let price = config.price_of(&config.model_name());
    let on_demand = price.map(|p| cost_usd(p, input_tokens, output_tokens));
    let batch = price.map(|p| cost_usd(p.batch(), input_tokens, output_tokens));
    let requests = document.units.iter().filter(|u| !u.text.trim().is_empty() || sends_attachment(u, config)).count();
    DocumentPlan {
        file: file.to_string(),
        format: document.format.to_string(),
        units: document.units.len(),
        requests,
        strategy,
        input_tokens,
        output_tokens,
        attachments,
        cost_on_demand_usd: on_demand,
        cost_batch_usd: batch,
        cost_usd: if strategy == Strategy::Batch { batch } else { on_demand },
        minutes: if strategy == Strategy::Batch {
            None
        } else {
            quota_minutes(requests as u64, input_tokens + output_tokens, &config.quota)
        },
    }
}

/// Minutes the quota needs for `requests` calls of `tokens` tokens in all: the tighter of the
/// per-minute rates, plus a whole day for every day's quota (`tpd`) the tokens go beyond (the
/// limiter waits until the tokens of 24 hours ago leave it). `None` without a per-minute quota
/// (the pacer finds the rate at run time).
pub fn quota_minutes(requests: u64, tokens: u64, quota: &QuotaConfig) -> Option<f64> {
    let by_requests = quota.rpm.filter(|r| *r > 0).map(|r| requests as f64 / f64::from(r));
    let by_tokens = quota.tpm.filter(|t| *t > 0).map(|t| tokens as f64 / t as f64);
    let minutes = match (by_requests, by_tokens) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    match quota.tpd.filter(|&tpd| tpd > 0 && tokens > tpd) {
        Some(tpd) => {
            let full_days = (tokens - 1) / tpd;
            let last_day = tokens - full_days * tpd;
            // The last day's share of the per-minute time (all of it when only `tpd` is known).
            let share = last_day as f64 / tokens as f64;
            Some(full_days as f64 * MINUTES_PER_DAY + minutes.map_or(0.0, |m| m * share))
        }
        None => minutes,
    }
}

/// Minutes in the 24 hours a tokens-per-day quota is counted over.
pub const MINUTES_PER_DAY: f64 = 24.0 * 60.0;

#[cfg(test)]
mod tests {
    use super::*;
    use beacon_ingest::{Limits, ingest};

    #[test]
    fn strategies_follow_the_thresholds_unless_forced() {
        let t = StrategyConfig::default();
        assert_eq!(choose_strategy(30, &t, None, true), Strategy::Inline);
        assert_eq!(choose_strategy(40, &t, None, true), Strategy::Inline);
        assert_eq!(choose_strategy(41, &t, None, true), Strategy::Distributed);
        assert_eq!(choose_strategy(150, &t, None, true), Strategy::Batch);
        assert_eq!(choose_strategy(150, &t, None, false), Strategy::Distributed, "no batch without Bedrock");
        assert_eq!(choose_strategy(150, &t, Some(Strategy::Inline), true), Strategy::Inline);
        assert_eq!("Batch".parse::<Strategy>(), Ok(Strategy::Batch));
        assert!("fast".parse::<Strategy>().is_err());
    }

    #[test]
    fn quota_time_is_the_tighter_rate() {
        let quota = |rpm, tpm, tpd| QuotaConfig { rpm, tpm, tpd, ..QuotaConfig::default() };
        assert_eq!(quota_minutes(120, 10_000, &quota(Some(60), None, None)), Some(2.0));
        assert_eq!(quota_minutes(10, 120_000, &quota(Some(60), Some(60_000), None)), Some(2.0));
        assert_eq!(quota_minutes(10, 1_000, &quota(None, None, None)), None);
        // Within the day's quota, the day changes nothing.
        assert_eq!(quota_minutes(10, 120_000, &quota(Some(60), Some(60_000), Some(120_000))), Some(2.0));
        // 250,000 tokens at 100,000 a day: two full days, then the last 50,000 at the minute rate.
        assert_eq!(quota_minutes(10, 250_000, &quota(None, Some(50_000), Some(100_000))), Some(2.0 * 1440.0 + 1.0));
        assert_eq!(quota_minutes(10, 250_000, &quota(None, None, Some(100_000))), Some(2.0 * 1440.0));
    }

    #[tokio::test]
    async fn a_plan_estimates_tokens_and_prices_both_ways() {
        let text = (1..=3).map(|i| format!("Page {i}: revenue rose 12% to 1,250,000 yen.")).collect::<Vec<_>>();
        let document = ingest(text.join("\x0c").as_bytes(), &Limits::default()).unwrap();
        let mut config = Config::default();
        config.provider.kind = ProviderKind::Bedrock;
        config.provider.model = Some("anthropic.claude-3-haiku-20240307-v1:0".into());
        config.quota.rpm = Some(60);
        let schema = crate::schema::default_unit_schema();
        let plan = plan_document("notes.txt", &document, &config, &schema, None).await;
        assert_eq!((plan.units, plan.strategy), (3, Strategy::Inline));
        assert!(plan.input_tokens > 3 * 100, "the prompt and schema count: {}", plan.input_tokens);
        assert!(plan.output_tokens > 0);
        let (on_demand, batch) = (plan.cost_on_demand_usd.unwrap(), plan.cost_batch_usd.unwrap());
        assert!((batch - on_demand / 2.0).abs() < 1e-12);
        assert_eq!(plan.cost_usd, Some(on_demand));
        assert_eq!(plan.minutes, Some(3.0 / 60.0));
        // Forced to batch: batch price, no quota time.
        let plan = plan_document("notes.txt", &document, &config, &schema, Some(Strategy::Batch)).await;
        assert_eq!((plan.cost_usd, plan.minutes), (Some(batch), None));
        // An unknown model has no price rather than a wrong one.
        config.provider.model = Some("someone.unknown".into());
        let plan = plan_document("notes.txt", &document, &config, &schema, None).await;
        assert_eq!(plan.cost_usd, None);
    }
}
