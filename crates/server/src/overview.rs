//! `GET /v1/overview`: throughput, throttles, tokens and cost over the last hour and day, for
//! the console's overview page. The numbers are the ones `/metrics` serves (the same calls
//! count both); a sample of their totals is kept every `serve.overview_sample_secs` in
//! `server.sqlite`, so a restart keeps the day. A process's counts start at zero, so each
//! sample says which process (`boot`) took it and a sample after a restart counts from zero.

use std::ops::{Add, Sub};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;

/// How long samples are kept.
pub const KEPT_MS: i64 = 2 * 24 * 3600 * 1000;

/// Counts since a server process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Totals {
    /// Requests sent to the provider (every attempt) and of those, throttled.
    pub requests: u64,
    pub throttles: u64,
    /// Tokens and cost of finished executions.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub units_succeeded: u64,
    pub units_failed: u64,
    pub executions_succeeded: u64,
    /// Failed, timed out or aborted.
    pub executions_failed: u64,
}

impl Sub for Totals {
    type Output = Totals;

    /// What was counted between two samples of one process.
    fn sub(self, earlier: Totals) -> Totals {
        Totals {
            requests: self.requests.saturating_sub(earlier.requests),
            throttles: self.throttles.saturating_sub(earlier.throttles),
            input_tokens: self.input_tokens.saturating_sub(earlier.input_tokens),
            output_tokens: self.output_tokens.saturating_sub(earlier.output_tokens),
            cost_usd: (self.cost_usd - earlier.cost_usd).max(0.0),
            units_succeeded: self.units_succeeded.saturating_sub(earlier.units_succeeded),
            units_failed: self.units_failed.saturating_sub(earlier.units_failed),
            executions_succeeded: self.executions_succeeded.saturating_sub(earlier.executions_succeeded),
            executions_failed: self.executions_failed.saturating_sub(earlier.executions_failed),
        }
    }
}

impl Add for Totals {
    type Output = Totals;

    fn add(self, other: Totals) -> Totals {
        Totals {
            requests: self.requests + other.requests,
            throttles: self.throttles + other.throttles,
            input_tokens: self.input_tokens + other.input_tokens,
            output_tokens: self.output_tokens + other.output_tokens,
            cost_usd: self.cost_usd + other.cost_usd,
            units_succeeded: self.units_succeeded + other.units_succeeded,
            units_failed: self.units_failed + other.units_failed,
            executions_succeeded: self.executions_succeeded + other.executions_succeeded,
            executions_failed: self.executions_failed + other.executions_failed,
        }
    }
}

/// One sample: when, by which process, the totals then.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub boot: String,
    pub totals: Totals,
}

/// One stretch of time and what was counted in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bucket {
    /// Its start (RFC 3339).
    pub start: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// A window cut into equal buckets, oldest first, with their sum.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    pub bucket_seconds: u64,
    pub buckets: Vec<Bucket>,
    pub sum: Totals,
}

/// The last hour (by minute) and the last day (by quarter hour).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    pub hour: Series,
    pub day: Series,
    /// How often samples are taken, seconds: a bucket shorter than that may show counts in the
    /// sample's bucket rather than the one they happened in.
    pub sample_seconds: u64,
}

/// The window of `count` buckets of `bucket_ms` ending with the one holding `now_ms`, from
/// `samples` in time order, the last of them being now's totals.
pub fn series(samples: &[Sample], now_ms: i64, bucket_ms: i64, count: usize) -> Series {
    let last_start = now_ms - now_ms.rem_euclid(bucket_ms);
    let first_start = last_start - bucket_ms * (count as i64 - 1);
    let mut buckets: Vec<Totals> = vec![Totals::default(); count];
    // Each process's last sample: two processes sharing the file (one starting while the other
    // stops) interleave their samples, and each counts from its own.
    let mut last: std::collections::HashMap<&str, Totals> = std::collections::HashMap::new();
    for sample in samples {
        // Counted since that process's sample before, or since it started.
        let counted = match last.insert(sample.boot.as_str(), sample.totals) {
            Some(before) => sample.totals - before,
            None => sample.totals,
        };
        if sample.at_ms < first_start {
            continue;
        }
        let at = ((sample.at_ms - first_start) / bucket_ms) as usize;
        if let Some(bucket) = buckets.get_mut(at) {
            *bucket = *bucket + counted;
        }
    }
    let sum = buckets.iter().fold(Totals::default(), |sum, b| sum + *b);
    let start = |i: usize| {
        let ms = first_start + bucket_ms * i as i64;
        Utc.timestamp_millis_opt(ms).single().map(|t: DateTime<Utc>| t.to_rfc3339()).unwrap_or_default()
    };
    Series {
        bucket_seconds: (bucket_ms / 1000) as u64,
        buckets: buckets.into_iter().enumerate().map(|(i, totals)| Bucket { start: start(i), totals }).collect(),
        sum,
    }
}

/// Throughput, throttles, tokens and cost over the last hour and day.
#[utoipa::path(
    get,
    path = "/v1/overview",
    tag = "executions",
    responses((status = 200, description = "The overview", body = Overview)),
    security(("bearer" = []))
)]
pub async fn get_overview(State(state): State<Arc<AppState>>) -> Result<Json<Overview>, ApiError> {
    let now_ms = Utc::now().timestamp_millis();
    let mut samples = state.db.samples_since(now_ms - 24 * 3600 * 1000 - 15 * 60 * 1000)?;
    // Now's totals as the last sample, so what happened since the last one shows at once.
    samples.push(Sample { at_ms: now_ms, boot: state.boot.clone(), totals: state.executor.metrics().totals() });
    Ok(Json(Overview {
        hour: series(&samples, now_ms, 60 * 1000, 60),
        day: series(&samples, now_ms, 15 * 60 * 1000, 96),
        sample_seconds: state.overview_sample.as_secs(),
    }))
}

/// Keeps a sample of the totals every `serve.overview_sample_secs`, and two days of them.
pub async fn keep_samples(state: Arc<AppState>) {
    loop {
        tokio::time::sleep(state.overview_sample).await;
        keep_sample(&state);
    }
}

/// Keeps a sample of the totals now (also when the server stops, so nothing since the last
/// one is lost).
pub fn keep_sample(state: &AppState) {
    let now_ms = Utc::now().timestamp_millis();
    let sample = Sample { at_ms: now_ms, boot: state.boot.clone(), totals: state.executor.metrics().totals() };
    if let Err(e) = state.db.keep_sample(&sample, now_ms - KEPT_MS) {
        tracing::warn!("the overview's sample cannot be kept: {}", e.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, boot: &str, requests: u64, cost_usd: f64) -> Sample {
        Sample { at_ms, boot: boot.into(), totals: Totals { requests, cost_usd, ..Totals::default() } }
    }

    #[test]
    fn each_bucket_holds_what_was_counted_in_it_and_a_restart_counts_from_zero() {
        let minute = 60_000;
        let now = 100 * minute + 30_000;
        let samples = [
            sample(10 * minute, "a", 500, 1.0), // before the window: only a base
            sample(97 * minute + 5_000, "a", 510, 1.5),
            sample(98 * minute + 5_000, "a", 530, 2.0),
            // The server restarted: its counts start again from zero.
            sample(99 * minute + 5_000, "b", 4, 0.25),
            sample(now, "b", 10, 0.5),
        ];
        let hour = series(&samples, now, minute, 60);
        assert_eq!(hour.buckets.len(), 60);
        let requests: Vec<u64> = hour.buckets.iter().map(|b| b.totals.requests).collect();
        assert_eq!(requests[56..], [10, 20, 4, 6]);
        assert_eq!(hour.sum.requests, 40);
        assert!((hour.sum.cost_usd - 1.5).abs() < 1e-9);
        assert!(hour.buckets[59].start.starts_with("1970-01-01T01:40:00"), "{}", hour.buckets[59].start);
        let day = series(&samples, now, 15 * minute, 96);
        assert_eq!(day.sum.requests, 500 + 40, "the first sample of a process counts from its start");
        // Two processes' samples interleaved: each is counted from its own last one.
        let both = [sample(minute, "a", 10, 0.0), sample(2 * minute, "b", 3, 0.0), sample(3 * minute, "a", 15, 0.0)];
        assert_eq!(series(&both, 3 * minute, minute, 4).sum.requests, 10 + 3 + 5);
    }
}
