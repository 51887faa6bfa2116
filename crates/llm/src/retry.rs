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

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;

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
}

impl Default for RetryPolicy {
    /// 500 ms base, 20 s cap, 8 attempts for transient errors, 30 minutes for throttling.
    fn default() -> Self {
        RetryPolicy {
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_attempts: 8,
            throttle_budget: Duration::from_secs(30 * 60),
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

/// Waits with `tokio::time::sleep` and reads the real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleep;

#[async_trait]
impl Sleep for TokioSleep {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// An [`LlmClient`] that retries its inner client's retryable failures according to a
/// [`RetryPolicy`], and counts attempts, throttles, retries and failures in [`ClientStats`].
pub struct Retrying<C> {
    inner: C,
    policy: RetryPolicy,
    stats: ClientStats,
    sleeper: Arc<dyn Sleep>,
}

impl<C: LlmClient> Retrying<C> {
    /// Wraps `inner`; `stats` is shared with whoever displays progress.
    pub fn new(inner: C, policy: RetryPolicy, stats: ClientStats) -> Self {
        Retrying { inner, policy, stats, sleeper: Arc::new(TokioSleep) }
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
        loop {
            attempts += 1;
            self.stats.record_request();
            let error = match self.inner.complete(request).await {
                Ok(mut completion) => {
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
                    delay
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
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_attempts: 4,
            throttle_budget: Duration::from_secs(60),
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
        assert_eq!(stats.snapshot(), StatsSnapshot { requests: 3, throttles: 2, retries: 2, failures: 0 });
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
        assert_eq!(stats.snapshot(), StatsSnapshot { requests: 4, throttles: 0, retries: 3, failures: 1 });
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
        assert_eq!(stats.snapshot(), StatsSnapshot { requests: 1, throttles: 0, retries: 0, failures: 1 });
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
}
