//! The requests-per-minute quota, enforced smoothly as a token bucket.
//!
//! Bedrock's on-demand quotas are per minute, but the service does not let a whole minute's worth of
//! requests through in the first second: it throttles bursts. A token bucket models that: it holds
//! at most `capacity` tokens, refills at `rpm / 60` tokens per second, and every admitted request
//! takes one token.
//!
//! The bucket never reads a clock itself; callers pass `now`, so tests drive it with made-up
//! instants instead of sleeping.

use std::time::{Duration, Instant};

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
}
