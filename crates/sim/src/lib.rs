//! A local Amazon Bedrock-compatible (and OpenAI-compatible) server for tests, benchmarks, and
//! rehearsing quotas.
//!
//! `beacon-sim` answers Bedrock's Converse API (`POST /model/{modelId}/converse`) the way Bedrock
//! does, byte for byte where clients look: the response JSON, `ThrottlingException` as HTTP 429
//! with the `x-amzn-ErrorType` header the AWS SDKs parse, `ValidationException` for bad requests.
//! Any AWS SDK pointed at it (an endpoint URL override and any credentials) works unchanged. It
//! also answers OpenAI's Chat Completions API (`POST /v1/chat/completions`) with the same model,
//! quotas, latency and faults, and OpenAI's error shapes (429 with `retry-after`).
//!
//! What it simulates:
//! - **the model**: a deterministic, extractive analysis of the prompt's content that follows
//!   BEACON's unit schema (see [`answer`]), with token usage estimated by [`estimate_tokens`];
//! - **the quotas**: [`SimConfig::rpm`] requests and [`SimConfig::tpm`] tokens per minute over a
//!   sliding 60 s window, reserving input + `maxTokens` per request like Bedrock (see [`quota`]),
//!   or a token bucket for requests; and an optional cap on requests in flight;
//! - **latency**: [`SimConfig::latency_ms`] plus a cost per output token, with a seeded uniform
//!   spread (see [`latency`]);
//! - **faults**: fractions of requests answered 503, never answered, or answered with an unusable
//!   body, drawn from a seeded RNG so that runs are reproducible (see [`faults`]).
//!
//! It also serves `GET /_stats` (totals, window maxima and a per-second timeline), `GET /sim/stats`
//! (the same plus the older name `succeeded`; [`SimStats`] reads it) and `GET /health`.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use beacon_sim::{SimConfig, SimServer};
//!
//! let config = SimConfig { rpm: Some(60), tpm: Some(100_000), ..SimConfig::default() };
//! let sim = SimServer::start("127.0.0.1:0".parse().unwrap(), config).await?;
//! let endpoint = format!("http://{}", sim.local_addr());
//! // ... point a Bedrock (or OpenAI, at `{endpoint}/v1`) client at `endpoint` ...
//! println!("{:?}", sim.stats());
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod answer;
pub mod batch;
mod control;
pub mod faults;
pub mod latency;
pub mod openai;
pub mod protocol;
mod provisioned;
pub mod quota;
pub mod stats;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use answer::UnitAnswer;
pub use answer::{Tokenizer, estimate_tokens};
pub use control::DEFAULT_MODEL_NAME;
use faults::{Fault, FaultPlan, Malformation};
use latency::LatencyModel;
use openai::{ChatCompletion, ChatRequest, OpenAiError};
use protocol::{BedrockError, ConverseRequest, ConverseResponse, UNAVAILABLE_MESSAGE, ValidRequest, converse_model_id};
use quota::{Limit, Quota};
pub use quota::{QuotaChange, QuotaMode, QuotaRules, TokenAccounting};
use stats::{Counters, bump, stats_json};
pub use stats::{FaultStats, SecondStats, SimStats};

/// Request bodies larger than this are refused; units are far smaller.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Mixed into the seed for latency draws, so that latency and faults use independent sequences.
const LATENCY_SEED_SALT: u64 = 0x9E37_79B9_7F4A_7C15;

/// How the simulator behaves. Every default is "off": no quota, no latency, no faults.
///
/// Build it with struct update syntax so that fields added later keep their defaults:
/// `SimConfig { rpm: Some(60), ..SimConfig::default() }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Requests per minute before throttling; `None` for no quota.
    pub rpm: Option<u32>,
    /// Tokens per minute before throttling (each request reserves its input tokens plus its
    /// `maxTokens` until answered); `None` for no quota.
    pub tpm: Option<u64>,
    /// Tokens per day: a request is throttled when the tokens answered in the last 24 hours
    /// plus its reservation would pass it (Bedrock's "Model invocation max tokens per day").
    /// Service Quotas reports it (or `tpm` × 1,440 when unset, AWS's default).
    pub tpd: Option<u64>,
    /// The model's display name in the Service Quotas the simulator serves (its quotas are
    /// named "On-demand InvokeModel tokens per minute for NAME", ...); default "Sim Model".
    pub model_name: Option<String>,
    /// How many requests the token bucket admits at once; defaults to `max(1, rpm / 6)`. Only
    /// the token-bucket mode uses it, and setting it selects that mode unless
    /// [`SimConfig::quota_mode`] says otherwise.
    pub burst: Option<u32>,
    /// How the quotas are enforced; `None` means the token bucket when `burst` or `burst_secs`
    /// is set (what `burst` meant before the sliding window existed) and the sliding 60 s window
    /// otherwise.
    pub quota_mode: Option<QuotaMode>,
    /// The token buckets' capacity in seconds of quota (requests unless `burst` is set, and
    /// tokens); default 10 s. `1.0` is a "quantized" limit: about a second's share at once.
    pub burst_secs: Option<f64>,
    /// Where the first fixed window starts before the run, in seconds (fixed windows only).
    pub fixed_phase_secs: f64,
    /// What the tokens-per-minute quota counts for an answered request.
    pub tpm_accounting: TokenAccounting,
    /// Quota changes during the run (the quota times a factor from a time on).
    pub quota_schedule: Vec<QuotaChange>,
    /// The share (`0..1`) of the quotas used by traffic the client does not see.
    pub background_load: f64,
    /// Leave the `retry-after` header out of OpenAI-style throttles (Bedrock never sends one).
    pub no_retry_after: bool,
    /// The most requests answered at once; more are throttled (HTTP 429). `None` for no cap.
    pub max_in_flight: Option<u32>,
    /// The base latency of each successful answer, in milliseconds.
    pub latency_ms: u64,
    /// Latency added per output token, in milliseconds.
    pub latency_per_output_token_ms: f64,
    /// Uniform spread of the latency as a fraction in `0.0..=1.0` (0.3 = ±30 %).
    pub latency_spread: f64,
    /// The fraction of requests answered HTTP 503 (`ServiceUnavailableException`).
    pub fault_503: f64,
    /// The fraction of requests accepted and never answered.
    pub fault_hang: f64,
    /// The fraction of requests answered HTTP 200 with a body a client cannot use.
    pub fault_malformed: f64,
    /// Seeds the latency spread and the faults, so that runs are reproducible.
    pub seed: u64,
    /// The object store batch inference jobs read their input from and write their output to:
    /// `s3://BUCKET/KEY` is the file `KEY` under this directory (any bucket). `None`: batch jobs
    /// are refused with a message saying so.
    pub batch_store_dir: Option<std::path::PathBuf>,
    /// The fewest records a batch job accepts; `None` for Bedrock's 100.
    pub batch_min_records: Option<u64>,
    /// How long a batch job stays in each status before the next (Submitted, Validating,
    /// Scheduled, InProgress, then its end), in milliseconds; 0 ends it at the first look.
    pub batch_step_ms: u64,
    /// The fraction of batch records answered with an error instead of an output.
    pub batch_record_errors: f64,
    /// End every batch job `Failed` or `Expired` instead of answering its records.
    pub batch_end: Option<batch::BatchEnd>,
    /// How tokens are counted (usage, the tokens-per-minute quota).
    pub tokenizer: Tokenizer,
}

/// What went wrong starting the simulator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// A [`SimConfig`] field is out of range.
    #[error("invalid simulator configuration: {field} {message}")]
    InvalidConfig { field: &'static str, message: String },
}

impl SimConfig {
    /// How `rpm` is enforced (see [`SimConfig::quota_mode`]).
    pub fn effective_quota_mode(&self) -> QuotaMode {
        let bucket = self.burst.is_some() || self.burst_secs.is_some();
        self.quota_mode.unwrap_or(if bucket { QuotaMode::TokenBucket } else { QuotaMode::SlidingWindow })
    }

    /// The quota rules this configuration describes.
    pub fn quota_rules(&self) -> QuotaRules {
        QuotaRules {
            mode: self.effective_quota_mode(),
            rpm: self.rpm,
            tpm: self.tpm,
            burst: self.burst,
            burst_secs: self.burst_secs,
            fixed_phase_secs: self.fixed_phase_secs,
            accounting: self.tpm_accounting,
            schedule: self.quota_schedule.clone(),
            background: self.background_load,
        }
    }

    /// Checks that fractions are fractions and that the faults add up to at most every request.
    pub fn validate(&self) -> Result<(), SimError> {
        let fractions = [
            ("latency_spread", self.latency_spread),
            ("fault_503", self.fault_503),
            ("fault_hang", self.fault_hang),
            ("fault_malformed", self.fault_malformed),
            ("batch_record_errors", self.batch_record_errors),
            ("background_load", self.background_load),
        ];
        for (field, value) in fractions {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimError::InvalidConfig {
                    field,
                    message: format!("is {value}; use a fraction between 0 and 1 (0.3 = 30%)"),
                });
            }
        }
        let faults = self.fault_503 + self.fault_hang + self.fault_malformed;
        if faults > 1.0 + 1e-9 {
            return Err(SimError::InvalidConfig {
                field: "fault_503 + fault_hang + fault_malformed",
                message: format!("is {faults}; the fault fractions must add up to at most 1"),
            });
        }
        if let Some(secs) = self.burst_secs
            && !(secs.is_finite() && secs > 0.0)
        {
            return Err(SimError::InvalidConfig {
                field: "burst_secs",
                message: format!("is {secs}; use a positive number of seconds"),
            });
        }
        if !(0.0..60.0).contains(&self.fixed_phase_secs) {
            return Err(SimError::InvalidConfig {
                field: "fixed_phase_secs",
                message: format!("is {}; use seconds in 0..60", self.fixed_phase_secs),
            });
        }
        if let Some(change) =
            self.quota_schedule.iter().find(|c| !(c.at_secs >= 0.0 && c.factor.is_finite() && c.factor >= 0.0))
        {
            return Err(SimError::InvalidConfig {
                field: "quota_schedule",
                message: format!(
                    "has {}s x{}; use a time of at least 0 and a factor of at least 0",
                    change.at_secs, change.factor
                ),
            });
        }
        if !self.latency_per_output_token_ms.is_finite() || self.latency_per_output_token_ms < 0.0 {
            return Err(SimError::InvalidConfig {
                field: "latency_per_output_token_ms",
                message: format!("is {}; use a non-negative number", self.latency_per_output_token_ms),
            });
        }
        Ok(())
    }
}

/// The simulator's clock: tokio's, so that tests can pause and advance it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Why a request got HTTP 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Throttle {
    Requests,
    Tokens,
    /// The tokens-per-day quota.
    Day,
    InFlight,
}

/// A composed answer, before it is put on the wire.
#[derive(Debug)]
struct Answer {
    text: String,
    truncated: bool,
    input_tokens: u64,
    output_tokens: u64,
    latency_ms: u64,
}

impl Answer {
    fn compose(request: &ValidRequest, tokenizer: Tokenizer) -> Answer {
        let answer = UnitAnswer::from_prompt(&request.prompt).to_json();
        let (text, truncated) = if tokenizer.count(&answer) > request.max_tokens {
            (tokenizer.truncate(&answer, request.max_tokens).to_string(), true)
        } else {
            (answer, false)
        };
        let input_tokens = tokenizer.count(&request.all_text) + request.attachments * protocol::ATTACHMENT_TOKENS;
        let output_tokens = tokenizer.count(&text);
        Answer { text, truncated, input_tokens, output_tokens, latency_ms: 0 }
    }
}

/// How a model request ends, whatever the API.
#[derive(Debug)]
enum Outcome {
    Answered(Answer),
    Throttled {
        why: Throttle,
        retry_after: Duration,
    },
    Unavailable,
    Malformed(Malformation, Answer),
    /// The simulator stopped while the request was waiting (hung or in its latency).
    ShuttingDown,
}

/// Holds one of the in-flight slots until dropped (also when the client goes away mid-request).
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Everything the request handlers share.
#[derive(Debug)]
struct SimState {
    config: SimConfig,
    started: Instant,
    /// `started` on the wall clock: CloudWatch's timestamps.
    started_wall: SystemTime,
    quota: Mutex<Quota>,
    latency: LatencyModel,
    faults: FaultPlan,
    fault_rng: Mutex<StdRng>,
    latency_rng: Mutex<StdRng>,
    counters: Counters,
    /// Turns `true` (or its sender goes away) when the server stops.
    closing: watch::Receiver<bool>,
    batch_jobs: Mutex<batch::BatchJobs>,
    batch_stats: Mutex<batch::BatchStats>,
    provisioned: Mutex<provisioned::ProvisionedModels>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimState {
    fn new(config: &SimConfig, closing: watch::Receiver<bool>) -> SimState {
        let started = now();
        SimState {
            config: config.clone(),
            started,
            started_wall: SystemTime::now(),
            quota: Mutex::new(Quota::with_rules(config.quota_rules(), started)),
            latency: LatencyModel {
                base_ms: config.latency_ms as f64,
                per_output_token_ms: config.latency_per_output_token_ms,
                spread: config.latency_spread,
            },
            faults: FaultPlan {
                unavailable: config.fault_503,
                hang: config.fault_hang,
                malformed: config.fault_malformed,
            },
            fault_rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            latency_rng: Mutex::new(StdRng::seed_from_u64(config.seed ^ LATENCY_SEED_SALT)),
            counters: Counters::default(),
            closing,
            batch_jobs: Mutex::new(batch::BatchJobs::default()),
            provisioned: Mutex::new(provisioned::ProvisionedModels::default()),
            batch_stats: Mutex::new(batch::BatchStats::default()),
        }
    }

    fn stats(&self) -> SimStats {
        let (max_rpm, max_tpm) = {
            let quota = lock(&self.quota);
            (quota.observed().max_requests_observed(), quota.observed().max_tokens_observed())
        };
        self.counters.snapshot(max_rpm, max_tpm)
    }

    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_secs()
    }

    /// Counts a request to a model API; returns its number (from 1).
    fn arrive(&self) -> u64 {
        self.counters.at_second(self.second(now()), |s| s.requests += 1);
        bump(&self.counters.requests)
    }

    fn reject(&self, error: impl std::fmt::Display + IntoResponse) -> Response {
        bump(&self.counters.rejected);
        tracing::debug!(%error, "rejected request");
        error.into_response()
    }

    /// Resolves when the server is stopping.
    async fn closed(&self) {
        let mut closing = self.closing.clone();
        // An error means the sender is gone, which also means stop.
        let _ = closing.wait_for(|closing| *closing).await;
    }

    /// Takes an in-flight slot if the cap allows one more.
    fn enter(&self) -> Option<InFlight<'_>> {
        let in_flight = &self.counters.in_flight;
        let cap = self.config.max_in_flight.map_or(u64::MAX, u64::from);
        in_flight.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < cap).then_some(n + 1)).ok()?;
        Some(InFlight(in_flight))
    }

    fn throttled(&self, why: Throttle, retry_after: Duration) -> Outcome {
        bump(&self.counters.throttled);
        self.counters.at_second(self.second(now()), |s| s.throttled += 1);
        tracing::debug!(?why, ?retry_after, "throttled request");
        Outcome::Throttled { why, retry_after }
    }

    /// Faults, then the in-flight cap, then the quota, then the latency: the fate of a valid request.
    async fn process(&self, request: &ValidRequest) -> Outcome {
        let fault = self.faults.decide(&mut *lock(&self.fault_rng));
        match fault {
            Some(Fault::Unavailable) => {
                bump(&self.counters.unavailable);
                return Outcome::Unavailable;
            }
            Some(Fault::Hang) => {
                bump(&self.counters.hung);
                // Never answer; the client's timeout ends this (its connection closes and the
                // request is dropped) or the server's shutdown does.
                self.closed().await;
                return Outcome::ShuttingDown;
            }
            Some(Fault::Malformed(how)) => {
                bump(&self.counters.malformed);
                return Outcome::Malformed(how, Answer::compose(request, self.config.tokenizer));
            }
            None => {}
        }
        let Some(_slot) = self.enter() else {
            return self.throttled(Throttle::InFlight, Duration::from_secs(1));
        };
        let reservation = self.config.tokenizer.count(&request.all_text)
            + request.attachments * protocol::ATTACHMENT_TOKENS
            + request.max_tokens;
        if let Some(tpd) = self.config.tpd {
            let timeline = self.counters.timeline();
            let second = self.second(now());
            if control::day_tokens(&timeline, second).saturating_add(reservation) > tpd {
                return self.throttled(Throttle::Day, control::day_frees_in(&timeline, second));
            }
        }
        let admission = match lock(&self.quota).try_admit(now(), reservation) {
            Ok(admission) => admission,
            Err(refusal) => {
                let why = match refusal.limit {
                    Limit::Requests => Throttle::Requests,
                    Limit::Tokens => Throttle::Tokens,
                };
                return self.throttled(why, refusal.retry_after);
            }
        };

        let started = tokio::time::Instant::now();
        let mut answer = Answer::compose(request, self.config.tokenizer);
        let delay = self.latency.sample(answer.output_tokens, &mut *lock(&self.latency_rng));
        if !delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.closed() => return Outcome::ShuttingDown,
            }
        }
        lock(&self.quota).settle(now(), admission, answer.input_tokens + answer.output_tokens);
        let counters = &self.counters;
        bump(&counters.succeeded);
        counters.attachments.fetch_add(request.attachments, Ordering::Relaxed);
        counters.input_tokens.fetch_add(answer.input_tokens, Ordering::Relaxed);
        counters.output_tokens.fetch_add(answer.output_tokens, Ordering::Relaxed);
        counters.at_second(self.second(now()), |s| {
            s.ok += 1;
            s.input_tokens += answer.input_tokens;
            s.output_tokens += answer.output_tokens;
        });
        answer.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Outcome::Answered(answer)
    }
}

/// A running simulator, serving on its own task until [`SimServer::shutdown`] (or until dropped).
#[derive(Debug)]
pub struct SimServer {
    local_addr: SocketAddr,
    state: Arc<SimState>,
    closing: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl SimServer {
    /// Binds `addr` (use port 0 for any free port), starts serving in the background and returns.
    ///
    /// Fails with [`std::io::ErrorKind::InvalidInput`] when the configuration is invalid (see
    /// [`SimConfig::validate`]).
    pub async fn start(addr: SocketAddr, config: SimConfig) -> std::io::Result<SimServer> {
        config.validate().map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (closing, closing_rx) = watch::channel(false);
        let state = Arc::new(SimState::new(&config, closing_rx.clone()));
        let app = router(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let mut stop = closing_rx;
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // A dropped sender also means stop.
                    let _ = stop.wait_for(|closing| *closing).await;
                })
                .await
        });
        tracing::info!(%local_addr, ?config, "Bedrock simulator listening");
        Ok(SimServer { local_addr, state, closing, task })
    }

    /// The address the simulator listens on (with the actual port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        self.state.stats()
    }

    /// What batch inference jobs processed.
    pub fn batch_stats(&self) -> batch::BatchStats {
        *lock(&self.state.batch_stats)
    }

    /// Requests, answers, throttles and tokens per second since the start.
    pub fn timeline(&self) -> Vec<SecondStats> {
        self.state.counters.timeline()
    }

    /// Stops accepting connections, ends hung requests and pending latencies (with a 503), and
    /// waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.closing.send(true);
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "Bedrock simulator stopped with an error"),
            Err(error) => tracing::warn!(%error, "Bedrock simulator task failed"),
        }
    }
}

/// Serves the simulator on `listener` until the returned future is dropped (the CLI races it
/// against ctrl-c) or the listener fails.
pub async fn serve(listener: TcpListener, config: SimConfig) -> std::io::Result<()> {
    config.validate().map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
    // Kept alive for as long as this future: dropping it ends hung requests.
    let (_closing, closing_rx) = watch::channel(false);
    let state = Arc::new(SimState::new(&config, closing_rx));
    if let Ok(local_addr) = listener.local_addr() {
        tracing::info!(%local_addr, ?config, "Bedrock simulator listening");
    }
    axum::serve(listener, router(state)).await
}

fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/sim/stats", get(legacy_stats))
        .route("/_stats", get(stats))
        // Model ids may contain (encoded or not) slashes, so the whole rest of the path is taken
        // and parsed by `converse_model_id`.
        .route("/model/{*rest}", post(converse))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/model-invocation-job", post(batch::create))
        .route("/model-invocation-job/{id}", get(batch::get))
        .route("/model-invocation-job/{id}/stop", post(batch::stop))
        .route("/model-invocation-jobs", get(batch::list))
        .route("/provisioned-model-throughput", post(provisioned::create))
        .route("/provisioned-model-throughput/{id}", get(provisioned::get))
        .route("/", post(control_plane))
        .route(control::GET_METRIC_DATA_PATH, post(metric_data))
        .fallback(unknown_operation)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Service Quotas (AWS JSON 1.1 on `/`, by `X-Amz-Target`): see [`control`].
async fn control_plane(State(state): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    match target.strip_prefix(control::SERVICE_QUOTAS_TARGET) {
        Some(operation) => control::service_quotas(&state.config, operation, &body),
        None => BedrockError::unknown_operation("POST", "/").into_response(),
    }
}

/// CloudWatch `GetMetricData` (RPC v2 CBOR): see [`control`].
async fn metric_data(State(state): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    control::get_metric_data(state.started_wall, &state.counters.timeline(), &headers, &body)
}

async fn stats(State(state): State<Arc<SimState>>) -> Response {
    stats_response(&state, false)
}

async fn legacy_stats(State(state): State<Arc<SimState>>) -> Response {
    stats_response(&state, true)
}

/// The counters, the timeline and what batch jobs processed.
fn stats_response(state: &SimState, legacy: bool) -> Response {
    let mut body = stats_json(&state.stats(), &state.counters.timeline(), legacy);
    body["batch"] = serde_json::to_value(*lock(&state.batch_stats)).unwrap_or_default();
    axum::Json(body).into_response()
}

async fn unknown_operation(method: Method, uri: Uri) -> Response {
    if uri.path().starts_with("/v1/") {
        let mut error = OpenAiError::invalid_request(format!("Invalid URL ({method} {})", uri.path()));
        error.status = StatusCode::NOT_FOUND;
        return error.into_response();
    }
    BedrockError::unknown_operation(method.as_str(), uri.path()).into_response()
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn to_json(value: &impl Serialize) -> String {
    // The response types are plain structs of strings and numbers; serializing them cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

async fn converse(State(state): State<Arc<SimState>>, uri: Uri, body: Bytes) -> Response {
    let request_number = state.arrive();
    let model_id = match converse_model_id(uri.path()) {
        None => return state.reject(BedrockError::unknown_operation("POST", uri.path())),
        Some(Err(error)) => return state.reject(error),
        Some(Ok(model_id)) => model_id,
    };
    let request = match ConverseRequest::parse(&body) {
        Ok(request) => request,
        Err(error) => return state.reject(error),
    };
    let outcome = state.process(&request).await;
    tracing::debug!(%model_id, ?outcome, "converse request");
    let converse = |answer: Answer, text: String| {
        let stop_reason = if answer.truncated { "max_tokens" } else { "end_turn" };
        ConverseResponse::new(text, stop_reason, answer.input_tokens, answer.output_tokens, answer.latency_ms)
    };
    let mut response = match outcome {
        Outcome::Answered(answer) => {
            let text = answer.text.clone();
            json_response(StatusCode::OK, to_json(&converse(answer, text)))
        }
        // Bedrock sends no retry hint with its throttling; neither does the simulator.
        Outcome::Throttled { why: Throttle::Tokens, .. } => BedrockError::throttling_tokens().into_response(),
        Outcome::Throttled { why: Throttle::Day, .. } => BedrockError::throttling_day().into_response(),
        Outcome::Throttled { .. } => BedrockError::throttling().into_response(),
        Outcome::Unavailable => BedrockError::service_unavailable(UNAVAILABLE_MESSAGE).into_response(),
        Outcome::ShuttingDown => BedrockError::service_unavailable("The simulator is shutting down.").into_response(),
        Outcome::Malformed(Malformation::TruncatedBody, answer) => {
            let text = answer.text.clone();
            json_response(StatusCode::OK, faults::truncated(&to_json(&converse(answer, text))))
        }
        Outcome::Malformed(Malformation::ProseText, answer) => {
            let text = faults::prose_around(&answer.text);
            json_response(StatusCode::OK, to_json(&converse(answer, text)))
        }
    };
    let request_id = format!("beacon-sim-{request_number:012}");
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

async fn chat_completions(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    let request_number = state.arrive();
    let (model, request) = match ChatRequest::parse(&body) {
        Ok(parsed) => parsed,
        Err(error) => return state.reject(error),
    };
    let outcome = state.process(&request).await;
    tracing::debug!(%model, ?outcome, "chat completion request");
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let id = format!("chatcmpl-beacon-sim-{request_number:012}");
    let completion = |answer: Answer, content: String| {
        ChatCompletion::new(id, created, model, content, answer.truncated, answer.input_tokens, answer.output_tokens)
    };
    match outcome {
        Outcome::Answered(answer) => {
            let text = answer.text.clone();
            json_response(StatusCode::OK, to_json(&completion(answer, text)))
        }
        Outcome::Throttled { why, retry_after } => {
            let secs = openai::retry_after_secs(retry_after);
            let config = &state.config;
            let message = match why {
                Throttle::Requests => format!(
                    "Rate limit reached for requests per min (RPM): Limit {}. Please try again in {secs}s.",
                    config.rpm.unwrap_or(0)
                ),
                Throttle::Tokens => format!(
                    "Rate limit reached for tokens per min (TPM): Limit {}. Please try again in {secs}s.",
                    config.tpm.unwrap_or(0)
                ),
                Throttle::Day => format!(
                    "Rate limit reached for tokens per day (TPD): Limit {}. Please try again in {secs}s.",
                    config.tpd.unwrap_or(0)
                ),
                Throttle::InFlight => format!(
                    "Too many concurrent requests: Limit {}. Please try again in {secs}s.",
                    config.max_in_flight.unwrap_or(0)
                ),
            };
            let mut error = OpenAiError::rate_limited(message, retry_after);
            if config.no_retry_after {
                error.retry_after = None;
            }
            error.into_response()
        }
        Outcome::Unavailable => OpenAiError::unavailable("The server is overloaded or not ready yet.").into_response(),
        Outcome::ShuttingDown => OpenAiError::unavailable("The simulator is shutting down.").into_response(),
        Outcome::Malformed(Malformation::TruncatedBody, answer) => {
            let text = answer.text.clone();
            json_response(StatusCode::OK, faults::truncated(&to_json(&completion(answer, text))))
        }
        Outcome::Malformed(Malformation::ProseText, answer) => {
            let text = faults::prose_around(&answer.text);
            json_response(StatusCode::OK, to_json(&completion(answer, text)))
        }
    }
}
