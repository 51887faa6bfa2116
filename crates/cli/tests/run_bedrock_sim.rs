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

/// `beacon quota` reads the applied quotas (Service Quotas) and the recent traffic (CloudWatch
/// `GetMetricData`, RPC v2 CBOR) that `beacon sim` serves for its own quota and traffic; `beacon
/// run --quota-from aws` paces to them and `beacon plan --deadline` names the quota to raise.
#[test]
fn quotas_come_from_service_quotas_and_usage_from_cloudwatch() {
    let sim = Sim::start(&["--rpm", "6", "--tpm", "20000", "--tpd", "5000000"]);
    let s = Scratch::new();
    let doc = s.path("doc.txt");
    std::fs::write(&doc, "Page one: lot 1 ships on Monday.\x0cPage two: lot 2 ships on Tuesday.").unwrap();
    let beacon = |args: &[&str]| {
        let mut cmd = s.beacon();
        with_fake_aws(&mut cmd).env("AWS_ENDPOINT_URL_SERVICE_QUOTAS", sim.endpoint()).args(args);
        cmd.output().unwrap()
    };
    let endpoint = sim.endpoint();
    let bedrock = ["--provider", "bedrock", "--model", "sim-model", "--endpoint", endpoint.as_str()];
    let out_dir = s.out().to_string_lossy().into_owned();
    let mut run = vec!["run", doc.to_str().unwrap(), "--out", out_dir.as_str(), "--no-cache", "--quota-from", "aws"];
    run.extend(bedrock);
    let ran = beacon(&run);
    assert_exit(&ran, 0);
    let said = String::from_utf8_lossy(&ran.stderr);
    assert!(
        said.contains("quota from Service Quotas (Sim Model): 6 requests/min, 20000 tokens/min, 5000000 tokens/day"),
        "{said}"
    );

    let read = beacon(&["quota", "--model", "sim-model", "--endpoint", &endpoint, "--json"]);
    assert_exit(&read, 0);
    let answer: serde_json::Value = serde_json::from_str(stdout(&read).trim()).unwrap();
    let quotas = answer["quotas"]["quotas"].as_array().unwrap();
    let value = |name: &str| quotas.iter().find(|q| q["name"] == name).map(|q| q["value"].clone());
    assert_eq!(value("On-demand InvokeModel tokens per minute for Sim Model"), Some(serde_json::json!(20000.0)));
    assert_eq!(value("Model invocation max tokens per day for Sim Model"), Some(serde_json::json!(5000000.0)));
    assert!(quotas.iter().all(|q| q["name"].as_str().unwrap().ends_with("Sim Model")), "only this model's: {quotas:?}");
    let stats = sim.stats();
    let usage = &answer["usage"];
    assert_eq!(usage["invocations"], stats["succeeded"], "{usage} vs {stats}");
    assert_eq!(usage["input_tokens"], stats["input_tokens"], "{usage} vs {stats}");
    assert_eq!(usage["output_tokens"], stats["output_tokens"], "{usage} vs {stats}");

    // Among the catalogue's other models, a real id finds its own display name.
    let haiku = beacon(&["quota", "--model", "anthropic.claude-3-haiku-20240307-v1:0", "--endpoint", &endpoint]);
    assert_exit(&haiku, 0);
    assert!(stdout(&haiku).contains("\"Anthropic Claude 3 Haiku\""), "{}", stdout(&haiku));
    let unknown = beacon(&["quota", "--model", "amazon.titan-text-express-v1", "--endpoint", &endpoint]);
    assert_exit(&unknown, 2);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("--model-name"), "{unknown:?}");

    // 12 pages at 6 requests a minute take 2 minutes; a 1 minute deadline needs 12, asked
    // through the adjustable cross-Region tokens-per-minute quota (where Bedrock takes
    // increases of the per-minute quotas), with its code.
    let pdf = repo_root().join("samples/operations-review.pdf");
    let mut plan = vec!["plan", pdf.to_str().unwrap(), "--quota-from", "aws", "--deadline", "1m"];
    plan.extend(bedrock);
    let planned = beacon(&plan);
    assert_exit(&planned, 0);
    let text = stdout(&planned);
    let code = quotas
        .iter()
        .find(|q| q["name"] == "Cross-Region InvokeModel tokens per minute for Sim Model")
        .map(|q| q["code"].as_str().unwrap().to_string())
        .unwrap();
    assert!(text.contains("too slow"), "{text}");
    assert!(text.contains("requests/min: 12 needed, 6 in force"), "{text}");
    assert!(text.contains(&format!("--quota-code {code} --desired-value")), "{text}");
}
