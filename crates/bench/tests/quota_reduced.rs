//! The quota benchmark's scenarios in reduced form, as a correctness test: BEACON's client stack
//! (as `beacon run` builds it) against the simulator, every scenario at once. Every unit must
//! succeed; with a known quota the client must stay within it (the simulator's throttles are the
//! evidence: at most 2% of requests, plus one for scheduling noise on a loaded CI machine), and
//! the simulator must never have admitted more than the quota in any 60 s window. Makespans are
//! printed, not asserted: timing belongs in BENCHMARKS.md.

use beacon_bench::quota::{Client, measure, reduced_scenarios};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unit_succeeds_within_the_quota() {
    let runs = reduced_scenarios().into_iter().map(|scenario| async move {
        let outcome = measure(&scenario, Client::Beacon).await;
        (scenario, outcome)
    });
    for (scenario, outcome) in futures::future::join_all(runs).await {
        let outcome = outcome.unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
        eprintln!("{}: {outcome:?}", scenario.name);
        assert_eq!(outcome.failed, 0, "{}: {outcome:?}", scenario.name);
        assert!(outcome.requests >= scenario.units as u64, "{}: {outcome:?}", scenario.name);
        if let Some(rpm) = scenario.sim.rpm {
            assert!(outcome.max_rpm_observed <= u64::from(rpm), "{}: {outcome:?}", scenario.name);
        }
        if let Some(tpm) = scenario.sim.tpm {
            assert!(outcome.max_tpm_observed <= tpm, "{}: {outcome:?}", scenario.name);
        }
        if scenario.quota_known {
            let allowed = outcome.requests / 50 + 1;
            assert!(outcome.throttled <= allowed, "{}: {} throttled: {outcome:?}", scenario.name, outcome.throttled);
        }
    }
}
