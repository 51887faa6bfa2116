//! How long an answer takes: a base plus a cost per output token, spread uniformly around it.

use std::time::Duration;

use rand::Rng;

/// `base + per_output_token × output tokens`, multiplied by a uniform factor in
/// `1 - spread ..= 1 + spread`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencyModel {
    pub base_ms: f64,
    pub per_output_token_ms: f64,
    /// A fraction in `0.0..=1.0`: 0.3 means ±30 %.
    pub spread: f64,
}

impl LatencyModel {
    /// The latency of an answer with `output_tokens`. Draws from `rng` only when there is a
    /// spread, so that runs without one use no randomness.
    pub fn sample(&self, output_tokens: u64, rng: &mut impl Rng) -> Duration {
        let nominal = self.base_ms + self.per_output_token_ms * output_tokens as f64;
        if nominal <= 0.0 {
            return Duration::ZERO;
        }
        let factor = if self.spread > 0.0 { 1.0 + self.spread * rng.random_range(-1.0..=1.0) } else { 1.0 };
        Duration::from_secs_f64((nominal * factor).max(0.0) / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn base_plus_per_token() {
        let model = LatencyModel { base_ms: 100.0, per_output_token_ms: 2.5, spread: 0.0 };
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(model.sample(0, &mut rng), Duration::from_millis(100));
        assert_eq!(model.sample(40, &mut rng), Duration::from_millis(200));
        assert_eq!(LatencyModel::default().sample(1000, &mut rng), Duration::ZERO);
    }

    #[test]
    fn spread_stays_within_bounds_and_is_reproducible() {
        let model = LatencyModel { base_ms: 1000.0, per_output_token_ms: 0.0, spread: 0.3 };
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..1000).map(|_| model.sample(0, &mut rng)).collect::<Vec<_>>()
        };
        let samples = draw(5);
        assert_eq!(samples, draw(5));
        assert!(samples.iter().all(|d| (700..=1300).contains(&d.as_millis())), "{samples:?}");
        // Uniform: both ends of the range are reached.
        assert!(samples.iter().any(|d| d.as_millis() < 750) && samples.iter().any(|d| d.as_millis() > 1250));
        let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / 1000.0;
        assert!((mean - 1.0).abs() < 0.03, "{mean}");
    }
}
