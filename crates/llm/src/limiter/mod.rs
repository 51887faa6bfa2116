//! Rate limiting on requests per minute **and** tokens per minute, before a request is sent.
//!
//! Model quotas come in two dimensions: requests per minute (RPM) and tokens per minute (TPM,
//! input + output). [`GcraLimiter`] paces requests on both, so that a run of thousands of pages
//! flows at the quota instead of bursting into it and living on throttling errors.
//!
//! # Algorithm
//!
//! Each dimension runs the generic cell rate algorithm (GCRA): a *theoretical arrival time*
//! (TAT) and an emission interval `T` (`60 s / rpm` per request, `60 s / tpm` per token). A
//! request costing `n` units is admitted at time `t` when `max(TAT, t) + n·T − t ≤ τ`, and then
//! moves the TAT to `max(TAT, t) + n·T`. The tolerance `τ` is the time of a burst: `burst·T`,
//! where `burst` defaults to one sixth of a minute's quota ([`DEFAULT_BURST`], configurable with
//! [`GcraLimiter::with_burst`]). GCRA alone lets a full burst go after an idle spell *and* keeps
//! the full rate afterwards, so a 60 s window could see `quota + burst`; a record of the last
//! 60 s of admissions closes that gap: a request is also held until the window ending at its
//! admission holds at most the quota. The result is smooth pacing, bursts of at most `burst`,
//! never more than the quota in any 60 s window, and a steady state at the quota.
//!
//! Requests wait in FIFO order: only the oldest waiter watches the clock, so a large request is
//! not starved by small ones behind it.
//!
//! # Reservations and refunds
//!
//! The output's size is unknown before the call, so [`RateLimiter::acquire`] reserves an
//! estimate (input estimate + `max_tokens`, which is also how Amazon Bedrock charges a request
//! when it starts) and [`RateLimiter::settle`] gives back what was not used, moving the token TAT
//! back by `(reserved − used)·T` (never before now) and lowering the record entry. A request that
//! used more than it reserved is charged the difference.
//!
//! A request larger than the burst waits until the bucket is full (TAT ≤ now) and then goes
//! alone; one larger than the whole TPM also waits for an empty 60 s window. Otherwise it could
//! never run. The debt it leaves (a TAT far in the future) holds the following requests back
//! until it is repaid, so the average rate stays at the quota.
//!
//! ```no_run
//! # async fn run(client: impl beacon_llm::LlmClient, request: beacon_llm::CompletionRequest) {
//! use std::sync::Arc;
//! use beacon_llm::LlmClient;
//! use beacon_llm::limiter::{GcraLimiter, Limited, Quota};
//!
//! let limiter = Arc::new(GcraLimiter::new(Quota { rpm: Some(120), tpm: Some(200_000), tpd: None }));
//! let client = Limited::new(client, limiter);
//! let answer = client.complete(&request).await;
//! # }
//! ```

pub mod gcra;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use self::gcra::{GcraState, Micros};
use crate::offline::estimate_tokens;
use crate::{Completion, CompletionRequest, LlmClient, LlmError};

/// The window quotas are counted over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How long an admission stays in the limiter's 60 s record: a little longer than the window,
/// because the provider's window counts *arrivals*. A request admitted the instant an old one
/// leaves our record could otherwise reach the provider while that old one's arrival is still
/// inside the provider's window — after a full burst that throttled a fifth of the next minute's
/// requests in the RPM-bound benchmark.
pub const RECORD_WINDOW: Duration = Duration::from_secs(61);

/// The default burst: the share of a minute's quota that may go at once.
pub const DEFAULT_BURST: f64 = 1.0 / 6.0;

/// The time source of the limiter and of [`crate::concurrency::Adaptive`]. Tests replace it so
/// that nothing sleeps for real; the default is [`TokioClock`].
#[async_trait]
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Instant;

    /// Waits until `deadline` (returns at once when it has passed).
    async fn sleep_until(&self, deadline: Instant);
}

/// Tokio's clock and timer: the real ones, or the paused test clock under `start_paused` (so a
/// whole client stack can run against a simulated provider in virtual time).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

#[async_trait]
impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    async fn sleep_until(&self, deadline: Instant) {
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
    }
}

/// A clock that moves only when told to: [`ManualClock::advance`], or a sleep, which jumps the
/// clock to its deadline and yields to other tasks. For tests and simulations.
///
/// Jumping is exact while one task at a time sleeps on it, which is what the limiter does (only
/// the oldest waiter watches the clock). It also serves as [`crate::retry::Sleep`], so one clock
/// can drive a whole client stack.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Instant>,
}

impl ManualClock {
    /// A clock that starts at the real current time.
    pub fn new() -> Self {
        ManualClock { now: Mutex::new(Instant::now()) }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = lock(&self.now);
        *now += by;
    }

    /// Moves the clock forward to `to`; a time in the past changes nothing.
    pub fn advance_to(&self, to: Instant) {
        let mut now = lock(&self.now);
        *now = (*now).max(to);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *lock(&self.now)
    }

    async fn sleep_until(&self, deadline: Instant) {
        self.advance_to(deadline);
        tokio::task::yield_now().await;
    }
}

#[async_trait]
impl crate::retry::Sleep for ManualClock {
    async fn sleep(&self, duration: Duration) {
        self.advance(duration);
        tokio::task::yield_now().await;
    }

    fn now(&self) -> Instant {
        Clock::now(self)
    }
}

/// A model's quota. `None` (or zero) leaves a dimension unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens (input + output) per minute.
    pub tpm: Option<u64>,
    /// Tokens (input + output) per day: Bedrock's "Model invocation max tokens per day" (by
    /// default the per-minute quota × 1,440, lower on new accounts). Counted over the last 24 h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpd: Option<u64>,
}

impl Quota {
    /// No limit on either dimension.
    pub fn unlimited() -> Self {
        Quota::default()
    }
}

/// Leave to send one request, from [`RateLimiter::acquire`]; give it back with
/// [`RateLimiter::settle`]. A permit dropped unsettled keeps its whole reservation (the safe
/// side).
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a permit should be settled with the tokens actually used"]
pub struct Permit {
    /// The tokens reserved for the request.
    pub reserved: u64,
    /// What the issuing limiter uses to find the reservation again; opaque to callers.
    pub ticket: u64,
    /// When the limiter admitted the request, in microseconds on the limiter's time base (since
    /// its creation for [`GcraLimiter`], since the Unix epoch for a shared limiter).
    pub admitted_at: Micros,
}

impl Permit {
    /// A permit for `reserved` tokens admitted at `admitted_at`; `ticket` is the issuing
    /// limiter's own reference.
    pub fn new(reserved: u64, ticket: u64, admitted_at: Micros) -> Self {
        Permit { reserved, ticket, admitted_at }
    }
}

/// Paces requests to a quota. Implementations: [`GcraLimiter`] in process; a shared one (e.g.
/// backed by DynamoDB) when several processes draw on one quota.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Waits until a request estimated at `tokens` (input estimate + `max_tokens`) may be sent;
    /// returns a permit. Cancel-safe: a cancelled wait reserves nothing. Fails only when a shared
    /// limiter cannot reach its store ([`LlmError::Transient`]).
    async fn acquire(&self, tokens: u64) -> Result<Permit, LlmError>;

    /// The request finished: `used` is the actual input + output tokens; the unused part of the
    /// reservation is refunded (and an overrun charged). Best effort: a refund that cannot be
    /// stored is lost, which only slows later requests down.
    async fn settle(&self, permit: Permit, used: u64);

    /// The request was never processed (the provider answered it with a 5xx at once): give the
    /// request and its tokens back. By default it is only settled with nothing used, its request
    /// still counted (the safe side).
    async fn forget(&self, permit: Permit) {
        self.settle(permit, 0).await;
    }

    /// The provider throttled the request: it used no tokens, and a limiter that paces for
    /// several processes learns from it (see [`crate::shared_pace`]). By default it is only
    /// settled with nothing used.
    async fn throttled(&self, permit: Permit) {
        self.settle(permit, 0).await;
    }
}

/// An in-process [`RateLimiter`]: GCRA on requests and tokens plus a record of the last minute's
/// admissions (see the [module documentation](self) and [`gcra`]). Share one (in an `Arc`)
/// among all clients that draw on the same quota.
pub struct GcraLimiter {
    clock: Arc<dyn Clock>,
    /// The origin of the state's timestamps.
    origin: Instant,
    state: Mutex<GcraState>,
    /// Held by the oldest waiter: FIFO order, one clock watcher.
    turn: tokio::sync::Mutex<()>,
    /// Wakes the oldest waiter early when a settlement refunded tokens.
    refunded: Notify,
}

impl GcraLimiter {
    /// A limiter for `quota` on the real clock, with the default burst.
    pub fn new(quota: Quota) -> Self {
        GcraLimiter::with_clock(quota, Arc::new(TokioClock))
    }

    /// A limiter for `quota` on `clock`, with the default burst.
    pub fn with_clock(quota: Quota, clock: Arc<dyn Clock>) -> Self {
        let origin = clock.now();
        let state = Mutex::new(GcraState::new(quota, DEFAULT_BURST, micros(WINDOW), micros(RECORD_WINDOW), 0));
        GcraLimiter { clock, origin, state, turn: tokio::sync::Mutex::new(()), refunded: Notify::new() }
    }

    /// Sets the burst: the share of a minute's quota (in `(0, 1]`, default [`DEFAULT_BURST`]) that
    /// may go at once. Resets the limiter's state, so call it before use.
    pub fn with_burst(self, fraction: f64) -> Self {
        let quota = self.quota();
        let state = GcraState::new(quota, fraction, micros(WINDOW), micros(RECORD_WINDOW), self.now());
        *lock(&self.state) = state;
        self
    }

    /// The quota in force.
    pub fn quota(&self) -> Quota {
        lock(&self.state).quota()
    }

    /// The burst in units: `(requests, tokens)` that may go at once, per limited dimension.
    pub fn burst(&self) -> (Option<u64>, Option<u64>) {
        lock(&self.state).burst()
    }

    /// Now, as the state counts time.
    fn now(&self) -> Micros {
        micros(self.clock.now().saturating_duration_since(self.origin))
    }
}

/// `duration` in whole microseconds, saturating.
pub fn micros(duration: Duration) -> Micros {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl std::fmt::Debug for GcraLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("GcraLimiter")
            .field("quota", &state.quota())
            .field("burst", &state.burst_fraction())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimiter for GcraLimiter {
    async fn acquire(&self, tokens: u64) -> Result<Permit, LlmError> {
        let _turn = self.turn.lock().await;
        let mut told_of_the_day = false;
        loop {
            let deadline = {
                let mut state = lock(&self.state);
                let now = self.now();
                state.prune(now);
                if !told_of_the_day && let Some(wait) = state.day_wait(now, tokens) {
                    told_of_the_day = true;
                    tracing::warn!(
                        tokens_today = state.day_tokens().unwrap_or(0),
                        tpd = state.quota().tpd.unwrap_or(0),
                        wait_minutes = wait / 60_000_000,
                        "the daily token quota is spent: requests wait until the tokens of 24 hours ago leave it"
                    );
                }
                match state.wait(now, tokens) {
                    None => return Ok(state.admit(now, tokens)),
                    Some(wait) => later(self.origin, Duration::from_micros(now.saturating_add(wait))),
                }
            };
            // A refund in between stores a wake-up in `refunded`, so none is lost.
            tokio::select! {
                () = self.clock.sleep_until(deadline) => {}
                () = self.refunded.notified() => {}
            }
        }
    }

    async fn settle(&self, permit: Permit, used: u64) {
        let refunded = lock(&self.state).settle(self.now(), &permit, used);
        if refunded {
            self.refunded.notify_one();
        }
    }

    async fn forget(&self, permit: Permit) {
        lock(&self.state).release(self.now(), &permit);
        self.refunded.notify_one();
    }
}

/// An [`LlmClient`] that asks a [`RateLimiter`] before every call to its inner client and settles
/// with the tokens the call used.
///
/// The reservation is `estimate_tokens(system) + estimate_tokens(instruction) +
/// estimate_tokens(content) + max_tokens`. A failed call is settled as follows: throttled,
/// rejected and configuration errors consumed nothing at the provider (Bedrock does not count
/// throttled requests' tokens), so everything is refunded; a call that met transient errors
/// (timeouts, 5xx) may have been processed, so its input estimate stays charged. The request
/// itself always counts. Retries inside the inner client are not charged again: the limiter
/// admits calls, not attempts.
pub struct Limited<C> {
    inner: C,
    limiter: Arc<dyn RateLimiter>,
}

impl<C: LlmClient> Limited<C> {
    /// Wraps `inner`; `limiter` may be shared with other clients on the same quota.
    pub fn new(inner: C, limiter: Arc<dyn RateLimiter>) -> Self {
        Limited { inner, limiter }
    }

    /// The wrapped client.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// The limiter asked before every call.
    pub fn limiter(&self) -> &Arc<dyn RateLimiter> {
        &self.limiter
    }
}

impl<C> std::fmt::Debug for Limited<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limited").finish_non_exhaustive()
    }
}

/// The input tokens of `request` as estimated before sending it.
pub fn estimate_input_tokens(request: &CompletionRequest) -> u64 {
    let attachments = request.attachments.len() as u64 * crate::ATTACHMENT_TOKEN_ESTIMATE;
    estimate_tokens(&request.system)
        + estimate_tokens(&request.instruction)
        + estimate_tokens(&request.content)
        + attachments
}

/// The tokens a failed call is assumed to have consumed at the provider.
fn consumed_by_failure(error: &LlmError, input_estimate: u64) -> u64 {
    match error {
        LlmError::Throttled { .. } | LlmError::Rejected { .. } | LlmError::Config { .. } => 0,
        LlmError::GaveUp { attempts, throttles, last } => {
            if attempts > throttles {
                input_estimate
            } else {
                consumed_by_failure(last, input_estimate)
            }
        }
        LlmError::Transient { .. } => input_estimate,
    }
}

#[async_trait]
impl<C: LlmClient> LlmClient for Limited<C> {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        let input = estimate_input_tokens(request);
        let permit = self.limiter.acquire(input + u64::from(request.max_tokens)).await?;
        let result = self.inner.complete(request).await;
        let used = match &result {
            Ok(completion) => completion.usage.total(),
            Err(error) => consumed_by_failure(error, input),
        };
        self.limiter.settle(permit, used).await;
        result
    }
}

/// `at + by`, saturating instead of panicking on absurd costs (a huge request on a tiny quota).
fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by).or_else(|| at.checked_add(WINDOW * 1_000_000)).unwrap_or(at)
}

/// Locks `mutex`, ignoring poisoning: the state stays consistent between statements.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn limiter(quota: Quota) -> (GcraLimiter, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        (GcraLimiter::with_clock(quota, clock.clone()), clock)
    }

    /// Checks that every 60 s window starting at an admission holds at most `rpm` admissions and
    /// `tpm` tokens. `admissions` are `(time, tokens)` in time order.
    fn assert_windows(admissions: &[(Instant, u64)], rpm: usize, tpm: u64) {
        for (i, &(start, _)) in admissions.iter().enumerate() {
            let window: Vec<_> = admissions[i..].iter().take_while(|(at, _)| *at < start + WINDOW).collect();
            let tokens: u64 = window.iter().map(|(_, tokens)| tokens).sum();
            assert!(window.len() <= rpm, "{} requests in the window from admission {i}", window.len());
            assert!(tokens <= tpm, "{tokens} tokens in the window from admission {i}");
        }
    }

    #[tokio::test]
    async fn never_more_than_the_quota_in_any_window() {
        for seed in 0..8 {
            let mut rng = StdRng::seed_from_u64(seed);
            let quota =
                Quota { rpm: Some(rng.random_range(10..200)), tpm: Some(rng.random_range(5_000..100_000)), tpd: None };
            let (limiter, clock) = limiter(quota);
            let limiter = limiter.with_burst(rng.random_range(0.05..1.0));
            let mut admissions = Vec::new();
            // Calls in flight: their permits and what they will have used.
            let mut in_flight: Vec<(Permit, u64)> = Vec::new();
            for _ in 0..600 {
                // Mostly modest requests, now and then one larger than the burst.
                let reserved = if rng.random_bool(0.1) {
                    rng.random_range(1..=quota.tpm.unwrap())
                } else {
                    rng.random_range(1..quota.tpm.unwrap() / 10)
                };
                let permit = limiter.acquire(reserved).await.unwrap();
                let used = rng.random_range(0..=reserved);
                admissions.push((Clock::now(&*clock), used));
                in_flight.push((permit, used));
                // Calls take a while and finish in any order.
                clock.advance(Duration::from_millis(rng.random_range(0..2_000)));
                while !in_flight.is_empty() && rng.random_bool(0.6) {
                    let (permit, used) = in_flight.swap_remove(rng.random_range(0..in_flight.len()));
                    limiter.settle(permit, used).await;
                }
            }
            assert_windows(&admissions, quota.rpm.unwrap() as usize, quota.tpm.unwrap());
        }
    }

    #[tokio::test]
    async fn throughput_converges_to_the_request_quota() {
        let (limiter, clock) = limiter(Quota { rpm: Some(120), tpm: None, tpd: None });
        let start = Clock::now(&*clock);
        let mut admissions = Vec::new();
        for _ in 0..1_200 {
            let permit = limiter.acquire(100).await.unwrap();
            admissions.push((Clock::now(&*clock), 100));
            limiter.settle(permit, 100).await;
        }
        assert_windows(&admissions, 120, u64::MAX);
        // The default burst goes at once, then one request every 500 ms.
        assert_eq!(admissions.iter().filter(|(at, _)| *at == start).count(), 20);
        let elapsed = admissions.last().unwrap().0 - start;
        let per_second = 1_200.0 / elapsed.as_secs_f64();
        assert!((1.9..=2.1).contains(&per_second), "{per_second} requests/s over {elapsed:?}");
        // Steady state: every admitted window of 60 s is full.
        let after_warmup = admissions.iter().filter(|(at, _)| *at >= start + WINDOW * 2 && *at < start + WINDOW * 3);
        assert_eq!(after_warmup.count(), 120);
    }

    #[tokio::test]
    async fn throughput_converges_to_the_token_quota() {
        let (limiter, clock) = limiter(Quota { rpm: None, tpm: Some(60_000), tpd: None });
        let start = Clock::now(&*clock);
        let mut tokens = 0;
        while Clock::now(&*clock) < start + WINDOW * 10 {
            let permit = limiter.acquire(1_000).await.unwrap();
            tokens += 1_000;
            limiter.settle(permit, 1_000).await;
        }
        // 1 000 tokens/s plus the initial burst and the last request.
        assert!((600_000..=612_000).contains(&tokens), "{tokens}");
    }

    #[tokio::test]
    async fn refunds_let_more_requests_through() {
        let quota = Quota { rpm: None, tpm: Some(60_000), tpd: None };
        let mut admitted = Vec::new();
        for used in [5_000, 500] {
            let (limiter, clock) = limiter(quota);
            let start = Clock::now(&*clock);
            let mut count = 0;
            while Clock::now(&*clock) < start + WINDOW * 5 {
                let permit = limiter.acquire(5_000).await.unwrap();
                count += 1;
                limiter.settle(permit, used).await;
            }
            admitted.push(count);
        }
        // Using a tenth of the reservation lets (nearly) ten times as many through.
        assert!(admitted[1] > admitted[0] * 8, "{admitted:?}");
    }

    #[tokio::test]
    async fn a_refund_wakes_the_waiting_request() {
        // Time stands still: only the refund can let the second request through.
        let still = Arc::new(StillClock(Instant::now()));
        let limiter = Arc::new(GcraLimiter::with_clock(Quota { rpm: None, tpm: Some(6_000), tpd: None }, still));
        let first = limiter.acquire(1_000).await.unwrap();
        let waiter = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire(1_000).await.unwrap() }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished(), "the second request must wait for tokens");
        limiter.settle(first, 0).await;
        let second = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert_eq!(second.reserved, 1_000);
    }

    /// A clock that never moves; its sleeps never end.
    struct StillClock(Instant);

    #[async_trait]
    impl Clock for StillClock {
        fn now(&self) -> Instant {
            self.0
        }
        async fn sleep_until(&self, _deadline: Instant) {
            std::future::pending::<()>().await;
        }
    }

    #[tokio::test]
    async fn requests_larger_than_the_quota_go_alone() {
        let (limiter, clock) = limiter(Quota { rpm: None, tpm: Some(10_000), tpd: None });
        let start = Clock::now(&*clock);
        let huge = limiter.acquire(25_000).await.unwrap();
        assert_eq!(Clock::now(&*clock), start, "an idle limiter admits it at once");
        limiter.settle(huge, 25_000).await;
        let next = limiter.acquire(100).await.unwrap();
        // The debt (150 s of tokens) is repaid before anything else goes, less the burst.
        let waited = Clock::now(&*clock) - start;
        assert!(waited >= Duration::from_secs(140), "{waited:?}");
        limiter.settle(next, 100).await;
    }

    #[tokio::test]
    async fn absurd_requests_do_not_panic() {
        let (limiter, _clock) = limiter(Quota { rpm: Some(1), tpm: Some(1), tpd: None });
        let permit = limiter.acquire(u64::MAX / 2).await.unwrap();
        limiter.settle(permit, u64::MAX / 4).await;
        let (limiter, _clock) = self::limiter(Quota { rpm: None, tpm: Some(u64::MAX), tpd: None });
        for _ in 0..3 {
            let permit = limiter.acquire(u64::MAX / 2).await.unwrap();
            limiter.settle(permit, u64::MAX).await;
        }
    }

    #[tokio::test]
    async fn requests_larger_than_the_burst_wait_for_a_full_bucket() {
        let (limiter, clock) = limiter(Quota { rpm: None, tpm: Some(6_000), tpd: None });
        let start = Clock::now(&*clock);
        let small = limiter.acquire(600).await.unwrap();
        limiter.settle(small, 600).await;
        // 3 000 > the 1 000-token burst: it waits until the 600 tokens are paid for (6 s).
        let large = limiter.acquire(3_000).await.unwrap();
        assert_eq!(Clock::now(&*clock) - start, Duration::from_secs(6));
        limiter.settle(large, 3_000).await;
    }

    #[tokio::test]
    async fn overruns_are_charged() {
        let (limiter, clock) = limiter(Quota { rpm: None, tpm: Some(6_000), tpd: None });
        let start = Clock::now(&*clock);
        let permit = limiter.acquire(100).await.unwrap();
        limiter.settle(permit, 1_000).await;
        let permit = limiter.acquire(1_000).await.unwrap();
        // 1 000 tokens used, the burst is 1 000: the next 1 000 wait 10 s.
        assert_eq!(Clock::now(&*clock) - start, Duration::from_secs(10));
        limiter.settle(permit, 1_000).await;
    }

    #[tokio::test]
    async fn unlimited_quota_never_waits() {
        let (limiter, clock) = limiter(Quota::unlimited());
        let start = Clock::now(&*clock);
        for _ in 0..10_000 {
            let permit = limiter.acquire(1_000_000).await.unwrap();
            limiter.settle(permit, 1).await;
        }
        assert_eq!(Clock::now(&*clock), start);
        // Zero means unset, not "never".
        let (limiter, _clock) = self::limiter(Quota { rpm: Some(0), tpm: Some(0), tpd: None });
        let permit = limiter.acquire(5).await.unwrap();
        limiter.settle(permit, 5).await;
    }

    #[test]
    fn burst_is_a_share_of_the_quota() {
        let (limiter, _clock) = limiter(Quota { rpm: Some(120), tpm: Some(600_000), tpd: None });
        assert_eq!(limiter.burst(), (Some(20), Some(100_000)));
        let limiter = limiter.with_burst(0.5);
        assert_eq!(limiter.burst(), (Some(60), Some(300_000)));
        let limiter = limiter.with_burst(0.0);
        assert_eq!(limiter.burst(), (Some(1), Some(1)));
    }

    #[test]
    fn failures_consume_what_the_provider_counted() {
        let throttled = LlmError::Throttled { provider: "p".into(), message: "m".into(), retry_after: None };
        let transient = LlmError::Transient { provider: "p".into(), message: "m".into() };
        assert_eq!(consumed_by_failure(&throttled, 70), 0);
        assert_eq!(consumed_by_failure(&transient, 70), 70);
        let gave_up = |attempts, throttles, last: &LlmError| LlmError::GaveUp {
            attempts,
            throttles,
            last: Box::new(last.clone()),
        };
        assert_eq!(consumed_by_failure(&gave_up(5, 5, &throttled), 70), 0);
        assert_eq!(consumed_by_failure(&gave_up(5, 2, &throttled), 70), 70);
        assert_eq!(consumed_by_failure(&gave_up(3, 0, &transient), 70), 70);
    }
}
