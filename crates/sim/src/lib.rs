//! A local Amazon Bedrock-compatible server for tests, benchmarks, and rehearsing quotas.
//!
//! `beacon-sim` answers Bedrock's Converse API (`POST /model/{modelId}/converse`) the way Bedrock
//! does, byte for byte where clients look: the response JSON, `ThrottlingException` as HTTP 429
//! with the `x-amzn-ErrorType` header the AWS SDKs parse, `ValidationException` for bad requests.
//! Any AWS SDK pointed at it (an endpoint URL override and any credentials) works unchanged.
//!
//! What it simulates:
//! - **the model**: a deterministic, extractive analysis of the prompt's content that follows
//!   BEACON's unit schema (see [`answer`]), with token usage estimated by [`estimate_tokens`];
//! - **the quota**: [`SimConfig::rpm`] requests per minute as a token bucket (see [`quota`]);
//! - **latency**: [`SimConfig::latency_ms`] before each successful answer.
//!
//! It also serves `GET /sim/stats` ([`SimStats`] as JSON) and `GET /health`.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use beacon_sim::{SimConfig, SimServer};
//!
//! let config = SimConfig { rpm: Some(60), burst: Some(2), ..SimConfig::default() };
//! let sim = SimServer::start("127.0.0.1:0".parse().unwrap(), config).await?;
//! let endpoint = format!("http://{}", sim.local_addr());
//! // ... point a Bedrock client at `endpoint` ...
//! println!("{:?}", sim.stats());
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod answer;
pub mod protocol;
pub mod quota;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use answer::estimate_tokens;
use answer::{UnitAnswer, truncate_to_tokens};
use protocol::{BedrockError, ConverseRequest, ConverseResponse, converse_model_id};
use quota::TokenBucket;

/// Request bodies larger than this are refused; units are far smaller.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How the simulator behaves.
///
/// Build it with struct update syntax so that fields added later keep their defaults:
/// `SimConfig { rpm: Some(60), ..SimConfig::default() }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Requests per minute before throttling; `None` for no quota.
    pub rpm: Option<u32>,
    /// How many requests the quota admits at once; defaults to `max(1, rpm / 6)`.
    pub burst: Option<u32>,
    /// How long each successful request takes, in milliseconds.
    pub latency_ms: u64,
}

/// What the simulator has seen since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Requests to the model API (`/model/...`), whatever their outcome.
    pub requests: u64,
    /// Requests answered with a completion.
    pub succeeded: u64,
    /// Requests refused with `ThrottlingException`.
    pub throttled: u64,
    /// Requests refused as invalid (`ValidationException`, unknown operation).
    pub rejected: u64,
    /// Input tokens of the succeeded requests (estimated).
    pub input_tokens: u64,
    /// Output tokens of the succeeded requests (estimated).
    pub output_tokens: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    succeeded: AtomicU64,
    throttled: AtomicU64,
    rejected: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
}

/// Everything the request handlers share.
#[derive(Debug)]
struct SimState {
    latency: Duration,
    bucket: Option<Mutex<TokenBucket>>,
    counters: Counters,
}

impl SimState {
    fn new(config: &SimConfig) -> SimState {
        SimState {
            latency: Duration::from_millis(config.latency_ms),
            bucket: config.rpm.map(|rpm| Mutex::new(TokenBucket::new(rpm, config.burst, Instant::now()))),
            counters: Counters::default(),
        }
    }

    fn stats(&self) -> SimStats {
        let c = &self.counters;
        SimStats {
            requests: c.requests.load(Ordering::Relaxed),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            input_tokens: c.input_tokens.load(Ordering::Relaxed),
            output_tokens: c.output_tokens.load(Ordering::Relaxed),
        }
    }

    /// Whether the quota admits one more request now; a refused request takes nothing.
    fn admit(&self) -> bool {
        match &self.bucket {
            None => true,
            Some(bucket) => bucket.lock().unwrap_or_else(PoisonError::into_inner).try_acquire(Instant::now()).is_ok(),
        }
    }

    fn reject(&self, error: BedrockError) -> Response {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%error, "rejected request");
        error.into_response()
    }
}

/// A running simulator, serving on its own task until [`SimServer::shutdown`] (or until dropped).
#[derive(Debug)]
pub struct SimServer {
    local_addr: SocketAddr,
    state: Arc<SimState>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl SimServer {
    /// Binds `addr` (use port 0 for any free port), starts serving in the background and returns.
    pub async fn start(addr: SocketAddr, config: SimConfig) -> std::io::Result<SimServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(SimState::new(&config));
        let app = router(Arc::clone(&state));
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // A dropped sender also means stop.
                    let _ = stop.await;
                })
                .await
        });
        tracing::info!(%local_addr, ?config, "Bedrock simulator listening");
        Ok(SimServer { local_addr, state, shutdown, task })
    }

    /// The address the simulator listens on (with the actual port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        self.state.stats()
    }

    /// Stops accepting connections, lets requests in flight finish, and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
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
    let state = Arc::new(SimState::new(&config));
    if let Ok(local_addr) = listener.local_addr() {
        tracing::info!(%local_addr, ?config, "Bedrock simulator listening");
    }
    axum::serve(listener, router(state)).await
}

fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/sim/stats", get(stats))
        // Model ids may contain (encoded or not) slashes, so the whole rest of the path is taken
        // and parsed by `converse_model_id`.
        .route("/model/{*rest}", post(converse))
        .fallback(unknown_operation)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn stats(State(state): State<Arc<SimState>>) -> Response {
    axum::Json(state.stats()).into_response()
}

async fn unknown_operation(method: Method, uri: Uri) -> Response {
    BedrockError::unknown_operation(method.as_str(), uri.path()).into_response()
}

async fn converse(State(state): State<Arc<SimState>>, uri: Uri, body: Bytes) -> Response {
    let counters = &state.counters;
    let request_number = counters.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let model_id = match converse_model_id(uri.path()) {
        None => return state.reject(BedrockError::unknown_operation("POST", uri.path())),
        Some(Err(error)) => return state.reject(error),
        Some(Ok(model_id)) => model_id,
    };
    let request = match ConverseRequest::parse(&body) {
        Ok(request) => request,
        Err(error) => return state.reject(error),
    };
    if !state.admit() {
        counters.throttled.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%model_id, "throttled request");
        return BedrockError::throttling().into_response();
    }

    let started = Instant::now();
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let answer = UnitAnswer::from_prompt(&request.prompt).to_json();
    let (text, stop_reason) = if estimate_tokens(&answer) > request.max_tokens {
        (truncate_to_tokens(&answer, request.max_tokens).to_string(), "max_tokens")
    } else {
        (answer, "end_turn")
    };
    let input_tokens = estimate_tokens(&request.all_text);
    let output_tokens = estimate_tokens(&text);
    counters.succeeded.fetch_add(1, Ordering::Relaxed);
    counters.input_tokens.fetch_add(input_tokens, Ordering::Relaxed);
    counters.output_tokens.fetch_add(output_tokens, Ordering::Relaxed);
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::debug!(%model_id, input_tokens, output_tokens, latency_ms, "answered request");

    let body = ConverseResponse::new(text, stop_reason, input_tokens, output_tokens, latency_ms);
    let mut response = axum::Json(body).into_response();
    let request_id = format!("beacon-sim-{request_number:012}");
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
