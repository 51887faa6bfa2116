//! Running the BEACON state machine on the embedded engine.
//!
//! The definition is `deploy/statemachine/beacon.asl.json`, compiled into the binary; its
//! `${...}` placeholders are filled from [`Config`] exactly as AWS SAM fills them on deploy.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use beacon_asl::{ExecutionObserver, ExecutionStatus, HistoryEvent, Interpreter, StateMachine};
use beacon_store::{Store, keys};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::info;

use crate::config::Config;
use crate::progress::{Progress, UnitEnd};
use crate::report::Report;
use crate::tasks::{self, Services, errors, resources};

/// The state machine definition, with placeholders.
pub const STATE_MACHINE_DEFINITION: &str = include_str!("../../../deploy/statemachine/beacon.asl.json");

/// The name of the Map iteration state that records a failed unit.
const UNIT_FAILED_STATE: &str = "UnitFailed";

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
    #[error(transparent)]
    Store(#[from] beacon_store::StoreError),
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
        ("DocumentProcessorFunctionArn".to_string(), resources::DOCUMENT_PROCESSOR.to_string()),
        ("LlmProcessorFunctionArn".to_string(), resources::LLM_PROCESSOR.to_string()),
        ("ResultIntegratorFunctionArn".to_string(), resources::RESULT_INTEGRATOR.to_string()),
        ("DistributedThreshold".to_string(), s.distributed_threshold.to_string()),
        ("BatchThreshold".to_string(), s.batch_threshold.to_string()),
        ("InlineMaxConcurrency".to_string(), s.inline_max_concurrency.to_string()),
    ])
}

/// The state machine with this configuration's substitutions, parsed and validated.
pub fn state_machine(config: &Config) -> Result<StateMachine, RunError> {
    let text = beacon_asl::substitute(STATE_MACHINE_DEFINITION, &substitutions(config))
        .map_err(|e| RunError::Definition(format!("state machine definition: {e}")))?;
    StateMachine::parse(&text).map_err(|e| RunError::Definition(format!("state machine definition: {e}")))
}

/// Runs documents through the state machine.
pub struct Runner {
    services: Services,
    machine: StateMachine,
}

impl Runner {
    pub fn new(services: Services) -> Result<Runner, RunError> {
        let machine = state_machine(&services.config)?;
        Ok(Runner { services, machine })
    }

    pub fn store(&self) -> &Store {
        &self.services.store
    }

    /// Check the file, upload it to the store and run the state machine on it.
    pub async fn run_file(&self, path: &Path) -> Result<RunOutcome, RunError> {
        let shown = path.display().to_string();
        let input_error = |message: String| RunError::Input { path: shown.clone(), message };
        let meta = std::fs::metadata(path).map_err(|e| input_error(describe_io_error(&e)))?;
        if meta.is_dir() {
            return Err(input_error("is a directory, not a file".into()));
        }
        let limit = self.services.config.limits.max_file_bytes;
        if meta.len() > limit {
            return Err(input_error(format!(
                "the file is {} bytes, over the limit of {limit} bytes (raise limits.max_file_bytes)",
                meta.len()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| input_error(describe_io_error(&e)))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| shown.clone());
        self.run_bytes(&name, bytes).await.map_err(|e| match e {
            RunError::Input { message, .. } => input_error(message),
            other => other,
        })
    }

    /// Upload `bytes` as document `name` and run the state machine on it.
    pub async fn run_bytes(&self, name: &str, bytes: Vec<u8>) -> Result<RunOutcome, RunError> {
        let document_id = hex::encode(Sha256::digest(&bytes));
        let source_key = keys::document_source(&document_id);
        self.services.store.put(&source_key, bytes).await?;
        let execution = execution_name(&document_id);
        let input = json!({
            "document": { "key": source_key, "name": name },
            "options": { "model": self.services.config.model_name() },
        });
        info!(execution, document = name, "starting execution");
        let observer = Arc::new(FailedUnitObserver { progress: self.services.progress.clone() });
        let interpreter = Interpreter::new(tasks::registry(&self.services)).with_observer(observer);
        let result = interpreter.execute(&self.machine, &execution, input).await;
        let history_events = result.history.len();
        match result.status {
            ExecutionStatus::Succeeded { output } => {
                let report_key = output_key(&output, "reportKey")?;
                let markdown_key = output_key(&output, "markdownKey")?;
                let report: Report = self.services.store.get_json(&report_key).await?;
                let report_markdown =
                    String::from_utf8_lossy(&self.services.store.get(&markdown_key).await?).into_owned();
                Ok(RunOutcome { execution, report, report_markdown, history_events })
            }
            ExecutionStatus::Failed { error, cause } if error == errors::INVALID_DOCUMENT => {
                Err(RunError::Input { path: name.to_string(), message: cause })
            }
            ExecutionStatus::Failed { error, cause } => Err(RunError::Execution { execution, error, cause }),
        }
    }
}

fn output_key(output: &Value, name: &str) -> Result<String, RunError> {
    output
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| RunError::Definition(format!("the state machine's output has no '{name}': {output}")))
}

/// `<first 12 hex of the document id>-<UTC time>-<random>`: unique, sortable, traceable.
fn execution_name(document_id: &str) -> String {
    let now = chrono::Utc::now();
    let nonce: u32 = rand::random::<u32>() & 0xffff;
    format!("{}-{}-{nonce:04x}", &document_id[..12], now.format("%Y%m%dT%H%M%S%3f"))
}

fn describe_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied (cannot read the file)".to_string(),
        _ => format!("cannot read the file: {e}"),
    }
}

/// Tells the progress display about units that end in the `UnitFailed` state.
struct FailedUnitObserver {
    progress: Arc<dyn Progress>,
}

impl ExecutionObserver for FailedUnitObserver {
    fn on_event(&self, event: &HistoryEvent) {
        if event.event_type != "PassStateEntered" {
            return;
        }
        let details = &event.details;
        if details.get("name").and_then(Value::as_str) != Some(UNIT_FAILED_STATE) {
            return;
        }
        // AWS records the state input as a JSON string; accept an object too.
        let input = match details.get("input") {
            Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
            Some(v) => v.clone(),
            None => Value::Null,
        };
        if let Some(index) = input.pointer("/unit/index").and_then(Value::as_u64) {
            self.progress.unit_finished(index as usize, UnitEnd::Failed);
        }
    }
}
