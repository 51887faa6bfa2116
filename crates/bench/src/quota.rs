//! The quota benchmark: BEACON's client stack against the seed's algorithm, side by side, on the
//! simulator, per scenario: makespan, ideal makespan, ratio, throttled responses, failed units.
//!
//! Ideal makespan — the quota's physical limit — for a simulator that admits at most `rpm`
//! requests and `tpm` tokens in any sliding 60 s window: all work that fits in the first window
//! can start at once; every further window's worth waits 60 s more. So
//! `ideal = 60 s × (ceil(max(N / rpm, T / tpm)) − 1) + latency`, where `T` is the tokens the
//! requests actually use (input + output, as the simulator counts them) and `latency` is one
//! answer's mean latency. With no binding quota it is just `latency` (everything in parallel).

use std::sync::Arc;
use std::time::{Duration, Instant};

use beacon_llm::bedrock::BedrockConverse;
use beacon_llm::concurrency::{Adaptive, AdaptiveConfig};
use beacon_llm::limiter::{GcraLimiter, Limited, Quota};
use beacon_llm::retry::{RetryPolicy, Retrying};
use beacon_llm::{ClientStats, CompletionRequest, LlmClient, LlmError};
use beacon_sim::{SimConfig, SimServer};
use clap::Args;
use futures::StreamExt;

#[derive(Args)]
pub struct QuotaArgs {
    /// Run only the scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Scale the number of units (e.g. 0.1 for a quick run).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Skip the seed baseline.
    #[arg(long)]
    no_baseline: bool,
}

struct Scenario {
    name: &'static str,
    sim: SimConfig,
    units: usize,
    chars: usize,
    max_tokens: u32,
    /// Whether BEACON is told the quota (otherwise adaptive concurrency finds it).
    quota_known: bool,
    timeout: Duration,
}

fn scenarios(scale: f64) -> Vec<Scenario> {
    let n = |units: f64| ((units * scale).round() as usize).max(1);
    let rpm_bound =
        SimConfig { rpm: Some(120), latency_ms: 1500, latency_spread: 0.3, seed: 7, ..SimConfig::default() };
    vec![
        Scenario {
            name: "RPM-bound",
            sim: rpm_bound.clone(),
            units: n(240.0),
            chars: 2000,
            max_tokens: 300,
            quota_known: true,
            timeout: Duration::from_secs(60),
        },
        Scenario {
            name: "TPM-bound",
            sim: SimConfig { rpm: Some(1000), tpm: Some(60_000), latency_ms: 1000, seed: 7, ..SimConfig::default() },
            units: n(150.0),
            chars: 4000,
            max_tokens: 500,
            quota_known: true,
            timeout: Duration::from_secs(60),
        },
        Scenario {
            name: "latency-bound",
            sim: SimConfig { rpm: Some(6000), latency_ms: 3000, seed: 7, ..SimConfig::default() },
            units: n(300.0),
            chars: 2000,
            max_tokens: 300,
            quota_known: true,
            timeout: Duration::from_secs(60),
        },
        Scenario {
            name: "unknown quota",
            sim: rpm_bound.clone(),
            units: n(240.0),
            chars: 2000,
            max_tokens: 300,
            quota_known: false,
            timeout: Duration::from_secs(60),
        },
        Scenario {
            name: "faults",
            sim: SimConfig { fault_503: 0.05, fault_hang: 0.02, ..rpm_bound },
            units: n(240.0),
            chars: 2000,
            max_tokens: 300,
            quota_known: true,
            timeout: Duration::from_secs(10),
        },
    ]
}

/// A unit's text: varied sentences of about `chars` characters.
fn unit_text(i: usize, chars: usize) -> String {
    let mut text = format!("Unit {i}. ");
    let mut k = 0;
    while text.len() < chars {
        text.push_str(&format!(
            "Shipment {k} of order {i}-{k} left the warehouse on 2026-05-{:02} with {} pallets worth ${},{:03}. ",
            (i + k) % 28 + 1,
            (i * 7 + k) % 40 + 1,
            (i + k) % 90 + 1,
            (i * 13 + k * 7) % 1000
        ));
        k += 1;
    }
    text
}

fn request(i: usize, s: &Scenario) -> CompletionRequest {
    CompletionRequest {
        system: "Answer with one JSON object.".into(),
        instruction: "Summarise the content as JSON with a summary field.".into(),
        content: unit_text(i, s.chars),
        content_label: format!("unit {i}"),
        language: Some("en".into()),
        max_tokens: s.max_tokens,
        temperature: 0.0,
    }
}

async fn provider(endpoint: &str, timeout: Duration) -> Result<BedrockConverse, LlmError> {
    BedrockConverse::builder("bench-model")
        .endpoint(endpoint)
        .region("us-east-1")
        .static_credentials("AKIDBENCH", "bench")
        .read_timeout(timeout)
        .build()
        .await
}

struct Outcome {
    makespan: Duration,
    failed: usize,
    requests: u64,
    throttled: u64,
    tokens: u64,
}

/// BEACON: limiter (known quota) or adaptive concurrency (unknown), over full-jitter retry.
async fn run_beacon(s: &Scenario, endpoint: &str) -> Result<Outcome, String> {
    let inner = provider(endpoint, s.timeout).await.map_err(|e| e.to_string())?;
    let policy = RetryPolicy {
        base_delay: Duration::from_millis(250),
        max_delay: Duration::from_secs(10),
        ..RetryPolicy::default()
    };
    let retrying = Retrying::new(inner, policy, ClientStats::default());
    let client: Arc<dyn LlmClient> = if s.quota_known {
        let quota = Quota { rpm: s.sim.rpm, tpm: s.sim.tpm };
        Arc::new(Limited::new(retrying, Arc::new(GcraLimiter::new(quota).with_burst(1.0))))
    } else {
        Arc::new(Adaptive::new(retrying, AdaptiveConfig { initial: 16.0, ..AdaptiveConfig::default() }))
    };
    let started = Instant::now();
    let calls = (0..s.units).map(|i| {
        let client = client.clone();
        let req = request(i, s);
        async move { client.complete(&req).await.is_ok() }
    });
    // The Map hands every unit to the stack; the stack decides how many go at once.
    let results: Vec<bool> = futures::stream::iter(calls).buffer_unordered(1024).collect().await;
    Ok(Outcome {
        makespan: started.elapsed(),
        failed: results.iter().filter(|ok| !**ok).count(),
        requests: 0,
        throttled: 0,
        tokens: 0,
    })
}

/// The seed's algorithm exactly: concurrency 10, up to 5 attempts, retry only
/// ThrottlingException after min(1 s × 2^attempt, 10 s), no jitter.
async fn run_seed(s: &Scenario, endpoint: &str) -> Result<Outcome, String> {
    let client = Arc::new(provider(endpoint, s.timeout).await.map_err(|e| e.to_string())?);
    let started = Instant::now();
    let calls = (0..s.units).map(|i| {
        let client = client.clone();
        let req = request(i, s);
        async move {
            let mut attempt = 0u32;
            loop {
                match client.complete(&req).await {
                    Ok(_) => return true,
                    Err(e) => {
                        attempt += 1;
                        if attempt == 5 || !e.is_throttle() {
                            return false;
                        }
                        let delay = Duration::from_millis((1000u64 << attempt).min(10_000));
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
    });
    let results: Vec<bool> = futures::stream::iter(calls).buffer_unordered(10).collect().await;
    Ok(Outcome {
        makespan: started.elapsed(),
        failed: results.iter().filter(|ok| !**ok).count(),
        requests: 0,
        throttled: 0,
        tokens: 0,
    })
}

fn ideal(s: &Scenario, tokens: u64) -> Duration {
    let n = s.units as f64;
    let by_requests = s.sim.rpm.map(|r| n / f64::from(r)).unwrap_or(0.0);
    let by_tokens = s.sim.tpm.map(|t| tokens as f64 / t as f64).unwrap_or(0.0);
    let windows = by_requests.max(by_tokens).ceil().max(1.0) - 1.0;
    Duration::from_secs_f64(60.0 * windows + s.sim.latency_ms as f64 / 1000.0)
}

async fn measure(s: &Scenario, which: &str) -> Result<Outcome, String> {
    let server = SimServer::start("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?, s.sim.clone())
        .await
        .map_err(|e| e.to_string())?;
    let endpoint = format!("http://{}", server.local_addr());
    let mut outcome = match which {
        "beacon" => run_beacon(s, &endpoint).await?,
        _ => run_seed(s, &endpoint).await?,
    };
    let stats = server.stats();
    outcome.requests = stats.requests;
    outcome.throttled = stats.throttled;
    outcome.tokens = stats.input_tokens + stats.output_tokens;
    server.shutdown().await;
    Ok(outcome)
}

pub async fn run(args: QuotaArgs) -> i32 {
    println!(
        "| scenario | client | units | makespan | ideal | ratio | requests | throttled | throttled % | failed units |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for s in scenarios(args.scale) {
        if args.only.as_deref().is_some_and(|o| !s.name.contains(o)) {
            continue;
        }
        let clients: &[&str] = if args.no_baseline { &["beacon"] } else { &["beacon", "seed"] };
        for which in clients {
            match measure(&s, which).await {
                Ok(o) => {
                    let ideal = ideal(&s, o.tokens);
                    println!(
                        "| {} | {} | {} | {:.1} s | {:.1} s | {:.2} | {} | {} | {:.1}% | {} |",
                        s.name,
                        if *which == "beacon" { "BEACON" } else { "seed baseline" },
                        s.units,
                        o.makespan.as_secs_f64(),
                        ideal.as_secs_f64(),
                        o.makespan.as_secs_f64() / ideal.as_secs_f64(),
                        o.requests,
                        o.throttled,
                        100.0 * o.throttled as f64 / o.requests.max(1) as f64,
                        o.failed
                    );
                }
                Err(e) => {
                    eprintln!("error: {} / {which}: {e}", s.name);
                    return 1;
                }
            }
        }
    }
    0
}
