//! Bedrock's batch inference API (the control plane's model invocation jobs), simulated.
//!
//! - `POST /model-invocation-job` (CreateModelInvocationJob): reads the JSONL input named by
//!   `inputDataConfig.s3InputDataConfig.s3Uri` (one file, or every `.jsonl` under a prefix)
//!   from the simulator's object store ([`SimConfig::batch_store_dir`]: `s3://BUCKET/KEY` is
//!   the file `DIR/KEY`), checks it and answers `{jobArn}`;
//! - `GET /model-invocation-job/{jobIdentifier}` (GetModelInvocationJob), by ARN or job id;
//! - `GET /model-invocation-jobs` (ListModelInvocationJobs): `statusEquals`, `nameContains`,
//!   `sortOrder`, `maxResults` and `nextToken`;
//! - `POST /model-invocation-job/{jobIdentifier}/stop` (StopModelInvocationJob).
//!
//! A job moves through `Submitted`, `Validating`, `Scheduled` and `InProgress`, one status per
//! [`SimConfig::batch_step_ms`], then ends `Completed` (or `PartiallyCompleted` when some
//! records failed). Validation fails the job when the input holds fewer records than
//! [`SimConfig::batch_min_records`] (Bedrock's minimum, 100, by default). When the job ends,
//! every record is answered as the Converse API would answer it (the same model, with the
//! record's `modelInput` in Anthropic Messages format) and written, with its `recordId`, to
//! `OUTPUT_URI/JOB_ID/INPUT_FILE.out`, plus `manifest.json.out` with the counts. A fraction
//! [`SimConfig::batch_record_errors`] of records (drawn from the seed) get an `error` instead of
//! a `modelOutput`; [`SimConfig::batch_end`] makes jobs end `Failed` or `Expired` instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::protocol::{BedrockError, parse_anthropic_messages};
use crate::{Answer, SimState, json_response, lock, now, to_json};

/// Bedrock's minimum number of records in a batch inference job.
pub const DEFAULT_MIN_RECORDS: u64 = 100;

/// The account and region in the simulator's ARNs.
const ARN_PREFIX: &str = "arn:aws:bedrock:us-east-1:123456789012";

/// How every batch job ends, when not as the records decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchEnd {
    /// `Failed`, with an internal error as the message.
    Failed,
    /// `Expired`: the job ran past its timeout.
    Expired,
}

/// The statuses of a model invocation job, as Bedrock spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Submitted,
    Validating,
    Scheduled,
    InProgress,
    Completed,
    PartiallyCompleted,
    Failed,
    Stopping,
    Stopped,
    Expired,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Submitted => "Submitted",
            Status::Validating => "Validating",
            Status::Scheduled => "Scheduled",
            Status::InProgress => "InProgress",
            Status::Completed => "Completed",
            Status::PartiallyCompleted => "PartiallyCompleted",
            Status::Failed => "Failed",
            Status::Stopping => "Stopping",
            Status::Stopped => "Stopped",
            Status::Expired => "Expired",
        }
    }

    fn is_final(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::PartiallyCompleted | Status::Failed | Status::Stopped | Status::Expired
        )
    }
}

/// One job and what the simulator knows about it.
#[derive(Debug)]
struct Job {
    id: String,
    arn: String,
    name: String,
    model_id: String,
    role_arn: String,
    client_request_token: Option<String>,
    input: Value,
    output: Value,
    timeout_hours: u64,
    submitted: SystemTime,
    submitted_at: Instant,
    /// The input files and their records, read at creation.
    files: Vec<InputFile>,
    status: Status,
    message: Option<String>,
    last_modified: SystemTime,
    ended: Option<SystemTime>,
    stop_requested: bool,
    /// Records answered and records failed, once the job has ended.
    record_counts: Option<(u64, u64)>,
}

#[derive(Debug)]
struct InputFile {
    name: String,
    lines: Vec<String>,
}

/// The jobs of one simulator.
#[derive(Debug, Default)]
pub(crate) struct BatchJobs {
    jobs: Vec<Job>,
    next: u64,
}

/// Counts of what batch jobs processed, for `/_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BatchStats {
    pub jobs: u64,
    pub records: u64,
    pub record_errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    job_name: String,
    role_arn: String,
    model_id: String,
    #[serde(default)]
    client_request_token: Option<String>,
    input_data_config: Value,
    output_data_config: Value,
    #[serde(default)]
    timeout_duration_in_hours: Option<u64>,
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn not_found(identifier: &str) -> BedrockError {
    BedrockError {
        status: StatusCode::NOT_FOUND,
        error_type: "ResourceNotFoundException",
        message: format!("The model invocation job {identifier} could not be found."),
    }
}

/// `s3://bucket/key` → the file `key` under `dir`; the bucket is not checked (the simulator's
/// store stands for every bucket).
fn local_path(dir: &Path, uri: &str) -> Result<PathBuf, BedrockError> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| BedrockError::validation(format!("The S3 URI {uri:?} must start with s3://.")))?;
    let key = rest.split_once('/').map(|(_, key)| key).unwrap_or("");
    // Only plain names: no root, no `..`, so a key never leaves the store directory.
    let plain = std::path::Path::new(key).components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain {
        return Err(BedrockError::validation(format!("The S3 URI {uri:?} is not a valid key.")));
    }
    Ok(dir.join(key))
}

fn s3_uri(config: &Value, data_config: &str) -> Option<String> {
    config.get(data_config)?.get("s3Uri")?.as_str().map(str::to_string)
}

/// The JSONL files the input URI names: the file itself, or every `.jsonl` file directly under
/// the prefix, by name.
fn read_input(dir: &Path, uri: &str) -> Result<Vec<InputFile>, BedrockError> {
    let path = local_path(dir, uri)?;
    let mut paths = Vec::new();
    if path.is_file() {
        paths.push(path);
    } else if path.is_dir() {
        let entries = std::fs::read_dir(&path)
            .map_err(|e| BedrockError::validation(format!("Cannot list the input prefix {uri}: {e}")))?;
        paths = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        paths.sort();
    }
    if paths.is_empty() {
        return Err(BedrockError::validation(format!(
            "The input {uri} does not exist or holds no .jsonl file in the simulator's object store."
        )));
    }
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| BedrockError::validation(format!("Cannot read the input file {}: {e}", p.display())))?;
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok(InputFile { name, lines: text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect() })
        })
        .collect()
}

/// Whether record `record_id` of a job gets an error: a stable draw from the seed.
fn record_fails(seed: u64, job: &str, record_id: &str, rate: f64) -> bool {
    use std::hash::{Hash, Hasher};
    if rate <= 0.0 {
        return false;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (seed, job, record_id).hash(&mut hasher);
    (hasher.finish() as f64 / u64::MAX as f64) < rate
}

impl SimState {
    fn batch_dir(&self) -> Result<&Path, BedrockError> {
        self.config.batch_store_dir.as_deref().ok_or_else(|| {
            BedrockError::validation(
                "The simulator has no object store for batch inference: start it with --store-dir DIR (s3://BUCKET/KEY is DIR/KEY).",
            )
        })
    }

    fn min_records(&self) -> u64 {
        self.config.batch_min_records.unwrap_or(DEFAULT_MIN_RECORDS)
    }

    /// Moves `job` along its timeline and, when it ends, answers its records.
    fn advance(&self, job: &mut Job) {
        if job.status.is_final() {
            return;
        }
        if job.stop_requested {
            // Stopping is seen once, then the job is stopped.
            if job.status == Status::Stopping {
                self.end(job, Status::Stopped, None);
            } else {
                job.status = Status::Stopping;
                job.last_modified = SystemTime::now();
            }
            return;
        }
        let step = Duration::from_millis(self.config.batch_step_ms);
        let elapsed = now().saturating_duration_since(job.submitted_at);
        let steps = if step.is_zero() { u32::MAX } else { (elapsed.as_millis() / step.as_millis()) as u32 };
        let records: usize = job.files.iter().map(|f| f.lines.len()).sum();
        let status = match steps {
            0 => Status::Submitted,
            1 => Status::Validating,
            _ if (records as u64) < self.min_records() => {
                let message = format!(
                    "The number of records in the input ({records}) is below the minimum of {} for a batch inference job.",
                    self.min_records()
                );
                return self.end(job, Status::Failed, Some(message));
            }
            2 => Status::Scheduled,
            3 => Status::InProgress,
            _ => return self.finish(job),
        };
        if status != job.status {
            job.status = status;
            job.last_modified = SystemTime::now();
        }
    }

    fn end(&self, job: &mut Job, status: Status, message: Option<String>) {
        job.status = status;
        job.message = message;
        let t = SystemTime::now();
        job.last_modified = t;
        job.ended = Some(t);
        tracing::info!(job = %job.arn, status = status.as_str(), "batch job ended");
    }

    /// Answers every record and writes the outputs, or ends the job as configured.
    fn finish(&self, job: &mut Job) {
        match self.config.batch_end {
            Some(BatchEnd::Failed) => {
                return self.end(job, Status::Failed, Some("Internal error: the job failed (simulated).".into()));
            }
            Some(BatchEnd::Expired) => {
                return self.end(
                    job,
                    Status::Expired,
                    Some("The job did not finish within its timeout (simulated).".into()),
                );
            }
            None => {}
        }
        match self.write_outputs(job) {
            Ok((total, errors)) => {
                job.record_counts = Some((total, errors));
                if errors > 0 {
                    self.end(job, Status::PartiallyCompleted, Some(format!("{errors} of {total} records failed.")))
                } else {
                    self.end(job, Status::Completed, None)
                }
            }
            Err(message) => self.end(job, Status::Failed, Some(message)),
        }
    }

    /// Writes `<input>.out` per input file and `manifest.json.out`; returns the records and
    /// how many of them failed.
    fn write_outputs(&self, job: &Job) -> Result<(u64, u64), String> {
        let dir = self.batch_dir().map_err(|e| e.message)?;
        let output_uri = s3_uri(&job.output, "s3OutputDataConfig").unwrap_or_default();
        let out_dir =
            local_path(dir, &format!("{}/{}", output_uri.trim_end_matches('/'), job.id)).map_err(|e| e.message)?;
        std::fs::create_dir_all(&out_dir).map_err(|e| format!("cannot write the output: {e}"))?;
        let mut stats = BatchStats { jobs: 1, ..BatchStats::default() };
        for file in &job.files {
            let mut out = String::new();
            for line in &file.lines {
                let record = self.answer_record(job, line, &mut stats);
                out.push_str(&to_json(&record));
                out.push('\n');
            }
            std::fs::write(out_dir.join(format!("{}.out", file.name)), out)
                .map_err(|e| format!("cannot write the output: {e}"))?;
        }
        let manifest = json!({
            "totalRecordCount": stats.records,
            "processedRecordCount": stats.records,
            "successRecordCount": stats.records - stats.record_errors,
            "errorRecordCount": stats.record_errors,
            "inputTokenCount": stats.input_tokens,
            "outputTokenCount": stats.output_tokens,
        });
        std::fs::write(out_dir.join("manifest.json.out"), to_json(&manifest))
            .map_err(|e| format!("cannot write the output: {e}"))?;
        let mut totals = lock(&self.batch_stats);
        totals.jobs += 1;
        totals.records += stats.records;
        totals.record_errors += stats.record_errors;
        totals.input_tokens += stats.input_tokens;
        totals.output_tokens += stats.output_tokens;
        Ok((stats.records, stats.record_errors))
    }

    /// One output line: the record with its `modelOutput`, or with an `error`.
    fn answer_record(&self, job: &Job, line: &str, stats: &mut BatchStats) -> Value {
        stats.records += 1;
        let record: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                stats.record_errors += 1;
                return json!({"error": {"errorCode": 400, "errorMessage": format!("The line is not JSON: {e}")}});
            }
        };
        let record_id = record.get("recordId").and_then(Value::as_str).unwrap_or_default().to_string();
        let model_input = record.get("modelInput").cloned().unwrap_or(Value::Null);
        let mut out = json!({"recordId": record_id, "modelInput": model_input});
        let request = match parse_anthropic_messages(&model_input) {
            Ok(request) => request,
            Err(e) => {
                stats.record_errors += 1;
                out["error"] = json!({"errorCode": 400, "errorMessage": e.message});
                return out;
            }
        };
        if record_fails(self.config.seed, &job.id, &record_id, self.config.batch_record_errors) {
            stats.record_errors += 1;
            out["error"] =
                json!({"errorCode": 500, "errorMessage": "Internal server error (simulated record failure)."});
            return out;
        }
        let answer = Answer::compose(&request, self.config.tokenizer);
        stats.input_tokens += answer.input_tokens;
        stats.output_tokens += answer.output_tokens;
        out["modelOutput"] = json!({
            "id": format!("msg_bdrk_{}_{}", job.id, record_id),
            "type": "message",
            "role": "assistant",
            "model": job.model_id,
            "content": [{"type": "text", "text": answer.text}],
            "stop_reason": if answer.truncated { "max_tokens" } else { "end_turn" },
            "stop_sequence": null,
            "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens},
        });
        out
    }

    fn find<'a>(&self, jobs: &'a mut BatchJobs, identifier: &str) -> Result<&'a mut Job, BedrockError> {
        jobs.jobs.iter_mut().find(|j| j.arn == identifier || j.id == identifier).ok_or_else(|| not_found(identifier))
    }
}

fn describe(job: &Job) -> Value {
    let mut v = json!({
        "jobArn": job.arn,
        "jobName": job.name,
        "modelId": job.model_id,
        "roleArn": job.role_arn,
        "status": job.status.as_str(),
        "submitTime": rfc3339(job.submitted),
        "lastModifiedTime": rfc3339(job.last_modified),
        "inputDataConfig": job.input,
        "outputDataConfig": job.output,
        "timeoutDurationInHours": job.timeout_hours,
        "jobExpirationTime": rfc3339(job.submitted + Duration::from_secs(job.timeout_hours * 3600)),
    });
    if let Some(token) = &job.client_request_token {
        v["clientRequestToken"] = json!(token);
    }
    if let Some(message) = &job.message {
        v["message"] = json!(message);
    }
    if let Some(ended) = job.ended {
        v["endTime"] = json!(rfc3339(ended));
    }
    if let Some((total, errors)) = job.record_counts {
        v["totalRecordCount"] = json!(total);
        v["processedRecordCount"] = json!(total);
        v["successRecordCount"] = json!(total - errors);
        v["errorRecordCount"] = json!(errors);
    }
    v
}

pub(crate) async fn create(State(state): State<Arc<SimState>>, body: axum::body::Bytes) -> Response {
    let request: CreateRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return BedrockError::validation(format!("Malformed request: {e}")).into_response(),
    };
    let valid_name = !request.job_name.is_empty()
        && request.job_name.len() <= 63
        && request.job_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !request.job_name.starts_with('-');
    if !valid_name {
        return BedrockError::validation(format!(
            "1 validation error detected: Value '{}' at 'jobName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9]{{1,63}}(-*[a-zA-Z0-9\\+\\-\\.]){{0,63}}",
            request.job_name
        ))
        .into_response();
    }
    let timeout_hours = request.timeout_duration_in_hours.unwrap_or(24);
    if !(24..=168).contains(&timeout_hours) {
        return BedrockError::validation(format!(
            "1 validation error detected: Value '{timeout_hours}' at 'timeoutDurationInHours' failed to satisfy constraint: Member must have value between 24 and 168"
        ))
        .into_response();
    }
    let dir = match state.batch_dir() {
        Ok(dir) => dir.to_path_buf(),
        Err(e) => return e.into_response(),
    };
    let (Some(input_uri), Some(_)) = (
        s3_uri(&request.input_data_config, "s3InputDataConfig"),
        s3_uri(&request.output_data_config, "s3OutputDataConfig"),
    ) else {
        return BedrockError::validation(
            "inputDataConfig.s3InputDataConfig.s3Uri and outputDataConfig.s3OutputDataConfig.s3Uri are required.",
        )
        .into_response();
    };
    let files = match tokio::task::spawn_blocking(move || read_input(&dir, &input_uri)).await {
        Ok(Ok(files)) => files,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return BedrockError::service_unavailable(format!("cannot read the input: {e}")).into_response(),
    };
    let mut jobs = lock(&state.batch_jobs);
    if let Some(existing) = jobs.jobs.iter().find(|j| j.name == request.job_name) {
        // The same client token is an idempotent retry; another one is a conflict.
        if request.client_request_token.is_some() && existing.client_request_token == request.client_request_token {
            return json_response(StatusCode::OK, to_json(&json!({"jobArn": existing.arn})));
        }
        return BedrockError {
            status: StatusCode::CONFLICT,
            error_type: "ConflictException",
            message: format!("A model invocation job named {} already exists.", request.job_name),
        }
        .into_response();
    }
    jobs.next += 1;
    let id = format!("sim{:09}", jobs.next);
    let arn = format!("{ARN_PREFIX}:model-invocation-job/{id}");
    let t = SystemTime::now();
    let records: usize = files.iter().map(|f| f.lines.len()).sum();
    tracing::info!(%arn, name = %request.job_name, records, "batch job created");
    jobs.jobs.push(Job {
        id,
        arn: arn.clone(),
        name: request.job_name,
        model_id: request.model_id,
        role_arn: request.role_arn,
        client_request_token: request.client_request_token,
        input: request.input_data_config,
        output: request.output_data_config,
        timeout_hours,
        submitted: t,
        submitted_at: now(),
        files,
        status: Status::Submitted,
        message: None,
        last_modified: t,
        ended: None,
        stop_requested: false,
        record_counts: None,
    });
    json_response(StatusCode::OK, to_json(&json!({"jobArn": arn})))
}

pub(crate) async fn get(State(state): State<Arc<SimState>>, UrlPath(identifier): UrlPath<String>) -> Response {
    let state = state.clone();
    // Ending a job writes its outputs: file work, off the async workers.
    let result = tokio::task::spawn_blocking(move || {
        let mut jobs = lock(&state.batch_jobs);
        let job = state.find(&mut jobs, &identifier)?;
        state.advance(job);
        Ok::<Value, BedrockError>(describe(job))
    })
    .await;
    match result {
        Ok(Ok(v)) => json_response(StatusCode::OK, to_json(&v)),
        Ok(Err(e)) => e.into_response(),
        Err(e) => BedrockError::service_unavailable(format!("{e}")).into_response(),
    }
}

pub(crate) async fn stop(State(state): State<Arc<SimState>>, UrlPath(identifier): UrlPath<String>) -> Response {
    let mut jobs = lock(&state.batch_jobs);
    let job = match state.find(&mut jobs, &identifier) {
        Ok(job) => job,
        Err(e) => return e.into_response(),
    };
    if job.status.is_final() {
        return BedrockError::validation(format!(
            "The model invocation job {} is {} and cannot be stopped.",
            job.arn,
            job.status.as_str()
        ))
        .into_response();
    }
    // The next look shows Stopping, the one after Stopped.
    job.stop_requested = true;
    json_response(StatusCode::OK, "{}".into())
}

pub(crate) async fn list(
    State(state): State<Arc<SimState>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let state = state.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut jobs = lock(&state.batch_jobs);
        for job in jobs.jobs.iter_mut() {
            state.advance(job);
        }
        let mut matching: Vec<Value> = jobs
            .jobs
            .iter()
            .filter(|j| query.get("statusEquals").is_none_or(|s| s == j.status.as_str()))
            .filter(|j| query.get("nameContains").is_none_or(|n| j.name.contains(n.as_str())))
            .map(describe)
            .collect();
        // Newest first unless asked otherwise, as Bedrock lists them.
        if query.get("sortOrder").map(String::as_str) != Some("Ascending") {
            matching.reverse();
        }
        let start: usize = query.get("nextToken").and_then(|t| t.parse().ok()).unwrap_or(0);
        let max: usize = query.get("maxResults").and_then(|m| m.parse().ok()).unwrap_or(1000).clamp(1, 1000);
        let page: Vec<Value> = matching.iter().skip(start).take(max).cloned().collect();
        let mut body = json!({"invocationJobSummaries": page});
        if start + max < matching.len() {
            body["nextToken"] = json!((start + max).to_string());
        }
        body
    })
    .await;
    match result {
        Ok(body) => json_response(StatusCode::OK, to_json(&body)),
        Err(e) => BedrockError::service_unavailable(format!("{e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_uris_map_into_the_store_directory() {
        let dir = Path::new("/data/store");
        assert_eq!(local_path(dir, "s3://b/batch/in.jsonl").unwrap(), Path::new("/data/store/batch/in.jsonl"));
        assert!(local_path(dir, "s3://b/../etc/passwd").is_err());
        assert!(local_path(dir, "s3://b//etc/passwd").is_err());
        assert!(local_path(dir, "/etc/passwd").is_err());
    }

    #[test]
    fn record_failures_are_stable_and_near_the_rate() {
        let failed = (0..1000).filter(|i| record_fails(7, "job", &i.to_string(), 0.1)).count();
        assert!((60..=140).contains(&failed), "{failed}");
        assert_eq!(record_fails(7, "job", "42", 0.1), record_fails(7, "job", "42", 0.1));
        assert!(!record_fails(7, "job", "42", 0.0));
    }
}
