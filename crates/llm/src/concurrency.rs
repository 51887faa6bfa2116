//! Adaptive concurrency: find how many calls a model takes at once when its quota is unknown.
//!
//! [`Adaptive`] lets at most `floor(limit)` calls through to its inner client and adjusts `limit`
//! by AIMD (additive increase, multiplicative decrease), as TCP does with its window:
//!
//! - a call that went through cleanly raises the limit by `increase / limit` (about
//!   `+increase` per round of `limit` calls), up to `max`; only while the gate is in use (at
//!   least half the limit in flight), so a quiet spell does not inflate it untested;
//! - a congestion signal multiplies it by `decrease`, down to `min`. The signals are throttling
//!   (seen as the completion's `throttles > 0`, since the retry layer below retries throttles, or
//!   as a throttling error or a give-up after throttles) and latency: a call slower per output
//!   token than `latency_tolerance` × the baseline (see [`AdaptiveConfig::latency_tolerance`]).
//!
//! A burst of throttles from one window must not collapse the limit: a signal decreases the limit
//! only if no decrease happened since its call started (an epoch counter), so the limit falls at
//! most once per round trip. Transient and rejected errors say nothing about load and change
//! nothing.
//!
//! ```no_run
//! # async fn run(client: impl beacon_llm::LlmClient, request: beacon_llm::CompletionRequest) {
//! use beacon_llm::LlmClient;
//! use beacon_llm::concurrency::{Adaptive, AdaptiveConfig};
//!
//! let client = Adaptive::new(client, AdaptiveConfig::default());
//! let answer = client.complete(&request).await;
//! println!("{:.1} calls at once", client.limit());
//! # }
//! ```

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::limiter::{Clock, TokioClock};
use crate::{Completion, CompletionRequest, LlmClient, LlmError};

/// The largest limit [`Adaptive`] accepts.
const MAX_LIMIT: f64 = 1_000_000.0;

/// Calls with fewer output tokens than this say little about generation speed (the fixed part of
/// the latency dominates) and are left out of the latency signal.
pub const MIN_TOKENS_FOR_LATENCY: u64 = 64;

/// How far the latency baseline follows a slower observation (a share of the gap per call): it
/// follows faster ones at once, and a lasting slowdown becomes the new normal after a few
/// hundred calls instead of holding the limit down forever.
const BASELINE_DRIFT: f64 = 0.01;

/// How [`Adaptive`] adjusts its limit. Out-of-range values are brought into range by
/// [`Adaptive::new`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveConfig {
    /// The limit to start with.
    pub initial: f64,
    /// The lowest limit (at least 1).
    pub min: f64,
    /// The highest limit.
    pub max: f64,
    /// Additive increase: the limit grows by `increase / limit` per clean call, so by about
    /// `increase` per round of `limit` calls.
    pub increase: f64,
    /// Multiplicative decrease on congestion, in `(0, 1)`.
    pub decrease: f64,
    /// A call whose latency per output token exceeds `latency_tolerance` × the baseline (the
    /// lowest seen, drifting slowly upwards) is a congestion signal. Only calls with at least
    /// [`MIN_TOKENS_FOR_LATENCY`] output tokens count. `f64::INFINITY` turns the signal off.
    pub latency_tolerance: f64,
}

impl Default for AdaptiveConfig {
    /// Start at 4, between 1 and 256, +1 per round, ×0.7 on congestion, latency tolerance 2.
    fn default() -> Self {
        AdaptiveConfig { initial: 4.0, min: 1.0, max: 256.0, increase: 1.0, decrease: 0.7, latency_tolerance: 2.0 }
    }
}

impl AdaptiveConfig {
    /// The config with every value in range: `1 ≤ min ≤ initial ≤ max ≤ 10⁶`, `increase ≥ 0`,
    /// `0 < decrease < 1` (else 0.7), `latency_tolerance ≥ 1` (NaN turns the signal off).
    pub fn sanitized(self) -> Self {
        let min = self.min.clamp(1.0, MAX_LIMIT);
        let max = self.max.clamp(min, MAX_LIMIT);
        let initial = if self.initial.is_nan() { min } else { self.initial.clamp(min, max) };
        let increase = if self.increase.is_finite() { self.increase.max(0.0) } else { 1.0 };
        let decrease = if self.decrease > 0.0 && self.decrease < 1.0 { self.decrease } else { 0.7 };
        let latency_tolerance =
            if self.latency_tolerance.is_nan() { f64::INFINITY } else { self.latency_tolerance.max(1.0) };
        AdaptiveConfig { initial, min, max, increase, decrease, latency_tolerance }
    }
}

#[derive(Debug)]
struct State {
    limit: f64,
    /// Permits the semaphore stands for once the debt is paid: `floor(limit)`.
    permits: usize,
    /// Permits to forget as they come back (the limit fell while they were out).
    debt: usize,
    in_flight: usize,
    /// Bumped by every decrease.
    epoch: u64,
    /// Seconds per output token of an uncongested call.
    baseline: Option<f64>,
}

/// What a call saw when it started.
#[derive(Debug, Clone, Copy)]
struct Start {
    epoch: u64,
    in_flight: usize,
}

/// An [`LlmClient`] that limits its inner client's concurrent calls to an adaptive limit (see
/// the [module documentation](self)). Waiting calls go through in FIFO order.
pub struct Adaptive<C> {
    inner: C,
    config: AdaptiveConfig,
    gate: Semaphore,
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

impl<C: LlmClient> Adaptive<C> {
    /// Wraps `inner` with `config` (brought into range, see [`AdaptiveConfig::sanitized`]).
    pub fn new(inner: C, config: AdaptiveConfig) -> Self {
        let config = config.sanitized();
        let permits = permits_for(config.initial);
        Adaptive {
            inner,
            config,
            gate: Semaphore::new(permits),
            state: Mutex::new(State {
                limit: config.initial,
                permits,
                debt: 0,
                in_flight: 0,
                epoch: 0,
                baseline: None,
            }),
            clock: Arc::new(TokioClock),
        }
    }

    /// Measures latency with `clock` instead of the real clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The current limit; `floor(limit)` calls may be in flight.
    pub fn limit(&self) -> f64 {
        self.lock().limit
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// The config in force (after [`AdaptiveConfig::sanitized`]).
    pub fn config(&self) -> &AdaptiveConfig {
        &self.config
    }

    /// The wrapped client.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Learns from a finished call.
    fn observe(&self, start: Start, result: &Result<Completion, LlmError>, latency: Duration) {
        let mut state = self.lock();
        let congested = match result {
            Ok(completion) if completion.throttles > 0 => true,
            Ok(completion) => self.latency_congested(&mut state, completion, latency),
            Err(LlmError::Throttled { .. }) => true,
            Err(LlmError::GaveUp { throttles, .. }) => *throttles > 0,
            // Transient, rejected and configuration errors say nothing about load.
            Err(_) => return,
        };
        if congested {
            if start.epoch == state.epoch {
                state.limit = (state.limit * self.config.decrease).max(self.config.min);
                state.epoch += 1;
                tracing::debug!(limit = state.limit, "congestion: concurrency limit lowered");
            }
        } else if start.in_flight * 2 >= permits_for(state.limit) {
            state.limit = (state.limit + self.config.increase / state.limit).min(self.config.max);
        }
        self.resize(&mut state);
    }

    /// Whether a clean call was too slow; updates the baseline.
    fn latency_congested(&self, state: &mut State, completion: &Completion, latency: Duration) -> bool {
        if self.config.latency_tolerance.is_infinite() || completion.usage.output_tokens < MIN_TOKENS_FOR_LATENCY {
            return false;
        }
        #[allow(clippy::cast_precision_loss)] // token counts are far below 2^52
        let per_token = latency.as_secs_f64() / completion.usage.output_tokens as f64;
        let Some(baseline) = state.baseline else {
            state.baseline = Some(per_token);
            return false;
        };
        state.baseline =
            Some(if per_token < baseline { per_token } else { baseline + (per_token - baseline) * BASELINE_DRIFT });
        per_token > baseline * self.config.latency_tolerance
    }

    /// Makes the gate stand for `floor(limit)` permits.
    fn resize(&self, state: &mut State) {
        let target = permits_for(state.limit);
        if target > state.permits {
            let mut add = target - state.permits;
            let cancelled = add.min(state.debt);
            state.debt -= cancelled;
            add -= cancelled;
            self.gate.add_permits(add);
        } else if target < state.permits {
            let excess = state.permits - target;
            let forgotten = self.gate.forget_permits(excess);
            state.debt += excess - forgotten;
        }
        state.permits = target;
    }
}

/// The permits a limit stands for.
fn permits_for(limit: f64) -> usize {
    // The limit is within [1, MAX_LIMIT]: the conversion is exact after `floor`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let permits = limit.floor() as usize;
    permits.max(1)
}

/// A call in flight: returns its permit (or forgets it, paying the debt) however the call ends,
/// cancellation included.
struct Slot<'a, C: LlmClient> {
    adaptive: &'a Adaptive<C>,
    permit: Option<SemaphorePermit<'a>>,
}

impl<C: LlmClient> Drop for Slot<'_, C> {
    fn drop(&mut self) {
        let mut state = self.adaptive.lock();
        state.in_flight -= 1;
        if let Some(permit) = self.permit.take()
            && state.debt > 0
        {
            state.debt -= 1;
            permit.forget();
        }
    }
}

impl<C> std::fmt::Debug for Adaptive<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Adaptive")
            .field("config", &self.config)
            .field("limit", &state.limit)
            .field("in_flight", &state.in_flight)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<C: LlmClient> LlmClient for Adaptive<C> {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        // The gate is never closed.
        let permit = self.gate.acquire().await.ok();
        let start = {
            let mut state = self.lock();
            state.in_flight += 1;
            Start { epoch: state.epoch, in_flight: state.in_flight }
        };
        let slot = Slot { adaptive: self, permit };
        let started = self.clock.now();
        let result = self.inner.complete(request).await;
        let latency = self.clock.now().saturating_duration_since(started);
        self.observe(start, &result, latency);
        drop(slot);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Notify;

    use super::*;
    use crate::limiter::ManualClock;
    use crate::retry::{RetryPolicy, Retrying, Sleep};
    use crate::{ClientStats, Usage};

    fn request() -> CompletionRequest {
        CompletionRequest {
            system: String::new(),
            instruction: "i".into(),
            content: "c".into(),
            content_label: "l".into(),
            language: None,
            max_tokens: 10,
            temperature: 0.0,
            attachments: Vec::new(),
        }
    }

    fn completion(output_tokens: u64) -> Completion {
        Completion {
            text: "{}".into(),
            usage: Usage { input_tokens: 10, output_tokens },
            model: "m".into(),
            stop_reason: "end_turn".into(),
            attempts: 1,
            throttles: 0,
        }
    }

    fn throttled() -> LlmError {
        LlmError::Throttled { provider: "fake".into(), message: "too many".into(), retry_after: None }
    }

    /// A provider that throttles calls arriving when more than `capacity` are in flight, and
    /// records the most it ever saw at once.
    struct Crowded {
        capacity: usize,
        in_flight: AtomicUsize,
        peak: AtomicUsize,
    }

    impl Crowded {
        fn new(capacity: usize) -> Self {
            Crowded { capacity, in_flight: AtomicUsize::new(0), peak: AtomicUsize::new(0) }
        }
    }

    #[async_trait]
    impl LlmClient for Crowded {
        fn name(&self) -> String {
            "crowded".into()
        }
        async fn complete(&self, _request: &CompletionRequest) -> Result<Completion, LlmError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            // The call takes a few scheduler turns, so calls overlap.
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if now > self.capacity { Err(throttled()) } else { Ok(completion(10)) }
        }
    }

    /// Retries after a few scheduler turns instead of real time: a random number, as jittered
    /// backoff would (a fixed number can lock every retrying call in step with the provider's
    /// calls, so that each one arrives just when the provider is full, forever).
    struct NoWait;

    #[async_trait]
    impl Sleep for NoWait {
        async fn sleep(&self, _duration: Duration) {
            use rand::Rng;
            let turns = rand::rng().random_range(1..=8);
            for _ in 0..turns {
                tokio::task::yield_now().await;
            }
        }
    }

    fn no_latency_signal(initial: f64, max: f64) -> AdaptiveConfig {
        AdaptiveConfig { initial, max, latency_tolerance: f64::INFINITY, ..AdaptiveConfig::default() }
    }

    /// Runs `workers` tasks making `calls` calls each; returns the limit after every call.
    async fn drive<C: LlmClient + 'static>(client: Arc<Adaptive<C>>, workers: usize, calls: usize) -> Vec<f64> {
        let limits = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let client = client.clone();
                let limits = limits.clone();
                tokio::spawn(async move {
                    for _ in 0..calls {
                        client.complete(&request()).await.unwrap();
                        limits.lock().unwrap().push(client.limit());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        Arc::try_unwrap(limits).unwrap().into_inner().unwrap()
    }

    #[tokio::test]
    async fn grows_to_max_without_throttles() {
        let client = Arc::new(Adaptive::new(Crowded::new(usize::MAX), no_latency_signal(4.0, 48.0)));
        let limits = drive(client.clone(), 100, 40).await;
        assert!((client.limit() - 48.0).abs() < f64::EPSILON, "{}", client.limit());
        assert!(limits.windows(2).all(|w| w[1] >= w[0]), "never decreases");
        assert!(client.inner().peak.load(Ordering::SeqCst) <= 48);
        assert_eq!(client.in_flight(), 0);
    }

    #[tokio::test]
    async fn converges_near_the_providers_capacity() {
        const CAPACITY: usize = 12;
        let provider = Retrying::new(
            Crowded::new(CAPACITY),
            RetryPolicy { hedge: false, ..RetryPolicy::default() },
            ClientStats::default(),
        )
        .with_sleeper(Arc::new(NoWait));
        let client = Arc::new(Adaptive::new(provider, no_latency_signal(4.0, 256.0)));
        let limits = drive(client.clone(), 64, 100).await;
        let settled = &limits[limits.len() / 2..];
        let low = settled.iter().copied().fold(f64::INFINITY, f64::min);
        let high = settled.iter().copied().fold(0.0, f64::max);
        #[allow(clippy::cast_precision_loss)]
        let mean = settled.iter().sum::<f64>() / settled.len() as f64;
        #[allow(clippy::cast_precision_loss)]
        let capacity = CAPACITY as f64;
        assert!(low > 1.0 && high < 256.0, "stuck at a bound: {low}..{high}");
        assert!(mean > capacity * 0.6 && mean < capacity * 1.4, "mean limit {mean}, capacity {CAPACITY}");
        assert!(high - low > 1.0, "oscillates around the capacity: {low}..{high}");
    }

    /// Holds every call until released, then throttles them all.
    struct Gate {
        arrived: AtomicUsize,
        release: Notify,
    }

    #[async_trait]
    impl LlmClient for Gate {
        fn name(&self) -> String {
            "gate".into()
        }
        async fn complete(&self, _request: &CompletionRequest) -> Result<Completion, LlmError> {
            let released = self.release.notified();
            self.arrived.fetch_add(1, Ordering::SeqCst);
            released.await;
            Err(throttled())
        }
    }

    #[tokio::test]
    async fn a_burst_of_throttles_decreases_once() {
        let gate = Gate { arrived: AtomicUsize::new(0), release: Notify::new() };
        let client = Arc::new(Adaptive::new(gate, no_latency_signal(10.0, 256.0)));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.complete(&request()).await })
            })
            .collect();
        while client.inner().arrived.load(Ordering::SeqCst) < 10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(client.in_flight(), 10);
        client.inner().release.notify_waiters();
        for task in tasks {
            assert!(task.await.unwrap().unwrap_err().is_throttle());
        }
        assert!((client.limit() - 7.0).abs() < 1e-9, "{}", client.limit());
        // The gate now admits 7 at a time: the 3 permits out during the decrease were forgotten.
        assert_eq!(client.gate.available_permits(), 7);
        assert_eq!(client.in_flight(), 0);
    }

    /// Answers sequential calls, each taking a scripted time on a manual clock.
    struct Slow {
        clock: Arc<ManualClock>,
        latencies: Mutex<Vec<Duration>>,
    }

    #[async_trait]
    impl LlmClient for Slow {
        fn name(&self) -> String {
            "slow".into()
        }
        async fn complete(&self, _request: &CompletionRequest) -> Result<Completion, LlmError> {
            let latency = self.latencies.lock().unwrap().remove(0);
            self.clock.advance(latency);
            Ok(completion(100))
        }
    }

    #[tokio::test]
    async fn slow_calls_are_congestion() {
        let clock = Arc::new(ManualClock::new());
        let latencies = [1_000, 3_000, 1_500, 900, 1_700, 1_900].map(Duration::from_millis).to_vec();
        let slow = Slow { clock: clock.clone(), latencies: Mutex::new(latencies) };
        // No increase: only the latency signal moves the limit.
        let config = AdaptiveConfig { initial: 4.0, increase: 0.0, ..AdaptiveConfig::default() };
        let client = Adaptive::new(slow, config).with_clock(clock);
        client.complete(&request()).await.unwrap(); // 1 s: the baseline
        assert!((client.limit() - 4.0).abs() < 1e-9);
        client.complete(&request()).await.unwrap(); // 3 s > 2 × 1 s: congestion
        assert!((client.limit() - 2.8).abs() < 1e-9, "{}", client.limit());
        client.complete(&request()).await.unwrap(); // 1.5 s: fine
        assert!((client.limit() - 2.8).abs() < 1e-9, "{}", client.limit());
        client.complete(&request()).await.unwrap(); // 0.9 s: a new, lower baseline
        client.complete(&request()).await.unwrap(); // 1.7 s < 2 × 0.9 s: fine
        assert!((client.limit() - 2.8).abs() < 1e-9, "{}", client.limit());
        client.complete(&request()).await.unwrap(); // 1.9 s > 2 × ~0.908 s: congestion
        assert!((client.limit() - 1.96).abs() < 1e-9, "{}", client.limit());
    }

    #[tokio::test]
    async fn short_answers_and_other_errors_are_not_signals() {
        struct Transient;
        #[async_trait]
        impl LlmClient for Transient {
            fn name(&self) -> String {
                "transient".into()
            }
            async fn complete(&self, _request: &CompletionRequest) -> Result<Completion, LlmError> {
                Err(LlmError::Transient { provider: "t".into(), message: "503".into() })
            }
        }
        let client = Adaptive::new(Transient, AdaptiveConfig::default());
        for _ in 0..5 {
            assert!(client.complete(&request()).await.is_err());
        }
        assert!((client.limit() - 4.0).abs() < 1e-9);
    }

    #[test]
    fn config_is_brought_into_range() {
        let config = AdaptiveConfig {
            initial: 1_000.0,
            min: 0.0,
            max: 64.0,
            increase: f64::NAN,
            decrease: 1.5,
            latency_tolerance: 0.5,
        }
        .sanitized();
        assert_eq!(
            config,
            AdaptiveConfig { initial: 64.0, min: 1.0, max: 64.0, increase: 1.0, decrease: 0.7, latency_tolerance: 1.0 }
        );
        assert_eq!(AdaptiveConfig::default().sanitized(), AdaptiveConfig::default());
    }
}
