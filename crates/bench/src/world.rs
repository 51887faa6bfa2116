//! Provider behaviours as models, run in virtual time: the quota matrix.
//!
//! Real providers enforce per-minute quotas in different ways (see `beacon_sim::quota`). This
//! module runs BEACON's client stack — exactly as `beacon run` builds it, retry and pacer
//! included — and the seed's algorithm against a provider model of each behaviour, on tokio's
//! paused clock, so a matrix of a hundred ten-minute runs takes seconds and every figure is
//! reproducible. The provider is the simulator's own quota code ([`Quota`]) behind an
//! in-process [`LlmClient`]: no HTTP, the same admission rules `beacon sim` applies.
//!
//! **The ideal** of a cell is the provider model's own limit: each request in unit order sent at
//! the earliest instant the model admits it (knowing its rules, the background traffic and the
//! schedule), answered after the same latency; the ideal makespan is when the last answer comes.
//! Faults are the same for every contender and for the ideal: a unit's n-th attempt fails the
//! same way whoever sends it. A 5xx comes back at once and is not charged; a hung attempt was
//! admitted (it counts against the quota, as a real provider counts a request whose connection
//! died) and ends at the client's timeout. The ideal retries a failed attempt at once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use beacon_llm::limiter::{GcraLimiter, Quota as ToldQuota};
use beacon_llm::pacer::PacerConfig;
use beacon_llm::retry::RetryPolicy;
use beacon_llm::stack::{self, Pacing};
use beacon_llm::{ClientStats, Completion, CompletionRequest, LlmClient, LlmError, Usage};
use beacon_sim::quota::{Quota, QuotaChange, QuotaMode, QuotaRules, TokenAccounting};
use futures::StreamExt;

/// One workload: what is sent, and how the model answers.
#[derive(Debug, Clone)]
pub struct Workload {
    pub name: &'static str,
    pub units: usize,
    pub chars: usize,
    pub max_tokens: u32,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub latency_ms: u64,
    /// ± this share of the latency, per unit.
    pub spread: f64,
    pub fault_503: f64,
    pub fault_hang: f64,
    /// The client's request timeout (what ends a hung request).
    pub timeout: Duration,
    /// The network round trip: a request reaches the provider's quota half of it after being
    /// sent, and a refusal (a throttle, a 5xx) comes back half of it after that.
    pub round_trip: Duration,
}

/// How the provider enforces the quota.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub name: &'static str,
    pub mode: QuotaMode,
    pub burst_secs: Option<f64>,
    pub fixed_phase_secs: f64,
    pub accounting: TokenAccounting,
    pub schedule: Vec<QuotaChange>,
    pub background: f64,
    /// Cap on requests in flight, as a share of what the ideal needs at once (rate × latency).
    pub in_flight_share: Option<f64>,
    pub retry_after: bool,
    /// Whether the told quota is what the provider gives (hidden traffic or a changing quota make
    /// it wrong).
    pub told_is_right: bool,
}

impl Behaviour {
    fn base(name: &'static str) -> Behaviour {
        Behaviour {
            name,
            mode: QuotaMode::SlidingWindow,
            burst_secs: None,
            fixed_phase_secs: 0.0,
            accounting: TokenAccounting::Settle,
            schedule: Vec::new(),
            background: 0.0,
            in_flight_share: None,
            retry_after: false,
            told_is_right: true,
        }
    }

    fn rules(&self, w: &Workload) -> QuotaRules {
        QuotaRules {
            mode: self.mode,
            rpm: w.rpm,
            tpm: w.tpm,
            burst: None,
            burst_secs: self.burst_secs,
            fixed_phase_secs: self.fixed_phase_secs,
            accounting: self.accounting,
            schedule: self.schedule.clone(),
            background: self.background,
        }
    }

    /// The in-flight cap for `w`, if any.
    fn in_flight_cap(&self, w: &Workload) -> Option<usize> {
        let share = self.in_flight_share?;
        let rate = w.rpm.map_or(f64::INFINITY, |rpm| f64::from(rpm) / 60.0);
        let needed = (rate * w.latency_ms as f64 / 1000.0).min(w.units as f64);
        Some(((needed * share).round() as usize).max(1))
    }
}

/// The behaviours of the matrix (issue 16's list).
pub fn behaviours() -> Vec<Behaviour> {
    let change = |factor| vec![QuotaChange { at_secs: 20.0, factor }];
    vec![
        Behaviour::base("sliding 60 s window"),
        Behaviour { retry_after: true, ..Behaviour::base("sliding window, Retry-After") },
        Behaviour { mode: QuotaMode::FixedWindow, ..Behaviour::base("fixed minute windows") },
        Behaviour {
            mode: QuotaMode::FixedWindow,
            fixed_phase_secs: 30.0,
            ..Behaviour::base("fixed windows, run starts mid-minute")
        },
        Behaviour { mode: QuotaMode::TokenBucket, burst_secs: Some(1.0), ..Behaviour::base("token bucket, 1 s burst") },
        Behaviour {
            mode: QuotaMode::TokenBucket,
            burst_secs: Some(1.0),
            retry_after: true,
            ..Behaviour::base("token bucket, Retry-After")
        },
        Behaviour { accounting: TokenAccounting::Reservation, ..Behaviour::base("TPM kept at the reservation") },
        Behaviour { in_flight_share: Some(0.5), ..Behaviour::base("in-flight cap (half the need)") },
        Behaviour { background: 0.4, told_is_right: false, ..Behaviour::base("40% hidden traffic") },
        Behaviour {
            mode: QuotaMode::TokenBucket,
            burst_secs: Some(1.0),
            background: 0.4,
            told_is_right: false,
            ..Behaviour::base("token bucket + 40% hidden traffic")
        },
        Behaviour { schedule: change(0.5), told_is_right: false, ..Behaviour::base("quota halved at 20 s") },
        Behaviour { schedule: change(2.0), told_is_right: false, ..Behaviour::base("quota doubled at 20 s") },
    ]
}

/// The workloads of the matrix (the quota benchmark's scenarios), units scaled by `scale`.
pub fn workloads(scale: f64) -> Vec<Workload> {
    let n = |units: f64| ((units * scale).round() as usize).max(1);
    let rpm_bound = Workload {
        name: "RPM-bound",
        units: n(240.0),
        chars: 2000,
        max_tokens: 300,
        rpm: Some(120),
        tpm: None,
        latency_ms: 1500,
        spread: 0.3,
        fault_503: 0.0,
        fault_hang: 0.0,
        timeout: Duration::from_secs(60),
        round_trip: Duration::from_millis(100),
    };
    vec![
        rpm_bound.clone(),
        Workload {
            name: "TPM-bound",
            units: n(150.0),
            chars: 4000,
            max_tokens: 500,
            rpm: Some(1000),
            // Two seconds of this is more than a request reserves: a bucket of one second holds one.
            tpm: Some(120_000),
            latency_ms: 1000,
            ..rpm_bound.clone()
        },
        Workload { name: "latency-bound", units: n(300.0), rpm: Some(6000), latency_ms: 3000, ..rpm_bound.clone() },
        Workload { name: "faults", fault_503: 0.05, fault_hang: 0.02, timeout: Duration::from_secs(10), ..rpm_bound },
    ]
}

/// Which client runs a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// BEACON's stack told the workload's quota.
    BeaconTold,
    /// BEACON's stack told nothing.
    BeaconUntold,
    /// The seed's algorithm: concurrency 10, 5 attempts, throttles retried after
    /// `min(1 s × 2^attempt, 10 s)`, no jitter.
    Seed,
}

impl Contender {
    pub fn label(self) -> &'static str {
        match self {
            Contender::BeaconTold => "BEACON, told",
            Contender::BeaconUntold => "BEACON, not told",
            Contender::Seed => "seed",
        }
    }
}

/// What one contender did in one cell.
#[derive(Debug, Clone, Default)]
pub struct CellOutcome {
    pub makespan: Duration,
    pub ideal: Duration,
    pub requests: u64,
    pub throttled: u64,
    /// Attempts the provider failed (5xx, hangs): each needs a retry.
    pub faulted: u64,
    pub failed: usize,
    /// The most of the client's own requests and tokens the provider admitted in any 60 s window.
    pub max_rpm: u64,
    pub max_tpm: u64,
}

impl CellOutcome {
    pub fn ratio(&self) -> f64 {
        self.makespan.as_secs_f64() / self.ideal.as_secs_f64().max(1e-9)
    }

    pub fn throttled_share(&self) -> f64 {
        self.throttled as f64 / self.requests.max(1) as f64
    }
}

/// A unit's request.
pub fn request(i: usize, w: &Workload) -> CompletionRequest {
    let mut content = format!("Unit {i}. ");
    let mut k = 0;
    while content.len() < w.chars {
        content.push_str(&format!(
            "Shipment {k} of order {i}-{k} left the warehouse on 2026-05-{:02} with {} pallets. ",
            (i + k) % 28 + 1,
            (i * 7 + k) % 40 + 1
        ));
        k += 1;
    }
    CompletionRequest {
        system: "Answer with one JSON object.".into(),
        instruction: "Summarise the content as JSON with a summary field.".into(),
        content,
        content_label: format!("unit {i}"),
        language: Some("en".into()),
        max_tokens: w.max_tokens,
        temperature: 0.0,
        attachments: Vec::new(),
    }
}

/// What the provider model answers a unit with: latency, input and output tokens.
#[derive(Debug, Clone, Copy)]
struct Answer {
    latency: Duration,
    input: u64,
    output: u64,
}

fn digest(request: &CompletionRequest) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    request.content.hash(&mut hasher);
    hasher.finish()
}

/// A uniform draw in `[0, 1)` from `seed`.
fn unit_interval(seed: u64) -> f64 {
    let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(31).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

fn answer(request: &CompletionRequest, w: &Workload) -> Answer {
    let seed = digest(request);
    let spread = 1.0 + w.spread * (2.0 * unit_interval(seed) - 1.0);
    let text = format!("{}\n{}\n{}", request.system, request.instruction, request.content);
    let output = (u64::from(request.max_tokens) * 2 / 5) + (unit_interval(seed ^ 1) * 100.0) as u64;
    Answer {
        latency: Duration::from_secs_f64(w.latency_ms as f64 / 1000.0 * spread),
        input: beacon_sim::estimate_tokens(&text),
        output: output.min(u64::from(request.max_tokens)),
    }
}

/// How an attempt fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// A 5xx at once, before admission.
    Unavailable,
    /// Admitted, then no answer until the client's timeout.
    Hang,
}

/// The fault of attempt `attempt` (from 0) of the unit whose request digest is `key`.
fn fault(w: &Workload, key: u64, attempt: u64) -> Option<Fault> {
    let draw = unit_interval(key ^ (attempt + 1).wrapping_mul(0x5851_F42D_4C95_7F2D));
    if draw < w.fault_503 {
        Some(Fault::Unavailable)
    } else if draw < w.fault_503 + w.fault_hang {
        Some(Fault::Hang)
    } else {
        None
    }
}

/// The provider: the simulator's quota code behind an in-process client, on tokio's clock.
struct ModelProvider {
    workload: Workload,
    quota: Mutex<Quota>,
    in_flight: AtomicU64,
    cap: Option<usize>,
    retry_after: bool,
    requests: AtomicU64,
    throttled: AtomicU64,
    /// Attempts that failed with a fault (a 5xx or a hang).
    faulted: AtomicU64,
    /// Attempts so far per unit (by request digest): the n-th attempt's fault is fixed.
    attempts: Mutex<std::collections::HashMap<u64, u64>>,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Gives the in-flight slot back however the request ends.
struct Slot<'a>(&'a AtomicU64);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ModelProvider {
    fn throttle(&self, retry_after: Duration) -> LlmError {
        self.throttled.fetch_add(1, Ordering::SeqCst);
        let hint = (self.retry_after && retry_after != Duration::MAX).then_some(retry_after);
        LlmError::Throttled { provider: "model".into(), message: "Too many requests".into(), retry_after: hint }
    }
}

#[async_trait]
impl LlmClient for ModelProvider {
    fn name(&self) -> String {
        "model".into()
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let w = &self.workload;
        let half_trip = w.round_trip / 2;
        tokio::time::sleep(half_trip).await;
        let result = self.arrive(request).await;
        if result.is_err() {
            tokio::time::sleep(half_trip).await;
        }
        result
    }
}

impl ModelProvider {
    /// The request as the provider sees it on arrival.
    async fn arrive(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        let w = &self.workload;
        let key = digest(request);
        // Throttled attempts do not count: the n-th attempt the provider processed has the fault.
        let attempt = self.attempts.lock().unwrap().get(&key).copied().unwrap_or(0);
        let processed = || *self.attempts.lock().unwrap().entry(key).or_insert(0) += 1;
        let fault = fault(w, key, attempt);
        if fault == Some(Fault::Unavailable) {
            processed();
            self.faulted.fetch_add(1, Ordering::SeqCst);
            return Err(LlmError::Transient { provider: "model".into(), message: "503".into() });
        }
        let taken = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(&self.in_flight);
        if self.cap.is_some_and(|cap| taken as usize >= cap) {
            drop(slot);
            return Err(self.throttle(Duration::from_secs(1)));
        }
        let answer = answer(request, w);
        let reservation = answer.input + u64::from(request.max_tokens);
        let admission = self.quota.lock().unwrap().try_admit(now(), reservation);
        let admission = match admission {
            Ok(admission) => admission,
            Err(refusal) => {
                drop(slot);
                return Err(self.throttle(refusal.retry_after));
            }
        };
        processed();
        if fault == Some(Fault::Hang) {
            self.faulted.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(w.timeout).await;
            self.quota.lock().unwrap().settle(now(), admission, answer.input);
            return Err(LlmError::Transient { provider: "model".into(), message: "timed out".into() });
        }
        tokio::time::sleep(answer.latency).await;
        self.quota.lock().unwrap().settle(now(), admission, answer.input + answer.output);
        drop(slot);
        Ok(Completion {
            text: "{}".into(),
            usage: Usage { input_tokens: answer.input, output_tokens: answer.output },
            model: "model".into(),
            stop_reason: "end_turn".into(),
            attempts: 1,
            throttles: 0,
        })
    }
}

/// The ideal makespan of `w` under `b` (see the module documentation): every attempt ready at
/// `ready` (when it would reach the provider) is admitted at the earliest instant from then the
/// model admits it, earliest-ready first (unit order on ties).
pub fn ideal(w: &Workload, b: &Behaviour) -> Duration {
    let start = Instant::now();
    let mut quota = Quota::with_rules(b.rules(w), start);
    let cap = b.in_flight_cap(w);
    // Attempts ready to go: (ready at, unit, attempt).
    let mut ready: BinaryHeap<Reverse<(Duration, usize, u64)>> =
        (0..w.units).map(|i| Reverse((w.round_trip / 2, i, 0))).collect();
    // Attempts in flight: (ends at, id), and what each settles with.
    let mut due: BinaryHeap<Reverse<(Duration, u64)>> = BinaryHeap::new();
    let mut pending = std::collections::HashMap::new();
    let mut next_id = 0u64;
    let mut t = Duration::ZERO;
    let mut last = Duration::ZERO;
    let horizon = Duration::from_secs(24 * 3600);
    let changes: Vec<Duration> = b.schedule.iter().map(|c| Duration::from_secs_f64(c.at_secs)).collect();
    while let Some(Reverse((at, i, attempt))) = ready.pop() {
        t = t.max(at);
        let request = request(i, w);
        let answer = answer(&request, w);
        let fault = fault(w, digest(&request), attempt);
        if fault == Some(Fault::Unavailable) {
            ready.push(Reverse((t + w.round_trip, i, attempt + 1)));
            continue;
        }
        let reservation = answer.input + u64::from(request.max_tokens);
        loop {
            while let Some(Reverse((ends, id))) = due.peek().copied() {
                if ends > t {
                    break;
                }
                due.pop();
                let (admission, used) = pending.remove(&id).expect("pending answer");
                quota.settle(start + ends, admission, used);
            }
            let room = cap.is_none_or(|cap| due.len() < cap);
            let refusal = if room {
                match quota.try_admit(start + t, reservation) {
                    Ok(admission) => {
                        let (ends, used) = if fault == Some(Fault::Hang) {
                            ready.push(Reverse((t + w.timeout + w.round_trip, i, attempt + 1)));
                            (t + w.timeout, answer.input)
                        } else {
                            last = last.max(t + answer.latency);
                            (t + answer.latency, answer.input + answer.output)
                        };
                        pending.insert(next_id, (admission, used));
                        due.push(Reverse((ends, next_id)));
                        next_id += 1;
                        break;
                    }
                    Err(refusal) => Some(refusal.retry_after),
                }
            } else {
                None
            };
            let next_answer = due.peek().map(|Reverse((ends, _))| *ends);
            let retry =
                refusal.filter(|wait| *wait != Duration::MAX).map(|wait| t + wait.max(Duration::from_millis(1)));
            // A quota change may admit it sooner than the refusal said.
            let change = changes.iter().copied().find(|at| *at > t);
            t = [retry, next_answer, change].into_iter().flatten().min().unwrap_or(t + Duration::from_millis(100));
            if t > horizon {
                return horizon;
            }
        }
    }
    last
}

/// Runs one cell in virtual time (on a fresh paused runtime).
pub fn run_cell(w: &Workload, b: &Behaviour, contender: Contender) -> CellOutcome {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build();
    let Ok(runtime) = runtime else { return CellOutcome::default() };
    let mut outcome = runtime.block_on(async {
        let provider = Arc::new(ModelProvider {
            workload: w.clone(),
            quota: Mutex::new(Quota::with_rules(b.rules(w), now())),
            in_flight: AtomicU64::new(0),
            cap: b.in_flight_cap(w),
            retry_after: b.retry_after,
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            faulted: AtomicU64::new(0),
            attempts: Mutex::new(std::collections::HashMap::new()),
        });
        let started = tokio::time::Instant::now();
        let failed = match contender {
            Contender::Seed => run_seed(provider.clone(), w).await,
            told => run_beacon(provider.clone(), w, told == Contender::BeaconTold).await,
        };
        let quota = provider.quota.lock().unwrap();
        CellOutcome {
            makespan: started.elapsed(),
            ideal: Duration::ZERO,
            requests: provider.requests.load(Ordering::SeqCst),
            throttled: provider.throttled.load(Ordering::SeqCst),
            faulted: provider.faulted.load(Ordering::SeqCst),
            failed,
            max_rpm: quota.observed().max_requests_observed(),
            max_tpm: quota.observed().max_tokens_observed(),
        }
    });
    outcome.ideal = ideal(w, b);
    outcome
}

async fn run_beacon(provider: Arc<ModelProvider>, w: &Workload, told: bool) -> usize {
    let pacing = if told {
        let quota = ToldQuota { rpm: w.rpm, tpm: w.tpm, tpd: None };
        Pacing::Told { quota, limiter: Arc::new(GcraLimiter::new(quota).with_burst(1.0)) }
    } else {
        Pacing::Unknown
    };
    let client = stack::paced(provider, RetryPolicy::default(), ClientStats::default(), pacing, PacerConfig::default());
    let calls = (0..w.units).map(|i| {
        let client = client.clone();
        let request = request(i, w);
        async move { client.complete(&request).await.is_ok() }
    });
    // The Map hands every unit to the stack; the stack decides how many go at once.
    let results: Vec<bool> = futures::stream::iter(calls).buffer_unordered(1024).collect().await;
    results.iter().filter(|ok| !**ok).count()
}

async fn run_seed(provider: Arc<ModelProvider>, w: &Workload) -> usize {
    let calls = (0..w.units).map(|i| {
        let provider = provider.clone();
        let request = request(i, w);
        async move { crate::quota::seed_call(provider.as_ref(), &request).await }
    });
    let results: Vec<bool> = futures::stream::iter(calls).buffer_unordered(10).collect().await;
    results.iter().filter(|ok| !**ok).count()
}

/// The goals of issue 16 for one BEACON cell: `(makespan ratio, throttled share)` bounds.
pub fn goals(b: &Behaviour, contender: Contender) -> (f64, f64) {
    match contender {
        Contender::BeaconTold if b.told_is_right => (1.05, 0.02),
        Contender::BeaconTold => (1.15, 0.10),
        _ => (1.15, 0.10),
    }
}

#[derive(clap::Args)]
/// `beacon-bench matrix` options.
pub struct MatrixArgs {
    /// Run only the workloads whose name contains this.
    #[arg(long)]
    workload: Option<String>,
    /// Run only the behaviours whose name contains this.
    #[arg(long)]
    behaviour: Option<String>,
    /// Scale the number of units.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Leave out the seed's algorithm.
    #[arg(long)]
    no_seed: bool,
}

/// Prints the matrix as a Markdown table; exits 1 when a BEACON cell misses a goal.
pub fn run_matrix(args: &MatrixArgs) -> i32 {
    println!(
        "| workload | provider behaviour | client | makespan | ideal | ratio | requests | throttled | failed | goal |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut missed = 0;
    let contenders: &[Contender] = if args.no_seed {
        &[Contender::BeaconTold, Contender::BeaconUntold]
    } else {
        &[Contender::BeaconTold, Contender::BeaconUntold, Contender::Seed]
    };
    for w in workloads(args.scale) {
        if args.workload.as_deref().is_some_and(|only| !w.name.contains(only)) {
            continue;
        }
        for b in behaviours() {
            if args.behaviour.as_deref().is_some_and(|only| !b.name.contains(only)) {
                continue;
            }
            let mut seed_ratio = None;
            let mut rows = Vec::new();
            for &contender in contenders.iter().rev() {
                let outcome = run_cell(&w, &b, contender);
                if contender == Contender::Seed {
                    seed_ratio = Some((outcome.ratio(), outcome.failed));
                }
                rows.push((contender, outcome));
            }
            rows.reverse();
            for (contender, o) in rows {
                let verdict = if contender == Contender::Seed {
                    String::new()
                } else {
                    let (ratio, share) = goals(&b, contender);
                    let better = seed_ratio.is_none_or(|(seed, seed_failed)| o.ratio() < seed || seed_failed > 0);
                    let allowed_requests = (1.1 * w.units as f64).ceil() as u64 + o.throttled + o.faulted;
                    let ok = o.failed == 0
                        && o.ratio() <= ratio
                        && o.throttled_share() <= share
                        && o.requests <= allowed_requests
                        && better;
                    if !ok {
                        missed += 1;
                    }
                    format!("{} (≤ {ratio:.2}, ≤ {:.0}%)", if ok { "met" } else { "MISSED" }, share * 100.0)
                };
                println!(
                    "| {} | {} | {} | {:.1} s | {:.1} s | {:.2} | {} | {} ({:.1}%) | {} | {} |",
                    w.name,
                    b.name,
                    contender.label(),
                    o.makespan.as_secs_f64(),
                    o.ideal.as_secs_f64(),
                    o.ratio(),
                    o.requests,
                    o.throttled,
                    100.0 * o.throttled_share(),
                    o.failed,
                    verdict
                );
            }
        }
    }
    eprintln!("{missed} BEACON cells missed a goal");
    i32::from(missed > 0)
}
