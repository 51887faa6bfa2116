//! `beacon serve`: BEACON as a service. The same embedded engine, journal, store and one client
//! stack (one quota for everything submitted) as `beacon run`, behind an HTTP API:
//!
//! - `api`: the `/v1` handlers (uploads, executions, units, history, reports, actions);
//! - `auth` + `tokens`: bearer tokens (hashes in a file; roles viewer < submitter < admin) and a
//!   request rate per token;
//! - `engine`: the queue, a bounded number of executions running at once, stop and resume, and
//!   what a restarted server picks up;
//! - `upload`: the size limit while streaming, name checks, content checks before queueing;
//! - `metrics`: `/metrics` in the Prometheus text format;
//! - `idempotency`: `Idempotency-Key` for uploads.
//!
//! The OpenAPI 3.1 document at `/openapi.json` is generated from the handlers (utoipa).

pub mod alarms;
pub mod api;
pub mod auth;
pub mod console;
pub mod db;
pub mod documents;
pub mod engine;
pub mod error;
pub mod extract;
pub mod graph;
pub mod metrics;
pub mod overview;
pub mod sse;
pub mod tokens;
pub mod upload;
pub mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use beacon_asl::TaskRegistry;
use beacon_pipeline::Services;
use beacon_store::journal::Journal;
use utoipa::OpenApi;

use crate::alarms::Alarms;
use crate::auth::{RateLimit, Tokens};
use crate::db::ServerDb;
use crate::engine::Executor;
use crate::error::ApiError;
use crate::metrics::{Metrics, Observed};
use crate::tokens::TokenFile;
use crate::webhooks::Webhooks;

/// Everything the handlers share.
pub struct AppState {
    pub executor: Arc<Executor>,
    pub tokens: Tokens,
    pub rate: RateLimit,
    pub db: Arc<ServerDb>,
    pub alarms: Arc<Alarms>,
    pub webhooks: Arc<Webhooks>,
    pub max_upload_bytes: u64,
    /// Places for uploads being read (`serve.max_concurrent_uploads`): each holds its body in
    /// memory, so together they bound what uploads take.
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// How long an upload waits for one of those places before it is turned away (503).
    pub upload_wait: std::time::Duration,
    pub metrics_public: bool,
    /// Origins allowed to call from a browser (`serve.cors_origins`).
    pub cors_origins: Vec<String>,
    /// Documents being started on or deleted: a delete never races an execution into being.
    pub documents: documents::DocumentGate,
    /// Drawings and history tallies of the executions last looked at (`/graph`).
    pub graphs: graph::Graphs,
    /// This process, in the overview's samples (its counts start at zero).
    pub boot: String,
    /// How often the overview keeps a sample (`serve.overview_sample_secs`).
    pub overview_sample: std::time::Duration,
    /// False once shutdown began (`/ready` says 503 then).
    pub ready: AtomicBool,
}

/// What the server is built from: what `beacon run` builds too.
pub struct Parts {
    pub services: Services,
    pub journal: Journal,
    /// The `aws-sdk:*` and Lambda resources (as `beacon run` registers them).
    pub tasks: TaskRegistry,
    /// What the client stack counts and the batch jobs seen.
    pub observed: Observed,
    pub tokens: TokenFile,
    /// Whether the server listens on a loopback address only (then it may run without tokens).
    pub loopback: bool,
}

/// Why the server could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {0} without tokens: anyone who reaches it could submit documents. Create one first: beacon serve token create --role admin (or bind 127.0.0.1)"
    )]
    NoTokens(String),
    #[error("cannot open the server's state {path}: {reason}")]
    State { path: String, reason: String },
    #[error("cannot serve TLS with the certificate {cert} and the key {key}: {reason}")]
    Tls { cert: String, key: String, reason: String },
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "BEACON", description = "Documents in, structured reports out: BEACON's service API (`beacon serve`)."),
    paths(
        api::upload_document,
        api::delete_document,
        api::list_executions,
        api::get_execution,
        api::list_units,
        api::get_history,
        graph::get_graph,
        api::get_report,
        api::get_report_markdown,
        sse::events,
        api::stop_execution,
        api::resume_execution,
        api::redrive_execution,
        api::list_alarms,
        overview::get_overview,
        api::get_session,
        health,
        ready,
        metrics_text,
    ),
    modifiers(&BearerAuth, &CommonResponses),
    tags(
        (name = "documents", description = "Uploads"),
        (name = "executions", description = "Executions, their units, history and reports"),
        (name = "alarms", description = "Alarms and their transitions"),
        (name = "system", description = "Health and metrics")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every `/v1` operation may answer 401 (no valid token) and 429 (over the token's rate).
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let operations = [&mut item.get, &mut item.post, &mut item.delete, &mut item.put, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses.entry("401".into()).or_insert_with(|| error("No valid token").into());
                responses
                    .entry("429".into())
                    .or_insert_with(|| error("Over the token's request rate (see Retry-After)").into());
            }
        }
    }
}

/// The server's state from `parts`; errors when it may not run as configured.
pub fn state(parts: Parts, bind: &str) -> Result<Arc<AppState>, ServeError> {
    if parts.tokens.is_empty() && !parts.loopback {
        return Err(ServeError::NoTokens(bind.to_string()));
    }
    let config = parts.services.config.clone();
    let path = config.data_dir.join("server.sqlite");
    let db = Arc::new(
        ServerDb::open(&path)
            .map_err(|e| ServeError::State { path: path.display().to_string(), reason: e.to_string() })?,
    );
    let metrics = Arc::new(Metrics::new(parts.observed, config.provider.kind.name(), &config.model_name()));
    let alarms = Arc::new(Alarms::new(&config.alarms));
    // The alarms' history outlives the process (CloudWatch keeps it too).
    let kept =
        db.alarm_history().map_err(|e| ServeError::State { path: path.display().to_string(), reason: e.message })?;
    for restart in alarms.restore(kept) {
        db.record_transition(&restart)
            .map_err(|e| ServeError::State { path: path.display().to_string(), reason: e.message })?;
    }
    let webhooks = Webhooks::new(db.clone(), config.serve.clone(), metrics.clone());
    let executor = Executor::new(
        parts.services,
        parts.journal,
        parts.tasks,
        (metrics, alarms.clone(), webhooks.clone(), db.clone()),
    );
    Ok(Arc::new(AppState {
        executor,
        tokens: Tokens::new(parts.tokens, parts.loopback),
        rate: RateLimit::new(config.serve.requests_per_minute),
        db,
        alarms,
        webhooks,
        max_upload_bytes: config.serve.max_upload_bytes.unwrap_or(config.limits.max_file_bytes),
        uploads: Arc::new(tokio::sync::Semaphore::new(config.serve.max_concurrent_uploads.max(1))),
        upload_wait: std::time::Duration::from_millis(config.serve.upload_wait_ms),
        documents: documents::DocumentGate::default(),
        graphs: graph::Graphs::default(),
        boot: format!("{}-{}", std::process::id(), chrono::Utc::now().timestamp_millis()),
        overview_sample: std::time::Duration::from_secs(config.serve.overview_sample_secs.max(1)),
        metrics_public: config.serve.metrics_public,
        cors_origins: config.serve.cors_origins.clone(),
        ready: AtomicBool::new(true),
    }))
}

/// The HTTP routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    // A backstop above the streaming checks (which answer 413 themselves).
    let upload_limit = usize::try_from(state.max_upload_bytes).unwrap_or(usize::MAX).saturating_add(1 << 20);
    let v1 = Router::new()
        .route("/documents", post(api::upload_document).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/documents/{id}", delete(api::delete_document))
        .route("/executions", get(api::list_executions))
        .route("/executions/{name}", get(api::get_execution))
        .route("/executions/{name}/units", get(api::list_units))
        .route("/executions/{name}/history", get(api::get_history))
        .route("/executions/{name}/graph", get(graph::get_graph))
        .route("/executions/{name}/report", get(api::get_report))
        .route("/executions/{name}/report.md", get(api::get_report_markdown))
        .route("/executions/{name}/events", get(sse::events))
        .route("/executions/{name}/stop", post(api::stop_execution))
        .route("/executions/{name}/resume", post(api::resume_execution))
        .route("/executions/{name}/redrive", post(api::redrive_execution))
        .route("/alarms", get(api::list_alarms))
        .route("/overview", get(overview::get_overview))
        .route("/session", get(api::get_session))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    let cors = state.cors_origins.clone();
    Router::new()
        .nest("/v1", v1)
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .route("/", get(console::index))
        .route("/console/access.json", get(console::access))
        .route("/console/{file}", get(console::asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(move |request: Request, next: axum::middleware::Next| {
            let cors = cors.clone();
            async move { cors_layer(&cors, request, next).await }
        }))
        .with_state(state)
}

/// CORS for the origins in `serve.cors_origins` (none: no CORS headers, browsers refuse
/// cross-origin calls). A preflight from an allowed origin is answered here.
async fn cors_layer(allowed: &[String], request: Request, next: axum::middleware::Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_string);
    let Some(origin) = origin.filter(|o| allowed.iter().any(|a| a == o || a == "*")) else {
        return next.run(request).await;
    };
    let preflight = request.method() == axum::http::Method::OPTIONS
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight { StatusCode::NO_CONTENT.into_response() } else { next.run(request).await };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if preflight {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE, OPTIONS"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, idempotency-key, last-event-id"),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("location, retry-after"));
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route (see /openapi.json)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
}

/// The server is up.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, description = "Up", body = String)))]
async fn health() -> &'static str {
    "ok"
}

/// The server takes work (503 while it shuts down).
#[utoipa::path(
    get,
    path = "/ready",
    tag = "system",
    responses((status = 200, description = "Ready", body = String), (status = 503, description = "Shutting down", body = crate::error::ErrorBody))
)]
async fn ready(State(state): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    if state.ready.load(Ordering::Relaxed) {
        state.executor.journal().list(1)?;
        Ok("ready")
    } else {
        Err(ApiError::unavailable("the server is shutting down", 5))
    }
}

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses(
        (status = 200, description = "The metrics (OpenMetrics text, which Prometheus scrapes)", body = String, content_type = "application/openmetrics-text"),
        (status = 401, description = "No valid token (unless serve.metrics_public)", body = crate::error::ErrorBody)
    ),
    security(("bearer" = []), ())
)]
async fn metrics_text(State(state): State<Arc<AppState>>, request: Request) -> Response {
    if !state.metrics_public
        && let Err(error) = state.tokens.authenticate(request.headers())
    {
        return error.into_response();
    }
    let (queued, running) = state.executor.counts();
    let mut response = state.executor.metrics().render(queued, running).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

async fn openapi_json() -> Response {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_string();
    axum::Json(document).into_response()
}

/// Evaluates the alarms every tick (and whenever an execution ends), feeding them the client
/// stack's throttles; every change of state is an `alarm.state_changed` webhook.
async fn watch_alarms(state: Arc<AppState>) {
    let mut changes = state.executor.subscribe();
    let mut throttles = state.executor.metrics().client_stats().throttles;
    loop {
        let now = state.executor.metrics().client_stats().throttles;
        if now > throttles {
            #[allow(clippy::cast_precision_loss)]
            state.alarms.record(alarms::Metric::LlmThrottles, (now - throttles) as f64);
        }
        throttles = now;
        for transition in state.alarms.evaluate(std::time::Instant::now()) {
            tracing::info!(alarm = transition.alarm, to = transition.to.as_str(), "{}", transition.reason);
            if let Err(e) = state.db.record_transition(&transition) {
                tracing::warn!("the alarm history cannot be kept: {}", e.message);
            }
            if state.alarms.announce(&transition) {
                let data = serde_json::to_value(&transition).unwrap_or_default();
                state.webhooks.publish("alarm.state_changed", data, None);
            }
        }
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep(state.alarms.tick()) => {}
        }
    }
}

/// TLS for the API (`beacon serve --tls-cert FILE --tls-key FILE`): a PEM certificate chain and
/// its private key, served with rustls (HTTP/1.1 and HTTP/2 by ALPN).
#[derive(Clone)]
pub struct Tls(axum_server::tls_rustls::RustlsConfig);

impl Tls {
    /// Reads and checks the two files; a missing file, a key that is not PEM or a certificate
    /// that does not match it is an error here, before the server listens.
    pub async fn from_pem_files(cert: &std::path::Path, key: &std::path::Path) -> Result<Tls, ServeError> {
        axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await.map(Tls).map_err(|e| ServeError::Tls {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            reason: e.to_string(),
        })
    }
}

/// How long open connections (event streams) get to finish once a TLS server is told to stop.
const TLS_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Serve on `listener` (over TLS when `tls` is given) until `shutdown` resolves; running
/// executions stay journaled as `RUNNING` and resume when the server starts again.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    tls: Option<Tls>,
) -> std::io::Result<()> {
    let recovered = state.executor.recover().unwrap_or_else(|e| {
        tracing::warn!("cannot pick up earlier executions: {e}");
        0
    });
    if recovered > 0 {
        tracing::info!(recovered, "executions picked up from the journal");
    }
    tokio::spawn(state.webhooks.clone().run());
    tokio::spawn(watch_alarms(state.clone()));
    tokio::spawn(overview::keep_samples(state.clone()));
    let app = router(state.clone());
    let draining = state.clone();
    let stopped = async move {
        shutdown.await;
        draining.ready.store(false, Ordering::Relaxed);
        draining.executor.shut_down();
        // The last minute's numbers would otherwise be lost with the process.
        overview::keep_sample(&draining);
    };
    let Some(Tls(config)) = tls else {
        return axum::serve(listener, app).with_graceful_shutdown(stopped).await;
    };
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        stopped.await;
        stopper.graceful_shutdown(Some(TLS_DRAIN));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, config)?.handle(handle).serve(app.into_make_service()).await
}

/// Serve only `/metrics` (no token) on `listener`: `beacon run --metrics-bind` for a long run.
pub async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                let mut response = metrics.render(0, 0).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                );
                response
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!("the metrics server stopped: {e}");
    }
}
