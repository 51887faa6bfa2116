//! The pacer's feedback for a limiter whose state many processes share (see
//! `beacon_aws::DynamoLimiter`): slow start, multiplicative decrease on a throttle and additive
//! recovery, as plain arithmetic on a small serializable record the shared item carries beside
//! its [`GcraState`].
//!
//! Each process's own [`crate::pacer::Pacer`] sees only its share of the traffic, so its rate
//! and burst never bind when twenty processes draw on one quota: the shared limiter does. It
//! therefore paces like the pacer — a burst of [`PacerConfig::burst_secs`] outside slow start, a
//! GCRA at `rate × the told quota` — and every process reports its throttles into the same
//! record, so one process's throttle slows all of them down.
//!
//! - **Slow start**: the first time the shared GCRA holds a request back, one more request's
//!   worth of burst is allowed (the scout). A provider that smooths throttles it within a round
//!   trip, and slow start ends; one that counts in windows takes it, and the burst grows ×4 per
//!   1.5 round trips while requests are held back, up to [`PacerConfig::max_burst_secs`].
//! - **Decrease**: a throttle of a request admitted after the last decrease (once per round)
//!   ends slow start, sets the burst back to [`PacerConfig::burst_secs`] and, outside slow
//!   start, multiplies the rate by [`PacerConfig::decrease`].
//! - **Recovery**: [`PacerConfig::recovery`] of the quota per second without throttles, up to
//!   the whole told quota (an upper bound the window record enforces in any case).

use serde::{Deserialize, Serialize};

use crate::limiter::{GcraState, Micros};
use crate::pacer::{GROWTH_ROUND_TRIPS, PacerConfig, SLOW_START_GROWTH};

/// The lowest share of the quota the shared rate goes down to.
const MIN_RATE: f64 = 0.02;

/// The shared feedback state, kept with the shared limiter's [`GcraState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedPace {
    /// The share of the told quota paced at, in `(0, 1]`.
    pub rate: f64,
    /// The burst in seconds of quota.
    pub burst_secs: f64,
    /// Until the first throttle (and again after a long quiet spell), the burst grows.
    pub slow_start: bool,
    /// Whether slow start's scout (one request beyond the burst) has gone.
    pub scouted: bool,
    /// When the burst last grew, the rate last fell and recovery was last applied (µs, on the
    /// shared limiter's time base).
    pub grown_at: Micros,
    pub decreased_at: Micros,
    pub updated_at: Micros,
}

impl SharedPace {
    /// Fresh feedback at `now`: the whole rate, the base burst, in slow start.
    pub fn new(config: &PacerConfig, now: Micros) -> Self {
        SharedPace {
            rate: 1.0,
            burst_secs: config.burst_secs,
            slow_start: true,
            scouted: false,
            grown_at: now,
            decreased_at: 0,
            updated_at: now,
        }
    }

    /// Recovery up to `now`.
    pub fn advance(&mut self, config: &PacerConfig, now: Micros) {
        if now <= self.updated_at {
            return;
        }
        // Precision loss is irrelevant at these magnitudes (seconds since the last update).
        #[allow(clippy::cast_precision_loss)]
        let elapsed = (now - self.updated_at) as f64 / 1e6;
        self.rate = (self.rate + config.recovery * elapsed).min(1.0);
        self.updated_at = now;
    }

    /// The shared GCRA held a request back at `now`: in slow start, the scout goes or the burst
    /// grows. `scout_secs` is the burst one more request needs. Returns whether anything changed.
    pub fn held_back(&mut self, config: &PacerConfig, now: Micros, scout_secs: f64) -> bool {
        if !self.slow_start || self.burst_secs >= config.max_burst_secs {
            return false;
        }
        let grown = if self.scouted {
            if now < self.next_growth(config) {
                return false;
            }
            self.burst_secs * SLOW_START_GROWTH
        } else {
            self.scouted = true;
            self.burst_secs + scout_secs
        };
        self.burst_secs = grown.min(config.max_burst_secs);
        self.grown_at = now;
        true
    }

    /// When slow start may grow the burst next (µs).
    pub fn next_growth(&self, config: &PacerConfig) -> Micros {
        let period = config.doubling.max(config.round_trip.mul_f64(GROWTH_ROUND_TRIPS));
        self.grown_at.saturating_add(crate::limiter::micros(period))
    }

    /// The provider throttled a request the shared limiter admitted at `admitted_at`.
    pub fn throttled(&mut self, config: &PacerConfig, now: Micros, admitted_at: Micros) {
        self.advance(config, now);
        if admitted_at < self.decreased_at {
            // Sent before the last decrease took effect: the same round, already counted.
            return;
        }
        if self.slow_start {
            // The burst was too large; the rate was never the problem when it is told.
            self.slow_start = false;
        } else {
            self.rate = (self.rate * config.decrease).max(MIN_RATE);
        }
        self.burst_secs = config.burst_secs;
        self.decreased_at = now;
    }

    /// Brings `state` to this pacing: its burst (a share of the window's quota) and its rate.
    pub fn apply(&self, state: &mut GcraState, now: Micros) {
        state.reconfigure(state.quota(), self.burst_secs / 60.0, now);
        state.set_rate(self.rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Micros = 1_000_000;

    #[test]
    fn slow_start_scouts_then_grows_until_the_first_throttle() {
        let config = PacerConfig::default();
        let mut pace = SharedPace::new(&config, 0);
        assert!(pace.held_back(&config, 0, 0.5), "the scout");
        assert!((pace.burst_secs - 1.5).abs() < 1e-9);
        assert!(!pace.held_back(&config, 100_000, 0.5), "not within 1.5 round trips");
        assert!(pace.held_back(&config, pace.next_growth(&config), 0.5));
        assert!((pace.burst_secs - 6.0).abs() < 1e-9);
        // A throttle ends slow start without lowering the rate: the burst was the problem.
        pace.throttled(&config, SECOND, SECOND / 2);
        assert!(!pace.slow_start);
        assert_eq!(pace.rate, 1.0);
        assert_eq!(pace.burst_secs, config.burst_secs);
        assert!(!pace.held_back(&config, 10 * SECOND, 0.5), "no growth outside slow start");
        // At the largest burst there is nothing to grow (and nothing to write).
        let mut full = SharedPace::new(&PacerConfig { burst_secs: 60.0, ..config }, 0);
        assert!(!full.held_back(&config, 0, 0.5));
    }

    #[test]
    fn throttles_lower_the_rate_once_per_round_and_it_recovers() {
        let config = PacerConfig::default();
        let mut pace = SharedPace::new(&config, 0);
        pace.throttled(&config, SECOND, SECOND / 2);
        pace.throttled(&config, 2 * SECOND, SECOND + 1);
        assert!((pace.rate - 0.8).abs() < 1e-6);
        // Admitted before that decrease: the same round.
        pace.throttled(&config, 2 * SECOND + 1, 2 * SECOND - 1);
        assert!((pace.rate - 0.8).abs() < 1e-6);
        // 1% of the quota a second comes back.
        pace.advance(&config, 12 * SECOND);
        assert!((pace.rate - 0.9).abs() < 1e-6, "{}", pace.rate);
        pace.advance(&config, 100 * SECOND);
        assert_eq!(pace.rate, 1.0);
        for i in 0..100 {
            pace.throttled(&config, 101 * SECOND + i, 101 * SECOND + i);
        }
        assert!((pace.rate - MIN_RATE).abs() < 1e-6, "{}", pace.rate);
    }

    #[test]
    fn applying_it_sets_the_state_s_burst_and_rate() {
        let config = PacerConfig::default();
        let mut pace = SharedPace::new(&config, 0);
        pace.throttled(&config, SECOND, 0);
        pace.throttled(&config, 2 * SECOND, 2 * SECOND);
        let quota = crate::limiter::Quota { rpm: Some(120), tpm: None, tpd: None };
        let mut state = GcraState::new(quota, 1.0, 60 * SECOND, 61 * SECOND, 0);
        pace.apply(&mut state, 2 * SECOND);
        assert_eq!(state.burst(), (Some(2), None), "a second of 120 a minute");
        assert!((state.rate() - 0.8).abs() < 1e-6);
    }
}
