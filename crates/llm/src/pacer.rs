//! Pacing with feedback: send at the quota's rate, in small bursts, and treat every throttle as
//! information — with the quota told or not.
//!
//! Providers publish per-minute quotas but enforce them differently: a sliding or fixed minute
//! window lets a whole minute's requests arrive at once; a token bucket ("quantized" limits,
//! OpenAI's documentation says, and other providers' FAQs: requests per second = RPM / 60)
//! throttles a burst far below the minute's total; a cap on requests in flight, other
//! applications on the same account and quota changes make any told number wrong. [`Pacer`]
//! admits every attempt (retries and hedged copies too) through one gate that works under all of
//! them:
//!
//! - **Smooth pacing**: a GCRA on requests and on tokens at `factor × the told quota` (or at a
//!   learned request rate when nothing is told), with a burst of [`PacerConfig::burst_secs`] of
//!   quota (one second by default). A told quota is also enforced as a hard upper bound by the
//!   [`RateLimiter`] below the gate (never more than the quota in any 60 s window).
//! - **Slow start**: until the first throttle the burst doubles every
//!   [`PacerConfig::doubling`] (up to a whole minute), and with nothing told so does the rate.
//!   A provider that takes a minute's quota at once gets it within seconds; one that smooths
//!   throttles the first request over its burst, which comes back at once (a throttle costs a
//!   round trip, an answer a whole generation), and the burst falls back to a second.
//! - **Multiplicative decrease**: a throttle of a paced request lowers the factor (or the learned
//!   rate) by [`PacerConfig::decrease`], at most once per round of requests, never below a share
//!   of what the provider admitted over the last minute — so a burst of throttles from one spent
//!   window does not collapse the rate to nothing. **Additive increase** brings it back towards
//!   the told quota by [`PacerConfig::recovery`] per second without throttles, slowing near the
//!   rate that was throttled and probing past it slowly at first (CUBIC's plateau, RFC 9438), so
//!   that hidden traffic or a smoothing bucket is met rarely rather than every few seconds.
//! - **One probe while throttled**: after a throttle nothing is sent but one probe, at the
//!   provider's `Retry-After` or on a jittered backoff; once the probe has been out for a while
//!   without being throttled (no news is good news: a throttle comes back within a round trip),
//!   the gate opens again at the lowered rate. A long block means the quota is counted in
//!   windows, which do take bursts: slow start begins again.
//! - **A cap on attempts in flight**, learned: a throttle of an attempt sent beside more
//!   attempts than nearly every recent success had (twice, at about the same count, outside slow
//!   start) is a cap's, not a rate's. The gate then holds attempts while that many are out,
//!   lowers no rate for it, and tries one more after a minute of holding without a throttle
//!   (waiting twice as long each time the provider refuses it).
//!
//! The retry layer above sends a throttled call straight back here; the waiting happens in the
//! gate, where it is paced with everything else instead of coming back as a wave.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use tokio::sync::Notify;

use crate::limiter::{
    Clock, GcraState, Permit, Quota, RECORD_WINDOW, RateLimiter, TokioClock, WINDOW, estimate_input_tokens, micros,
};
use crate::{Completion, CompletionRequest, LlmClient, LlmError};

/// How a [`Pacer`] paces and learns. Out-of-range values are brought into range by
/// [`PacerConfig::sanitized`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerConfig {
    /// The burst in seconds of quota outside slow start (default 1 s: what a "quantized" limit
    /// takes at once).
    pub burst_secs: f64,
    /// The largest burst slow start grows to (default 60 s: a whole window).
    pub max_burst_secs: f64,
    /// Slow start doubles the burst (and a learned rate) at most this often, and never faster
    /// than 1.5 round trips of a throttle (so a throttle for the last step arrives before the
    /// next one).
    pub doubling: Duration,
    /// The round trip of a throttle assumed before one has been timed.
    pub round_trip: Duration,
    /// The factor a throttle multiplies the rate by, in `(0, 1)`.
    pub decrease: f64,
    /// The share of the told quota (or of the learned rate) regained per second without throttles.
    pub recovery: f64,
    /// The request rate to start from when no quota is told, per second.
    pub initial_rate: f64,
    /// A block at least this long means a windowed quota: slow start begins again when it ends.
    pub long_block: Duration,
    /// The longest wait between probes while throttled without a `Retry-After`.
    pub max_probe_interval: Duration,
}

impl Default for PacerConfig {
    fn default() -> Self {
        PacerConfig {
            burst_secs: 1.0,
            max_burst_secs: 60.0,
            doubling: Duration::from_millis(100),
            round_trip: Duration::from_millis(150),
            decrease: 0.8,
            recovery: 0.01,
            initial_rate: 4.0,
            long_block: Duration::from_secs(5),
            max_probe_interval: Duration::from_secs(10),
        }
    }
}

impl PacerConfig {
    /// The config with every value in range.
    pub fn sanitized(self) -> Self {
        let positive = |value: f64, default: f64| if value.is_finite() && value > 0.0 { value } else { default };
        let defaults = PacerConfig::default();
        let burst_secs = positive(self.burst_secs, defaults.burst_secs).min(60.0);
        PacerConfig {
            burst_secs,
            max_burst_secs: positive(self.max_burst_secs, defaults.max_burst_secs).clamp(burst_secs, 60.0),
            doubling: self.doubling.max(Duration::from_millis(1)),
            round_trip: self.round_trip,
            decrease: if self.decrease > 0.0 && self.decrease < 1.0 { self.decrease } else { defaults.decrease },
            recovery: if self.recovery.is_finite() { self.recovery.clamp(0.0, 1.0) } else { defaults.recovery },
            initial_rate: positive(self.initial_rate, defaults.initial_rate),
            long_block: self.long_block,
            max_probe_interval: self.max_probe_interval.max(Duration::from_millis(10)),
        }
    }
}

/// A transient error this soon after sending was not processed by the provider (a 5xx at once).
const UNPROCESSED_WITHIN: f64 = 2.0;

/// A learned rate recovers this many times faster than a told factor (nothing caps it but the
/// next throttle).
const UNTOLD_RECOVERY: f64 = 5.0;

/// Once the scout got through, slow start multiplies the burst by this per step: a provider that
/// took an attempt beyond a second's burst counts in windows, and a told quota's limiter keeps
/// the total within it.
pub(crate) const SLOW_START_GROWTH: f64 = 4.0;

/// Slow start grows at most once per this many throttle round trips: a throttle for the last
/// step's extra attempts comes back before the next step.
pub(crate) const GROWTH_ROUND_TRIPS: f64 = 1.5;

/// The lowest share of the told quota (or the lowest learned rate per second) pacing goes down to.
const MIN_FACTOR: f64 = 0.02;
const MIN_RATE: f64 = 0.01;

/// The shortest span the admitted rate is measured over, seconds.
const FLOOR_MIN_WINDOW: f64 = 5.0;

/// The floor of a decrease: this share of what the provider admitted over the last minute.
const FLOOR_SHARE: f64 = 0.95;

/// The first probe interval without a `Retry-After`; it doubles (jittered) up to
/// [`PacerConfig::max_probe_interval`].
const FIRST_PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// A probe out this many throttle round trips without a throttle has got through.
const QUIET_ROUND_TRIPS: f64 = 4.0;
/// Bounds on how long a probe must stay quiet.
const MIN_QUIET: Duration = Duration::from_millis(10);
const MAX_QUIET: Duration = Duration::from_secs(1);

/// A learned cap on attempts in flight grows by one after holding attempts back this long without
/// a throttle (seconds); each grown cap the provider refuses doubles it.
const CAP_PROBE_AFTER: f64 = 60.0;

/// How many successful attempts' in-flight counts are remembered, and how many it takes before
/// a throttle is judged by them.
const SUCCEEDED_BESIDE: usize = 64;
const CAP_EVIDENCE: usize = 8;

/// The smallest cap learned: a bucket that holds one request at a time refuses a second one
/// sent beside the first just as a cap of one would, and is far more common.
const MIN_CAP: u32 = 2;

/// A throttle beside more attempts than all but one in this many successes had is a cap's.
const CAP_RARE: usize = 10;

/// Recovery is at full speed this share of the throttled rate away from it, and never slower
/// than this share of full speed.
const PLATEAU_WIDTH: f64 = 0.2;
const PLATEAU_SLOWEST: f64 = 0.05;

/// Recovery is applied in steps of at most this many seconds, at most this many at a time (a
/// gate idle for longer recovers no further than that: ten minutes).
const RECOVERY_STEP: f64 = 0.5;
const RECOVERY_STEPS: usize = 1200;

/// The shortest wait of the gate, and the shortest probe interval (a `Retry-After` of nothing).
const MIN_WAIT: Duration = Duration::from_micros(1);
const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(5);

/// What the gate knows, in seconds since the pacer's origin.
#[derive(Debug)]
struct State {
    /// The told quota per second: requests and tokens.
    ceiling_requests: Option<f64>,
    ceiling_tokens: Option<f64>,
    /// The share of the told quota paced at.
    factor: f64,
    /// The learned request rate when nothing is told.
    free_rate: f64,
    /// The burst, in seconds of rate.
    burst: f64,
    slow_start: bool,
    /// Whether slow start has let one attempt beyond the burst go (the scout) since it began:
    /// a provider that smooths throttles it, and slow start ends after one throttle.
    scouted: bool,
    /// Whether an attempt waited on the pacing since slow start last grew: growth is earned by
    /// using it (an idle gate learns nothing).
    limited: bool,
    /// The last attempt's reservation, tokens: the scout's size.
    last_reserved: u64,
    /// When slow start last grew the burst or rate.
    grown_at: f64,
    /// GCRA theoretical arrival times.
    tat_requests: f64,
    tat_tokens: f64,
    /// Throttled: only a probe goes.
    blocked: bool,
    blocked_since: f64,
    probe_out: bool,
    next_probe_at: f64,
    probes: u32,
    /// No decrease before this.
    hold_until: f64,
    /// When the last throttle came or recovery was last applied.
    recovered_at: f64,
    /// The factor and learned rate a decrease last started from (0: none yet): recovery slows
    /// near them (see [`plateau`]).
    throttled_factor: f64,
    throttled_rate: f64,
    /// Attempts the provider admitted in the last minute: (admitted at, tokens counted).
    admitted: VecDeque<(f64, u64)>,
    /// Smoothed time from sending to a throttle, seconds.
    throttle_rtt: f64,
    /// The provider's input tokens per estimated input token (smoothed): reservations are
    /// calibrated by the provider's own counts.
    input_scale: f64,
    /// A quota learned from a window that stayed spent: what was admitted in the minute before,
    /// enforced as the told quota is (GCRA with a whole window's burst plus a record of the last
    /// minute), in microseconds since the pacer's origin.
    learned: Option<GcraState>,
    /// When the first attempt was admitted.
    first_admitted: Option<f64>,
    /// Attempts out now, by when they were sent (microseconds since the origin): one out longer
    /// than a probe's quiet time without a throttle was admitted.
    out: std::collections::BTreeMap<u64, u32>,
    /// A cap on attempts in flight, learned from throttles that only more attempts in flight
    /// than ever succeeded explain (see [`Pacer::finish`]); `None` until one came.
    cap: Option<u32>,
    /// When the cap last grew (or was learned), and how long it must hold attempts back
    /// without a throttle before it grows by one (doubling each time a grown cap is refused).
    cap_grown_at: f64,
    cap_probe_after: f64,
    /// Whether the cap held an attempt back since it last grew.
    cap_limited: bool,
    /// A throttle that looked like a cap's, not yet confirmed: (attempts beside it, when).
    cap_candidate: Option<(u32, f64)>,
    /// How many were in flight when recent successful attempts were sent, newest last.
    succeeded_beside: VecDeque<u32>,
}

/// One admitted attempt, to [`Pacer::finish`].
#[derive(Debug)]
#[must_use = "finish the ticket with the attempt's outcome"]
pub struct Ticket {
    permit: Option<Permit>,
    reserved: u64,
    input_estimate: u64,
    sent_at: f64,
    probe: bool,
    /// Whether slow start was on when the attempt was admitted.
    slow_start: bool,
    /// Attempts in flight when it was sent (itself not counted).
    beside: u32,
}

impl Ticket {
    /// Whether this attempt is the probe of a blocked gate.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

/// The gate every attempt passes (see the [module documentation](self)). Share one (in an
/// `Arc`) among all clients that draw on the same quota in this process.
pub struct Pacer {
    config: PacerConfig,
    limiter: Option<Arc<dyn RateLimiter>>,
    clock: Arc<dyn Clock>,
    origin: Instant,
    state: Mutex<State>,
    /// Held by the oldest waiter: FIFO order, one clock watcher.
    turn: tokio::sync::Mutex<()>,
    /// Wakes the oldest waiter when the gate opens or tokens come back.
    changed: Notify,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Pacer")
            .field("factor", &state.factor)
            .field("burst", &state.burst)
            .field("slow_start", &state.slow_start)
            .field("blocked", &state.blocked)
            .finish_non_exhaustive()
    }
}

/// A point-in-time view of a [`Pacer`], for tests, logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerView {
    /// Requests per second paced at (`None`: requests are not paced, only tokens).
    pub request_rate: Option<f64>,
    /// Tokens per second paced at, when a token quota is told.
    pub token_rate: Option<f64>,
    pub burst_secs: f64,
    pub slow_start: bool,
    pub blocked: bool,
}

impl Pacer {
    /// A gate for `quota` (its unknown dimensions learned), with the told part enforced as an
    /// upper bound by `limiter` when given.
    pub fn new(quota: Quota, limiter: Option<Arc<dyn RateLimiter>>, config: PacerConfig) -> Self {
        Pacer::with_clock(quota, limiter, config, Arc::new(TokioClock))
    }

    /// [`Pacer::new`] on `clock`.
    pub fn with_clock(
        quota: Quota,
        limiter: Option<Arc<dyn RateLimiter>>,
        config: PacerConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let config = config.sanitized();
        let per_second = |per_minute: f64| (per_minute > 0.0).then_some(per_minute / 60.0);
        #[allow(clippy::cast_precision_loss)]
        let ceiling_tokens = quota.tpm.and_then(|tpm| per_second(tpm as f64));
        let state = State {
            ceiling_requests: quota.rpm.and_then(|rpm| per_second(f64::from(rpm))),
            ceiling_tokens,
            factor: 1.0,
            free_rate: config.initial_rate,
            burst: config.burst_secs,
            slow_start: true,
            scouted: false,
            limited: false,
            last_reserved: 0,
            grown_at: 0.0,
            tat_requests: 0.0,
            tat_tokens: 0.0,
            blocked: false,
            blocked_since: 0.0,
            probe_out: false,
            next_probe_at: 0.0,
            probes: 0,
            hold_until: 0.0,
            recovered_at: 0.0,
            throttled_factor: 0.0,
            throttled_rate: 0.0,
            admitted: VecDeque::new(),
            throttle_rtt: 0.0,
            input_scale: 1.0,
            learned: None,
            first_admitted: None,
            out: std::collections::BTreeMap::new(),
            cap: None,
            cap_grown_at: 0.0,
            cap_probe_after: CAP_PROBE_AFTER,
            cap_limited: false,
            cap_candidate: None,
            succeeded_beside: VecDeque::new(),
        };
        let origin = clock.now();
        Pacer {
            config,
            limiter,
            clock,
            origin,
            state: Mutex::new(state),
            turn: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> f64 {
        self.clock.now().saturating_duration_since(self.origin).as_secs_f64()
    }

    fn instant(&self, at: f64) -> Instant {
        let at = if at.is_finite() { at.clamp(0.0, 1e9) } else { 1e9 };
        self.origin + Duration::from_secs_f64(at)
    }

    /// What the gate is doing now.
    pub fn view(&self) -> PacerView {
        let mut state = self.lock();
        let now = self.now();
        self.grow(&mut state, now);
        PacerView {
            request_rate: request_rate(&state),
            token_rate: state.ceiling_tokens.map(|c| c * state.factor),
            burst_secs: state.burst,
            slow_start: state.slow_start,
            blocked: state.blocked,
        }
    }

    /// What the pacing would let go now without waiting: the unused part of the burst, in
    /// requests and (with a told token quota) tokens; nothing while throttled. (The told quota's
    /// 60 s limiter below may still hold an attempt back; this is the pacer's own view.)
    /// Read-only: it does not move slow start or recovery on (a scrape must not change pacing).
    pub fn available(&self) -> crate::Available {
        let state = self.lock();
        let now = self.now();
        let left = |tat: f64, rate: f64, tolerance: f64| {
            if state.blocked { 0.0 } else { ((now + tolerance - tat.max(now)) * rate).max(0.0) }
        };
        let requests =
            request_rate(&state).map(|rate| left(state.tat_requests, rate, request_tolerance(&state, rate)).floor());
        let tokens =
            state.ceiling_tokens.map(|ceiling| left(state.tat_tokens, ceiling * state.factor, state.burst).floor());
        crate::Available { requests, tokens }
    }

    /// Waits until an attempt estimated at `input_estimate` input tokens plus `max_tokens` may be
    /// sent. Cancel-safe: a cancelled wait takes nothing.
    pub async fn admit(&self, input_estimate: u64, max_tokens: u64) -> Result<Ticket, LlmError> {
        let scale = self.lock().input_scale;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let input_estimate = (input_estimate as f64 * scale).ceil() as u64;
        let reserved = input_estimate.saturating_add(max_tokens);
        let turn = self.turn.lock().await;
        let (probe, slow_start, sent_at) = loop {
            let deadline = {
                let mut state = self.lock();
                let now = self.now();
                self.grow(&mut state, now);
                match self.wait(&state, now, reserved) {
                    Gate::Go { probe } => {
                        if probe {
                            state.probe_out = true;
                        } else {
                            charge(&mut state, now, reserved);
                        }
                        state.last_reserved = reserved;
                        let at = micros(Duration::from_secs_f64(now));
                        if let Some(learned) = &mut state.learned {
                            // Its permit is not kept: the learned record counts reservations.
                            let _ = learned.admit(at, reserved);
                        }
                        break (probe, state.slow_start, now);
                    }
                    // At least a microsecond on: a deadline that rounds to now would spin.
                    Gate::Until(at) => {
                        state.limited = true;
                        if self.scout(&mut state, now) {
                            continue;
                        }
                        Some(self.instant(at).max(self.clock.now() + MIN_WAIT))
                    }
                    Gate::Notified => None,
                    Gate::Capped => {
                        state.cap_limited = true;
                        None
                    }
                }
            };
            let changed = self.changed.notified();
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        () = self.clock.sleep_until(deadline) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        };
        // The told quota's hard bound, in the same FIFO turn.
        let permit = match &self.limiter {
            Some(limiter) => match limiter.acquire(reserved).await {
                Ok(permit) => Some(permit),
                Err(error) => {
                    let mut state = self.lock();
                    if probe {
                        state.probe_out = false;
                    }
                    return Err(error);
                }
            },
            None => None,
        };
        // Timed from when it went: the limiter may have held it. Counted out before the next
        // attempt's turn, so that a cap on attempts in flight holds.
        let sent_at = self.now().max(sent_at);
        let beside = {
            let mut state = self.lock();
            let beside = in_flight(&state);
            *state.out.entry(micros(Duration::from_secs_f64(sent_at))).or_insert(0) += 1;
            beside
        };
        drop(turn);
        Ok(Ticket { permit, reserved, input_estimate, sent_at, probe, slow_start, beside })
    }

    /// The probe has been out for `quiet` without a throttle: the provider took it.
    pub fn probe_passed(&self) {
        let mut state = self.lock();
        let now = self.now();
        self.open(&mut state, now);
    }

    /// How long a probe must stay quiet before the gate opens.
    pub fn quiet(&self) -> Duration {
        quiet(&self.lock())
    }

    /// The attempt of `ticket` ended with `result`: settle the told limiter and learn.
    pub async fn finish(&self, ticket: Ticket, result: &Result<Completion, LlmError>) {
        let now = self.now();
        // A 5xx that came back at once was not processed; a timeout may have been.
        let unprocessed =
            matches!(result, Err(LlmError::Transient { .. })) && now - ticket.sent_at < UNPROCESSED_WITHIN;
        let used = match result {
            Ok(completion) => completion.usage.total(),
            Err(LlmError::Transient { .. }) if !unprocessed => ticket.input_estimate,
            Err(_) => 0,
        };
        {
            let mut state = self.lock();
            if let Ok(completion) = result
                && ticket.input_estimate > 0
                && completion.usage.input_tokens > 0
            {
                #[allow(clippy::cast_precision_loss)]
                let observed =
                    completion.usage.input_tokens as f64 / (ticket.input_estimate as f64 / state.input_scale);
                let scale = state.input_scale + (observed.clamp(0.25, 4.0) - state.input_scale) * 0.2;
                state.input_scale = scale.clamp(0.5, 3.0);
            }
            state.first_admitted.get_or_insert(ticket.sent_at);
            release_out(&mut state, ticket.sent_at);
            if ticket.probe {
                state.probe_out = false;
            }
            match result {
                Err(LlmError::Throttled { .. }) if self.capped(&mut state, now, &ticket) => {
                    // Too many in flight, not too fast: nothing to learn about the rate, and the
                    // attempt goes back to wait for one of them to end.
                    if !ticket.probe {
                        refund(&mut state, now, ticket.reserved);
                    }
                }
                Err(LlmError::Throttled { retry_after, .. }) => {
                    self.throttled(&mut state, now, &ticket, *retry_after);
                    if !ticket.probe {
                        refund(&mut state, now, ticket.reserved);
                    }
                }
                Err(LlmError::Rejected { .. } | LlmError::Config { .. }) => {
                    if !ticket.probe {
                        refund(&mut state, now, ticket.reserved);
                    }
                }
                _ => {
                    if !ticket.probe {
                        refund(&mut state, now, ticket.reserved.saturating_sub(used));
                    }
                    if result.is_ok() {
                        if state.succeeded_beside.len() == SUCCEEDED_BESIDE {
                            state.succeeded_beside.pop_front();
                        }
                        state.succeeded_beside.push_back(ticket.beside);
                    }
                    state.admitted.push_back((ticket.sent_at, used.max(1)));
                    if ticket.probe {
                        self.open(&mut state, now);
                    }
                }
            }
        }
        self.changed.notify_one();
        if let (Some(limiter), Some(permit)) = (&self.limiter, ticket.permit) {
            if unprocessed {
                limiter.forget(permit).await;
            } else if matches!(result, Err(LlmError::Throttled { .. })) {
                limiter.throttled(permit).await;
            } else {
                limiter.settle(permit, used).await;
            }
        }
    }

    /// Slow start's growth and additive increase, up to `now`.
    fn grow(&self, state: &mut State, now: f64) {
        if let Some(cap) = state.cap
            && state.cap_limited
            && now - state.cap_grown_at >= state.cap_probe_after
        {
            // Held attempts back for a while without a throttle: perhaps the provider allows more.
            state.cap = Some(cap.saturating_add(1));
            state.cap_grown_at = now;
            state.cap_limited = false;
        }
        let doubling = self.growth_period(state);
        if state.slow_start {
            let steps = ((now - state.grown_at) / doubling).floor();
            if steps >= 1.0 {
                state.grown_at += steps * doubling;
                // One step per period in which the pacing held an attempt back (the last step's
                // allowance was used, and no throttle came for it).
                if std::mem::take(&mut state.limited) {
                    if state.ceiling_requests.is_none() && state.ceiling_tokens.is_none() {
                        state.free_rate = (state.free_rate * 2.0).min(1e6);
                    } else if state.scouted {
                        state.burst = (state.burst * SLOW_START_GROWTH).min(self.config.max_burst_secs);
                    }
                }
            }
        } else if !state.blocked && now > state.recovered_at {
            // In steps of at most RECOVERY_STEP, so that the plateau's speed follows the value
            // however rarely this runs (an idle gate grows only when asked).
            let mut left = now - state.recovered_at;
            for _ in 0..RECOVERY_STEPS {
                if left <= 0.0 || state.factor >= 1.0 && state.ceiling_requests.or(state.ceiling_tokens).is_some() {
                    break;
                }
                let step = left.min(RECOVERY_STEP);
                let gained = self.config.recovery * step;
                state.factor = (state.factor + gained * plateau(state.factor, state.throttled_factor)).min(1.0);
                state.free_rate *= 1.0 + gained * UNTOLD_RECOVERY * plateau(state.free_rate, state.throttled_rate);
                left -= step;
            }
            state.recovered_at = now;
        }
    }

    /// Whether an attempt reserving `reserved` tokens may go at `now`.
    fn wait(&self, state: &State, now: f64, reserved: u64) -> Gate {
        if state.cap.is_some_and(|cap| in_flight(state) >= cap) {
            // One of them ending wakes the gate (finish notifies).
            return Gate::Capped;
        }
        if state.blocked {
            if state.probe_out {
                return Gate::Notified;
            }
            return if now >= state.next_probe_at {
                Gate::Go { probe: true }
            } else {
                Gate::Until(state.next_probe_at)
            };
        }
        let mut ready = now;
        if let Some(rate) = request_rate(state) {
            // max(TAT, now) + T − now ≤ τ ⇔ now ≥ TAT + T − τ, with τ = burst seconds.
            ready = ready.max(state.tat_requests + 1.0 / rate - request_tolerance(state, rate));
        }
        if let Some(ceiling) = state.ceiling_tokens {
            let rate = ceiling * state.factor;
            #[allow(clippy::cast_precision_loss)]
            let cost = reserved as f64 / rate;
            let tolerance = state.burst;
            // Larger than a burst: wait for a full bucket, then go alone.
            ready = ready.max(if cost <= tolerance { state.tat_tokens + cost - tolerance } else { state.tat_tokens });
        }
        if let Some(learned) = &state.learned {
            let at = micros(Duration::from_secs_f64(now));
            let mut learned = learned.clone();
            learned.prune(at);
            if let Some(wait) = learned.wait(at, reserved) {
                #[allow(clippy::cast_precision_loss)]
                let wait = wait as f64 / 1e6;
                ready = ready.max(now + wait);
            }
        }
        if ready <= now {
            Gate::Go { probe: false }
        } else if state.slow_start {
            // The burst (or rate) grows before then.
            Gate::Until(ready.min(state.grown_at + self.growth_period(state)))
        } else {
            Gate::Until(ready)
        }
    }

    /// Whether a throttle of `ticket` says the provider caps attempts in flight: more were out
    /// when it was sent than beside nearly every recent success. Then the cap is learned (or, for a
    /// grown cap the provider refused, taken back with a longer wait before the next growth),
    /// and it says nothing about the rate. A rate limit throttles with as many in flight as it
    /// admits at other times, so it does not look like this.
    fn capped(&self, state: &mut State, now: f64, ticket: &Ticket) -> bool {
        // Judged only once enough attempts succeeded to say how many in flight the provider takes.
        if ticket.probe || ticket.beside == 0 || state.succeeded_beside.len() < CAP_EVIDENCE {
            return false;
        }
        // A rate limit throttles attempts sent beside as many others as it admits at other
        // times; a cap on attempts in flight only those beside more than nearly all successes.
        // (Not more than all: an attempt sent beside N may arrive after one of them ended.)
        let as_crowded = state.succeeded_beside.iter().filter(|beside| **beside >= ticket.beside).count();
        if as_crowded * CAP_RARE > state.succeeded_beside.len() {
            return false;
        }
        match state.cap {
            Some(cap) => {
                if ticket.beside + 1 == cap {
                    // The cap grew by one and the provider refused the extra attempt: wait
                    // longer before the next try.
                    state.cap_probe_after = (state.cap_probe_after * 2.0).min(3600.0);
                }
                if ticket.beside < cap {
                    state.cap = Some(ticket.beside);
                    state.cap_grown_at = now;
                    state.cap_limited = false;
                }
                true
            }
            // A cap is learned from a second such throttle at about the same count (at least
            // MIN_CAP), outside slow start (whose bursts explore a window and look alike once):
            // one alone may be a window or a bucket met at a crowded moment, and is taken as a
            // rate's.
            None => match state.cap_candidate {
                Some((beside, at))
                    if !ticket.slow_start
                        && beside.min(ticket.beside) >= MIN_CAP
                        && beside.abs_diff(ticket.beside) <= 1
                        && now - at < 60.0 =>
                {
                    let cap = beside.min(ticket.beside);
                    tracing::debug!(cap, "a cap on attempts in flight learned");
                    state.cap = Some(cap);
                    state.cap_grown_at = now;
                    state.cap_limited = false;
                    true
                }
                _ => {
                    if !ticket.slow_start {
                        state.cap_candidate = Some((ticket.beside, now));
                    }
                    false
                }
            },
        }
    }

    /// A throttle: block, decrease (once per round), leave slow start.
    fn throttled(&self, state: &mut State, now: f64, ticket: &Ticket, retry_after: Option<Duration>) {
        let rtt = (now - ticket.sent_at).max(0.0);
        state.throttle_rtt =
            if state.throttle_rtt == 0.0 { rtt } else { state.throttle_rtt + (rtt - state.throttle_rtt) * 0.2 };
        prune(state, now);
        if !ticket.probe {
            if ticket.slow_start && state.slow_start {
                // The burst was too large; the rate was never the problem when it is told.
                state.slow_start = false;
                state.burst = self.config.burst_secs;
                if state.ceiling_requests.is_none() && state.ceiling_tokens.is_none() {
                    let recent = state.admitted.iter().filter(|(at, _)| *at > now - 1.0).count();
                    #[allow(clippy::cast_precision_loss)]
                    let recent = recent as f64;
                    state.free_rate = (recent.max(state.free_rate / 4.0) * self.config.decrease).max(MIN_RATE);
                }
                state.hold_until = now + self.round(state);
            } else if now >= state.hold_until {
                state.slow_start = false;
                state.burst = self.config.burst_secs;
                // Where it was throttled: recovery slows down as it comes back there.
                state.throttled_factor = state.factor;
                state.throttled_rate = state.free_rate;
                let floor = self.floor(state, now);
                state.factor = (state.factor * self.config.decrease).max(floor.0).min(state.factor).max(MIN_FACTOR);
                state.free_rate =
                    (state.free_rate * self.config.decrease).max(floor.1).min(state.free_rate).max(MIN_RATE);
                state.hold_until = now + self.round(state);
                tracing::debug!(factor = state.factor, rate = ?request_rate(state), "throttled: pacing lowered");
            }
        }
        let newly_blocked = !state.blocked;
        if newly_blocked {
            state.blocked = true;
            state.blocked_since = now;
            state.probes = 0;
        }
        state.recovered_at = now;
        if !newly_blocked && !ticket.probe && retry_after.is_none() {
            // It was out when the gate closed: no news, and no step up the probe ladder.
            return;
        }
        let interval = match retry_after {
            Some(hint) => hint.max(MIN_PROBE_INTERVAL).as_secs_f64(),
            None => {
                let ceiling = (FIRST_PROBE_INTERVAL.as_secs_f64()
                    * 2f64.powi(i32::try_from(state.probes).unwrap_or(30)))
                .min(self.config.max_probe_interval.as_secs_f64());
                rand::rng().random_range(ceiling / 2.0..=ceiling)
            }
        };
        state.probes = state.probes.saturating_add(1);
        let mut next = now + interval;
        if retry_after.is_none()
            && let Some((oldest, _)) = state.admitted.front()
        {
            // A minute window frees its first slot when the oldest admission in it leaves: a
            // probe then, however long the backoff has grown.
            let frees = oldest + WINDOW.as_secs_f64() + state.throttle_rtt;
            if frees > now {
                next = next.min(frees.max(now + MIN_PROBE_INTERVAL.as_secs_f64()));
            }
        }
        state.next_probe_at = state.next_probe_at.max(next);
    }

    /// The gate opens after a probe got through.
    fn open(&self, state: &mut State, now: f64) {
        if !state.blocked {
            return;
        }
        state.blocked = false;
        let blocked_for = now - state.blocked_since;
        if blocked_for >= self.config.long_block.as_secs_f64() {
            // A window that stayed spent this long is counted per window: it takes bursts, and
            // what it admitted in the minute before it was spent is its quota.
            state.slow_start = true;
            state.scouted = false;
            state.limited = false;
            state.grown_at = now;
            state.burst = self.config.burst_secs;
            let since = state.blocked_since - WINDOW.as_secs_f64();
            let requests = state.admitted.iter().filter(|(at, _)| *at > since && *at <= state.blocked_since).count();
            if requests > 0 && self.limiter.is_none() {
                // Requests only: a token-bound window shows as fewer requests of the same size.
                let quota = Quota { rpm: u32::try_from(requests).ok(), tpm: None, tpd: None };
                // The minute's admissions go into the record, replayed from the first of them.
                let recent: Vec<(f64, u64)> =
                    state.admitted.iter().filter(|(at, _)| *at > now - WINDOW.as_secs_f64()).copied().collect();
                let start = recent.first().map_or(now, |(at, _)| *at);
                let mut learned = GcraState::new(
                    quota,
                    1.0,
                    micros(WINDOW),
                    micros(RECORD_WINDOW),
                    micros(Duration::from_secs_f64(start)),
                );
                for (admitted_at, tokens) in recent {
                    let _ = learned.admit(micros(Duration::from_secs_f64(admitted_at)), tokens);
                }
                tracing::debug!(requests, "a window stayed spent: its quota learned");
                state.learned = Some(learned);
            }
        }
        // Nothing was sent while blocked: the pacing starts afresh, without a saved-up burst.
        state.tat_requests = state.tat_requests.max(now);
        state.tat_tokens = state.tat_tokens.max(now);
        state.recovered_at = now;
        self.changed.notify_one();
    }

    /// The first time slow start holds an attempt back with a quota told, it lets it go anyway:
    /// the scout, one attempt beyond a burst of [`PacerConfig::burst_secs`]. A provider that
    /// smooths throttles it within a round trip, and slow start ends there; one that counts in
    /// windows takes it, and slow start grows the burst from the next step on.
    fn scout(&self, state: &mut State, now: f64) -> bool {
        let told = state.ceiling_requests.is_some() || state.ceiling_tokens.is_some();
        if !told || !state.slow_start || state.scouted {
            return false;
        }
        state.scouted = true;
        state.limited = false;
        state.burst = (state.burst + self.scout_secs(state)).min(self.config.max_burst_secs);
        state.grown_at = now;
        true
    }

    /// The burst, in seconds, that lets one more attempt go than the pacing would: the scout.
    fn scout_secs(&self, state: &State) -> f64 {
        let by_requests = request_rate(state).map_or(0.0, |rate| 1.0 / rate);
        #[allow(clippy::cast_precision_loss)]
        let by_tokens =
            state.ceiling_tokens.map_or(0.0, |ceiling| state.last_reserved as f64 / (ceiling * state.factor));
        by_requests.max(by_tokens)
    }

    /// How often slow start grows: [`PacerConfig::doubling`], at least [`GROWTH_ROUND_TRIPS`]
    /// throttle round trips.
    fn growth_period(&self, state: &State) -> f64 {
        let round_trip =
            if state.throttle_rtt > 0.0 { state.throttle_rtt } else { self.config.round_trip.as_secs_f64() };
        self.config.doubling.as_secs_f64().max(GROWTH_ROUND_TRIPS * round_trip)
    }

    /// One round of requests at the current rate: the least time between two decreases.
    fn round(&self, state: &State) -> f64 {
        let rate = request_rate(state).unwrap_or(1.0);
        (2.0 / rate).clamp(0.5, 10.0).max(state.throttle_rtt * 2.0)
    }

    /// The floor of a decrease: a share of what the provider admitted over the last minute, as
    /// (a factor of the told quota, a request rate).
    fn floor(&self, state: &State, now: f64) -> (f64, f64) {
        let (requests, tokens) = self.admitted_rate(state, now);
        let by_requests = state.ceiling_requests.map_or(0.0, |c| requests / c);
        let by_tokens = state.ceiling_tokens.map_or(0.0, |c| tokens / c);
        (FLOOR_SHARE * by_requests.max(by_tokens), FLOOR_SHARE * requests)
    }

    /// What the provider admitted over the last minute (or the run so far, at least
    /// [`FLOOR_MIN_WINDOW`] of it: early throttles from one spent window must not collapse the
    /// rate), per second: requests and tokens. Attempts still out count once they have been out
    /// longer than a throttle would take to come back.
    fn admitted_rate(&self, state: &State, now: f64) -> (f64, f64) {
        let first = state.first_admitted.or_else(|| state.out.keys().next().map(|at| *at as f64 / 1e6));
        let elapsed = first.map_or(0.0, |first| now - first);
        let window = elapsed.clamp(FLOOR_MIN_WINDOW, WINDOW.as_secs_f64());
        let quiet = quiet(state).as_secs_f64();
        let since = micros(Duration::from_secs_f64((now - WINDOW.as_secs_f64()).max(0.0)));
        let until = micros(Duration::from_secs_f64((now - quiet).max(0.0)));
        let out: u32 = if until > since { state.out.range(since..until).map(|(_, count)| *count).sum() } else { 0 };
        #[allow(clippy::cast_precision_loss)]
        let requests = (state.admitted.len() as f64 + f64::from(out)) / window;
        #[allow(clippy::cast_precision_loss)]
        let tokens = (state.admitted.iter().map(|(_, tokens)| *tokens).sum::<u64>() as f64
            + f64::from(out) * state.last_reserved as f64)
            / window;
        (requests, tokens)
    }
}

enum Gate {
    Go {
        probe: bool,
    },
    Until(f64),
    Notified,
    /// As many attempts in flight as the learned cap allows.
    Capped,
}

/// How far ahead of now the requests' GCRA may run: the burst, and at least one request.
fn request_tolerance(state: &State, rate: f64) -> f64 {
    state.burst.max(1.0 / rate)
}

/// The request rate the gate paces at: the told one scaled, or the learned one when nothing is
/// told; `None` when only tokens are told.
fn request_rate(state: &State) -> Option<f64> {
    match (state.ceiling_requests, state.ceiling_tokens) {
        (Some(ceiling), _) => Some((ceiling * state.factor).max(MIN_RATE)),
        (None, Some(_)) => None,
        (None, None) => Some(state.free_rate.max(MIN_RATE)),
    }
}

/// How long a probe must stay quiet before the gate opens: a few throttle round trips.
fn quiet(state: &State) -> Duration {
    Duration::from_secs_f64(state.throttle_rtt * QUIET_ROUND_TRIPS).clamp(MIN_QUIET, MAX_QUIET)
}

fn charge(state: &mut State, now: f64, reserved: u64) {
    if let Some(rate) = request_rate(state) {
        state.tat_requests = state.tat_requests.max(now) + 1.0 / rate;
    }
    if let Some(ceiling) = state.ceiling_tokens {
        #[allow(clippy::cast_precision_loss)]
        let cost = reserved as f64 / (ceiling * state.factor);
        state.tat_tokens = state.tat_tokens.max(now) + cost;
    }
}

/// How fast recovery goes at `value` after a throttle at `throttled`, as a share of its full
/// speed: full far from it, slowest close to it on either side (CUBIC's plateau, RFC 9438): the
/// rate comes back quickly to where it was throttled, lingers there, and probes beyond slowly
/// at first. Full speed before any throttle.
fn plateau(value: f64, throttled: f64) -> f64 {
    if throttled <= 0.0 {
        return 1.0;
    }
    ((value - throttled).abs() / (PLATEAU_WIDTH * throttled)).clamp(PLATEAU_SLOWEST, 1.0)
}

/// Attempts out now.
fn in_flight(state: &State) -> u32 {
    state.out.values().sum()
}

/// The attempt sent at `sent_at` is no longer out.
fn release_out(state: &mut State, sent_at: f64) {
    let key = micros(Duration::from_secs_f64(sent_at));
    if let Some(count) = state.out.get_mut(&key) {
        *count -= 1;
        if *count == 0 {
            state.out.remove(&key);
        }
    }
}

fn refund(state: &mut State, now: f64, tokens: u64) {
    if let Some(ceiling) = state.ceiling_tokens
        && state.tat_tokens > now
    {
        #[allow(clippy::cast_precision_loss)]
        let cost = tokens as f64 / (ceiling * state.factor);
        state.tat_tokens = (state.tat_tokens - cost).max(now);
    }
}

fn prune(state: &mut State, now: f64) {
    let window = WINDOW.as_secs_f64();
    while state.admitted.front().is_some_and(|(at, _)| *at <= now - window) {
        state.admitted.pop_front();
    }
}

/// An [`LlmClient`] whose every call passes a [`Pacer`] first and tells it how the call went.
pub struct Paced<C> {
    inner: C,
    pacer: Arc<Pacer>,
}

impl<C: LlmClient> Paced<C> {
    /// Wraps `inner`; `pacer` may be shared with other clients on the same quota.
    pub fn new(inner: C, pacer: Arc<Pacer>) -> Self {
        Paced { inner, pacer }
    }

    /// The gate.
    pub fn pacer(&self) -> &Arc<Pacer> {
        &self.pacer
    }
}

impl<C> std::fmt::Debug for Paced<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paced").field("pacer", &self.pacer).finish_non_exhaustive()
    }
}

/// Gives the probe role and the place in flight back if a call is dropped before it finished
/// (a hedge that lost).
struct Outstanding<'a> {
    pacer: &'a Pacer,
    probe: bool,
    sent_at: f64,
    /// Still to be given back (not finished).
    armed: bool,
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut state = self.pacer.lock();
            release_out(&mut state, self.sent_at);
            if self.probe {
                state.probe_out = false;
            }
            drop(state);
            self.pacer.changed.notify_one();
        }
    }
}

#[async_trait]
impl<C: LlmClient> LlmClient for Paced<C> {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        let ticket = self.pacer.admit(estimate_input_tokens(request), u64::from(request.max_tokens)).await?;
        crate::retry::departed();
        let mut outstanding =
            Outstanding { pacer: &self.pacer, probe: ticket.is_probe(), sent_at: ticket.sent_at, armed: true };
        let call = self.inner.complete(request);
        let result = if ticket.is_probe() {
            tokio::pin!(call);
            let quiet = self.pacer.quiet();
            tokio::select! {
                result = &mut call => result,
                () = self.pacer.clock.sleep_until(self.pacer.clock.now() + quiet) => {
                    self.pacer.probe_passed();
                    call.await
                }
            }
        } else {
            call.await
        };
        outstanding.armed = false;
        self.pacer.finish(ticket, &result).await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::ManualClock;

    fn ticket(beside: u32, slow_start: bool) -> Ticket {
        Ticket { permit: None, reserved: 10, input_estimate: 5, sent_at: 0.0, probe: false, slow_start, beside }
    }

    #[test]
    fn a_cap_on_attempts_in_flight_is_learned_from_repeated_crowded_throttles_only() {
        let quota = Quota { rpm: Some(600), tpm: None, tpd: None };
        let pacer = Pacer::with_clock(quota, None, PacerConfig::default(), Arc::new(ManualClock::new()));
        let mut state = pacer.lock();
        assert!(!pacer.capped(&mut state, 1.0, &ticket(3, false)), "no successes to compare with yet");
        state.succeeded_beside.extend([0, 1, 1, 0, 1, 0, 1, 1, 0, 1]);
        assert!(!pacer.capped(&mut state, 1.0, &ticket(1, false)), "as crowded as successes often are: a rate's");
        assert!(!pacer.capped(&mut state, 1.2, &ticket(2, true)), "in slow start: a window's burst");
        assert!(!pacer.capped(&mut state, 1.5, &ticket(2, false)), "once: only a candidate");
        assert_eq!(state.cap, None);
        assert!(pacer.capped(&mut state, 2.0, &ticket(2, false)), "twice at that count: a cap");
        assert_eq!(state.cap, Some(2));
        // The gate holds a third attempt while two are out.
        state.out.insert(1, 2);
        assert!(matches!(pacer.wait(&state, 2.0, 10), Gate::Capped));
        state.out.clear();
        assert!(matches!(pacer.wait(&state, 2.0, 10), Gate::Go { .. }));
        // A grown cap the provider refuses is taken back, and the next growth waits longer.
        state.cap = Some(3);
        state.cap_grown_at = 2.5;
        assert!(pacer.capped(&mut state, 3.0, &ticket(2, false)));
        assert_eq!(state.cap, Some(2));
        assert!((state.cap_probe_after - 2.0 * CAP_PROBE_AFTER).abs() < 1e-9);
    }

    #[test]
    fn recovery_slows_near_where_it_was_throttled_on_both_sides() {
        assert!((plateau(0.5, 0.0) - 1.0).abs() < 1e-12, "full speed before any throttle");
        assert!((plateau(0.4, 0.6) - 1.0).abs() < 1e-12, "a third below: full speed back");
        assert!((plateau(0.6, 0.6) - PLATEAU_SLOWEST).abs() < 1e-12, "at it: slowest");
        let (below, above) = (plateau(0.57, 0.6), plateau(0.63, 0.6));
        assert!((below - above).abs() < 1e-9 && below < 0.5, "{below} {above}: slow on either side");
        assert!(plateau(0.9, 0.6) > plateau(0.7, 0.6), "probing beyond speeds up with distance");
    }

    #[tokio::test]
    async fn after_a_decrease_the_factor_comes_back_fast_then_lingers_below_the_throttled_one() {
        let quota = Quota { rpm: Some(600), tpm: None, tpd: None };
        let clock = Arc::new(ManualClock::new());
        let pacer = Pacer::with_clock(quota, None, PacerConfig::default(), clock.clone());
        let mut state = pacer.lock();
        state.slow_start = false;
        state.factor = 0.40;
        state.throttled_factor = 0.6;
        state.recovered_at = 0.0;
        pacer.grow(&mut state, 5.0);
        assert!((state.factor - 0.45).abs() < 1e-9, "five seconds at full speed (1 %/s): {}", state.factor);
        // Twenty more seconds: at full speed that would be 0.65; near 0.6 it slows, however
        // the time comes (one call or many).
        pacer.grow(&mut state, 25.0);
        assert!(state.factor < 0.6 && state.factor > 0.55, "{}", state.factor);
    }

    #[test]
    fn a_bucket_that_takes_one_at_a_time_is_not_mistaken_for_a_cap_of_one() {
        let quota = Quota { rpm: None, tpm: Some(120_000), tpd: None };
        let pacer = Pacer::with_clock(quota, None, PacerConfig::default(), Arc::new(ManualClock::new()));
        let mut state = pacer.lock();
        state.succeeded_beside.extend([0; 12]);
        for at in [1.0, 2.0, 3.0] {
            assert!(!pacer.capped(&mut state, at, &ticket(1, false)));
        }
        assert_eq!(state.cap, None);
    }
}
