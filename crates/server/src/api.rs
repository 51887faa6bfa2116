//! The `/v1` handlers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use beacon_pipeline::UnitOptions;
use beacon_pipeline::plan::Strategy;
use beacon_pipeline::report::{Report, UnitStatus};
use beacon_store::journal::{ExecutionRecord, ExecutionState, Journal, ListFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::tokens::Role;
use crate::upload;

/// The name of a document uploaded without one.
const DEFAULT_NAME: &str = "document";

/// The most items one page holds.
const MAX_PAGE: usize = 1000;

// ---------------------------------------------------------------------------------------------
// Uploads

/// Options of an upload (query parameters, or form fields beside `file`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The document's name, shown in listings and reports (default: the form's file name, else
    /// `document`).
    pub name: Option<String>,
    /// `inline`, `distributed`, `batch` or `auto` (default: the state machine chooses by unit count).
    #[param(pattern = "^(inline|distributed|batch|auto)$")]
    pub strategy: Option<String>,
    /// Where to POST `execution.*` events of this execution (signed as Standard Webhooks says);
    /// must start with one of `serve.callback_allow`.
    pub callback_url: Option<String>,
    /// The JSON Schema (as JSON text, at most 64 KiB) this execution's unit results must follow
    /// instead of the configured one; also a form field. If `serve.upload_options` allows it.
    pub schema: Option<String>,
    /// The model's output limit per unit request, at most `serve.upload_max_tokens` (default:
    /// `llm.max_tokens`). If
    /// `serve.upload_options` allows it.
    #[param(minimum = 1)]
    pub max_tokens: Option<u32>,
    /// The sampling temperature, 0 to 1. If `serve.upload_options` allows it.
    #[param(minimum = 0.0, maximum = 1.0)]
    pub temperature: Option<f32>,
}

/// The task a Lambda function runs that analyses units, if one does (`lambda.functions`).
fn lambda_analyses(config: &beacon_pipeline::Config) -> Option<&'static str> {
    ["llm-processor", "batch-prepare", "batch-collect"]
        .into_iter()
        .find(|task| config.lambda.functions.contains_key(*task))
}

/// What an upload may choose here beside the strategy (`serve.upload_options`, unless Lambda
/// functions analyse).
fn upload_choices(config: &beacon_pipeline::Config) -> Vec<String> {
    if lambda_analyses(config).is_some() { Vec::new() } else { config.serve.upload_options.clone() }
}

/// What the upload asked of its unit analysis, checked against what the configuration allows.
fn unit_options(
    config: &beacon_pipeline::Config,
    schema: Option<&str>,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
) -> Result<UnitOptions, ApiError> {
    let serve = &config.serve;
    let given = schema.is_some() || max_tokens.is_some() || temperature.is_some();
    // Deployed functions analyse with their own configuration; the options would not reach them.
    if given && let Some(task) = lambda_analyses(config) {
        return Err(ApiError::bad_request(format!(
            "this server runs {task} on a Lambda function (lambda.functions), which analyses with its own \
             schema and model parameters: an upload cannot choose them here"
        )));
    }
    let max_tokens_limit = serve.upload_max_tokens.unwrap_or(config.llm.max_tokens);
    let allowed = |option: &str, given: bool| {
        if given && !serve.upload_options.iter().any(|o| o == option) {
            Err(ApiError::bad_request(format!(
                "this server does not let an upload choose {option} (serve.upload_options allows: {})",
                if serve.upload_options.is_empty() { "nothing".to_string() } else { serve.upload_options.join(", ") }
            )))
        } else {
            Ok(())
        }
    };
    allowed("schema", schema.is_some())?;
    allowed("max_tokens", max_tokens.is_some())?;
    allowed("temperature", temperature.is_some())?;
    let schema = schema
        .map(|text| {
            if text.len() > upload::MAX_SCHEMA_BYTES {
                return Err(ApiError::bad_request(format!("schema is longer than {} bytes", upload::MAX_SCHEMA_BYTES)));
            }
            let schema: Value =
                serde_json::from_str(text).map_err(|e| ApiError::bad_request(format!("schema is not JSON: {e}")))?;
            beacon_pipeline::schema::check_unit_schema(&schema)
                .map_err(|e| ApiError::bad_request(format!("schema: {e}")))?;
            Ok(schema)
        })
        .transpose()?;
    if let Some(tokens) = max_tokens
        && !(1..=max_tokens_limit).contains(&tokens)
    {
        return Err(ApiError::bad_request(format!(
            "max_tokens is {tokens}; this server allows 1 to {max_tokens_limit} (serve.upload_max_tokens)"
        )));
    }
    if let Some(t) = temperature
        && !(0.0..=1.0).contains(&t)
    {
        return Err(ApiError::bad_request(format!("temperature is {t}; use 0 to 1")));
    }
    Ok(UnitOptions { schema, max_tokens, temperature })
}

/// A form field parsed as a number.
fn number_field<T: std::str::FromStr>(name: &str, value: Option<String>) -> Result<Option<T>, ApiError> {
    value
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|_| ApiError::bad_request(format!("{name} '{v}' is not a number of the right kind")))
        })
        .transpose()
}

/// An accepted upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The execution's name.
    pub execution: String,
    /// The document's id (SHA-256 of its bytes, hex).
    pub document: String,
    /// `QUEUED` when accepted (or the execution's status now, for a repeated `Idempotency-Key`).
    pub status: String,
    /// Where to follow it.
    pub location: String,
}

/// Upload a document and start its analysis.
#[utoipa::path(
    post,
    path = "/v1/documents",
    tag = "documents",
    params(UploadQuery, ("Idempotency-Key" = Option<String>, Header, description = "A retried upload with the same key returns the same execution")),
    request_body(
        description = "The document: the raw bytes (with `?name=`), or `multipart/form-data` with the file in field `file` and the options (`name`, `strategy`, `callback_url`, `schema`, `max_tokens`, `temperature`) as text fields",
        content(
            (Vec<u8> = "application/octet-stream"),
            (Vec<u8> = "multipart/form-data")
        )
    ),
    responses(
        (status = 202, description = "Accepted and queued", body = Accepted),
        (status = 200, description = "An earlier upload with this Idempotency-Key", body = Accepted),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 403, description = "The token's role may not upload", body = ErrorBody),
        (status = 409, description = "The document is being deleted", body = ErrorBody),
        (status = 413, description = "Over the upload limit", body = ErrorBody),
        (status = 415, description = "Not a format BEACON reads", body = ErrorBody),
        (status = 422, description = "A document BEACON cannot read (corrupt, encrypted, a decompression bomb)", body = ErrorBody),
        (status = 503, description = "The queue is full, or too many uploads are being read at once", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn upload_document(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    principal.require(Role::Submitter)?;
    let limit = state.max_upload_bytes;
    let headers = request.headers().clone();
    if let Some(length) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && length > limit
    {
        return Err(ApiError::too_large(limit));
    }
    let idempotency = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map(str::to_string).map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))
        })
        .transpose()?;
    if let Some(key) = &idempotency {
        if key.is_empty() || key.len() > 255 {
            return Err(ApiError::bad_request("Idempotency-Key must be 1 to 255 characters"));
        }
        if let Some(execution) = state.db.idempotent_execution(&principal.name, key)? {
            if state.executor.journal().get(&execution).is_ok() {
                return Ok(accepted(&state, &execution, StatusCode::OK));
            }
            // Its execution was deleted meanwhile: the key names nothing any more.
            state.db.forget_executions(&[execution])?;
        }
    }
    // Wait a while for a place to read the body in (the client's bytes wait in the socket
    // meanwhile); a server that stays this busy says so.
    let _reading = tokio::time::timeout(state.upload_wait, state.uploads.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            ApiError::unavailable(
                "too many uploads are being read at once (serve.max_concurrent_uploads); try again shortly",
                state.upload_wait.as_secs().max(1),
            )
        })?;
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let config = state.executor.services().config.clone();
    let (bytes, name, strategy, callback, unit) = if multipart {
        let form = Multipart::from_request(request, &()).await.map_err(|e| ApiError::bad_request(e.body_text()))?;
        let form = upload::read_multipart(form, limit).await?;
        let field = |wanted: &str| form.fields.iter().find(|(n, _)| n == wanted).map(|(_, v)| v.clone());
        let name = query.name.clone().or_else(|| field("name")).or(form.file_name.clone());
        let strategy = query.strategy.clone().or_else(|| field("strategy"));
        let callback = query.callback_url.clone().or_else(|| field("callback_url"));
        let schema = query.schema.clone().or_else(|| field("schema"));
        let max_tokens =
            query.max_tokens.map_or_else(|| number_field("max_tokens", field("max_tokens")), |n| Ok(Some(n)))?;
        let temperature =
            query.temperature.map_or_else(|| number_field("temperature", field("temperature")), |t| Ok(Some(t)))?;
        let unit = unit_options(&config, schema.as_deref(), max_tokens, temperature)?;
        (form.bytes, name, strategy, callback, unit)
    } else {
        let unit = unit_options(&config, query.schema.as_deref(), query.max_tokens, query.temperature)?;
        let bytes = upload::read_limited(request.into_body(), limit).await?;
        (bytes, query.name.clone(), query.strategy.clone(), query.callback_url.clone(), unit)
    };
    if let Some(url) = &callback {
        state.webhooks.callback_allowed(url).map_err(ApiError::bad_request)?;
    }
    let name = upload::document_name(name.as_deref().unwrap_or(DEFAULT_NAME))?;
    let strategy = Strategy::parse_choice(strategy.as_deref().unwrap_or("auto")).map_err(ApiError::bad_request)?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the upload is empty"));
    }
    let config = state.executor.services().config.clone();
    let bytes = Arc::new(bytes);
    upload::check_document(
        bytes.clone(),
        config.limits.clone(),
        config.document_password.as_ref().map(|p| p.expose().to_string()),
    )
    .await?;
    let bytes = Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone());
    let _starting = state.documents.start(&beacon_pipeline::flow::document_id(&bytes))?;
    let queued =
        state.executor.submit(&name, bytes, strategy, callback.as_deref(), unit).await.map_err(|e| match e {
            crate::engine::SubmitError::QueueFull(_) => ApiError::unavailable(e.to_string(), 30),
            crate::engine::SubmitError::ShuttingDown => ApiError::unavailable(e.to_string(), 5),
            crate::engine::SubmitError::Run(beacon_pipeline::RunError::Options(message)) => {
                ApiError::bad_request(message)
            }
            crate::engine::SubmitError::Run(other) => ApiError::internal("the execution could not be queued", other),
        })?;
    if let Some(key) = &idempotency {
        // A concurrent retry with the same key may have won: answer with its execution.
        if let Some(first) = state.db.remember_idempotent(&principal.name, key, &queued.execution)? {
            let _ = state.executor.stop(&queued.execution).await;
            return Ok(accepted(&state, &first, StatusCode::OK));
        }
    }
    Ok(accepted(&state, &queued.execution, StatusCode::ACCEPTED))
}

fn accepted(state: &AppState, execution: &str, status: StatusCode) -> Response {
    let record = state.executor.journal().get(execution).ok();
    let body = Accepted {
        execution: execution.to_string(),
        document: record.as_ref().map(document_id).unwrap_or_default(),
        status: record.map_or("QUEUED".into(), |r| r.status.as_str().to_string()),
        location: format!("/v1/executions/{execution}"),
    };
    let mut response = (status, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/executions/{execution}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Every execution of document `id`: those named with its prefix (a key range of the journal)
/// whose input is that document (another document may share the prefix).
fn executions_of_document(journal: &Journal, id: &str) -> Result<Vec<ExecutionRecord>, ApiError> {
    Ok(journal
        .named_with_prefix(&beacon_pipeline::flow::execution_prefix(id))?
        .into_iter()
        .filter(|r| document_id(r) == id)
        .collect())
}

/// The document id of an execution, from its input (`documents/<id>/source`).
pub fn document_id(record: &ExecutionRecord) -> String {
    serde_json::from_str::<Value>(&record.input)
        .ok()
        .and_then(|input| {
            let key = input["document"]["key"].as_str()?.to_string();
            key.strip_prefix("documents/")?.split('/').next().map(str::to_string)
        })
        .unwrap_or_default()
}

/// Remove a document: its bytes, units, results, reports and executions.
#[utoipa::path(
    delete,
    path = "/v1/documents/{id}",
    tag = "documents",
    params(("id" = String, Path, description = "The document id (SHA-256, hex)", pattern = "^[0-9a-f]{64}$")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not a document id", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such document", body = ErrorBody),
        (status = 409, description = "An execution of it is still queued or running", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_document(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return Err(ApiError::bad_request("a document id is 64 lowercase hex digits (its SHA-256)"));
    }
    // No upload, resume or redrive of this document starts while it goes.
    let _deleting = state.documents.delete(&id)?;
    let store = &state.executor.services().store;
    let journal = state.executor.journal();
    let executions = executions_of_document(journal, &id)?;
    if let Some(busy) = executions.iter().find(|r| matches!(r.status, ExecutionState::Queued | ExecutionState::Running))
    {
        return Err(ApiError::conflict(format!(
            "execution {} of this document is {}; stop it first",
            busy.name,
            busy.status.as_str()
        )));
    }
    let prefixes = [
        format!("documents/{id}/"),
        format!("units/{id}/"),
        format!("results/{id}/"),
        format!("reports/{id}/"),
        format!("batch/{id}/"),
    ];
    let mut found = !executions.is_empty();
    for prefix in &prefixes {
        for object in store.list(prefix).await? {
            found = true;
            store.delete(&object.key).await?;
        }
    }
    if !found {
        return Err(ApiError::not_found(format!("no document {id}")));
    }
    // Keys first: a key must never name an execution that is gone.
    let names: Vec<String> = executions.iter().map(|r| r.name.clone()).collect();
    state.db.forget_executions(&names)?;
    for name in &names {
        journal.delete_execution(name).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Executions

/// Filters and the page of `GET /v1/executions`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this status: QUEUED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED.
    #[param(pattern = "^(QUEUED|RUNNING|SUCCEEDED|FAILED|TIMED_OUT|ABORTED)$")]
    pub status: Option<String>,
    /// Only documents whose name contains this.
    pub document: Option<String>,
    /// Started at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Started before this time (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// Items per page (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// One execution in a listing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSummary {
    pub name: String,
    pub document: DocumentRef,
    /// QUEUED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The strategy the state machine took (once known), else the one asked for (`auto`).
    pub strategy: String,
    /// Units finished (succeeded or failed) and planned; failed among them.
    pub units_done: usize,
    pub units_total: usize,
    pub units_failed: usize,
    /// Throttled requests and cost, once the execution has a report.
    pub throttles: Option<u64>,
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentRef {
    /// SHA-256 of the document, hex.
    pub id: String,
    pub name: String,
}

/// A page of executions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionPage {
    pub executions: Vec<ExecutionSummary>,
    /// The cursor of the next page; absent on the last.
    pub next: Option<String>,
}

fn parse_status(text: &str) -> Result<ExecutionState, ApiError> {
    let state = ExecutionState::parse(text);
    if state.as_str() == text {
        Ok(state)
    } else {
        Err(ApiError::bad_request(format!(
            "unknown status '{text}' (expected QUEUED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED)"
        )))
    }
}

fn parse_time(what: &str, text: &str) -> Result<String, ApiError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .map_err(|e| ApiError::bad_request(format!("{what} must be an RFC 3339 time (e.g. 2026-12-07T09:00:00Z): {e}")))
}

fn page_size(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!("limit is {n}; use 1 to {MAX_PAGE}"))),
    }
}

fn encode_cursor(parts: &[&str]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(parts.join("\n"))
}

fn decode_cursor(cursor: &str, parts: usize) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::bad_request("the cursor is not one this server gave");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let fields: Vec<String> = text.split('\n').map(str::to_string).collect();
    if fields.len() == parts { Ok(fields) } else { Err(bad()) }
}

/// An execution in a listing: from its journal record (the integrator's output says what the
/// report does) and, while it runs, the live unit counts. Nothing here reads the store, so a
/// page of a listing costs one journal query.
fn summary(state: &AppState, record: &ExecutionRecord) -> ExecutionSummary {
    let output: Value = record.output.as_deref().and_then(|o| serde_json::from_str(o).ok()).unwrap_or(Value::Null);
    let count = |key: &str| output.get(key).and_then(Value::as_u64).map(|n| n as usize);
    let (done, total, failed) = match (count("unitsSucceeded"), count("unitsFailed")) {
        (Some(succeeded), Some(failed)) => (succeeded + failed, succeeded + failed, failed),
        _ => state.executor.progress(&record.name).map_or((0, 0, 0), |p| {
            let load = |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::Relaxed);
            let (succeeded, failed) = (load(&p.succeeded), load(&p.failed));
            (succeeded + failed, load(&p.planned).max(succeeded + failed), failed)
        }),
    };
    ExecutionSummary {
        name: record.name.clone(),
        document: DocumentRef { id: document_id(record), name: record.label.clone() },
        status: record.status.as_str().to_string(),
        started_at: record.started_at.clone(),
        finished_at: record.finished_at.clone(),
        strategy: output.get("strategy").and_then(Value::as_str).map_or_else(|| strategy_asked(record), str::to_string),
        units_done: done,
        units_total: total,
        units_failed: failed,
        throttles: output.get("throttles").and_then(Value::as_u64),
        cost_usd: output.get("costUsd").and_then(Value::as_f64),
    }
}

/// List executions, newest first.
#[utoipa::path(
    get,
    path = "/v1/executions",
    tag = "executions",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of executions", body = ExecutionPage),
        (status = 400, description = "A bad filter or cursor", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_executions(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ExecutionPage>, ApiError> {
    let limit = page_size(query.limit, 50)?;
    let after = match &query.cursor {
        Some(cursor) => {
            let fields = decode_cursor(cursor, 2)?;
            Some((fields[0].clone(), fields[1].clone()))
        }
        None => None,
    };
    let filter = ListFilter {
        status: query.status.as_deref().map(parse_status).transpose()?,
        label_contains: query.document.clone().filter(|d| !d.is_empty()),
        started_since: query.since.as_deref().map(|t| parse_time("since", t)).transpose()?,
        started_before: query.until.as_deref().map(|t| parse_time("until", t)).transpose()?,
        after,
        limit: limit + 1,
    };
    let mut records = state.executor.journal().list_page(&filter)?;
    let next = if records.len() > limit {
        records.truncate(limit);
        records.last().map(|r| encode_cursor(&[&r.started_at, &r.name]))
    } else {
        None
    };
    Ok(Json(ExecutionPage { executions: records.iter().map(|r| summary(&state, r)).collect(), next }))
}

/// Unit counts of an execution.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct UnitCounts {
    /// Units the document split into (0 until it is split).
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Not finished yet.
    pub pending: usize,
    /// Finished units by processing path (`inline`, `distributed`, `batch`, `on-demand`).
    pub paths: BTreeMap<String, usize>,
}

/// Tokens, requests and cost so far.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub requests: u64,
    pub throttles: u64,
    /// USD; absent when the model's price is unknown.
    pub cost_usd: Option<f64>,
}

/// One execution in full.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    pub name: String,
    pub document: DocumentRef,
    pub status: String,
    /// The strategy asked for (`auto` lets the state machine choose), or the one taken once the
    /// report exists.
    pub strategy: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Seconds from start to end (or to now while it runs).
    pub duration_seconds: Option<f64>,
    /// Runs of the execution (1 + resumes; 0 while queued).
    pub attempts: u32,
    pub units: UnitCounts,
    pub usage: UsageView,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// Where the report is, once it exists.
    pub report: Option<String>,
    /// `RUNNING` in the journal with no process running it (the one that did died):
    /// `POST .../resume` continues it.
    pub resumable: bool,
}

pub(crate) fn execution_record(state: &AppState, name: &str) -> Result<ExecutionRecord, ApiError> {
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::not_found(format!("no execution named '{name}'")));
    }
    Ok(state.executor.journal().get(name)?)
}

/// The report of a succeeded execution.
async fn report_of(state: &AppState, record: &ExecutionRecord) -> Result<Option<(Report, String)>, ApiError> {
    let Some(output) = record.output.as_deref().filter(|_| record.status == ExecutionState::Succeeded) else {
        return Ok(None);
    };
    let output: Value =
        serde_json::from_str(output).map_err(|e| ApiError::internal("the journaled output is not JSON", e))?;
    match beacon_pipeline::flow::fetch_report(&state.executor.services().store, &output).await {
        Ok(report) => Ok(Some(report)),
        Err(beacon_pipeline::RunError::Store(beacon_store::StoreError::NotFound { .. })) => {
            Err(ApiError::not_found("the report was deleted"))
        }
        Err(e) => Err(ApiError::internal("the report cannot be read", e)),
    }
}

fn strategy_asked(record: &ExecutionRecord) -> String {
    serde_json::from_str::<beacon_pipeline::RunOptions>(&record.options)
        .ok()
        .and_then(|o| o.strategy)
        .map_or("auto".into(), |s| s.to_string())
}

fn duration(record: &ExecutionRecord) -> Option<f64> {
    if record.status == ExecutionState::Queued {
        return None;
    }
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let start = parse(&record.started_at)?;
    let end = match &record.finished_at {
        Some(end) => parse(end)?,
        None => chrono::Utc::now().fixed_offset(),
    };
    Some((end - start).num_milliseconds().max(0) as f64 / 1000.0)
}

/// One execution: status, units, strategy, timing, usage and cost.
#[utoipa::path(
    get,
    path = "/v1/executions/{name}",
    tag = "executions",
    params(("name" = String, Path, description = "The execution's name")),
    responses(
        (status = 200, description = "The execution", body = ExecutionView),
        (status = 404, description = "No such execution", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_execution(
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ExecutionView>, ApiError> {
    let record = execution_record(&state, &name)?;
    let mut view = ExecutionView {
        name: record.name.clone(),
        document: DocumentRef { id: document_id(&record), name: record.label.clone() },
        status: record.status.as_str().to_string(),
        strategy: strategy_asked(&record),
        started_at: record.started_at.clone(),
        finished_at: record.finished_at.clone(),
        duration_seconds: duration(&record),
        attempts: record.attempt,
        units: UnitCounts::default(),
        usage: UsageView::default(),
        error: record.error.clone(),
        cause: record.cause.clone(),
        report: None,
        resumable: state.executor.resumable(&record),
    };
    if let Some((report, _)) = report_of(&state, &record).await? {
        view.strategy = report.strategy.clone();
        view.units = UnitCounts {
            total: report.units.len(),
            succeeded: report.usage.units_succeeded,
            failed: report.usage.units_failed,
            pending: 0,
            paths: report.unit_paths.clone(),
        };
        view.usage = UsageView {
            input_tokens: report.usage.input_tokens,
            output_tokens: report.usage.output_tokens,
            requests: report.usage.requests,
            throttles: report.usage.throttles,
            cost_usd: report.usage.cost_usd,
        };
        view.report = Some(format!("/v1/executions/{}/report", record.name));
    } else if record.status != ExecutionState::Queued {
        let units = beacon_pipeline::tasks::recorded_units(
            &state.executor.services().store,
            &document_id(&record),
            &record.name,
        )
        .await?;
        let planned =
            state.executor.progress(&record.name).map_or(0, |p| p.planned.load(std::sync::atomic::Ordering::Relaxed));
        view.units = counts(&units, planned);
        view.usage = units.iter().fold(UsageView { cost_usd: Some(0.0), ..UsageView::default() }, |mut usage, unit| {
            usage.input_tokens += unit.usage.input_tokens;
            usage.output_tokens += unit.usage.output_tokens;
            usage.requests += u64::from(unit.usage.attempts);
            usage.throttles += u64::from(unit.usage.throttles);
            usage.cost_usd = match (usage.cost_usd, unit.usage.cost_usd) {
                (Some(total), Some(cost)) => Some(total + cost),
                (Some(total), None) if unit.status == UnitStatus::Failed => Some(total),
                _ => None,
            };
            usage
        });
    }
    Ok(Json(view))
}

fn counts(units: &[beacon_pipeline::report::UnitReport], planned: usize) -> UnitCounts {
    let succeeded = units.iter().filter(|u| u.status == UnitStatus::Succeeded).count();
    let failed = units.len() - succeeded;
    let mut paths = BTreeMap::new();
    for unit in units {
        *paths.entry(unit.path.clone()).or_insert(0) += 1;
    }
    let total = planned.max(units.len());
    UnitCounts { total, succeeded, failed, pending: total - units.len(), paths }
}

/// Filter of `GET /v1/executions/{name}/units`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnitsQuery {
    /// `succeeded` or `failed`.
    #[param(pattern = "^(succeeded|failed)$")]
    pub status: Option<String>,
}

/// One unit of an execution.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnitView {
    pub index: usize,
    pub title: String,
    /// `succeeded` or `failed`.
    pub status: String,
    /// `inline`, `distributed`, `batch`, `on-demand` or `none`.
    pub path: String,
    /// Requests sent for it (retries included).
    pub attempts: u32,
    pub throttles: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<f64>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

/// The units of an execution (finished so far, while it runs).
#[derive(Debug, Serialize, ToSchema)]
pub struct UnitList {
    pub units: Vec<UnitView>,
}

/// Per unit: status, attempts, path, tokens, cost, error and cause.
#[utoipa::path(
    get,
    path = "/v1/executions/{name}/units",
    tag = "executions",
    params(("name" = String, Path, description = "The execution's name"), UnitsQuery),
    responses(
        (status = 200, description = "The units", body = UnitList),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_units(
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<UnitsQuery>,
) -> Result<Json<UnitList>, ApiError> {
    let wanted = match query.status.as_deref() {
        None => None,
        Some("succeeded") => Some(UnitStatus::Succeeded),
        Some("failed") => Some(UnitStatus::Failed),
        Some(other) => {
            return Err(ApiError::bad_request(format!("unknown unit status '{other}' (expected succeeded or failed)")));
        }
    };
    let record = execution_record(&state, &name)?;
    let units = match report_of(&state, &record).await? {
        Some((report, _)) => report.units,
        None if record.status == ExecutionState::Queued => Vec::new(),
        None => {
            beacon_pipeline::tasks::recorded_units(
                &state.executor.services().store,
                &document_id(&record),
                &record.name,
            )
            .await?
        }
    };
    let units = units
        .into_iter()
        .filter(|u| wanted.is_none_or(|w| u.status == w))
        .map(|u| UnitView {
            index: u.index,
            title: u.title,
            status: if u.status == UnitStatus::Succeeded { "succeeded" } else { "failed" }.into(),
            path: u.path,
            attempts: u.usage.attempts,
            throttles: u.usage.throttles,
            input_tokens: u.usage.input_tokens,
            output_tokens: u.usage.output_tokens,
            cost_usd: u.usage.cost_usd,
            error: u.error.as_ref().map(|e| e.error.clone()),
            cause: u.error.map(|e| e.cause),
        })
        .collect();
    Ok(Json(UnitList { units }))
}

/// The page of `GET /v1/executions/{name}/history`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// Events per page (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// History events in AWS's `GetExecutionHistory` shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    pub next: Option<String>,
}

/// The execution's history events (its latest run), oldest first.
#[utoipa::path(
    get,
    path = "/v1/executions/{name}/history",
    tag = "executions",
    params(("name" = String, Path, description = "The execution's name"), HistoryQuery),
    responses(
        (status = 200, description = "A page of events", body = HistoryPage),
        (status = 400, description = "A bad cursor", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_history(
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryPage>, ApiError> {
    let limit = page_size(query.limit, 100)?;
    execution_record(&state, &name)?;
    let after: u64 = match &query.cursor {
        Some(cursor) => decode_cursor(cursor, 1)?[0]
            .parse()
            .map_err(|_| ApiError::bad_request("the cursor is not one this server gave"))?,
        None => 0,
    };
    let page: Vec<Value> = state
        .executor
        .journal()
        .events_page(&name, after, limit + 1)?
        .iter()
        .map(beacon_store::journal::EventRecord::to_aws_json)
        .collect();
    let (events, next) = if page.len() > limit {
        let events: Vec<Value> = page.into_iter().take(limit).collect();
        let last = events.last().and_then(|e| e["id"].as_u64()).unwrap_or(after).to_string();
        (events, Some(encode_cursor(&[&last])))
    } else {
        (page, None)
    };
    Ok(Json(HistoryPage { events, next }))
}

/// The report of a succeeded execution: JSON, or Markdown with `Accept: text/markdown`.
#[utoipa::path(
    get,
    path = "/v1/executions/{name}/report",
    tag = "executions",
    params(("name" = String, Path, description = "The execution's name")),
    responses(
        (status = 200, description = "The report (report.json; Markdown with Accept: text/markdown)", content(
            (Object = "application/json"),
            (String = "text/markdown")
        )),
        (status = 404, description = "No such execution", body = ErrorBody),
        (status = 409, description = "The execution has no report (not succeeded)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_report(
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let markdown = accept.contains("text/markdown") && !accept.contains("application/json");
    report_response(&state, &name, markdown).await
}

/// The report of a succeeded execution as Markdown.
#[utoipa::path(
    get,
    path = "/v1/executions/{name}/report.md",
    tag = "executions",
    params(("name" = String, Path, description = "The execution's name")),
    responses(
        (status = 200, description = "report.md", body = String, content_type = "text/markdown"),
        (status = 404, description = "No such execution", body = ErrorBody),
        (status = 409, description = "The execution has no report (not succeeded)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_report_markdown(
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    report_response(&state, &name, true).await
}

async fn report_response(state: &AppState, name: &str, markdown: bool) -> Result<Response, ApiError> {
    let record = execution_record(state, name)?;
    let Some((report, report_markdown)) = report_of(state, &record).await? else {
        return Err(ApiError::conflict(format!(
            "execution {name} is {}: only a succeeded execution has a report",
            record.status.as_str()
        )));
    };
    if markdown {
        let mut response = Body::from(report_markdown).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/markdown; charset=utf-8"));
        return Ok(response);
    }
    Ok(Json(report).into_response())
}

/// What an action did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionResult {
    pub execution: String,
    /// The execution's status after the action.
    pub status: String,
}

/// Stop a queued or running execution (it ends ABORTED; finished units keep their results).
#[utoipa::path(
    post,
    path = "/v1/executions/{name}/stop",
    tag = "executions",
    params(("name" = String, Path, description = "The execution's name")),
    responses(
        (status = 200, description = "Stopped (or already finished)", body = ActionResult),
        (status = 403, description = "Needs the submitter role", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stop_execution(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ActionResult>, ApiError> {
    principal.require(Role::Submitter)?;
    execution_record(&state, &name)?;
    let status =
        state.executor.stop(&name).await.map_err(|e| ApiError::internal("the execution could not be stopped", e))?;
    Ok(Json(ActionResult { execution: name, status: status.as_str().into() }))
}

/// Resume a RUNNING execution that no process runs any more (finished tasks are not run again).
#[utoipa::path(
    post,
    path = "/v1/executions/{name}/resume",
    tag = "executions",
    params(("name" = String, Path, description = "The execution's name")),
    responses(
        (status = 202, description = "Resuming", body = ActionResult),
        (status = 403, description = "Needs the submitter role", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
        (status = 409, description = "Finished, or still running", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn resume_execution(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<ActionResult>), ApiError> {
    principal.require(Role::Submitter)?;
    let record = execution_record(&state, &name)?;
    let _starting = state.documents.start(&document_id(&record))?;
    state.executor.resume(&name).map_err(|e| match e {
        beacon_pipeline::RunError::NotResumable(message) => ApiError::conflict(message),
        other => ApiError::internal("the execution could not be resumed", other),
    })?;
    Ok((StatusCode::ACCEPTED, Json(ActionResult { execution: name, status: "RUNNING".into() })))
}

/// What a redrive started.
#[derive(Debug, Serialize, ToSchema)]
pub struct Redriven {
    pub execution: String,
    pub status: String,
    /// Units (Map iterations) that run again.
    pub units: usize,
}

/// Run only the failed units of a finished execution again (like Step Functions' redrive); the
/// others keep their results and the report is written anew.
#[utoipa::path(
    post,
    path = "/v1/executions/{name}/redrive",
    tag = "executions",
    params(("name" = String, Path, description = "The execution's name")),
    responses(
        (status = 202, description = "Redriving", body = Redriven),
        (status = 403, description = "Needs the submitter role", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
        (status = 409, description = "Still running, or nothing failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn redrive_execution(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<Redriven>), ApiError> {
    principal.require(Role::Submitter)?;
    let record = execution_record(&state, &name)?;
    let _starting = state.documents.start(&document_id(&record))?;
    let units = state.executor.redrive(&name).await.map_err(|e| match e {
        beacon_pipeline::RunError::NotResumable(message) => ApiError::conflict(message),
        other => ApiError::internal("the execution could not be redriven", other),
    })?;
    Ok((StatusCode::ACCEPTED, Json(Redriven { execution: name, status: "RUNNING".into(), units })))
}

/// Every alarm.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlarmList {
    pub alarms: Vec<crate::alarms::AlarmView>,
}

/// Who the caller is: the token's name and role (what the console shows and offers).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub name: String,
    /// `viewer`, `submitter` or `admin`.
    pub role: String,
    /// What an upload may choose beside the strategy: `schema`, `max_tokens`, `temperature`.
    pub upload_options: Vec<String>,
    /// The largest `max_tokens` an upload may ask for.
    pub upload_max_tokens: u32,
}

/// The caller's token: its name and role.
#[utoipa::path(
    get,
    path = "/v1/session",
    tag = "system",
    responses((status = 200, description = "The token's name and role", body = SessionView)),
    security(("bearer" = []))
)]
pub async fn get_session(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
) -> Json<SessionView> {
    let config = &state.executor.services().config;
    Json(SessionView {
        name: principal.name.clone(),
        role: principal.role.to_string(),
        upload_options: upload_choices(config),
        upload_max_tokens: config.serve.upload_max_tokens.unwrap_or(config.llm.max_tokens),
    })
}

/// Every alarm: its state, rule and recent transitions.
#[utoipa::path(
    get,
    path = "/v1/alarms",
    tag = "alarms",
    responses((status = 200, description = "The alarms", body = AlarmList)),
    security(("bearer" = []))
)]
pub async fn list_alarms(State(state): State<Arc<AppState>>) -> Json<AlarmList> {
    Json(AlarmList { alarms: state.alarms.views() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use beacon_store::journal::NewExecution;
    use serde_json::json;

    #[tokio::test]
    async fn a_document_s_executions_are_its_own_even_when_another_shares_the_name_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let (mine, theirs) =
            (format!("{}{}", "ab".repeat(6), "1".repeat(52)), format!("{}{}", "ab".repeat(6), "2".repeat(52)));
        for (name, id) in [("abababababab-1", &mine), ("abababababab-2", &theirs), ("cdcdcdcdcdcd-1", &mine)] {
            let input = json!({"document": {"key": format!("documents/{id}/source"), "name": "x"}});
            let new = NewExecution {
                name: name.into(),
                definition: "{}".into(),
                input: input.to_string(),
                label: "x".into(),
                options: "{}".into(),
                started_at: "2026-12-07T00:00:00Z".into(),
            };
            journal.start_execution(&new).await.unwrap();
        }
        let found: Vec<String> = executions_of_document(&journal, &mine).unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(found, ["abababababab-1"], "not the other document's, and only under its own prefix");
    }

    #[test]
    fn upload_options_are_refused_unless_allowed_and_when_lambda_functions_analyse() {
        let mut config = beacon_pipeline::Config::default();
        let refused = |config: &beacon_pipeline::Config, max_tokens| {
            unit_options(config, None, max_tokens, None).err().map(|e| e.message).unwrap_or_default()
        };
        assert!(refused(&config, Some(100)).contains("does not let an upload choose max_tokens"));
        assert_eq!(unit_options(&config, None, None, None).unwrap(), UnitOptions::default(), "none asked, none needed");
        config.serve.upload_options = vec!["max_tokens".into()];
        assert_eq!(unit_options(&config, None, Some(100), None).unwrap().max_tokens, Some(100));
        assert!(refused(&config, Some(config.llm.max_tokens + 1)).contains("allows 1 to"), "bounded by llm.max_tokens");
        config.lambda.functions.insert("llm-processor".into(), "beacon-llm".into());
        assert!(refused(&config, Some(100)).contains("Lambda function"));
    }
}
