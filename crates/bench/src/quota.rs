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
use beacon_llm::limiter::{GcraLimiter, Quota};
use beacon_llm::pacer::PacerConfig;
use beacon_llm::retry::RetryPolicy;
use beacon_llm::stack::{self, Pacing};
use beacon_llm::{ClientStats, CompletionRequest, LlmClient, LlmError};
use beacon_sim::{SimConfig, SimServer};
use clap::Args;
use futures::StreamExt;

#[derive(Args)]
/// `beacon-bench quota` options.
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

/// One workload against one simulated quota.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub sim: SimConfig,
    pub units: usize,
    pub chars: usize,
    pub max_tokens: u32,
    /// Whether BEACON is told the quota (otherwise adaptive concurrency finds it).
    pub quota_known: bool,
    pub timeout: Duration,
}

/// The five scenarios, with the number of units multiplied by `scale`.
pub fn scenarios(scale: f64) -> Vec<Scenario> {
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

/// The five scenarios cut down to about a minute each, for CI: quotas and units scaled so that
/// every quota-bound run still needs a second window (the part that goes wrong when pacing is
/// wrong), latencies shortened.
pub fn reduced_scenarios() -> Vec<Scenario> {
    let rpm_bound = SimConfig { rpm: Some(30), latency_ms: 500, latency_spread: 0.3, seed: 11, ..SimConfig::default() };
    let scenario = |name, sim: SimConfig, units, chars, quota_known, timeout_secs| Scenario {
        name,
        sim,
        units,
        chars,
        max_tokens: 300,
        quota_known,
        timeout: Duration::from_secs(timeout_secs),
    };
    vec![
        scenario("RPM-bound", rpm_bound.clone(), 45, 2000, true, 60),
        scenario(
            "TPM-bound",
            SimConfig { rpm: Some(1000), tpm: Some(15_000), latency_ms: 300, seed: 11, ..SimConfig::default() },
            25,
            4000,
            true,
            60,
        ),
        scenario(
            "latency-bound",
            SimConfig { rpm: Some(6000), latency_ms: 1000, seed: 11, ..SimConfig::default() },
            100,
            2000,
            true,
            60,
        ),
        scenario("unknown quota", rpm_bound.clone(), 45, 2000, false, 60),
        scenario("faults", SimConfig { fault_503: 0.05, fault_hang: 0.02, ..rpm_bound }, 45, 2000, true, 5),
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
        attachments: Vec::new(),
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

/// What one client did in one scenario.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub makespan: Duration,
    pub failed: usize,
    /// As the simulator counted them: every request, throttled ones included.
    pub requests: u64,
    pub throttled: u64,
    pub tokens: u64,
    /// The most requests and tokens the simulator admitted in any 60 s window.
    pub max_rpm_observed: u64,
    pub max_tpm_observed: u64,
}

/// Which client runs a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// BEACON's client stack, as `beacon run` builds it.
    Beacon,
    /// The seed design's algorithm.
    Seed,
}

/// BEACON: limiter (known quota) or adaptive concurrency (unknown), over full-jitter retry.
async fn run_beacon(s: &Scenario, endpoint: &str) -> Result<Outcome, String> {
    let inner = provider(endpoint, s.timeout).await.map_err(|e| e.to_string())?;
    // The retry policy `beacon run` uses by default.
    let policy = RetryPolicy::default();
    let pacing = if s.quota_known {
        let quota = Quota { rpm: s.sim.rpm, tpm: s.sim.tpm, tpd: None };
        Pacing::Told { quota, limiter: Arc::new(GcraLimiter::new(quota).with_burst(1.0)) }
    } else {
        Pacing::Unknown
    };
    let client = stack::paced(Arc::new(inner), policy, ClientStats::default(), pacing, PacerConfig::default());
    let started = Instant::now();
    let calls = (0..s.units).map(|i| {
        let client = client.clone();
        let req = request(i, s);
        async move { client.complete(&req).await.is_ok() }
    });
    // The Map hands every unit to the stack; the stack decides how many go at once.
    let results: Vec<bool> = futures::stream::iter(calls).buffer_unordered(1024).collect().await;
    Ok(Outcome { makespan: started.elapsed(), failed: results.iter().filter(|ok| !**ok).count(), ..Outcome::default() })
}

/// The seed's algorithm exactly: concurrency 10, up to 5 attempts, retry only
/// ThrottlingException after min(1 s × 2^attempt, 10 s), no jitter.
async fn run_seed(s: &Scenario, endpoint: &str) -> Result<Outcome, String> {
    let client = Arc::new(provider(endpoint, s.timeout).await.map_err(|e| e.to_string())?);
    let started = Instant::now();
    let calls = (0..s.units).map(|i| {
        let client = client.clone();
        let req = request(i, s);
        async move { seed_call(client.as_ref(), &req).await }
    });
    let results: Vec<bool> = futures::stream::iter(calls).buffer_unordered(10).collect().await;
    Ok(Outcome { makespan: started.elapsed(), failed: results.iter().filter(|ok| !**ok).count(), ..Outcome::default() })
}

/// One unit as the seed sends it: up to 5 attempts, only throttles retried, after
/// `min(1 s × 2^attempt, 10 s)`, no jitter. Whether it succeeded.
pub async fn seed_call(client: &dyn LlmClient, request: &CompletionRequest) -> bool {
    let mut attempt = 0u32;
    loop {
        match client.complete(request).await {
            Ok(_) => return true,
            Err(error) => {
                attempt += 1;
                if attempt == 5 || !error.is_throttle() {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis((1000u64 << attempt).min(10_000))).await;
            }
        }
    }
}

/// The quota's physical limit for `s` (see the module documentation).
pub fn ideal(s: &Scenario, tokens: u64) -> Duration {
    let n = s.units as f64;
    let by_requests = s.sim.rpm.map(|r| n / f64::from(r)).unwrap_or(0.0);
    let by_tokens = s.sim.tpm.map(|t| tokens as f64 / t as f64).unwrap_or(0.0);
    let windows = by_requests.max(by_tokens).ceil().max(1.0) - 1.0;
    Duration::from_secs_f64(60.0 * windows + s.sim.latency_ms as f64 / 1000.0)
}

/// Runs `s` with `client` against a fresh in-process simulator.
pub async fn measure(s: &Scenario, client: Client) -> Result<Outcome, String> {
    let server = SimServer::start("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?, s.sim.clone())
        .await
        .map_err(|e| e.to_string())?;
    let endpoint = format!("http://{}", server.local_addr());
    let mut outcome = match client {
        Client::Beacon => run_beacon(s, &endpoint).await?,
        Client::Seed => run_seed(s, &endpoint).await?,
    };
    let stats = server.stats();
    outcome.requests = stats.requests;
    outcome.throttled = stats.throttled;
    outcome.tokens = stats.input_tokens + stats.output_tokens;
    outcome.max_rpm_observed = stats.max_rpm_observed;
    outcome.max_tpm_observed = stats.max_tpm_observed;
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
        let clients: &[Client] = if args.no_baseline { &[Client::Beacon] } else { &[Client::Beacon, Client::Seed] };
        for &which in clients {
            match measure(&s, which).await {
                Ok(o) => {
                    let ideal = ideal(&s, o.tokens);
                    println!(
                        "| {} | {} | {} | {:.1} s | {:.1} s | {:.2} | {} | {} | {:.1}% | {} |",
                        s.name,
                        if which == Client::Beacon { "BEACON" } else { "seed baseline" },
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
                    eprintln!("error: {} / {which:?}: {e}", s.name);
                    return 1;
                }
            }
        }
    }
    0
}
