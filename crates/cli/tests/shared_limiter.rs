//! Twenty `beacon run` processes (as twenty Lambda instances would) share one quota through the
//! DynamoDB rate limiter (moto) for about two minutes, against `beacon sim` enforcing that
//! quota: every unit is analysed, the provider never sees more than the quota in a minute, and
//! the processes pace each other. How many requests the provider still throttles depends on the
//! machine: a request admitted at the edge of a window reaches the provider a moment later,
//! inside the next one, and with twenty processes on two cores (and the rest of the test suite)
//! that moment can be long — 0 throttled on a quiet machine, up to 17 of 197 seen under the
//! whole suite. Unshared, each process's own limiter would allow the whole quota: at least 120
//! of the first 180 requests would be throttled. The bound below sits between the two.

mod common;

use std::process::Stdio;

use common::*;

#[path = "../../aws/tests/support/mod.rs"]
mod moto;

const PROCESSES: usize = 20;
const UNITS_EACH: usize = 9;
const RPM: u64 = 60;

#[test]
fn twenty_processes_sharing_the_dynamodb_limiter_never_exceed_the_quota_over_two_minutes() {
    let Some(moto) = moto::Moto::start() else { return };
    // The table first, so twenty processes do not race to create it.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        beacon_aws::create_limiter_table(&moto.dynamodb().await, "beacon-limits").await.unwrap();
    });
    let sim = Sim::start(&["--rpm", &RPM.to_string()]);
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
    assert!(throttled <= total / 4, "the shared limiter kept all twenty at the quota: {throttled} throttled");
    assert!(stats["max_rpm_observed"].as_u64().unwrap() <= RPM, "no 60 s window over the quota: {stats}");
    // 180 requests at 60 a minute (a minute's burst, then one a second): about two minutes.
    let seconds = stats["timeline"].as_array().map_or(0, Vec::len);
    assert!(seconds >= 110, "the run lasted about two minutes ({seconds} s)");
}
