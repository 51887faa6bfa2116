//! The quotas: requests and tokens per minute, and how they are enforced.
//!
//! Bedrock's on-demand quotas are per minute. By default they are enforced over a **sliding 60 s
//! window** ([`SlidingWindow`]): a request is admitted when fewer than `rpm` requests were admitted
//! in the last 60 seconds and the tokens counted in that window plus this request's reservation
//! (its input tokens plus its `maxTokens`, as Bedrock reserves) stay within `tpm`. When the answer
//! is produced the reservation is replaced by the actual input + output tokens. Refused requests
//! count for nothing.
//!
//! The older model is kept as an option ([`QuotaMode::TokenBucket`]): a bucket that holds at most
//! `burst` tokens and refills at `rpm / 60` per second, which throttles bursts the way a busy
//! service does even when the minute's quota is not used up.
//!
//! Nothing here reads a clock; callers pass `now`, so tests drive the quotas with made-up instants
//! instead of sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A token bucket for one quota.
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
        TokenBucket { capacity, refill_per_second: f64::from(rpm) / 60.0, tokens: capacity, last_refill: now }
    }

    /// The most requests the bucket admits at once.
    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    /// The tokens available at `now` (after refilling).
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Takes one token if there is one. Otherwise returns how long until one is available
    /// (`Duration::MAX` when the bucket never refills); a refused request takes nothing.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens + EPSILON >= 1.0 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            return Ok(());
        }
        if self.refill_per_second <= 0.0 || self.capacity < 1.0 {
            return Err(Duration::MAX);
        }
        let missing = 1.0 - self.tokens;
        Err(Duration::from_secs_f64(missing / self.refill_per_second))
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

/// The length of the quota window: Bedrock's quotas are per minute.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How the requests-per-minute quota is enforced. Tokens per minute always use the sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuotaMode {
    /// At most `rpm` requests in any 60 s window ([`SlidingWindow`]).
    SlidingWindow,
    /// A token bucket of `burst` requests refilled at `rpm / 60` per second ([`TokenBucket`]).
    TokenBucket,
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

/// An admitted request's place in the window, to [`SlidingWindow::settle`] with its actual usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "settle the admission with the actual token usage"]
pub struct Admission {
    id: u64,
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
        Admission { id }
    }
}

/// Both quotas together: requests per minute by the configured [`QuotaMode`], tokens per minute
/// by the sliding window.
#[derive(Debug, Clone)]
pub struct Quota {
    bucket: Option<TokenBucket>,
    window: SlidingWindow,
}

impl Quota {
    /// The quota for `rpm` requests and `tpm` tokens per minute (`None`: unlimited). `burst` only
    /// matters in [`QuotaMode::TokenBucket`] mode.
    pub fn new(mode: QuotaMode, rpm: Option<u32>, burst: Option<u32>, tpm: Option<u64>, now: Instant) -> Quota {
        match (mode, rpm) {
            (QuotaMode::TokenBucket, Some(rpm)) => {
                Quota { bucket: Some(TokenBucket::new(rpm, burst, now)), window: SlidingWindow::new(None, tpm) }
            }
            _ => Quota { bucket: None, window: SlidingWindow::new(rpm, tpm) },
        }
    }

    /// Admits a request reserving `tokens`, or refuses it and takes nothing.
    pub fn try_admit(&mut self, now: Instant, tokens: u64) -> Result<Admission, Refusal> {
        let now = self.window.advance(now);
        self.window.check(now, tokens, self.bucket.is_none())?;
        if let Some(bucket) = &mut self.bucket {
            bucket.try_acquire(now).map_err(|retry_after| Refusal { limit: Limit::Requests, retry_after })?;
        }
        Ok(self.window.record(now, tokens))
    }

    /// See [`SlidingWindow::settle`].
    pub fn settle(&mut self, admission: Admission, actual_tokens: u64) {
        self.window.settle(admission, actual_tokens);
    }

    /// The window that counts admitted requests and tokens.
    pub fn window(&self) -> &SlidingWindow {
        &self.window
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
    fn quota_in_bucket_mode_uses_the_bucket_for_requests_and_the_window_for_tokens() {
        let t0 = Instant::now();
        let mut quota = Quota::new(QuotaMode::TokenBucket, Some(60), Some(2), Some(100), t0);
        assert!(quota.try_admit(t0, 10).is_ok());
        assert!(quota.try_admit(t0, 10).is_ok());
        // The burst is spent: the third waits one second, not a minute.
        assert_eq!(
            quota.try_admit(t0, 10).unwrap_err(),
            Refusal { limit: Limit::Requests, retry_after: Duration::from_secs(1) }
        );
        assert!(quota.try_admit(secs(t0, 1), 10).is_ok());
        // Tokens are refused by the window and do not take a bucket token.
        assert_eq!(quota.try_admit(secs(t0, 2), 90).unwrap_err().limit, Limit::Tokens);
        assert!(quota.try_admit(secs(t0, 2), 70).is_ok());
        assert_eq!(quota.window().max_requests_observed(), 4);
        assert_eq!(quota.window().max_tokens_observed(), 100);
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
