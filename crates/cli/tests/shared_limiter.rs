//! Twenty `beacon run` processes (as twenty Lambda instances would) share one quota through the
//! DynamoDB rate limiter (moto) for about a minute and a half, against `beacon sim` enforcing
//! that quota as a provider that smooths bursts does: a token bucket refilled at 2 requests a
//! second holding one second of quota. Every unit is analysed, the provider never sees more than
//! the quota in a minute, and the processes pace each other through the shared item: its GCRA
//! spaces their requests evenly, and a throttle any of them gets lowers the rate for all.
//! Measured before the pacing was shared (the item only bounded every 60 s window, which let a
//! minute's quota go at once, and each process's own pacer sees only its twentieth of the
//! traffic, so it cannot pace the whole): 606 of 786 requests throttled and 386 s for the 180
//! units; with it, 6 of 186 and 95 s. Slow start costs a few throttles at the beginning (the
//! shared burst grows until the provider says no); the bound leaves room for a loaded two-core
//! machine, where a request admitted on time can reach the provider late.

mod common;

use std::process::Stdio;

use common::*;

#[path = "../../aws/tests/support/mod.rs"]
mod moto;

const PROCESSES: usize = 20;
const UNITS_EACH: usize = 9;
const RPM: u64 = 120;

#[test]
fn twenty_processes_sharing_the_dynamodb_limiter_pace_evenly_for_a_smoothing_provider() {
    let Some(moto) = moto::Moto::start() else { return };
    // The table first, so twenty processes do not race to create it.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        beacon_aws::create_limiter_table(&moto.dynamodb().await, "beacon-limits").await.unwrap();
    });
    let sim = Sim::start(&["--rpm", &RPM.to_string(), "--quota-mode", "token-bucket", "--burst-secs", "1"]);
    let s = Scratch::new();
    let children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            let doc = s.path(&format!("doc-{p}.txt"));
            let pages: Vec<String> =
                (1..=UNITS_EACH).map(|i| format!("Process {p}, page {i}: lot {p}-{i} ships on day {i}.")).collect();
            std::fs::write(&doc, pages.join("\x0c")).unwrap();
            let mut cmd = s.beacon();
            with_fake_aws(&mut cmd)
                .env("BEACON_QUOTA_ENDPOINT", &moto.endpoint)
                .env("BEACON_DATA_DIR", s.path(&format!("data-{p}")))
                .arg("run")
                .arg(&doc)
                .arg("--out")
                .arg(s.path(&format!("out-{p}")))
                .args(["--provider", "bedrock", "--model", "sim-model", "--endpoint"])
                .arg(sim.endpoint())
                .args([
                    "--rpm",
                    &RPM.to_string(),
                    "--limiter-table",
                    "beacon-limits",
                    "--no-cache",
                    "--no-progress-bar",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_exit(&out, 0);
    }
    let stats = sim.stats();
    let total = (PROCESSES * UNITS_EACH) as u64;
    assert_eq!(stats["succeeded"], total, "every unit analysed: {stats}");
    let throttled = stats["throttled"].as_u64().unwrap();
    let requests = total + throttled;
    eprintln!("{throttled} of {requests} requests throttled; at most {} in a minute", stats["max_rpm_observed"]);
    assert!(throttled * 10 <= requests, "paced for a smoothing provider: {throttled} of {requests} throttled: {stats}");
    assert!(stats["max_rpm_observed"].as_u64().unwrap() <= RPM, "no 60 s window over the quota: {stats}");
    // 180 requests at 2 a second: at least a minute and a half.
    let seconds = stats["timeline"].as_array().map_or(0, Vec::len);
    assert!(seconds >= 85, "the run lasted about a minute and a half ({seconds} s)");
}
