//! What the simulator has seen: totals, a per-second timeline, and the JSON of the stats endpoints.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What the simulator has seen since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimStats {
    /// Requests to the model APIs (`/model/...`, `/v1/chat/completions`), whatever their outcome.
    pub requests: u64,
    /// Requests answered with a completion (`ok` in `GET /_stats`).
    pub succeeded: u64,
    /// Requests refused with HTTP 429: over the requests or tokens quota, or over the in-flight cap.
    pub throttled: u64,
    /// Requests refused as invalid (`ValidationException`, unknown operation, bad OpenAI request).
    pub rejected: u64,
    /// Input tokens of the succeeded requests (estimated).
    pub input_tokens: u64,
    /// Output tokens of the succeeded requests (estimated).
    pub output_tokens: u64,
    /// Injected failures.
    pub faults: FaultStats,
    /// Requests being answered right now (admitted, waiting out their latency).
    pub in_flight: u64,
    /// The most requests admitted in any 60 s window.
    pub max_rpm_observed: u64,
    /// The most tokens counted in any 60 s window (requests still being answered count at their
    /// reservation: input tokens plus `maxTokens`).
    pub max_tpm_observed: u64,
    /// Document and image blocks in the succeeded requests.
    pub attachments: u64,
}

/// Injected failures by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultStats {
    /// Answered with HTTP 503.
    pub unavailable: u64,
    /// Accepted and never answered.
    pub hung: u64,
    /// Answered with HTTP 200 and an unusable body.
    pub malformed: u64,
}

/// One second of the timeline, counted from the simulator's start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondStats {
    pub second: u64,
    /// Requests that arrived during this second.
    pub requests: u64,
    /// Answers completed during this second.
    pub ok: u64,
    pub throttled: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The live counters behind [`SimStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub succeeded: AtomicU64,
    pub throttled: AtomicU64,
    pub rejected: AtomicU64,
    pub input_tokens: AtomicU64,
    pub output_tokens: AtomicU64,
    pub unavailable: AtomicU64,
    pub hung: AtomicU64,
    pub malformed: AtomicU64,
    pub in_flight: AtomicU64,
    pub attachments: AtomicU64,
    timeline: Mutex<Vec<SecondStats>>,
}

/// Adds one.
pub(crate) fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

impl Counters {
    /// The totals; the window maxima come from the quota.
    pub fn snapshot(&self, max_rpm_observed: u64, max_tpm_observed: u64) -> SimStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SimStats {
            requests: load(&self.requests),
            succeeded: load(&self.succeeded),
            throttled: load(&self.throttled),
            rejected: load(&self.rejected),
            input_tokens: load(&self.input_tokens),
            output_tokens: load(&self.output_tokens),
            faults: FaultStats {
                unavailable: load(&self.unavailable),
                hung: load(&self.hung),
                malformed: load(&self.malformed),
            },
            in_flight: load(&self.in_flight),
            max_rpm_observed,
            max_tpm_observed,
            attachments: load(&self.attachments),
        }
    }

    /// Updates the timeline's entry for `second`.
    pub fn at_second(&self, second: u64, update: impl FnOnce(&mut SecondStats)) {
        let mut timeline = self.timeline.lock().unwrap_or_else(PoisonError::into_inner);
        let index = usize::try_from(second).unwrap_or(usize::MAX);
        if index >= timeline.len() {
            // Quiet seconds get their zero entries too, so that `timeline[i].second == i`.
            let from = timeline.len() as u64;
            timeline.extend((from..=second).map(|second| SecondStats { second, ..SecondStats::default() }));
        }
        if let Some(entry) = timeline.get_mut(index) {
            update(entry);
        }
    }

    pub fn timeline(&self) -> Vec<SecondStats> {
        self.timeline.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The body of `GET /_stats`; `legacy` adds `succeeded` (= `ok`) for `GET /sim/stats`.
pub(crate) fn stats_json(stats: &SimStats, timeline: &[SecondStats], legacy: bool) -> Value {
    let mut body = json!({
        "requests": stats.requests,
        "ok": stats.succeeded,
        "throttled": stats.throttled,
        "faults": stats.faults,
        "rejected": stats.rejected,
        "input_tokens": stats.input_tokens,
        "output_tokens": stats.output_tokens,
        "in_flight": stats.in_flight,
        "max_rpm_observed": stats.max_rpm_observed,
        "max_tpm_observed": stats.max_tpm_observed,
        "attachments": stats.attachments,
        "timeline": timeline,
    });
    if legacy && let Some(object) = body.as_object_mut() {
        object.insert("succeeded".into(), json!(stats.succeeded));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_fills_quiet_seconds() {
        let counters = Counters::default();
        counters.at_second(0, |s| s.requests += 1);
        counters.at_second(3, |s| s.ok += 2);
        counters.at_second(1, |s| s.throttled += 1);
        let timeline = counters.timeline();
        assert_eq!(timeline.iter().map(|s| s.second).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!((timeline[0].requests, timeline[1].throttled, timeline[3].ok), (1, 1, 2));
    }

    #[test]
    fn legacy_stats_add_succeeded() {
        let stats = SimStats { succeeded: 4, ..SimStats::default() };
        let body = stats_json(&stats, &[], true);
        assert_eq!((body["ok"].as_u64(), body["succeeded"].as_u64()), (Some(4), Some(4)));
        assert!(stats_json(&stats, &[], false).get("succeeded").is_none());
        let parsed: SimStats = serde_json::from_value(body).unwrap();
        assert_eq!(parsed, stats);
    }
}
