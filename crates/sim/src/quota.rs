//! The quotas: requests and tokens per minute, and how a provider enforces them.
//!
//! Providers publish per-minute quotas but enforce them in different ways, and a client tuned to
//! one way fails against another. [`Quota`] enforces both dimensions by one of three rules
//! ([`QuotaMode`]):
//!
//! - **a sliding 60 s window** ([`SlidingWindow`], the default): a request is admitted when
//!   fewer than `rpm` requests were admitted in the last 60 seconds and the tokens counted in
//!   that window plus this request's reservation stay within `tpm`. A whole minute's quota may
//!   arrive at once.
//! - **fixed minute windows** ([`FixedWindow`]): counters that reset on the minute (the seed's own
//!   DynamoDB table counts this way), so up to twice the quota can pass around a boundary.
//! - **a token bucket** ([`TokenBucket`]): capacity refilled continuously at `quota / 60` per
//!   second, holding a small burst — how "quantized" limits behave (OpenAI: a per-minute limit
//!   may be enforced per second).
//!
//! Tokens are reserved at admission as input + `maxTokens` (what Bedrock documents) and, by
//! default, settled on completion to the real usage ([`TokenAccounting::Settle`]); a provider may
//! also keep the reservation ([`TokenAccounting::Reservation`]). A [`QuotaRules::schedule`]
//! changes the quota during a run (halved; doubled after an increase), and
//! [`QuotaRules::background`] spends a share of it on traffic the client does not see (another
//! application on the same account). Refused requests count for nothing.
//!
//! Nothing here reads a clock; callers pass `now`, so tests and simulations drive the quotas with
//! made-up instants instead of sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A token bucket for one quota dimension: holds at most `capacity` units, refilled continuously
/// at `per_minute / 60` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    refill_per_second: f64,
    tokens: f64,
    last_refill: Instant,
}

/// Tokens are fractional; this tolerance keeps `1.0 - 1e-12` from counting as "empty".
const EPSILON: f64 = 1e-9;

impl TokenBucket {
    /// A full bucket for `rpm` requests per minute with room for `burst` requests at once.
    ///
    /// `burst` defaults to `max(1, rpm / 6)` (ten seconds' worth of quota) and is raised to 1 when
    /// smaller, so that a positive quota can always admit something. `rpm == 0` makes a bucket
    /// that throttles every request, which is handy for rehearsing the worst case.
    pub fn new(rpm: u32, burst: Option<u32>, now: Instant) -> TokenBucket {
        let capacity = if rpm == 0 { 0.0 } else { f64::from(burst.unwrap_or(rpm / 6).max(1)) };
        TokenBucket::with_capacity(u64::from(rpm), capacity, now)
    }

    /// A full bucket refilled at `per_minute / 60` per second holding `capacity` units (a
    /// positive quota holds at least one).
    pub fn with_capacity(per_minute: u64, capacity: f64, now: Instant) -> TokenBucket {
        #[allow(clippy::cast_precision_loss)] // quotas are far below 2^52
        let per_minute = per_minute as f64;
        let capacity = if per_minute <= 0.0 { 0.0 } else { capacity.max(1.0) };
        TokenBucket { capacity, refill_per_second: per_minute / 60.0, tokens: capacity, last_refill: now }
    }

    /// The most units the bucket admits at once.
    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    /// The units available at `now` (after refilling).
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Takes one unit if there is one (see [`TokenBucket::try_take`]).
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        self.try_take(now, 1)
    }

    /// Takes `amount` units if the bucket holds them; an amount larger than the capacity is
    /// taken from a full bucket, leaving it in debt (it could never run otherwise). Otherwise
    /// returns how long until it would fit (`Duration::MAX` when never); a refusal takes nothing.
    pub fn try_take(&mut self, now: Instant, amount: u64) -> Result<(), Duration> {
        self.refill(now);
        #[allow(clippy::cast_precision_loss)]
        let amount = amount as f64;
        let needed = amount.min(self.capacity);
        if self.capacity >= 1.0 - EPSILON && self.tokens + EPSILON >= needed {
            self.tokens -= amount;
            if self.tokens > -EPSILON && self.tokens < 0.0 {
                self.tokens = 0.0;
            }
            return Ok(());
        }
        if self.refill_per_second <= 0.0 || self.capacity < 1.0 - EPSILON {
            return Err(Duration::MAX);
        }
        let missing = needed - self.tokens;
        Err(Duration::from_secs_f64(missing / self.refill_per_second))
    }

    /// Gives back `amount` units taken earlier (a reservation settled below it), up to the
    /// capacity; a negative amount charges an overrun.
    pub fn give_back(&mut self, now: Instant, amount: f64) {
        self.refill(now);
        self.tokens = (self.tokens + amount).min(self.capacity);
    }

    /// Changes the refill rate and capacity (the quota changed); the units held stay, up to the
    /// new capacity.
    pub fn resize(&mut self, now: Instant, per_minute: u64, capacity: f64) {
        self.refill(now);
        #[allow(clippy::cast_precision_loss)]
        let per_minute = per_minute as f64;
        self.refill_per_second = per_minute / 60.0;
        self.capacity = if per_minute <= 0.0 { 0.0 } else { capacity.max(1.0) };
        self.tokens = self.tokens.min(self.capacity);
    }

    fn refill(&mut self, now: Instant) {
        // An instant earlier than the last refill (callers racing for the lock) adds nothing and
        // must not move the bucket's clock backwards.
        let elapsed = now.saturating_duration_since(self.last_refill);
        if elapsed.is_zero() {
            return;
        }
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.refill_per_second).min(self.capacity);
        self.last_refill = now;
    }
}

/// Counters that reset on the minute: at most `limit` units per fixed window.
#[derive(Debug, Clone)]
pub struct FixedWindow {
    origin: Instant,
    /// The window index `used` counts for.
    index: u64,
    used: u64,
}

impl FixedWindow {
    /// Windows of [`WINDOW`] starting `phase` before `origin` (so the first window ends
    /// `WINDOW - phase` after it: a run rarely starts on the minute).
    pub fn new(origin: Instant, phase: Duration) -> FixedWindow {
        let phase = phase.min(WINDOW.saturating_sub(Duration::from_nanos(1)));
        let origin = origin.checked_sub(phase).unwrap_or(origin);
        FixedWindow { origin, index: 0, used: 0 }
    }

    /// The window `now` falls in.
    pub fn index_at(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        u64::try_from(since.as_nanos() / WINDOW.as_nanos()).unwrap_or(u64::MAX)
    }

    fn roll(&mut self, now: Instant) -> u64 {
        let index = self.index_at(now);
        if index > self.index {
            self.index = index;
            self.used = 0;
        }
        self.index
    }

    /// Takes `amount` if this window has room under `limit`; otherwise how long until the next
    /// window (`Duration::MAX` when `amount` exceeds any window).
    pub fn try_take(&mut self, now: Instant, amount: u64, limit: u64) -> Result<u64, Duration> {
        let index = self.roll(now);
        if self.used.saturating_add(amount) <= limit {
            self.used += amount;
            return Ok(index);
        }
        if amount > limit {
            return Err(Duration::MAX);
        }
        let next = self.origin + WINDOW * u32::try_from(index + 1).unwrap_or(u32::MAX);
        Err(next.saturating_duration_since(now).max(Duration::from_millis(1)))
    }

    /// Whether `amount` would fit now, without taking it.
    fn fits(&mut self, now: Instant, amount: u64, limit: u64) -> Result<(), Duration> {
        self.roll(now);
        let used = self.used;
        let result = self.try_take(now, amount, limit).map(|_| ());
        if result.is_ok() {
            self.used = used;
        }
        result
    }

    /// Replaces `reserved` taken in window `index` by `actual`, if that window is still open.
    pub fn settle(&mut self, now: Instant, index: u64, reserved: u64, actual: u64) {
        if self.roll(now) == index {
            self.used = self.used.saturating_sub(reserved).saturating_add(actual);
        }
    }
}

/// The length of the quota window: Bedrock's quotas are per minute.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How the quotas are enforced (requests and tokens alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuotaMode {
    /// At most `rpm` requests and `tpm` tokens in any 60 s window ([`SlidingWindow`]).
    SlidingWindow,
    /// At most `rpm` requests and `tpm` tokens per minute on the clock ([`FixedWindow`]).
    FixedWindow,
    /// Buckets refilled continuously at `quota / 60` per second ([`TokenBucket`]), holding
    /// [`QuotaRules::burst`] requests (or [`QuotaRules::burst_secs`] of the quota).
    TokenBucket,
}

/// What a provider counts against the tokens-per-minute quota for an answered request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenAccounting {
    /// The reservation (input + `maxTokens`) until the answer, then the real input + output.
    #[default]
    Settle,
    /// The reservation, for good: unused `maxTokens` are never given back.
    Reservation,
}

/// From `at_secs` into the run on, the quota is `factor` × the configured one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuotaChange {
    pub at_secs: f64,
    pub factor: f64,
}

/// How a provider enforces its quotas, beyond the numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotaRules {
    pub mode: QuotaMode,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    /// The token bucket's request capacity (default: [`QuotaRules::burst_secs`] of the quota,
    /// else `rpm / 6`).
    pub burst: Option<u32>,
    /// The token buckets' capacity in seconds of quota, for requests (unless `burst` is set) and
    /// tokens (default 10 s).
    pub burst_secs: Option<f64>,
    /// Where the first fixed window starts before the run (fixed windows only).
    pub fixed_phase_secs: f64,
    pub accounting: TokenAccounting,
    /// Quota changes during the run, in time order.
    pub schedule: Vec<QuotaChange>,
    /// The share (`0..1`) of both quotas used by traffic the client does not see: requests of
    /// `tpm / rpm` tokens each (1,000 without an `rpm`) at a steady rate, already running for a
    /// minute when the run starts; refused ones are dropped.
    pub background: f64,
}

impl Default for QuotaRules {
    fn default() -> Self {
        QuotaRules {
            mode: QuotaMode::SlidingWindow,
            rpm: None,
            tpm: None,
            burst: None,
            burst_secs: None,
            fixed_phase_secs: 0.0,
            accounting: TokenAccounting::Settle,
            schedule: Vec::new(),
            background: 0.0,
        }
    }
}

impl QuotaRules {
    /// The factor the schedule applies at `since` into the run.
    pub fn factor_at(&self, since: Duration) -> f64 {
        let secs = since.as_secs_f64();
        self.schedule.iter().take_while(|change| change.at_secs <= secs).last().map_or(1.0, |change| change.factor)
    }

    /// The quotas in force at `since` into the run: `(rpm, tpm)`.
    pub fn limits_at(&self, since: Duration) -> (Option<u64>, Option<u64>) {
        let factor = self.factor_at(since).max(0.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let scale = |quota: u64| (quota as f64 * factor).round() as u64;
        (self.rpm.map(|rpm| scale(u64::from(rpm))), self.tpm.map(scale))
    }

    /// The bucket capacities for quotas `(rpm, tpm)`.
    fn capacities(&self, rpm: Option<u64>, tpm: Option<u64>) -> (f64, f64) {
        let secs = self.burst_secs.unwrap_or(10.0).max(0.0);
        #[allow(clippy::cast_precision_loss)]
        let share = |quota: u64| quota as f64 * secs / 60.0;
        let requests = match (self.burst, self.burst_secs) {
            (Some(burst), _) => f64::from(burst),
            (None, Some(_)) => rpm.map_or(0.0, share),
            #[allow(clippy::cast_precision_loss)]
            (None, None) => rpm.map_or(0.0, |rpm| (rpm / 6) as f64),
        };
        (requests, tpm.map_or(0.0, share))
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

/// Why a request was refused and how long until the quota would admit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub limit: Limit,
    /// `Duration::MAX` when the quota never admits the request (a zero quota, or a reservation
    /// larger than the whole token quota).
    pub retry_after: Duration,
}

/// An admitted request's place in the window, to [`SlidingWindow::settle`] (or
/// [`Quota::settle`]) with its actual usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "settle the admission with the actual token usage"]
pub struct Admission {
    id: u64,
    /// In a [`Quota`]: the entry in the record of the client's own admissions, the tokens
    /// reserved and the fixed window they were counted in.
    observed: u64,
    reserved: u64,
    fixed_index: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u64,
    at: Instant,
    tokens: u64,
}

/// Requests and tokens admitted in the last [`WINDOW`], with the limits they must stay within.
///
/// The window also remembers the most requests and tokens it ever held, so that tests can check
/// that admitted traffic never exceeded the quota.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    rpm: Option<u32>,
    tpm: Option<u64>,
    /// Admitted requests, oldest first (ids and instants both increase).
    entries: VecDeque<Entry>,
    /// The sum of `entries[..].tokens`.
    tokens: u64,
    next_id: u64,
    latest: Option<Instant>,
    max_requests: u64,
    max_tokens: u64,
}

impl SlidingWindow {
    /// A window enforcing `rpm` requests and `tpm` tokens per minute (`None`: no such limit; the
    /// window still counts, for [`SlidingWindow::max_requests_observed`]).
    pub fn new(rpm: Option<u32>, tpm: Option<u64>) -> SlidingWindow {
        SlidingWindow {
            rpm,
            tpm,
            entries: VecDeque::new(),
            tokens: 0,
            next_id: 0,
            latest: None,
            max_requests: 0,
            max_tokens: 0,
        }
    }

    /// Changes the limits (the quota changed); what the window holds stays.
    pub fn set_limits(&mut self, rpm: Option<u32>, tpm: Option<u64>) {
        self.rpm = rpm;
        self.tpm = tpm;
    }

    /// Admits a request reserving `tokens` if both limits allow it at `now`, and records it;
    /// otherwise records nothing and says which limit refused it and for how long.
    pub fn try_admit(&mut self, now: Instant, tokens: u64) -> Result<Admission, Refusal> {
        let now = self.advance(now);
        self.check(now, tokens, true)?;
        Ok(self.record(now, tokens))
    }

    /// Replaces an admission's reservation by the tokens the request actually used. An admission
    /// that has already left the window changes nothing.
    pub fn settle(&mut self, admission: Admission, actual_tokens: u64) {
        if let Ok(index) = self.entries.binary_search_by_key(&admission.id, |entry| entry.id) {
            let entry = &mut self.entries[index];
            self.tokens = self.tokens - entry.tokens + actual_tokens;
            entry.tokens = actual_tokens;
            self.max_tokens = self.max_tokens.max(self.tokens);
        }
    }

    /// Requests admitted in the window ending at `now`.
    pub fn requests(&mut self, now: Instant) -> u64 {
        self.advance(now);
        self.entries.len() as u64
    }

    /// Tokens counted in the window ending at `now` (reservations for unsettled admissions).
    pub fn tokens(&mut self, now: Instant) -> u64 {
        self.advance(now);
        self.tokens
    }

    /// The most requests any 60 s window held.
    pub fn max_requests_observed(&self) -> u64 {
        self.max_requests
    }

    /// The most tokens any 60 s window held (unsettled admissions at their reservation).
    pub fn max_tokens_observed(&self) -> u64 {
        self.max_tokens
    }

    /// Moves the window's end to `now` (never backwards: a caller that read the clock earlier but
    /// got the lock later is treated as arriving now) and drops what fell out of it.
    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.latest.map_or(now, |latest| latest.max(now));
        self.latest = Some(now);
        while let Some(oldest) = self.entries.front() {
            if oldest.at + WINDOW > now {
                break;
            }
            self.tokens -= oldest.tokens;
            self.entries.pop_front();
        }
        now
    }

    /// Whether the limits admit one more request of `tokens` at `now` (already advanced);
    /// `check_requests: false` leaves the request count to someone else (the token bucket).
    fn check(&self, now: Instant, tokens: u64, check_requests: bool) -> Result<(), Refusal> {
        let requests_wait = match self.rpm {
            Some(rpm) if check_requests && self.entries.len() >= rpm as usize => {
                // The request fits once enough of the oldest admissions have left the window.
                let must_leave = self.entries.len() - rpm as usize;
                Some(if rpm == 0 { Duration::MAX } else { self.leaves_at(must_leave, now) })
            }
            _ => None,
        };
        let tokens_wait = match self.tpm {
            Some(tpm) if self.tokens.saturating_add(tokens) > tpm => Some(if tokens > tpm {
                Duration::MAX
            } else {
                let mut remaining = self.tokens;
                let index = self.entries.iter().position(|entry| {
                    remaining -= entry.tokens;
                    remaining + tokens <= tpm
                });
                // `tokens <= tpm`, so the request fits at the latest when everything has left.
                index.map_or(Duration::MAX, |index| self.leaves_at(index, now))
            }),
            _ => None,
        };
        match (requests_wait, tokens_wait) {
            (None, None) => Ok(()),
            (Some(retry_after), None) => Err(Refusal { limit: Limit::Requests, retry_after }),
            (None, Some(retry_after)) => Err(Refusal { limit: Limit::Tokens, retry_after }),
            (Some(requests), Some(tokens)) => {
                Err(Refusal { limit: Limit::Requests, retry_after: requests.max(tokens) })
            }
        }
    }

    /// How long until `entries[index]` leaves the window ending at `now`.
    fn leaves_at(&self, index: usize, now: Instant) -> Duration {
        self.entries.get(index).map_or(Duration::MAX, |entry| (entry.at + WINDOW).saturating_duration_since(now))
    }

    fn record(&mut self, now: Instant, tokens: u64) -> Admission {
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push_back(Entry { id, at: now, tokens });
        self.tokens += tokens;
        self.max_requests = self.max_requests.max(self.entries.len() as u64);
        self.max_tokens = self.max_tokens.max(self.tokens);
        Admission { id, observed: id, reserved: tokens, fixed_index: 0 }
    }
}

/// Both quotas together, enforced by [`QuotaRules`]: the mode, the accounting, the schedule and
/// the background traffic.
///
/// It also keeps a record of the client's own admissions over a sliding 60 s window (background
/// traffic left out), whatever the mode, so that tests can check that a client never exceeded
/// the quota it was told.
#[derive(Debug, Clone)]
pub struct Quota {
    rules: QuotaRules,
    origin: Instant,
    /// Enforces the sliding-window mode (limits follow the schedule); empty otherwise.
    window: SlidingWindow,
    /// The client's own admissions, unlimited: the maxima tests read.
    observed: SlidingWindow,
    fixed: [FixedWindow; 2],
    buckets: Option<[TokenBucket; 2]>,
    /// The limits last applied (to see schedule changes).
    limits: (Option<u64>, Option<u64>),
    /// When the next background request arrives.
    background_at: Option<Instant>,
}

/// How far before the run background traffic is replayed, so the run starts with a window that
/// already holds it.
const BACKGROUND_HEAD_START: Duration = WINDOW;

/// Tokens of one background request when there is no request quota to share them over.
const BACKGROUND_TOKENS: u64 = 1_000;

impl Quota {
    /// The quota for `rpm` requests and `tpm` tokens per minute (`None`: unlimited), enforced by
    /// `mode`; `burst` only matters for [`QuotaMode::TokenBucket`].
    pub fn new(mode: QuotaMode, rpm: Option<u32>, burst: Option<u32>, tpm: Option<u64>, now: Instant) -> Quota {
        Quota::with_rules(QuotaRules { mode, rpm, tpm, burst, ..QuotaRules::default() }, now)
    }

    /// The quota `rules` describe, for a run starting at `now`.
    pub fn with_rules(rules: QuotaRules, now: Instant) -> Quota {
        let limits = rules.limits_at(Duration::ZERO);
        let phase = Duration::from_secs_f64(rules.fixed_phase_secs.clamp(0.0, 59.999));
        let buckets = (rules.mode == QuotaMode::TokenBucket).then(|| {
            let (requests, tokens) = rules.capacities(limits.0, limits.1);
            [
                TokenBucket::with_capacity(limits.0.unwrap_or(0), requests, now),
                TokenBucket::with_capacity(limits.1.unwrap_or(0), tokens, now),
            ]
        });
        let background_at = (rules.background > 0.0 && (rules.rpm.is_some() || rules.tpm.is_some()))
            .then(|| now.checked_sub(BACKGROUND_HEAD_START).unwrap_or(now));
        let mut quota = Quota {
            window: SlidingWindow::new(None, None),
            observed: SlidingWindow::new(None, None),
            fixed: [FixedWindow::new(now, phase), FixedWindow::new(now, phase)],
            buckets,
            limits: (None, None),
            background_at,
            origin: now,
            rules,
        };
        quota.apply_limits(now);
        quota
    }

    /// The rules in force.
    pub fn rules(&self) -> &QuotaRules {
        &self.rules
    }

    /// Admits a request reserving `tokens`, or refuses it and takes nothing.
    pub fn try_admit(&mut self, now: Instant, tokens: u64) -> Result<Admission, Refusal> {
        self.catch_up(now);
        let mut admission = self.admit(now, tokens)?;
        let at = self.observed.advance(now);
        admission.observed = self.observed.record(at, tokens).id;
        Ok(admission)
    }

    /// Settles an admission with the tokens the request actually used (or keeps its reservation,
    /// under [`TokenAccounting::Reservation`]).
    pub fn settle(&mut self, now: Instant, admission: Admission, actual_tokens: u64) {
        let counted = match self.rules.accounting {
            TokenAccounting::Settle => actual_tokens,
            TokenAccounting::Reservation => admission.reserved.max(actual_tokens),
        };
        self.observed.settle(Admission { id: admission.observed, ..admission }, counted);
        match self.rules.mode {
            QuotaMode::SlidingWindow => self.window.settle(admission, counted),
            QuotaMode::FixedWindow => self.fixed[1].settle(now, admission.fixed_index, admission.reserved, counted),
            QuotaMode::TokenBucket => {
                if let Some(buckets) = &mut self.buckets {
                    #[allow(clippy::cast_precision_loss)]
                    let unused = admission.reserved as f64 - counted as f64;
                    buckets[1].give_back(now, unused);
                }
            }
        }
    }

    /// The client's own admissions over a sliding 60 s window (background traffic left out).
    pub fn observed(&self) -> &SlidingWindow {
        &self.observed
    }

    /// The quotas in force at `now`: `(rpm, tpm)`.
    pub fn limits_at(&self, now: Instant) -> (Option<u64>, Option<u64>) {
        self.rules.limits_at(now.saturating_duration_since(self.origin))
    }

    /// Follows the schedule: new limits for the window, the fixed counters and the buckets.
    fn apply_limits(&mut self, now: Instant) {
        let limits = self.limits_at(now);
        if limits == self.limits {
            return;
        }
        self.limits = limits;
        if self.rules.mode == QuotaMode::SlidingWindow {
            let rpm = limits.0.map(|rpm| u32::try_from(rpm).unwrap_or(u32::MAX));
            self.window.set_limits(rpm, limits.1);
        }
        let (requests, tokens) = self.rules.capacities(limits.0, limits.1);
        if let Some(buckets) = &mut self.buckets {
            buckets[0].resize(now, limits.0.unwrap_or(0), requests);
            buckets[1].resize(now, limits.1.unwrap_or(0), tokens);
        }
    }

    /// Replays the background traffic due by `now`.
    fn catch_up(&mut self, now: Instant) {
        while let Some(at) = self.background_at.filter(|at| *at <= now) {
            self.apply_limits(at.max(self.origin));
            let (rpm, tpm) = self.limits_at(at.max(self.origin));
            #[allow(clippy::cast_precision_loss)]
            let (requests_per_sec, tokens) = match (self.rules.rpm, rpm, tpm) {
                (Some(base), Some(rpm), _) => {
                    (rpm as f64 / 60.0, self.rules.tpm.map_or(0, |tpm| tpm / u64::from(base.max(1))))
                }
                (_, _, Some(tpm)) => (tpm as f64 / 60.0 / BACKGROUND_TOKENS as f64, BACKGROUND_TOKENS),
                _ => (0.0, 0),
            };
            let rate = requests_per_sec * self.rules.background.clamp(0.0, 1.0);
            if rate <= 0.0 {
                self.background_at = None;
                break;
            }
            // Refused background requests are dropped: that application is throttled too.
            if let Ok(admission) = self.admit(at, tokens) {
                self.settle(at, admission, tokens);
            }
            self.background_at = Some(at + Duration::from_secs_f64(1.0 / rate));
        }
        self.apply_limits(now);
    }

    /// Admits by the mode's rule, recording nothing of the client's own.
    fn admit(&mut self, now: Instant, tokens: u64) -> Result<Admission, Refusal> {
        let (rpm, tpm) = self.limits;
        let refused = |limit, retry_after| Refusal { limit, retry_after };
        match self.rules.mode {
            QuotaMode::SlidingWindow => {
                let now = self.window.advance(now);
                self.window.check(now, tokens, true)?;
                Ok(self.window.record(now, tokens))
            }
            QuotaMode::FixedWindow => {
                if let Some(tpm) = tpm {
                    self.fixed[1].fits(now, tokens, tpm).map_err(|wait| refused(Limit::Tokens, wait))?;
                }
                if let Some(rpm) = rpm {
                    self.fixed[0].try_take(now, 1, rpm).map_err(|wait| refused(Limit::Requests, wait))?;
                }
                let fixed_index = match tpm {
                    Some(tpm) => self.fixed[1].try_take(now, tokens, tpm).unwrap_or(0),
                    None => self.fixed[1].index_at(now),
                };
                Ok(Admission { id: 0, observed: 0, reserved: tokens, fixed_index })
            }
            QuotaMode::TokenBucket => {
                let Some(buckets) = &mut self.buckets else {
                    return Ok(Admission { id: 0, observed: 0, reserved: tokens, fixed_index: 0 });
                };
                if tpm.is_some() {
                    // Checked first, taken last: a refusal takes nothing from either bucket.
                    let mut probe = buckets[1].clone();
                    probe.try_take(now, tokens).map_err(|wait| refused(Limit::Tokens, wait))?;
                }
                if rpm.is_some() {
                    buckets[0].try_take(now, 1).map_err(|wait| refused(Limit::Requests, wait))?;
                }
                if tpm.is_some() {
                    let _ = buckets[1].try_take(now, tokens);
                }
                Ok(Admission { id: 0, observed: 0, reserved: tokens, fixed_index: 0 })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn starts_full_and_admits_a_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(60, Some(3), t0);
        assert!(bucket.try_acquire(t0).is_ok());
        assert!(bucket.try_acquire(t0).is_ok());
        assert!(bucket.try_acquire(t0).is_ok());
        assert_eq!(bucket.try_acquire(t0), Err(Duration::from_secs(1)));
    }

    #[test]
    fn refills_at_rpm_over_sixty_per_second() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(60, Some(2), t0);
        assert!(bucket.try_acquire(t0).is_ok());
        assert!(bucket.try_acquire(t0).is_ok());
        // Half a second refills half a token: not enough, and the wait says so.
        let wait = bucket.try_acquire(at(t0, 500)).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert!(bucket.try_acquire(at(t0, 1000)).is_ok());
        assert!(bucket.try_acquire(at(t0, 1000)).is_err());
    }

    #[test]
    fn refill_is_capped_at_capacity() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(600, Some(4), t0);
        for _ in 0..4 {
            assert!(bucket.try_acquire(t0).is_ok());
        }
        // An hour later the bucket holds `capacity`, not 36 000 tokens.
        let later = t0 + Duration::from_secs(3600);
        assert!((bucket.available(later) - 4.0).abs() < 1e-9);
        for _ in 0..4 {
            assert!(bucket.try_acquire(later).is_ok());
        }
        assert!(bucket.try_acquire(later).is_err());
    }

    #[test]
    fn sustained_rate_matches_rpm() {
        // rpm 120 = 2 per second; over 10 simulated seconds, polling every 100 ms, the bucket
        // admits the initial burst plus 20 refilled tokens.
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(120, Some(5), t0);
        let mut admitted = 0;
        for step in 0..=100 {
            let now = at(t0, step * 100);
            while bucket.try_acquire(now).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 5 + 20);
    }

    #[test]
    fn throttled_requests_take_nothing() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(60, Some(1), t0);
        assert!(bucket.try_acquire(t0).is_ok());
        for millis in [100, 200, 300, 900] {
            assert!(bucket.try_acquire(at(t0, millis)).is_err());
        }
        // Refusals did not eat into the refill: a token is there one second after the first take.
        assert!(bucket.try_acquire(at(t0, 1000)).is_ok());
    }

    #[test]
    fn default_burst_is_a_sixth_of_rpm_and_at_least_one() {
        let t0 = Instant::now();
        assert_eq!(TokenBucket::new(60, None, t0).capacity(), 10.0);
        assert_eq!(TokenBucket::new(3, None, t0).capacity(), 1.0);
        assert_eq!(TokenBucket::new(60, Some(0), t0).capacity(), 1.0);
    }

    #[test]
    fn zero_rpm_throttles_everything() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0, Some(5), t0);
        assert_eq!(bucket.try_acquire(t0), Err(Duration::MAX));
        assert_eq!(bucket.try_acquire(t0 + Duration::from_secs(600)), Err(Duration::MAX));
    }

    #[test]
    fn instants_out_of_order_do_not_rewind_the_clock() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(60, Some(1), t0);
        assert!(bucket.try_acquire(at(t0, 1000)).is_ok());
        // A caller that read the clock earlier but got the lock later.
        assert!(bucket.try_acquire(at(t0, 500)).is_err());
        assert!(bucket.try_acquire(at(t0, 2000)).is_ok());
    }

    fn secs(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn window_admits_rpm_requests_per_sixty_seconds() {
        let t0 = Instant::now();
        let mut window = SlidingWindow::new(Some(3), None);
        for s in [0, 10, 20] {
            assert!(window.try_admit(secs(t0, s), 0).is_ok());
        }
        // The fourth waits until the first leaves, at t0 + 60 s.
        let refusal = window.try_admit(secs(t0, 30), 0).unwrap_err();
        assert_eq!(refusal, Refusal { limit: Limit::Requests, retry_after: Duration::from_secs(30) });
        assert!(window.try_admit(at(t0, 59_999), 0).is_err());
        assert!(window.try_admit(secs(t0, 60), 0).is_ok());
        // Now the window holds 10, 20, 60: the next one must wait for 10 to leave.
        assert_eq!(window.try_admit(secs(t0, 61), 0).unwrap_err().retry_after, Duration::from_secs(9));
        assert_eq!(window.requests(secs(t0, 61)), 3);
        assert_eq!(window.max_requests_observed(), 3);
    }

    #[test]
    fn window_does_not_refill_smoothly_like_a_bucket() {
        // 60 rpm: all 60 at once are fine, the 61st waits the whole minute.
        let t0 = Instant::now();
        let mut window = SlidingWindow::new(Some(60), None);
        for _ in 0..60 {
            assert!(window.try_admit(t0, 0).is_ok());
        }
        assert_eq!(window.try_admit(secs(t0, 1), 0).unwrap_err().retry_after, Duration::from_secs(59));
    }

    #[test]
    fn throttled_requests_do_not_count_in_the_window() {
        let t0 = Instant::now();
        let mut window = SlidingWindow::new(Some(1), Some(100));
        assert!(window.try_admit(t0, 10).is_ok());
        for s in 1..60 {
            assert!(window.try_admit(secs(t0, s), 10).is_err());
        }
        assert_eq!(window.requests(secs(t0, 59)), 1);
        assert_eq!(window.tokens(secs(t0, 59)), 10);
        assert!(window.try_admit(secs(t0, 60), 10).is_ok());
    }

    #[test]
    fn tokens_are_reserved_then_settled_at_actual_usage() {
        let t0 = Instant::now();
        let mut window = SlidingWindow::new(None, Some(1000));
        // Input 100 + maxTokens 500: 600 reserved.
        let first = window.try_admit(t0, 600).unwrap();
        assert_eq!(window.tokens(t0), 600);
        // Another 600 does not fit while the first is reserved ...
        let refusal = window.try_admit(secs(t0, 1), 600).unwrap_err();
        assert_eq!(refusal, Refusal { limit: Limit::Tokens, retry_after: Duration::from_secs(59) });
        // ... but once the first answer used 100 input + 150 output, it does.
        window.settle(first, 250);
        assert_eq!(window.tokens(secs(t0, 1)), 250);
        let second = window.try_admit(secs(t0, 2), 600).unwrap();
        assert_eq!(window.tokens(secs(t0, 2)), 850);
        assert_eq!(window.max_tokens_observed(), 850);
        // 150 more fit exactly (`<=`), 151 do not.
        assert!(window.try_admit(secs(t0, 3), 151).is_err());
        let third = window.try_admit(secs(t0, 3), 150).unwrap();
        window.settle(second, 600);
        window.settle(third, 100);
        // The first leaves at 60 s, taking its 250 actual tokens with it.
        assert_eq!(window.tokens(secs(t0, 60)), 700);
        assert_eq!(window.max_tokens_observed(), 1000);
    }

    #[test]
    fn token_retry_after_waits_for_enough_tokens_to_leave() {
        let t0 = Instant::now();
        let mut window = SlidingWindow::new(None, Some(100));
        for s in [0, 10, 20, 30] {
            let admission = window.try_admit(secs(t0, s), 25).unwrap();
            window.settle(admission, 25);
        }
        // 100 used; 60 more need the requests at 0 s and 10 s and 20 s to leave (25 + 60 > 100 at 70 s).
        let refusal = window.try_admit(secs(t0, 40), 60).unwrap_err();
        assert_eq!(refusal.limit, Limit::Tokens);
        assert_eq!(refusal.retry_after, Duration::from_secs(40));
        assert!(window.try_admit(secs(t0, 79), 60).is_err());
        assert!(window.try_admit(secs(t0, 80), 60).is_ok());
    }

    #[test]
    fn reservations_larger_than_the_quota_never_fit() {
        let t0 = Instant::now();
        let mut window = SlidingWindow::new(None, Some(100));
        assert_eq!(window.try_admit(t0, 101).unwrap_err().retry_after, Duration::MAX);
        let mut zero = SlidingWindow::new(Some(0), None);
        assert_eq!(zero.try_admit(t0, 0).unwrap_err().retry_after, Duration::MAX);
    }

    #[test]
    fn settling_after_the_window_moved_on_changes_nothing() {
        let t0 = Instant::now();
        let mut window = SlidingWindow::new(None, Some(100));
        let late = window.try_admit(t0, 50).unwrap();
        assert!(window.try_admit(secs(t0, 61), 50).is_ok());
        window.settle(late, 10);
        assert_eq!(window.tokens(secs(t0, 61)), 50);
    }

    #[test]
    fn quota_in_bucket_mode_uses_buckets_for_requests_and_tokens() {
        let t0 = Instant::now();
        let rules = QuotaRules {
            mode: QuotaMode::TokenBucket,
            rpm: Some(60),
            tpm: Some(600),
            burst: Some(2),
            burst_secs: Some(10.0),
            ..QuotaRules::default()
        };
        let mut quota = Quota::with_rules(rules, t0);
        let first = quota.try_admit(t0, 10).unwrap();
        assert!(quota.try_admit(t0, 10).is_ok());
        // The burst is spent: the third waits one second, not a minute.
        assert_eq!(
            quota.try_admit(t0, 10).unwrap_err(),
            Refusal { limit: Limit::Requests, retry_after: Duration::from_secs(1) }
        );
        assert!(quota.try_admit(secs(t0, 1), 10).is_ok());
        // The token bucket holds 100 (10 s of 600/min, refilled at 10/s): 90 at 2 s, so 95 does
        // not fit and takes no request token; settling the first at 2 gives 8 back.
        assert_eq!(quota.try_admit(secs(t0, 2), 95).unwrap_err().limit, Limit::Tokens);
        quota.settle(secs(t0, 2), first, 2);
        assert!(quota.try_admit(secs(t0, 2), 95).is_ok());
        assert_eq!(quota.observed().max_requests_observed(), 4);
    }

    #[test]
    fn fixed_windows_reset_on_the_minute() {
        let t0 = Instant::now();
        let rules =
            QuotaRules { mode: QuotaMode::FixedWindow, rpm: Some(2), fixed_phase_secs: 50.0, ..QuotaRules::default() };
        let mut quota = Quota::with_rules(rules, t0);
        assert!(quota.try_admit(t0, 0).is_ok());
        assert!(quota.try_admit(t0, 0).is_ok());
        // The window started 50 s before the run: it ends 10 s in.
        assert_eq!(quota.try_admit(t0, 0).unwrap_err().retry_after, Duration::from_secs(10));
        assert!(quota.try_admit(secs(t0, 10), 0).is_ok());
        assert!(quota.try_admit(secs(t0, 10), 0).is_ok());
        // Four in ten seconds: twice the quota around the boundary, as fixed windows allow.
        assert_eq!(quota.observed().max_requests_observed(), 4);
    }

    #[test]
    fn reservations_kept_are_never_refunded() {
        let t0 = Instant::now();
        for (accounting, fits) in [(TokenAccounting::Settle, true), (TokenAccounting::Reservation, false)] {
            let rules = QuotaRules { tpm: Some(100), accounting, ..QuotaRules::default() };
            let mut quota = Quota::with_rules(rules, t0);
            let first = quota.try_admit(t0, 60).unwrap();
            quota.settle(t0, first, 10);
            assert_eq!(quota.try_admit(t0, 60).is_ok(), fits, "{accounting:?}");
        }
    }

    #[test]
    fn the_schedule_changes_the_quota() {
        let t0 = Instant::now();
        let rules = QuotaRules {
            rpm: Some(4),
            schedule: vec![QuotaChange { at_secs: 10.0, factor: 0.5 }, QuotaChange { at_secs: 20.0, factor: 2.0 }],
            ..QuotaRules::default()
        };
        let mut quota = Quota::with_rules(rules, t0);
        assert!(quota.try_admit(t0, 0).is_ok());
        assert!(quota.try_admit(t0, 0).is_ok());
        // Halved at 10 s: two in the window already, none more.
        assert!(quota.try_admit(secs(t0, 10), 0).is_err());
        // Doubled at 20 s: eight per minute.
        for _ in 0..6 {
            assert!(quota.try_admit(secs(t0, 20), 0).is_ok());
        }
        assert!(quota.try_admit(secs(t0, 20), 0).is_err());
    }

    #[test]
    fn background_traffic_takes_its_share() {
        let t0 = Instant::now();
        let rules = QuotaRules { rpm: Some(100), background: 0.4, ..QuotaRules::default() };
        let mut quota = Quota::with_rules(rules, t0);
        let admitted = (0..100).filter(|_| quota.try_admit(t0, 0).is_ok()).count();
        // The other application sent 40 in the minute before the run.
        assert!((59..=61).contains(&admitted), "{admitted}");
        assert_eq!(quota.observed().max_requests_observed(), admitted as u64, "only the client's own count");
    }

    #[test]
    fn quota_in_window_mode_ignores_burst() {
        let t0 = Instant::now();
        let mut quota = Quota::new(QuotaMode::SlidingWindow, Some(5), Some(1), None, t0);
        for _ in 0..5 {
            assert!(quota.try_admit(t0, 0).is_ok());
        }
        assert!(quota.try_admit(t0, 0).is_err());
    }
}
