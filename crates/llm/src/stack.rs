//! The client stack `beacon run` uses, in one place, so that the benchmark measures exactly what
//! users run: (cache →) rate limiter or adaptive concurrency → retry → provider.

use std::sync::Arc;

use crate::concurrency::{Adaptive, AdaptiveConfig};
use crate::limiter::{Limited, RateLimiter};
use crate::retry::{RetryPolicy, Retrying};
use crate::{ClientStats, LlmClient};

/// Where adaptive concurrency starts when the quota is unknown: above what a small quota allows
/// (throttles bring it down once per round trip), so a large quota is not approached one step
/// per round trip, and the first minute's quota is found within seconds rather than spread over
/// the minute (which would spread every later minute too: quotas free up as they were used).
/// The quota benchmark's unknown-quota run went from 1.21 × ideal at 16 to 1.13 at 64.
pub const ADAPTIVE_INITIAL: f64 = 64.0;

/// How requests are paced before the retry layer.
pub enum Pacing {
    /// A known quota: every call asks this limiter first.
    Limiter(Arc<dyn RateLimiter>),
    /// An unknown quota: adaptive concurrency finds what the provider takes.
    Adaptive,
}

/// `provider` wrapped in retry (counting into `stats`) and then `pacing`.
pub fn paced(
    provider: Arc<dyn LlmClient>,
    policy: RetryPolicy,
    stats: ClientStats,
    pacing: Pacing,
) -> Arc<dyn LlmClient> {
    let retrying = Retrying::new(provider, policy, stats);
    match pacing {
        Pacing::Limiter(limiter) => Arc::new(Limited::new(retrying, limiter)),
        Pacing::Adaptive => {
            Arc::new(Adaptive::new(retrying, AdaptiveConfig { initial: ADAPTIVE_INITIAL, ..AdaptiveConfig::default() }))
        }
    }
}
