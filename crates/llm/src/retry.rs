//! Retrying failed calls: exponential backoff with full jitter, and a time budget for throttling.
//!
//! Two kinds of failure are retried, differently:
//!
//! - **Throttling** ([`LlmError::Throttled`]) means the quota is spent for now; it will come back.
//!   A throttled call keeps trying until [`RetryPolicy::throttle_budget`] of time has passed since
//!   its first attempt, however many attempts that takes.
//! - **Transient errors** ([`LlmError::Transient`]) may be a broken service; a call gives up after
//!   [`RetryPolicy::max_attempts`] of them.
//!
//! Everything else ([`LlmError::Rejected`], [`LlmError::Config`]) fails at once: retrying cannot
//! help.
//!
//! **One probe while throttled.** Throttling is shared: when the quota is spent, it is spent for
//! every call. So after a throttle, one call (the *prober*) retries, at most every
//! [`PROBE_INTERVAL`] (jittered), and the other throttled calls wait until the prober gets
//! through — then they all retry, spread over one base delay, and whoever is throttled again
//! waits for the next prober. A spent minute costs about one
//! throttled request per probe interval instead of one per waiting call per backoff, and a quota
//! that frees up is noticed within a probe interval. A waiting call also retries on its own after
//! [`WAITER_FALLBACK`] (or its backoff, if longer), a safety net: the prober always hands its role
//! on when its call ends, however it ends.
//!
//! **Hedging** cuts the tail that a hung connection would otherwise cost (a whole request timeout):
//! once [`HEDGE_MIN_SAMPLES`] answers have been timed, an attempt still unanswered after
//! [`HEDGE_P95_MULTIPLE`] × the 95th percentile of recent answer times is raced by a second copy
//! of the request; the first answer wins and the other is dropped (its connection closed). A slow
//! but healthy request costs one duplicate at most; a hung one is replaced after seconds instead of
//! the full timeout ("The Tail at Scale", Dean and Barroso). [`RetryPolicy::hedge`] turns it off.
//!
//! The delay before retry `n` (0-based) is drawn uniformly from
//! `[0, min(max_delay, base_delay * 2^n)]` ("full jitter"), so that many workers throttled at the
//! same moment do not come back at the same moment. A provider's `retry_after` hint raises the
//! delay to at least that.
//!
//! ```no_run
//! # async fn run(client: impl beacon_llm::LlmClient, request: beacon_llm::CompletionRequest) {
//! use beacon_llm::retry::{RetryPolicy, Retrying};
//! use beacon_llm::{ClientStats, LlmClient};
//!
//! let stats = ClientStats::default();
//! let client = Retrying::new(client, RetryPolicy::default(), stats.clone());
//! let answer = client.complete(&request).await;
//! println!("{} throttled so far", stats.snapshot().throttles);
//! # }
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use tokio::sync::Notify;

use crate::{ClientStats, Completion, CompletionRequest, LlmClient, LlmError};

/// How [`Retrying`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The upper bound of the first retry's delay; it doubles with every retry.
    pub base_delay: Duration,
    /// The largest upper bound a delay can have (before `retry_after` hints).
    pub max_delay: Duration,
    /// The most attempts ending in a transient error before the call gives up.
    pub max_attempts: u32,
    /// The total time, from the first attempt, that a throttled call keeps trying.
    pub throttle_budget: Duration,
    /// Race a second copy of an attempt that takes far longer than recent answers (see the
    /// [module documentation](self)).
    pub hedge: bool,
}

/// An attempt unanswered after this multiple of the recent 95th-percentile answer time is hedged.
pub const HEDGE_P95_MULTIPLE: f64 = 2.0;

/// The longest a prober waits between throttled attempts (before jitter: a draw in `[0, this]`,
/// raised to the provider's `Retry-After`).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// The longest a throttled call waits for the prober's news before it retries on its own.
pub const WAITER_FALLBACK: Duration = Duration::from_secs(60);

/// The most failed (not throttled) copies one attempt is hedged with.
pub const MAX_HEDGES: u32 = 3;

/// How often an attempt sent before enough answers were timed checks whether it is due.
const HEDGE_RECHECK: Duration = Duration::from_millis(500);

/// Answers timed before hedging starts (a percentile of fewer says little).
pub const HEDGE_MIN_SAMPLES: usize = 20;

/// Answer times kept for the percentile.
const LATENCY_SAMPLES: usize = 200;

impl Default for RetryPolicy {
    /// 500 ms base, 20 s cap, 8 attempts for transient errors, 30 minutes for throttling,
    /// hedging on.
    fn default() -> Self {
        RetryPolicy {
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_attempts: 8,
            throttle_budget: Duration::from_secs(30 * 60),
            hedge: true,
        }
    }
}

impl RetryPolicy {
    /// The upper bound of the delay before retry `retry` (0-based):
    /// `min(max_delay, base_delay * 2^retry)`.
    pub fn delay_ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// A delay for retry `retry` drawn with full jitter: uniform in `[0, delay_ceiling(retry)]`.
    pub fn jittered_delay(&self, retry: u32) -> Duration {
        let ceiling = self.delay_ceiling(retry);
        if ceiling.is_zero() {
            return Duration::ZERO;
        }
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

tokio::task_local! {
    /// Set by [`Retrying`] around each attempt it sends through a pacing gate below it.
    static DEPARTURE: Arc<Departure>;
}

/// When an attempt left a pacing gate (a [`crate::pacer::Paced`]) below the retry layer: an
/// attempt is timed, and hedged, from then, not from when it joined the gate's queue — a copy
/// of an attempt still waiting for the quota would only wait beside it and then spend the quota
/// twice.
#[derive(Debug, Default)]
struct Departure {
    gone: Notify,
}

/// Called by a pacing gate when it lets the current attempt go (nothing outside a [`Retrying`]
/// attempt).
pub(crate) fn departed() {
    let _ = DEPARTURE.try_with(|departure| departure.gone.notify_one());
}

/// How [`Retrying`] waits between attempts, and its clock. Tests replace it to run without
/// waiting; the default is [`TokioSleep`].
#[async_trait]
pub trait Sleep: Send + Sync {
    /// Waits for `duration`.
    async fn sleep(&self, duration: Duration);

    /// The current time, for the throttle budget. A fake sleeper advances its own clock.
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Waits with `tokio::time::sleep` and reads tokio's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleep;

#[async_trait]
impl Sleep for TokioSleep {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    /// Tokio's clock: the real one, or the paused test clock under `start_paused`.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// An [`LlmClient`] that retries its inner client's retryable failures according to a
/// [`RetryPolicy`], and counts attempts, throttles, retries and failures in [`ClientStats`].
pub struct Retrying<C> {
    inner: C,
    policy: RetryPolicy,
    stats: ClientStats,
    sleeper: Arc<dyn Sleep>,
    /// Recent answer times, newest last, for the hedging delay.
    latencies: Mutex<VecDeque<Duration>>,
    gate: ThrottleGate,
    /// A [`crate::pacer::Pacer`] below paces throttled attempts: send them straight back.
    paced_below: bool,
}

/// Whether the quota is spent (see "One probe while throttled" in the module documentation).
#[derive(Debug, Default)]
struct ThrottleGate {
    state: Mutex<GateState>,
    /// Woken when the gate opens or the prober role falls vacant.
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    probing: bool,
}

impl ThrottleGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A call succeeded: the quota has room again.
    fn open(&self) {
        let mut state = self.lock();
        if state.closed || state.probing {
            state.closed = false;
            state.probing = false;
            drop(state);
            self.changed.notify_waiters();
        }
    }
}

/// A call's part in the gate: gives the prober role back however the call ends.
struct Probe<'a> {
    gate: &'a ThrottleGate,
    prober: bool,
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if self.prober {
            self.gate.lock().probing = false;
            self.gate.changed.notify_waiters();
        }
    }
}

impl<C: LlmClient> Retrying<C> {
    /// Wraps `inner`; `stats` is shared with whoever displays progress.
    pub fn new(inner: C, policy: RetryPolicy, stats: ClientStats) -> Self {
        Retrying {
            inner,
            policy,
            stats,
            sleeper: Arc::new(TokioSleep),
            latencies: Mutex::new(VecDeque::new()),
            gate: ThrottleGate::default(),
            paced_below: false,
        }
    }

    /// The inner client paces its own attempts (a [`crate::pacer::Paced`]): a throttled attempt
    /// goes straight back to it, and the waiting for the quota (one probe, `Retry-After`) happens
    /// there, paced with every other attempt, instead of here.
    pub fn paced_below(mut self) -> Self {
        self.paced_below = true;
        self
    }

    /// Waits with `sleeper` instead of tokio's timer.
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleep>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// The wrapped client.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// The policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

impl<C> std::fmt::Debug for Retrying<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrying").field("policy", &self.policy).finish_non_exhaustive()
    }
}

#[async_trait]
impl<C: LlmClient> LlmClient for Retrying<C> {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        let started = self.sleeper.now();
        let mut attempts: u32 = 0;
        let mut throttles: u32 = 0;
        let mut transient_failures: u32 = 0;
        let mut probe = Probe { gate: &self.gate, prober: false };
        loop {
            attempts += 1;
            self.stats.record_request();
            let (result, copies) = self.attempt(request).await;
            attempts += copies;
            let error = match result {
                Ok(mut completion) => {
                    // Only the prober's success reopens the gate: at most one wave of waiting
                    // calls per probe interval, not one per success while a quota refills.
                    if std::mem::take(&mut probe.prober) {
                        self.gate.open();
                    }
                    completion.attempts = attempts;
                    completion.throttles = throttles;
                    return Ok(completion);
                }
                Err(error) => error,
            };

            let delay = match &error {
                LlmError::Throttled { retry_after, .. } => {
                    throttles += 1;
                    self.stats.record_throttle();
                    let delay = self.delay(attempts - 1, *retry_after);
                    let elapsed = self.sleeper.now().saturating_duration_since(started);
                    if elapsed.saturating_add(delay) > self.policy.throttle_budget {
                        return Err(self.give_up(attempts, throttles, error));
                    }
                    self.stats.record_retry();
                    if self.paced_below {
                        continue;
                    }
                    let remaining = self.policy.throttle_budget.saturating_sub(elapsed);
                    self.wait_for_quota(&mut probe, attempts - 1, delay, *retry_after, remaining).await;
                    continue;
                }
                LlmError::Transient { .. } => {
                    transient_failures += 1;
                    if transient_failures >= self.policy.max_attempts {
                        return Err(self.give_up(attempts, throttles, error));
                    }
                    self.delay(attempts - 1, None)
                }
                LlmError::Rejected { .. } | LlmError::Config { .. } | LlmError::GaveUp { .. } => {
                    self.stats.record_failure();
                    return Err(error);
                }
            };

            tracing::debug!(
                client = %self.inner.name(),
                attempt = attempts,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                %error,
                "retrying"
            );
            self.stats.record_retry();
            self.sleeper.sleep(delay).await;
        }
    }
}

impl<C: LlmClient> Retrying<C> {
    /// One attempt, hedged when it runs long; also says how many copies were sent.
    ///
    /// A copy that fails retryably while the first attempt is still out is followed by another
    /// copy: after a throttle at most a probe interval later, after a 5xx after the usual backoff
    /// and only up to [`MAX_HEDGES`] such failures. The first attempt keeps running all along, so
    /// hedging never makes a call slower.
    async fn attempt(&self, request: &CompletionRequest) -> (Result<Completion, LlmError>, u32) {
        let queued = self.sleeper.now();
        if !self.policy.hedge {
            let result = self.inner.complete(request).await;
            self.timed(&result, queued);
            return (result, 0);
        }
        let departure = Arc::new(Departure::default());
        let first = DEPARTURE.scope(departure.clone(), self.inner.complete(request));
        tokio::pin!(first);
        let first_sent = if self.paced_below {
            // Wait for the gate below to let it go; hedging starts from there.
            let gone = departure.gone.notified();
            tokio::select! {
                result = &mut first => {
                    // Answered (or refused) before the departure was seen: no timing.
                    return (result, 0);
                }
                () = gone => {}
            }
            self.sleeper.now()
        } else {
            queued
        };
        tokio::select! {
            result = &mut first => {
                self.timed(&result, first_sent);
                return (result, 0);
            }
            () = self.hedge_due(first_sent) => {}
        }
        let mut copies = 0;
        let mut failed_copies = 0;
        loop {
            copies += 1;
            self.stats.record_request();
            self.stats.record_hedge();
            tracing::debug!(client = %self.inner.name(), copies, "hedging a slow attempt");
            let copy_sent = self.sleeper.now();
            let copy = self.inner.complete(request);
            tokio::pin!(copy);
            let copy_error = tokio::select! {
                result = &mut first => {
                    if result.is_ok() {
                        self.timed(&result, first_sent);
                        return (result, copies);
                    }
                    // The first failed: the copy is the attempt now.
                    let result = copy.await;
                    self.timed(&result, copy_sent);
                    return (result, copies);
                }
                result = &mut copy => match result {
                    Ok(completion) => {
                        let result = Ok(completion);
                        self.timed(&result, copy_sent);
                        return (result, copies);
                    }
                    Err(error) => error,
                },
            };
            // A throttled copy is tried again (the quota frees up while the first attempt is out,
            // and the first attempt's own timeout bounds the wait); other failures count.
            let pause = match &copy_error {
                LlmError::Throttled { retry_after, .. } => {
                    self.stats.record_throttle();
                    let probing = RetryPolicy { max_delay: self.policy.max_delay.min(PROBE_INTERVAL), ..self.policy };
                    let pause = probing.jittered_delay(copies - 1);
                    retry_after.map_or(pause, |hint| pause.max(hint))
                }
                _ => {
                    failed_copies += 1;
                    if !copy_error.is_retryable() || failed_copies >= MAX_HEDGES {
                        let result = first.await;
                        self.timed(&result, first_sent);
                        return (result, copies);
                    }
                    self.delay(failed_copies - 1, None)
                }
            };
            tokio::select! {
                result = &mut first => {
                    self.timed(&result, first_sent);
                    return (result, copies);
                }
                () = self.sleeper.sleep(pause) => {}
            }
        }
    }

    /// After a throttle (retry number `retry`, backoff `delay`): the prober waits the backoff
    /// capped at [`PROBE_INTERVAL`] (at least half of it once the backoff has grown that far);
    /// everyone else waits until a call succeeds (then a little jitter), the prober role falls
    /// vacant, or [`WAITER_FALLBACK`].
    /// No wait exceeds `remaining`, what is left of the throttle budget.
    async fn wait_for_quota(
        &self,
        probe: &mut Probe<'_>,
        retry: u32,
        delay: Duration,
        retry_after: Option<Duration>,
        remaining: Duration,
    ) {
        let changed = {
            let mut state = self.gate.lock();
            state.closed = true;
            if !state.probing {
                state.probing = true;
                probe.prober = true;
            }
            // Registered before the lock is released, so no wake-up is missed.
            (!probe.prober).then(|| self.gate.changed.notified())
        };
        let Some(changed) = changed else {
            let probing = RetryPolicy { max_delay: self.policy.max_delay.min(PROBE_INTERVAL), ..self.policy };
            let interval = probing.jittered_delay(retry).max(probing.delay_ceiling(retry) / 2);
            self.sleeper.sleep(retry_after.map_or(interval, |hint| interval.max(hint)).min(remaining)).await;
            return;
        };
        tokio::select! {
            () = changed => {
                let spread = RetryPolicy { max_delay: self.policy.base_delay, ..self.policy }.jittered_delay(0);
                self.sleeper.sleep(spread).await;
            }
            () = self.sleeper.sleep(delay.max(WAITER_FALLBACK).min(remaining)) => {}
        }
    }

    /// Records how long a successful attempt sent at `sent` took.
    fn timed(&self, result: &Result<Completion, LlmError>, sent: Instant) {
        if result.is_ok() && self.policy.hedge {
            let took = self.sleeper.now().saturating_duration_since(sent);
            let mut latencies = self.latencies.lock().unwrap_or_else(PoisonError::into_inner);
            if latencies.len() == LATENCY_SAMPLES {
                latencies.pop_front();
            }
            latencies.push_back(took);
        }
    }

    /// Ends when an attempt sent at `sent` is due for a hedge. The delay is looked at again as
    /// answers come in: the first requests of a run are sent before any answer is timed, and a
    /// hung one among them must not wait for its full timeout.
    async fn hedge_due(&self, sent: Instant) {
        loop {
            let now = self.sleeper.now();
            match self.hedge_delay() {
                Some(delay) if now >= sent + delay => return,
                Some(delay) => self.sleeper.sleep((sent + delay).saturating_duration_since(now)).await,
                None => self.sleeper.sleep(HEDGE_RECHECK).await,
            }
            // A test sleeper may return at once; never starve the attempt being raced.
            tokio::task::yield_now().await;
        }
    }

    /// How long an attempt may run before it is hedged; `None`: do not hedge (off, or too few
    /// answers timed yet).
    fn hedge_delay(&self) -> Option<Duration> {
        if !self.policy.hedge {
            return None;
        }
        let latencies = self.latencies.lock().unwrap_or_else(PoisonError::into_inner);
        if latencies.len() < HEDGE_MIN_SAMPLES {
            return None;
        }
        let mut sorted: Vec<Duration> = latencies.iter().copied().collect();
        sorted.sort_unstable();
        let p95 = sorted[(sorted.len() * 95).div_ceil(100) - 1];
        Some(p95.mul_f64(HEDGE_P95_MULTIPLE).max(Duration::from_millis(100)))
    }

    /// The delay before retry `retry`: full jitter, raised to the provider's hint.
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let jittered = self.policy.jittered_delay(retry);
        retry_after.map_or(jittered, |hint| jittered.max(hint))
    }

    fn give_up(&self, attempts: u32, throttles: u32, last: LlmError) -> LlmError {
        self.stats.record_failure();
        tracing::warn!(client = %self.inner.name(), attempts, throttles, error = %last, "giving up");
        LlmError::GaveUp { attempts, throttles, last: Box::new(last) }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::{StatsSnapshot, Usage};

    /// A client that answers from a script, one entry per attempt.
    struct Scripted {
        script: Mutex<VecDeque<Result<Completion, LlmError>>>,
        calls: Mutex<u32>,
    }

    impl Scripted {
        fn new(script: impl IntoIterator<Item = Result<Completion, LlmError>>) -> Self {
            Scripted { script: Mutex::new(script.into_iter().collect()), calls: Mutex::new(0) }
        }

        /// A client that is throttled forever.
        fn always_throttled() -> Self {
            Scripted::new([])
        }

        fn calls(&self) -> u32 {
            *self.calls.lock().unwrap()
        }
    }

    #[async_trait]
    impl LlmClient for Scripted {
        fn name(&self) -> String {
            "scripted".into()
        }
        async fn complete(&self, _request: &CompletionRequest) -> Result<Completion, LlmError> {
            *self.calls.lock().unwrap() += 1;
            self.script.lock().unwrap().pop_front().unwrap_or_else(|| Err(throttled(None)))
        }
    }

    /// Records requested delays and advances a fake clock by them, instead of waiting.
    struct RecordingSleeper {
        start: Instant,
        delays: Mutex<Vec<Duration>>,
    }

    impl RecordingSleeper {
        fn new() -> Arc<Self> {
            Arc::new(RecordingSleeper { start: Instant::now(), delays: Mutex::new(Vec::new()) })
        }
        fn delays(&self) -> Vec<Duration> {
            self.delays.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Sleep for RecordingSleeper {
        async fn sleep(&self, duration: Duration) {
            self.delays.lock().unwrap().push(duration);
        }
        fn now(&self) -> Instant {
            let slept: Duration = self.delays.lock().unwrap().iter().sum();
            self.start + slept
        }
    }

    fn ok() -> Result<Completion, LlmError> {
        Ok(Completion {
            text: "{\"summary\":\"s\"}".into(),
            usage: Usage { input_tokens: 3, output_tokens: 2 },
            model: "m".into(),
            stop_reason: "end_turn".into(),
            attempts: 1,
            throttles: 0,
        })
    }

    fn throttled(retry_after: Option<Duration>) -> LlmError {
        LlmError::Throttled { provider: "p".into(), message: "slow down".into(), retry_after }
    }

    fn transient() -> LlmError {
        LlmError::Transient { provider: "p".into(), message: "503".into() }
    }

    fn rejected() -> LlmError {
        LlmError::Rejected { provider: "p".into(), kind: "ValidationException".into(), message: "bad".into() }
    }

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

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_attempts: 4,
            throttle_budget: Duration::from_secs(60),
            hedge: false, // these tests look at backoff delays alone
        }
    }

    fn retrying(client: Scripted, sleeper: &Arc<RecordingSleeper>) -> (Retrying<Scripted>, ClientStats) {
        let stats = ClientStats::default();
        let retrying = Retrying::new(client, policy(), stats.clone()).with_sleeper(sleeper.clone());
        (retrying, stats)
    }

    #[tokio::test]
    async fn throttle_then_success() {
        let sleeper = RecordingSleeper::new();
        let (client, stats) = retrying(Scripted::new([Err(throttled(None)), Err(throttled(None)), ok()]), &sleeper);
        let completion = client.complete(&request()).await.unwrap();
        assert_eq!((completion.attempts, completion.throttles), (3, 2));
        assert_eq!(sleeper.delays().len(), 2);
        assert_eq!(stats.snapshot(), StatsSnapshot { requests: 3, throttles: 2, retries: 2, failures: 0, hedges: 0 });
    }

    #[tokio::test]
    async fn throttling_gives_up_when_the_budget_is_spent() {
        let sleeper = RecordingSleeper::new();
        let (client, stats) = retrying(Scripted::always_throttled(), &sleeper);
        let err = client.complete(&request()).await.unwrap_err();
        let LlmError::GaveUp { attempts, throttles, last } = err else { panic!("{err:?}") };
        assert_eq!(attempts, throttles);
        assert!(last.is_throttle());
        // Far more attempts than `max_attempts`: throttling is bounded by time, not count.
        assert!(attempts > policy().max_attempts, "{attempts}");
        let slept: Duration = sleeper.delays().iter().sum();
        assert!(slept <= policy().throttle_budget, "{slept:?}");
        // It stopped only because the next delay (at most `max_delay`) would not fit.
        assert!(slept > policy().throttle_budget - policy().max_delay, "{slept:?}");
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.requests, u64::from(attempts));
        assert_eq!(snapshot.throttles, u64::from(attempts));
        assert_eq!(snapshot.retries, u64::from(attempts - 1));
        assert_eq!(snapshot.failures, 1);
    }

    #[tokio::test]
    async fn transient_errors_are_limited_by_max_attempts() {
        let sleeper = RecordingSleeper::new();
        let (client, stats) = retrying(Scripted::new(std::iter::repeat_with(|| Err(transient())).take(10)), &sleeper);
        let err = client.complete(&request()).await.unwrap_err();
        assert_eq!(err, LlmError::GaveUp { attempts: 4, throttles: 0, last: Box::new(transient()) });
        assert_eq!(client.inner().calls(), 4);
        assert_eq!(stats.snapshot(), StatsSnapshot { requests: 4, throttles: 0, retries: 3, failures: 1, hedges: 0 });
    }

    #[tokio::test]
    async fn throttles_do_not_count_against_max_attempts() {
        let sleeper = RecordingSleeper::new();
        let mut script: Vec<_> = std::iter::repeat_with(|| Err(throttled(None))).take(6).collect();
        script.extend([Err(transient()), Err(transient()), Err(transient()), ok()]);
        let (client, _stats) = retrying(Scripted::new(script), &sleeper);
        let completion = client.complete(&request()).await.unwrap();
        assert_eq!((completion.attempts, completion.throttles), (10, 6));
    }

    #[tokio::test]
    async fn rejected_fails_at_once() {
        let sleeper = RecordingSleeper::new();
        let (client, stats) = retrying(Scripted::new([Err(rejected()), ok()]), &sleeper);
        assert_eq!(client.complete(&request()).await.unwrap_err(), rejected());
        assert_eq!(client.inner().calls(), 1);
        assert!(sleeper.delays().is_empty());
        assert_eq!(stats.snapshot(), StatsSnapshot { requests: 1, throttles: 0, retries: 0, failures: 1, hedges: 0 });
    }

    #[tokio::test]
    async fn config_errors_fail_at_once() {
        let sleeper = RecordingSleeper::new();
        let config = LlmError::Config { provider: "p".into(), message: "no region".into() };
        let (client, _stats) = retrying(Scripted::new([Err(config.clone())]), &sleeper);
        assert_eq!(client.complete(&request()).await.unwrap_err(), config);
        assert!(sleeper.delays().is_empty());
    }

    #[tokio::test]
    async fn delays_stay_within_full_jitter_bounds() {
        let sleeper = RecordingSleeper::new();
        let (client, _stats) = retrying(Scripted::always_throttled(), &sleeper);
        let _ = client.complete(&request()).await;
        let delays = sleeper.delays();
        assert!(delays.len() > 10);
        for (retry, delay) in delays.iter().enumerate() {
            let ceiling = policy().delay_ceiling(u32::try_from(retry).unwrap());
            assert!(*delay <= ceiling, "retry {retry}: {delay:?} > {ceiling:?}");
        }
        // Jitter: not every capped delay sits at the cap.
        assert!(delays.iter().skip(5).any(|d| *d < policy().max_delay));
    }

    #[test]
    fn delay_ceiling_doubles_and_caps() {
        let policy = policy();
        assert_eq!(policy.delay_ceiling(0), Duration::from_millis(100));
        assert_eq!(policy.delay_ceiling(1), Duration::from_millis(200));
        assert_eq!(policy.delay_ceiling(4), Duration::from_millis(1600));
        assert_eq!(policy.delay_ceiling(5), Duration::from_secs(2));
        assert_eq!(policy.delay_ceiling(40), Duration::from_secs(2));
        assert_eq!(policy.delay_ceiling(u32::MAX), Duration::from_secs(2));
        for retry in 0..64 {
            assert!(policy.jittered_delay(retry) <= policy.delay_ceiling(retry));
        }
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let sleeper = RecordingSleeper::new();
        let hint = Duration::from_secs(7);
        let (client, _stats) = retrying(Scripted::new([Err(throttled(Some(hint))), ok()]), &sleeper);
        let completion = client.complete(&request()).await.unwrap();
        assert_eq!(completion.throttles, 1);
        // The ceiling for the first retry is 100 ms; the hint wins.
        assert_eq!(sleeper.delays(), vec![hint]);
    }

    #[tokio::test]
    async fn retry_after_beyond_the_budget_gives_up() {
        let sleeper = RecordingSleeper::new();
        let (client, _stats) =
            retrying(Scripted::new([Err(throttled(Some(Duration::from_secs(3600)))), ok()]), &sleeper);
        let err = client.complete(&request()).await.unwrap_err();
        assert!(matches!(err, LlmError::GaveUp { attempts: 1, throttles: 1, .. }), "{err:?}");
        assert!(sleeper.delays().is_empty());
    }

    #[tokio::test]
    async fn default_sleeper_is_tokio() {
        // A zero base delay makes every delay zero, so the real timer is used but never waited on.
        let client = Retrying::new(
            Scripted::new([Err(transient()), ok()]),
            RetryPolicy { base_delay: Duration::ZERO, ..RetryPolicy::default() },
            ClientStats::default(),
        );
        assert_eq!(client.complete(&request()).await.unwrap().attempts, 2);
    }

    /// Answers after 100 ms, except the calls numbered in `hang`, which never answer, and those
    /// in `throttle`, which are throttled at once.
    struct SometimesHangs {
        calls: std::sync::atomic::AtomicU32,
        hang: Vec<u32>,
        throttle: Vec<u32>,
    }

    #[async_trait]
    impl LlmClient for SometimesHangs {
        fn name(&self) -> String {
            "hangs".into()
        }
        async fn complete(&self, _request: &CompletionRequest) -> Result<Completion, LlmError> {
            let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.hang.contains(&call) {
                std::future::pending::<()>().await;
            }
            if self.throttle.contains(&call) {
                return Err(throttled(None));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            ok()
        }
    }

    async fn warmed_up(hedge: bool, throttle: Vec<u32>) -> (Retrying<SometimesHangs>, ClientStats) {
        let stats = ClientStats::default();
        let provider = SometimesHangs { calls: 0.into(), hang: vec![HEDGE_MIN_SAMPLES as u32], throttle };
        let client = Retrying::new(provider, RetryPolicy { hedge, ..RetryPolicy::default() }, stats.clone());
        for _ in 0..HEDGE_MIN_SAMPLES {
            client.complete(&request()).await.unwrap();
        }
        (client, stats)
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_attempt_is_hedged_after_twice_the_p95() {
        let (client, stats) = warmed_up(true, Vec::new()).await;
        let started = tokio::time::Instant::now();
        let completion = client.complete(&request()).await.unwrap();
        // Hedged at 2 × 100 ms; the copy answered 100 ms later (virtual time).
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert_eq!(completion.attempts, 2);
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.hedges, snapshot.requests), (1, HEDGE_MIN_SAMPLES as u64 + 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_copy_is_followed_by_another() {
        let first_copy = HEDGE_MIN_SAMPLES as u32 + 1;
        let (client, stats) = warmed_up(true, vec![first_copy]).await;
        let completion = client.complete(&request()).await.unwrap();
        assert_eq!(completion.attempts, 3, "the hung attempt and two copies");
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.hedges, snapshot.throttles), (2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn without_hedging_a_hung_attempt_waits() {
        let (client, stats) = warmed_up(false, Vec::new()).await;
        let hung = tokio::time::timeout(Duration::from_secs(60), client.complete(&request())).await;
        assert!(hung.is_err(), "nothing but the provider's own timeout ends a hung attempt");
        assert_eq!(stats.snapshot().hedges, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn too_few_samples_mean_no_hedging() {
        let stats = ClientStats::default();
        let provider = SometimesHangs { calls: 0.into(), hang: vec![0], throttle: Vec::new() };
        let client = Retrying::new(provider, RetryPolicy::default(), stats.clone());
        let hung = tokio::time::timeout(Duration::from_secs(60), client.complete(&request())).await;
        assert!(hung.is_err());
        assert_eq!(stats.snapshot().hedges, 0);
    }

    /// Throttles every call until `opens`, then answers at once; counts calls.
    struct SpentUntil {
        opens: tokio::time::Instant,
        calls: std::sync::atomic::AtomicU32,
    }

    #[async_trait]
    impl LlmClient for SpentUntil {
        fn name(&self) -> String {
            "spent".into()
        }
        async fn complete(&self, _request: &CompletionRequest) -> Result<Completion, LlmError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if tokio::time::Instant::now() < self.opens { Err(throttled(None)) } else { ok() }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn while_the_quota_is_spent_one_call_probes_and_all_go_when_it_returns() {
        let start = tokio::time::Instant::now();
        let opens = start + Duration::from_secs(120);
        let provider = SpentUntil { opens, calls: 0.into() };
        let client = Arc::new(Retrying::new(provider, RetryPolicy::default(), ClientStats::default()));
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let completion = client.complete(&request()).await.unwrap();
                    (completion, tokio::time::Instant::now())
                })
            })
            .collect();
        for call in calls {
            let (completion, finished) = call.await.unwrap();
            assert!(completion.throttles > 0);
            // The prober notices within a probe interval; the others follow within a base delay.
            assert!(finished <= opens + PROBE_INTERVAL + RetryPolicy::default().base_delay, "{:?}", finished - opens);
        }
        // Each waiting call on its own backoff would have sent about 20 × 12 throttled requests
        // in two minutes; one prober (at most one per second once backed off) and one or two
        // fallbacks per waiter send far fewer.
        let sent = client.inner().calls.load(std::sync::atomic::Ordering::SeqCst);
        assert!(sent <= 20 + 130 + 40 + 20, "{sent} requests");
    }
}
