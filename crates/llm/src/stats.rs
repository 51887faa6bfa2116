//! [`ClientStats`]: what the client stack counts, for progress displays, reports and `/metrics`.
//!
//! Counters (requests, throttles, retries, failures, hedges), a histogram of how long the
//! provider took to answer each attempt ([`Timed`] records it at the bottom of the stack, so
//! pacing waits and backoff are not in it), and a view of the pacer: what it would admit now.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::pacer::Pacer;
use crate::{Completion, CompletionRequest, LlmClient, LlmError};

/// Upper bounds (seconds) of the request-duration histogram's buckets: from a cached-prompt
/// answer to a long generation on a slow model.
pub const LATENCY_BUCKETS: [f64; 12] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];

/// Counters shared by the client stack; cheap to clone and read from a progress display.
#[derive(Debug, Default, Clone)]
pub struct ClientStats(Arc<StatsInner>);

#[derive(Debug, Default)]
struct StatsInner {
    requests: AtomicU64,
    throttles: AtomicU64,
    retries: AtomicU64,
    failures: AtomicU64,
    hedges: AtomicU64,
    /// Attempts answered within each of [`LATENCY_BUCKETS`] (not cumulative), and above the last.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_micros: AtomicU64,
    /// The gate of the stack that counts here, once built.
    pacer: Mutex<Option<Arc<Pacer>>>,
}

/// A point-in-time copy of [`ClientStats`].
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Requests sent to the provider (every attempt counts).
    pub requests: u64,
    /// Attempts the provider answered with a throttling error.
    pub throttles: u64,
    /// Attempts that were retries of an earlier failed attempt.
    pub retries: u64,
    /// Calls that finally failed.
    pub failures: u64,
    /// Second copies sent for attempts that ran long (also counted in `requests`).
    pub hedges: u64,
}

/// The request-duration histogram, cumulative as Prometheus has it.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    /// Seconds, summed over every timed attempt.
    pub sum_secs: f64,
    pub count: u64,
    /// `(upper bound, attempts that took at most that)`; the last bound is `f64::MAX`, which
    /// Prometheus encoders write as `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

/// What the pacer would let go now, without waiting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Available {
    /// Requests (`None`: requests are not paced, only tokens).
    pub requests: Option<f64>,
    /// Tokens (`None`: no token quota is told).
    pub tokens: Option<f64>,
}

impl ClientStats {
    pub fn record_request(&self) {
        self.0.requests.fetch_add(1, Ordering::Relaxed);
    }
    pub fn record_throttle(&self) {
        self.0.throttles.fetch_add(1, Ordering::Relaxed);
    }
    pub fn record_retry(&self) {
        self.0.retries.fetch_add(1, Ordering::Relaxed);
    }
    pub fn record_failure(&self) {
        self.0.failures.fetch_add(1, Ordering::Relaxed);
    }
    pub fn record_hedge(&self) {
        self.0.hedges.fetch_add(1, Ordering::Relaxed);
    }

    /// The provider answered an attempt (with anything) after `took`.
    pub fn record_latency(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS.iter().position(|bound| secs <= *bound).unwrap_or(LATENCY_BUCKETS.len());
        self.0.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.0.latency_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.0.requests.load(Ordering::Relaxed),
            throttles: self.0.throttles.load(Ordering::Relaxed),
            retries: self.0.retries.load(Ordering::Relaxed),
            failures: self.0.failures.load(Ordering::Relaxed),
            hedges: self.0.hedges.load(Ordering::Relaxed),
        }
    }

    pub fn latencies(&self) -> LatencySnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (bound, count) in LATENCY_BUCKETS.iter().chain([&f64::MAX]).zip(&self.0.latency_buckets) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        #[allow(clippy::cast_precision_loss)]
        let sum_secs = self.0.latency_micros.load(Ordering::Relaxed) as f64 / 1e6;
        LatencySnapshot { sum_secs, count: cumulative, buckets }
    }

    /// Reads [`Self::available`] from `pacer` from now on.
    pub fn watch_pacer(&self, pacer: Arc<Pacer>) {
        *self.0.pacer.lock().unwrap_or_else(PoisonError::into_inner) = Some(pacer);
    }

    /// What the stack's pacer would admit now; `None` before a stack is built on these stats.
    pub fn available(&self) -> Option<Available> {
        let pacer = self.0.pacer.lock().unwrap_or_else(PoisonError::into_inner).clone();
        pacer.map(|pacer| pacer.available())
    }
}

/// The provider at the bottom of the stack, timed: every attempt it answers is recorded in
/// [`ClientStats::record_latency`]. An attempt dropped before its answer (a hedge that lost) is
/// not.
pub struct Timed<C> {
    inner: C,
    stats: ClientStats,
}

impl<C> Timed<C> {
    pub fn new(inner: C, stats: ClientStats) -> Self {
        Timed { inner, stats }
    }
}

#[async_trait]
impl<C: LlmClient> LlmClient for Timed<C> {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        // Tokio's clock, so tests under a paused clock see their own time.
        let sent = tokio::time::Instant::now();
        let result = self.inner.complete(request).await;
        self.stats.record_latency(sent.elapsed());
        result
    }

    async fn cached(&self, request: &CompletionRequest) -> Option<Completion> {
        self.inner.cached(request).await
    }

    async fn remember(&self, request: &CompletionRequest, completion: &Completion) {
        self.inner.remember(request, completion).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_cumulative_buckets_with_their_sum() {
        let stats = ClientStats::default();
        for millis in [30, 100, 700, 200_000] {
            stats.record_latency(Duration::from_millis(millis));
        }
        let latencies = stats.latencies();
        assert_eq!(latencies.count, 4);
        assert!((latencies.sum_secs - 200.83).abs() < 1e-9, "{latencies:?}");
        let at = |bound: f64| latencies.buckets.iter().find(|(b, _)| *b == bound).map(|(_, n)| *n);
        assert_eq!(at(0.05), Some(1));
        assert_eq!(at(0.1), Some(2), "a bucket's bound is inclusive");
        assert_eq!(at(0.5), Some(2));
        assert_eq!(at(1.0), Some(3));
        assert_eq!(at(120.0), Some(3));
        assert_eq!(at(f64::MAX), Some(4));
    }

    #[tokio::test]
    async fn the_pacer_watched_says_what_it_would_admit_now() {
        use crate::limiter::{ManualClock, Quota};
        use crate::pacer::PacerConfig;
        let stats = ClientStats::default();
        assert_eq!(stats.available(), None, "no stack built yet");
        let clock = Arc::new(ManualClock::new());
        let quota = Quota { rpm: Some(120), tpm: Some(12_000), tpd: None };
        let pacer = Arc::new(Pacer::with_clock(quota, None, PacerConfig::default(), clock.clone()));
        stats.watch_pacer(pacer.clone());
        // One second of burst: 2 requests and 200 tokens at 120 RPM and 12,000 TPM.
        assert_eq!(stats.available(), Some(Available { requests: Some(2.0), tokens: Some(200.0) }));
        let ticket = pacer.admit(10, 40).await.unwrap();
        assert_eq!(stats.available(), Some(Available { requests: Some(1.0), tokens: Some(150.0) }));
        clock.advance(Duration::from_secs(5));
        assert_eq!(stats.available(), Some(Available { requests: Some(2.0), tokens: Some(200.0) }), "refilled");
        drop(ticket);
    }
}
