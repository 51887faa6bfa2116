//! The reduced quota matrix (issue 16) as a test, in virtual time: every provider behaviour
//! against BEACON's client stack, told the quota and not.
//!
//! What must hold everywhere: no unit fails. Where the told quota is what the provider gives,
//! BEACON never exceeds it in any 60 s window and is barely throttled. Makespan bounds are the
//! benchmark's job (`beacon-bench matrix`); here they only catch a collapse.

use beacon_bench::world::{Contender, behaviours, run_cell, workloads};

#[test]
fn every_unit_succeeds_under_every_behaviour_and_a_told_quota_is_never_exceeded() {
    let mut problems = Vec::new();
    for w in workloads(0.5) {
        for b in behaviours() {
            for contender in [Contender::BeaconTold, Contender::BeaconUntold] {
                let o = run_cell(&w, &b, contender);
                let cell = format!("{} / {} / {}", w.name, b.name, contender.label());
                if o.failed > 0 {
                    problems.push(format!("{cell}: {} units failed", o.failed));
                }
                // A collapse, not a tuning bound: the matrix's worst cell today is far below.
                if o.ratio() > 40.0 {
                    problems.push(format!("{cell}: makespan {:.1} × the ideal", o.ratio()));
                }
                if contender == Contender::BeaconTold && b.told_is_right && b.in_flight_share.is_none() {
                    if let Some(rpm) = w.rpm
                        && o.max_rpm > u64::from(rpm)
                    {
                        problems.push(format!("{cell}: {} requests in a minute, told {rpm}", o.max_rpm));
                    }
                    if let Some(tpm) = w.tpm
                        && o.max_tpm > tpm
                    {
                        problems.push(format!("{cell}: {} tokens in a minute, told {tpm}", o.max_tpm));
                    }
                    // The goal is 2 %; slack for the probe jitter's randomness.
                    if o.throttled_share() > 0.12 {
                        problems.push(format!("{cell}: {:.1}% throttled", 100.0 * o.throttled_share()));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn told_quota_on_a_sliding_window_meets_the_goal() {
    // Today's `beacon sim`: the cell the old stack was measured on must stay within 5 %.
    let w = workloads(1.0).into_iter().find(|w| w.name == "RPM-bound").expect("RPM-bound workload");
    let b = behaviours().into_iter().find(|b| b.name == "sliding 60 s window").expect("sliding window");
    let o = run_cell(&w, &b, Contender::BeaconTold);
    assert_eq!(o.failed, 0);
    assert_eq!(o.throttled, 0, "{o:?}");
    assert!(o.ratio() <= 1.05, "{o:?}");
}

#[test]
fn a_smoothing_provider_throttles_far_less_than_the_seed() {
    // The headline: a token bucket with a second of burst, quota told.
    let w = workloads(1.0).into_iter().find(|w| w.name == "RPM-bound").expect("RPM-bound workload");
    let b = behaviours().into_iter().find(|b| b.name == "token bucket, 1 s burst").expect("token bucket");
    let beacon = run_cell(&w, &b, Contender::BeaconTold);
    let seed = run_cell(&w, &b, Contender::Seed);
    assert_eq!(beacon.failed, 0);
    assert!(beacon.ratio() <= 1.10, "{beacon:?}");
    assert!(beacon.throttled_share() <= 0.05, "{beacon:?}");
    assert!(seed.failed > 0 || seed.throttled > 4 * beacon.throttled.max(1), "seed {seed:?} beacon {beacon:?}");
}
