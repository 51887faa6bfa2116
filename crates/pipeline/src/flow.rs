//! Running the BEACON state machine on the embedded engine.
//!
//! The definition is `deploy/statemachine/beacon.asl.json`, compiled into the binary; its
//! `${...}` placeholders are filled from [`Config`] exactly as AWS SAM fills them on deploy.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use beacon_asl::{ExecutionStatus, Interpreter, Sleeper, StateMachine, TaskRegistry};
use beacon_store::journal::{ExecutionRecord, ExecutionState, Journal, JournalError, NewExecution, TaskRecord};
use beacon_store::{Store, keys};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::info;

use crate::buckets::StoreBucket;
use crate::config::Config;
use crate::journal::{EventJournal, FlowObserver, JournaledTasks};
use crate::plan::Strategy;
use crate::pool::{BatchPool, JoinBatchPool};
use crate::progress::Progress;
use crate::report::Report;
use crate::tasks::{self, Services, errors, resources};

/// The state that integrates the unit results (a redrive runs it again).
const INTEGRATE_STATE: &str = "IntegrateResults@";

/// The Map iterations (key prefixes `...[i]/`) in which a task's last attempt failed — the units
/// that finally failed (and were caught into a failure record) — and the tasks outside any Map
/// whose last attempt failed (`<state>#`).
fn failed_iterations(tasks: &std::collections::HashMap<String, TaskRecord>) -> Vec<String> {
    // The last attempt of each task state: keys are `<state path>#<attempt>`.
    let mut last: std::collections::HashMap<&str, (u32, bool)> = std::collections::HashMap::new();
    for (key, record) in tasks {
        let Some((state, attempt)) = key.rsplit_once('#') else { continue };
        let Ok(attempt) = attempt.parse::<u32>() else { continue };
        let ok = matches!(record, TaskRecord::Succeeded { .. });
        let entry = last.entry(state).or_insert((attempt, ok));
        if attempt >= entry.0 {
            *entry = (attempt, ok);
        }
    }
    let mut prefixes: Vec<String> = last
        .into_iter()
        .filter(|(_, (_, ok))| !ok)
        // Inside a Map: the whole iteration; outside one: that task's attempts.
        .map(|(state, _)| state.rfind("]/").map_or_else(|| format!("{state}#"), |end| state[..end + 2].to_string()))
        .collect();
    prefixes.sort();
    prefixes.dedup();
    prefixes
}

/// The state machine definition, with placeholders.
pub const STATE_MACHINE_DEFINITION: &str = include_str!("../../../deploy/statemachine/beacon.asl.json");

/// Why a run did not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The input file cannot be used (missing, a directory, too large, unreadable, unsupported,
    /// encrypted, empty, corrupt). The message names the file.
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    /// The state machine definition or configuration is wrong.
    #[error("{0}")]
    Definition(String),
    /// The execution failed for another reason.
    #[error("execution {execution} failed: {error}: {cause}")]
    Execution { execution: String, error: String, cause: String },
    /// The engine running the execution failed (on AWS: an API call).
    #[error("{0}")]
    Engine(String),
    /// The run's options contradict the configuration (e.g. batch without Bedrock).
    #[error("{0}")]
    Options(String),
    /// The execution cannot be resumed (finished, or still running elsewhere).
    #[error("{0}")]
    NotResumable(String),
    #[error(transparent)]
    Store(#[from] beacon_store::StoreError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// An execution [`Runner::enqueue`] journaled as `QUEUED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub execution: String,
    /// The document's id (SHA-256 of its bytes, hex).
    pub document_id: String,
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    pub execution: String,
    pub report: Report,
    pub report_markdown: String,
    /// Number of events in the execution history.
    pub history_events: usize,
}

/// The values for the definition's placeholders.
pub fn substitutions(config: &Config) -> BTreeMap<String, String> {
    let s = &config.strategy;
    BTreeMap::from([
        ("DocumentProcessorFunctionArn".to_string(), task_resource(config, resources::DOCUMENT_PROCESSOR)),
        ("LlmProcessorFunctionArn".to_string(), task_resource(config, resources::LLM_PROCESSOR)),
        ("ResultIntegratorFunctionArn".to_string(), task_resource(config, resources::RESULT_INTEGRATOR)),
        ("UnitFailureRecorderFunctionArn".to_string(), task_resource(config, resources::UNIT_FAILURE_RECORDER)),
        ("DistributedThreshold".to_string(), s.distributed_threshold.to_string()),
        ("BatchThreshold".to_string(), s.batch_threshold.to_string()),
        ("InlineMaxConcurrency".to_string(), s.inline_max_concurrency.to_string()),
        ("DistributedBatchSize".to_string(), s.distributed_batch_size.to_string()),
        ("DistributedMaxConcurrency".to_string(), s.distributed_max_concurrency.to_string()),
        ("ToleratedFailurePercentage".to_string(), s.tolerated_failure_percentage.to_string()),
        ("BucketName".to_string(), config.bucket.clone()),
        ("ModelId".to_string(), config.provider.model.clone().unwrap_or_else(|| config.model_name())),
        ("BatchMinRecords".to_string(), config.batch.min_records.to_string()),
        ("BatchPollSeconds".to_string(), config.batch.poll_seconds.to_string()),
        ("BatchTimeoutHours".to_string(), config.batch.timeout_hours.to_string()),
        ("BatchRoleArn".to_string(), config.batch.role_arn.clone()),
        ("BatchOnFailure".to_string(), config.batch.on_failure.as_str().to_string()),
        ("BatchPreparerFunctionArn".to_string(), task_resource(config, resources::BATCH_PREPARER)),
        ("BatchCollectorFunctionArn".to_string(), task_resource(config, resources::BATCH_COLLECTOR)),
        ("BatchPoolFunctionArn".to_string(), task_resource(config, resources::BATCH_POOL)),
    ])
}

/// The Task resource that runs `resource` (`beacon:<task>`): the task's Lambda function when
/// `lambda.functions` names one (see `beacon_aws::lambda_invoke`), else the task in this process.
pub fn task_resource(config: &Config, resource: &str) -> String {
    let task = resource.strip_prefix("beacon:").unwrap_or(resource);
    config.lambda.functions.get(task).cloned().unwrap_or_else(|| resource.to_string())
}

/// The state machine with this configuration's substitutions, parsed and validated.
pub fn state_machine(config: &Config) -> Result<StateMachine, RunError> {
    StateMachine::parse(&definition_text(config)?)
        .map_err(|e| RunError::Definition(format!("state machine definition: {e}")))
}

/// What a run needs to remember to be resumed by another process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunOptions {
    /// Where the CLI writes report.json and report.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_dir: Option<String>,
    /// The provider the execution was started with (a resume uses it unless told otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<crate::config::ProviderConfig>,
    /// The process that runs (or ran) the execution.
    #[serde(default)]
    pub pid: u32,
    /// The strategy this run must take (`--strategy`); `None` lets the state machine choose by
    /// unit count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// This execution's own unit schema and model parameters (an upload's options).
    #[serde(default, skip_serializing_if = "UnitOptions::is_empty")]
    pub unit: UnitOptions,
}

/// What one execution asks of the unit analysis instead of the configuration's `[llm]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitOptions {
    /// The JSON Schema unit results must follow (checked with [`crate::schema::check_unit_schema`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
}

impl UnitOptions {
    pub fn is_empty(&self) -> bool {
        *self == UnitOptions::default()
    }
}

/// Runs documents through the state machine, journaling every execution.
pub struct Runner {
    services: Services,
    journal: Journal,
    progress: Arc<dyn Progress>,
    sleeper: Option<Arc<dyn Sleeper>>,
    /// Resources served from outside the pipeline (the AWS SDK integrations).
    extra_tasks: TaskRegistry,
    /// Where batch documents pool their records (shared by runners of one process).
    pool: Arc<BatchPool>,
}

/// Reads a document file, refusing directories and files over `max_file_bytes` before reading
/// them; the error says what is wrong in words for the user.
pub fn read_document_file(path: &Path, max_file_bytes: u64) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| describe_io_error(&e))?;
    if meta.is_dir() {
        return Err("is a directory, not a file".into());
    }
    if meta.len() > max_file_bytes {
        return Err(format!(
            "the file is {} bytes, over the limit of {max_file_bytes} bytes (raise limits.max_file_bytes)",
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| describe_io_error(&e))
}

impl Runner {
    pub fn new(services: Services, journal: Journal, progress: Arc<dyn Progress>) -> Runner {
        let pool = Arc::new(BatchPool::for_config(&services));
        Runner { services, journal, progress, sleeper: None, extra_tasks: TaskRegistry::new(), pool }
    }

    /// Pool batch records with other runners' executions (one pool per process).
    pub fn with_batch_pool(mut self, pool: Arc<BatchPool>) -> Runner {
        self.pool = pool;
        self
    }

    /// Also serve these resources (e.g. `arn:aws:states:::aws-sdk:bedrock:*`, which
    /// `beacon-aws` provides), next to BEACON's own tasks.
    pub fn with_tasks(mut self, tasks: TaskRegistry) -> Runner {
        self.extra_tasks = tasks;
        self
    }

    /// Use `sleeper` for the state machine's Retry intervals and Wait states (tests).
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Runner {
        self.sleeper = Some(sleeper);
        self
    }

    pub fn store(&self) -> &Store {
        &self.services.store
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Check the file (see [`read_document_file`]), upload it to the store and run the state
    /// machine on it.
    pub async fn run_file(&self, path: &Path, options: RunOptions) -> Result<RunOutcome, RunError> {
        let shown = path.display().to_string();
        let input_error = |message: String| RunError::Input { path: shown.clone(), message };
        let bytes = read_document_file(path, self.services.config.limits.max_file_bytes).map_err(input_error)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| shown.clone());
        self.run_bytes(&name, bytes, options).await.map_err(|e| match e {
            RunError::Input { message, .. } => input_error(message),
            other => other,
        })
    }

    /// Upload `bytes` as document `name` and run the state machine on it.
    pub async fn run_bytes(&self, name: &str, bytes: Vec<u8>, options: RunOptions) -> Result<RunOutcome, RunError> {
        let (new, input) = self.prepare(name, bytes, options).await?;
        self.journal.start_execution(&new).await?;
        info!(execution = new.name, document = name, "starting execution");
        self.execute(&new.name, &new.definition, input, 1, name, &new.options).await
    }

    /// Upload `bytes` as document `name` and journal an execution for it as `QUEUED`, to be
    /// started by [`Runner::start_queued`]; returns the execution's name and the document id.
    pub async fn enqueue(&self, name: &str, bytes: Vec<u8>, options: RunOptions) -> Result<Queued, RunError> {
        let (new, input) = self.prepare(name, bytes, options).await?;
        self.journal.queue_execution(&new).await?;
        let document_id = input["document"]["key"]
            .as_str()
            .and_then(|key| key.strip_prefix("documents/"))
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
            .to_string();
        info!(execution = new.name, document = name, "execution queued");
        Ok(Queued { execution: new.name, document_id })
    }

    /// Start an execution [`Runner::enqueue`] queued.
    pub async fn start_queued(&self, execution: &str) -> Result<RunOutcome, RunError> {
        let record = self.journal.get(execution)?;
        if record.status != ExecutionState::Queued {
            return Err(RunError::NotResumable(format!(
                "execution {execution} is {}, not queued",
                record.status.as_str()
            )));
        }
        let input: Value = serde_json::from_str(&record.input)
            .map_err(|e| RunError::Definition(format!("journaled input of {execution} is not JSON: {e}")))?;
        let attempt = self.journal.begin_attempt(execution).await?;
        info!(execution, "starting queued execution");
        self.execute(execution, &record.definition, input, attempt, &record.label, &record.options).await
    }

    /// Run the failed units of a finished execution again (Step Functions' redrive, for units):
    /// the outcomes of every Map iteration whose task finally failed, and of the integration,
    /// are forgotten; the execution runs again as a new attempt, every other task's outcome
    /// taken from the journal, and the report is written anew. Returns how many iterations run
    /// again.
    pub async fn redrive(&self, execution: &str) -> Result<(usize, RunOutcome), RunError> {
        let (iterations, _) = self.prepare_redrive(execution).await?;
        info!(execution, iterations, "redriving execution");
        Ok((iterations, self.run_current_attempt(execution).await?))
    }

    /// Run the attempt an execution's journal record says it is on (after
    /// [`Runner::prepare_redrive`]), with every journaled task outcome reused.
    pub async fn run_current_attempt(&self, execution: &str) -> Result<RunOutcome, RunError> {
        let record = self.journal.get(execution)?;
        let input: Value = serde_json::from_str(&record.input)
            .map_err(|e| RunError::Definition(format!("journaled input of {execution} is not JSON: {e}")))?;
        self.execute(execution, &record.definition, input, record.attempt, &record.label, &record.options).await
    }

    /// What [`Runner::redrive`] does before it runs: checks, forgets, begins the attempt.
    /// Returns how many iterations run again and the new attempt.
    pub async fn prepare_redrive(&self, execution: &str) -> Result<(usize, u32), RunError> {
        let record = self.journal.get(execution)?;
        if matches!(record.status, ExecutionState::Queued | ExecutionState::Running) {
            return Err(RunError::NotResumable(format!(
                "execution {execution} is {}; only a finished execution can be redriven",
                record.status.as_str()
            )));
        }
        let tasks = self.journal.tasks(execution)?;
        let failed = failed_iterations(&tasks);
        let integration: Vec<String> =
            tasks.keys().filter(|key| !key.contains('/') && key.starts_with(INTEGRATE_STATE)).cloned().collect();
        if failed.is_empty() && record.status == ExecutionState::Succeeded {
            return Err(RunError::NotResumable(format!(
                "execution {execution} succeeded with every unit: there is nothing to redrive"
            )));
        }
        let mut forget: Vec<String> =
            tasks.keys().filter(|key| failed.iter().any(|prefix| key.starts_with(prefix.as_str()))).cloned().collect();
        forget.extend(integration);
        self.journal.delete_tasks(execution, &forget).await?;
        let attempt = self.journal.begin_attempt(execution).await?;
        Ok((failed.len(), attempt))
    }

    /// Check the options, store the bytes and say what to journal: the execution and its input.
    async fn prepare(
        &self,
        name: &str,
        bytes: Vec<u8>,
        options: RunOptions,
    ) -> Result<(NewExecution, Value), RunError> {
        if options.strategy == Some(Strategy::Batch)
            && self.services.config.provider.kind != crate::ProviderKind::Bedrock
        {
            return Err(RunError::Options(
                "--strategy batch needs Bedrock batch inference: use --provider bedrock (with --endpoint for beacon sim), or --strategy inline or distributed".into(),
            ));
        }
        let document_id = document_id(&bytes);
        let source_key = keys::document_source(&document_id);
        self.services.store.put(&source_key, bytes).await?;
        let execution = execution_name(&document_id);
        let config = &self.services.config;
        let input =
            execution_input(&source_key, name, &config.model_name(), config.batch_available(), options.strategy);
        let definition = definition_text(&self.services.config)?;
        let options = RunOptions {
            pid: std::process::id(),
            provider: options.provider.or_else(|| Some(self.services.config.provider.clone())),
            ..options
        };
        let new = NewExecution {
            name: execution,
            definition,
            input: input.to_string(),
            label: name.to_string(),
            options: serde_json::to_string(&options).unwrap_or_default(),
            started_at: now(),
        };
        Ok((new, input))
    }

    /// The options an unfinished execution was started with, and whether it can be resumed now.
    pub fn resumable(&self, execution: &str) -> Result<RunOptions, RunError> {
        check_resumable(&self.journal.get(execution)?)
    }

    /// Continue an execution whose process died: tasks journaled before are not run again.
    pub async fn resume(&self, execution: &str) -> Result<RunOutcome, RunError> {
        let record = self.journal.get(execution)?;
        check_resumable(&record)?;
        let input: Value = serde_json::from_str(&record.input)
            .map_err(|e| RunError::Definition(format!("journaled input of {execution} is not JSON: {e}")))?;
        let attempt = self.journal.begin_attempt(execution).await?;
        info!(execution, attempt, "resuming execution");
        self.execute(execution, &record.definition, input, attempt, &record.label, &record.options).await
    }

    /// Runs attempt `attempt` of `execution`; `options` are its journaled [`RunOptions`], whose
    /// unit choices (schema, model parameters) apply to every attempt alike.
    async fn execute(
        &self,
        execution: &str,
        definition: &str,
        input: Value,
        attempt: u32,
        document: &str,
        options: &str,
    ) -> Result<RunOutcome, RunError> {
        let machine = StateMachine::parse(definition)
            .map_err(|e| RunError::Definition(format!("state machine definition: {e}")))?;
        // Its own schema and parameters, or it would silently run on the configuration's.
        let unit = serde_json::from_str::<RunOptions>(options)
            .map_err(|e| RunError::Definition(format!("journaled options of {execution} cannot be read: {e}")))?
            .unit;
        let services = self.services.with_unit_options(&unit);
        let tasks = Arc::new(JournaledTasks::load(&self.journal, execution)?);
        if attempt > 1 {
            info!(execution, recorded = tasks.recorded_count(), "task outcomes taken from the journal");
        }
        let observer = Arc::new(FlowObserver {
            events: EventJournal { journal: self.journal.clone(), execution: execution.to_string(), attempt },
            progress: self.progress.clone(),
        });
        let mut registry = tasks::registry(&services);
        registry.register(resources::BATCH_POOL, Arc::new(JoinBatchPool(self.pool.clone())));
        for resource in self.extra_tasks.resources() {
            if let Some(handler) = self.extra_tasks.get(resource) {
                registry.register(resource, handler);
            }
        }
        let mut interpreter = Interpreter::new(registry)
            .with_observer(observer)
            .with_task_journal(tasks)
            .with_payload_limit(self.services.config.asl.payload_limit_bytes)
            .with_object_storage(Arc::new(StoreBucket::new(
                self.services.config.bucket.clone(),
                self.services.store.clone(),
            )));
        if let Some(sleeper) = &self.sleeper {
            interpreter = interpreter.with_sleeper(sleeper.clone());
        }
        let result = interpreter.execute(&machine, execution, input).await;
        let history_events = result.history.len();
        let (state, output, error, cause) = match &result.status {
            ExecutionStatus::Succeeded { output } => (ExecutionState::Succeeded, Some(output.to_string()), None, None),
            ExecutionStatus::Failed { error, cause } => {
                (ExecutionState::Failed, None, Some(error.clone()), Some(cause.clone()))
            }
            ExecutionStatus::TimedOut => (ExecutionState::TimedOut, None, Some(errors::TIMED_OUT.to_string()), None),
        };
        self.journal.finish_execution(execution, state, output, error, cause, now()).await?;
        let execution = execution.to_string();
        match result.status {
            ExecutionStatus::Succeeded { output } => {
                let (report, report_markdown) = fetch_report(&self.services.store, &output).await?;
                Ok(RunOutcome { execution, report, report_markdown, history_events })
            }
            ExecutionStatus::Failed { error, cause } if error == errors::INVALID_DOCUMENT => {
                Err(RunError::Input { path: document.to_string(), message: tasks::readable_cause(&cause) })
            }
            ExecutionStatus::Failed { error, cause } => {
                Err(RunError::Execution { execution, error, cause: tasks::readable_cause(&cause) })
            }
            ExecutionStatus::TimedOut => Err(RunError::Execution {
                execution,
                error: errors::TIMED_OUT.to_string(),
                cause: "the execution ran longer than the state machine's TimeoutSeconds".to_string(),
            }),
        }
    }
}

/// The `options` of an execution's input: the model, the strategy when one is forced, and
/// whether batch inference is available (only Bedrock has it; without it the state machine
/// sends large documents to the distributed Map).
/// The state machine's input for the document stored at `source_key`: what the embedded engine
/// and `beacon run --engine aws` start an execution with.
pub fn execution_input(
    source_key: &str,
    name: &str,
    model: &str,
    batch_available: bool,
    strategy: Option<Strategy>,
) -> Value {
    let mut options = json!({ "model": model, "batchAvailable": batch_available });
    if let Some(strategy) = strategy {
        options["strategy"] = json!(strategy.to_string());
    }
    json!({ "document": { "key": source_key, "name": name }, "options": options })
}

/// The report a succeeded execution wrote: its output names the keys.
pub async fn fetch_report(store: &Store, output: &Value) -> Result<(Report, String), RunError> {
    let report_key = output_key(output, "reportKey")?;
    let markdown_key = output_key(output, "markdownKey")?;
    let report: Report = store.get_json(&report_key).await?;
    let markdown = String::from_utf8_lossy(&store.get(&markdown_key).await?).into_owned();
    Ok((report, markdown))
}

/// Whether `record` can be resumed: it is `RUNNING` and the process that ran it is gone (or is
/// this one); its journaled options when it can.
pub fn check_resumable(record: &ExecutionRecord) -> Result<RunOptions, RunError> {
    let execution = &record.name;
    if record.status != ExecutionState::Running {
        return Err(RunError::NotResumable(format!(
            "execution {execution} already finished ({}); there is nothing to resume",
            record.status.as_str()
        )));
    }
    let options: RunOptions = serde_json::from_str(&record.options).unwrap_or_default();
    if options.pid != std::process::id() && process_is_running(options.pid) {
        return Err(RunError::NotResumable(format!(
            "execution {execution} is still running in process {}; resume it only after that process stopped",
            options.pid
        )));
    }
    Ok(options)
}

/// The state machine definition with this configuration's substitutions.
pub fn definition_text(config: &Config) -> Result<String, RunError> {
    beacon_asl::substitute(STATE_MACHINE_DEFINITION, &substitutions(config))
        .map_err(|e| RunError::Definition(format!("state machine definition: {e}")))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Whether a process with this id exists (Linux: /proc; elsewhere assume it does not).
fn process_is_running(pid: u32) -> bool {
    pid != 0 && Path::new(&format!("/proc/{pid}")).exists()
}

fn output_key(output: &Value, name: &str) -> Result<String, RunError> {
    output
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| RunError::Definition(format!("the state machine's output has no '{name}': {output}")))
}

/// `<first 12 hex of the document id>-<UTC time>-<random>`: unique, sortable, traceable. Every
/// execution of a document is found by [`execution_prefix`] (`beacon serve`'s document delete).
pub fn execution_name(document_id: &str) -> String {
    let now = chrono::Utc::now();
    let nonce: u32 = rand::random::<u32>() & 0xffff;
    format!("{}{}-{nonce:04x}", execution_prefix(document_id), now.format("%Y%m%dT%H%M%S%3f"))
}

/// A document's id: the SHA-256 of its bytes, hex (so the same bytes are one document).
pub fn document_id(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What the names of a document's executions start with (other documents may share it: 12 hex
/// digits are a prefix, not the id).
pub fn execution_prefix(document_id: &str) -> String {
    format!("{}-", document_id.get(..12).unwrap_or(document_id))
}

fn describe_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied (cannot read the file)".to_string(),
        _ => format!("cannot read the file: {e}"),
    }
}

#[cfg(test)]
mod redrive_tests {
    use super::*;

    #[test]
    fn only_iterations_whose_last_attempt_failed_run_again() {
        let ok = || TaskRecord::Succeeded { output: "{}".into() };
        let failed = || TaskRecord::Failed { error: "E".into(), cause: "c".into() };
        let tasks: std::collections::HashMap<String, TaskRecord> = [
            ("ProcessDocument@1#1", ok()),
            ("AnalyseUnits@1#1[0]/ProcessUnit@1#1", ok()),
            // Failed once, then succeeded: done.
            ("AnalyseUnits@1#1[1]/ProcessUnit@1#1", failed()),
            ("AnalyseUnits@1#1[1]/ProcessUnit@1#2", ok()),
            // Failed for good, caught into a failure record.
            ("AnalyseUnits@1#1[2]/ProcessUnit@1#1", failed()),
            ("AnalyseUnits@1#1[2]/ProcessUnit@1#2", failed()),
            ("AnalyseUnits@1#1[2]/RecordUnitFailure@1#1", ok()),
            ("AnalyseUnitsDistributed@1#1[3]/AnalyseBatchOfUnits@1#1[1]/ProcessUnitInChild@1#1", failed()),
            ("IntegrateResults@1#1", ok()),
            ("PrepareBatch@1#1", failed()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(
            failed_iterations(&tasks),
            vec![
                "AnalyseUnits@1#1[2]/",
                "AnalyseUnitsDistributed@1#1[3]/AnalyseBatchOfUnits@1#1[1]/",
                "PrepareBatch@1#"
            ]
        );
    }
}
