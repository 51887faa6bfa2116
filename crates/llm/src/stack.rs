//! The client stack `beacon run` uses, in one place, so that the benchmark measures exactly what
//! users run: (cache →) retry → pacer (→ the told quota's limiter) → timing → provider.

use std::sync::Arc;

use crate::limiter::{Quota, RateLimiter};
use crate::pacer::{Paced, Pacer, PacerConfig};
use crate::retry::{RetryPolicy, Retrying};
use crate::{ClientStats, LlmClient, Timed};

/// What is known about the quota before the run.
pub enum Pacing {
    /// A told quota: paced to it as an upper bound, which `limiter` (in process or shared by
    /// several processes) also enforces over every 60 s window.
    Told { quota: Quota, limiter: Arc<dyn RateLimiter> },
    /// Nothing told: the pacer learns the rate from the provider's throttles.
    Unknown,
}

/// `provider` timed ([`Timed`]) behind a [`Pacer`] (every attempt paced, throttles learned from),
/// wrapped in retry (counting into `stats`, which also watches the pacer).
pub fn paced(
    provider: Arc<dyn LlmClient>,
    policy: RetryPolicy,
    stats: ClientStats,
    pacing: Pacing,
    config: PacerConfig,
) -> Arc<dyn LlmClient> {
    let pacer = match pacing {
        Pacing::Told { quota, limiter } => Pacer::new(quota, Some(limiter), config),
        Pacing::Unknown => Pacer::new(Quota::unlimited(), None, config),
    };
    let pacer = Arc::new(pacer);
    stats.watch_pacer(pacer.clone());
    let paced = Paced::new(Timed::new(provider, stats.clone()), pacer);
    Arc::new(Retrying::new(paced, policy, stats).paced_below())
}
