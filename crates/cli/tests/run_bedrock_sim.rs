//! `beacon run --provider bedrock` end to end against `beacon sim`, through the AWS SDK.

mod common;

use common::*;

/// Fast client retries so the test spends its time in the quota, not in long backoffs.
const FAST_RETRY: &str =
    "[retry]\nbase_delay_ms = 50\nmax_delay_ms = 1000\nmax_attempts = 3\nthrottle_budget_secs = 120\n";

#[test]
fn throttled_run_succeeds_and_reports_the_throttles() {
    // 12 pages against 120 requests/minute with a burst of 2: most first attempts are throttled.
    let sim = Sim::start(&["--rpm", "120", "--burst", "2"]);
    let s = Scratch::new();
    std::fs::write(s.path("beacon.toml"), FAST_RETRY).unwrap();
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd)
        .arg("--config")
        .arg(s.path("beacon.toml"))
        .arg("run")
        .arg(repo_root().join("samples/operations-review.pdf"))
        .arg("--out")
        .arg(s.out())
        .args(["--provider", "bedrock", "--model", "anthropic.claude-3-haiku-20240307-v1:0", "--endpoint"])
        .arg(sim.endpoint());
    let out = cmd.output().unwrap();
    assert_exit(&out, 0);
    let report = s.report();
    assert_eq!(report["document"]["unit_count"], 12);
    let units = report["units"].as_array().unwrap();
    assert!(units.iter().all(|u| u["status"] == "succeeded"), "every unit succeeded");
    assert_eq!(report["model"], "anthropic.claude-3-haiku-20240307-v1:0");
    let sim_stats = sim.stats();
    let sim_throttled = sim_stats["throttled"].as_u64().unwrap();
    assert!(sim_throttled >= 1, "the simulator throttled: {sim_stats}");
    assert_eq!(sim_stats["succeeded"], 12, "one successful call per page: {sim_stats}");
    let reported = report["usage"]["throttles"].as_u64().unwrap();
    assert_eq!(reported, sim_throttled, "the report counts every throttle the simulator answered");
    assert!(report["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(report["usage"]["cost_usd"].as_f64().unwrap() > 0.0, "known model has a price");
    assert!(stdout(&out).contains(&format!("{reported} throttled")), "{}", stdout(&out));
}

#[test]
fn unreachable_provider_fails_units_but_still_writes_the_report() {
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = Scratch::new();
    std::fs::write(s.path("beacon.toml"), FAST_RETRY).unwrap();
    let doc = s.path("two-pages.txt");
    std::fs::write(&doc, "First page.\n\x0cSecond page.\n").unwrap();
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd)
        .arg("--config")
        .arg(s.path("beacon.toml"))
        .arg("run")
        .arg(&doc)
        .arg("--out")
        .arg(s.out())
        .args(["--provider", "bedrock", "--model", "m", "--endpoint"])
        .arg(format!("http://127.0.0.1:{port}"));
    let out = cmd.output().unwrap();
    assert_exit(&out, 1);
    let report = s.report();
    assert_eq!(report["usage"]["units_failed"], 2);
    let failed = report["failed_units"].as_array().unwrap();
    assert_eq!(failed.len(), 2);
    for f in failed {
        assert!(!f["cause"].as_str().unwrap().is_empty(), "failure has a reason: {f}");
    }
    assert!(stdout(&out).contains("0 of 2 units succeeded"), "{}", stdout(&out));
    assert!(std::fs::read_to_string(s.out().join("report.md")).unwrap().contains("## Failed units"));
}
