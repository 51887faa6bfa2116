//! The state machine's task handlers. Each one is a plain async function over [`Services`],
//! registered in the ASL interpreter under its resource name (locally) and wrapped by a Lambda
//! entry point on AWS. They pass object-store keys, not contents, between states so payloads
//! stay far below the 256 KiB state limit.

mod batch;
mod document_processor;
mod llm_processor;
mod result_integrator;
mod unit_failure;

use std::sync::Arc;

use async_trait::async_trait;
use beacon_asl::{TaskContext, TaskFailure, TaskHandler, TaskRegistry};
use beacon_llm::LlmClient;
use beacon_store::Store;
use serde_json::Value;

use crate::config::Config;

pub use batch::{collect_batch, prepare_batch};
pub use document_processor::process_document;
pub use llm_processor::process_unit;
pub use result_integrator::integrate_results;
pub use unit_failure::record_unit_failure;

/// Error names the tasks raise; the state machine's Retry/Catch rules refer to them.
pub mod errors {
    /// The input document cannot be read (unsupported, encrypted, corrupt, empty, too large).
    pub const INVALID_DOCUMENT: &str = "Beacon.InvalidDocument";
    /// The task's input is not what the state machine should pass.
    pub const INVALID_INPUT: &str = "Beacon.InvalidInput";
    /// The unit's content could not be read from the document (damaged page, unreadable sheet).
    pub const UNREADABLE_UNIT: &str = "Beacon.UnreadableUnit";
    /// The model's answer did not follow the unit schema.
    pub const INVALID_ANSWER: &str = "Beacon.InvalidAnswer";
    /// The execution exceeded the state machine's `TimeoutSeconds` (as `States.Timeout` on AWS).
    pub const TIMED_OUT: &str = "States.Timeout";
    /// The object store failed.
    pub const STORE: &str = "Beacon.StoreError";
}

/// The resource names of BEACON's tasks, as the local engine registers them. The state machine
/// refers to them through DefinitionSubstitutions (`${DocumentProcessorFunctionArn}`, ...).
pub mod resources {
    pub const DOCUMENT_PROCESSOR: &str = "beacon:document-processor";
    pub const LLM_PROCESSOR: &str = "beacon:llm-processor";
    pub const RESULT_INTEGRATOR: &str = "beacon:result-integrator";
    pub const UNIT_FAILURE_RECORDER: &str = "beacon:record-unit-failure";
    pub const BATCH_PREPARER: &str = "beacon:batch-prepare";
    pub const BATCH_COLLECTOR: &str = "beacon:batch-collect";
    /// Served by the runner's [`crate::pool::BatchPool`], shared by its executions.
    pub const BATCH_POOL: &str = "beacon:batch-pool";
    /// The task names (each resource without `beacon:`), as `BEACON_TASK` and
    /// `lambda.functions` name them.
    pub const TASKS: &[&str] = &[
        "document-processor",
        "llm-processor",
        "record-unit-failure",
        "result-integrator",
        "batch-prepare",
        "batch-collect",
        "batch-pool",
    ];
}

/// How many object-store requests a task keeps in flight when it reads or writes many objects.
const STORE_CONCURRENCY: usize = 32;

/// What the tasks need from the outside world.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub llm: Arc<dyn LlmClient>,
    pub config: Arc<Config>,
    /// The JSON Schema unit results must follow.
    pub unit_schema: Arc<Value>,
}

impl Services {
    /// These services with one execution's own unit schema and model parameters.
    pub fn with_unit_options(&self, unit: &crate::flow::UnitOptions) -> Services {
        let mut services = self.clone();
        if unit.max_tokens.is_some() || unit.temperature.is_some() {
            let mut config = (*self.config).clone();
            config.llm.max_tokens = unit.max_tokens.unwrap_or(config.llm.max_tokens);
            config.llm.temperature = unit.temperature.unwrap_or(config.llm.temperature);
            services.config = Arc::new(config);
        }
        if let Some(schema) = &unit.schema {
            services.unit_schema = Arc::new(schema.clone());
        }
        services
    }
}

fn failure(error: &str, cause: impl std::fmt::Display) -> TaskFailure {
    TaskFailure { error: error.to_string(), cause: cause.to_string() }
}

/// A failure's cause as a person reads it. When a Lambda function fails, Step Functions puts the
/// function's error document (`{"errorType": ..., "errorMessage": ...}`) in `Cause`; its message
/// is the reason. Any other cause is returned as it is.
pub fn readable_cause(cause: &str) -> String {
    serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|document| document.get("errorMessage").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| cause.to_string())
}

fn store_failure(e: beacon_store::StoreError) -> TaskFailure {
    failure(errors::STORE, e)
}

/// Deserialize a task's input, failing with a message that names the task.
fn task_input<T: serde::de::DeserializeOwned>(task: &str, input: Value) -> Result<T, TaskFailure> {
    serde_json::from_value(input).map_err(|e| failure(errors::INVALID_INPUT, format!("{task}: {e}")))
}

type TaskFn = fn(Services, Value, TaskContext) -> futures_task::BoxTask;

mod futures_task {
    use std::future::Future;
    use std::pin::Pin;

    use beacon_asl::TaskFailure;
    use serde_json::Value;

    pub type BoxTask = Pin<Box<dyn Future<Output = Result<Value, TaskFailure>> + Send>>;
}

/// What is stored for each unit of one execution: its analysis, or why it failed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub(crate) enum UnitRecord {
    Succeeded {
        index: usize,
        title: String,
        model: String,
        result: Value,
        usage: crate::report::UnitUsage,
        #[serde(default)]
        path: String,
    },
    Failed {
        index: usize,
        title: String,
        error: String,
        cause: String,
        #[serde(default)]
        path: String,
    },
}

impl UnitRecord {
    fn into_outcome(self, text: String) -> crate::report::UnitOutcome {
        use crate::report::UnitOutcome;
        // Records written before paths were recorded are all the inline Map's.
        let known = |path: String| if path.is_empty() { "inline".to_string() } else { path };
        match self {
            UnitRecord::Succeeded { index, title, result, usage, path, .. } => {
                UnitOutcome::Succeeded { index, title, text, result, usage, path: known(path) }
            }
            UnitRecord::Failed { index, title, error, cause, path } => {
                UnitOutcome::Failed { index, title, text, error, cause, path: known(path) }
            }
        }
    }
}

/// The units of `run` with a stored outcome so far, in document order, as the report lists
/// them but without their text (a running execution's units, before the report exists).
pub async fn recorded_units(
    store: &Store,
    document_id: &str,
    run: &str,
) -> Result<Vec<crate::report::UnitReport>, beacon_store::StoreError> {
    use crate::report::{UnitError, UnitReport, UnitStatus, UnitUsage};
    use futures::StreamExt;
    let mut objects = store.list(&beacon_store::keys::unit_results(document_id, run)).await?;
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    let reads = objects.into_iter().map(|object| async move { store.get_json::<UnitRecord>(&object.key).await });
    let records: Vec<_> = futures::stream::iter(reads).buffered(STORE_CONCURRENCY).collect().await;
    let known = |path: String| if path.is_empty() { "inline".to_string() } else { path };
    let mut units = Vec::new();
    for record in records {
        let unit = match record? {
            UnitRecord::Succeeded { index, title, result, usage, path, .. } => UnitReport {
                index,
                title,
                status: UnitStatus::Succeeded,
                text: String::new(),
                result: Some(result),
                error: None,
                usage,
                path: known(path),
            },
            UnitRecord::Failed { index, title, error, cause, path } => UnitReport {
                index,
                title,
                status: UnitStatus::Failed,
                text: String::new(),
                result: None,
                error: Some(UnitError { error, cause }),
                usage: UnitUsage::default(),
                path: known(path),
            },
        };
        units.push(unit);
    }
    Ok(units)
}

/// Which unit of which run a task works on: the Map's item. `run` is the execution the
/// results belong to (a distributed Map's child executions pass their parent's name); `path`
/// is how the unit is processed (`inline`, `distributed`, `on-demand`), for the report.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct UnitRef {
    document_id: String,
    index: usize,
    #[serde(default)]
    run: Option<String>,
    #[serde(default)]
    path: Option<String>,
}

impl UnitRef {
    /// The run whose results this unit's record belongs to.
    fn run<'a>(&'a self, ctx: &'a TaskContext) -> &'a str {
        self.run.as_deref().filter(|r| !r.is_empty()).unwrap_or(&ctx.execution_name)
    }

    fn path(&self) -> String {
        self.path.clone().unwrap_or_else(|| "inline".into())
    }

    fn result_key(&self, ctx: &TaskContext) -> String {
        beacon_store::keys::unit_result(&self.document_id, self.run(ctx), self.index)
    }
}

/// A task handler: one of the functions above bound to the services.
struct Task {
    services: Services,
    run: TaskFn,
}

#[async_trait]
impl TaskHandler for Task {
    async fn invoke(&self, input: Value, ctx: TaskContext) -> Result<Value, TaskFailure> {
        (self.run)(self.services.clone(), input, ctx).await
    }
}

/// The registry with BEACON's tasks bound to `services`.
pub fn registry(services: &Services) -> TaskRegistry {
    let mut registry = TaskRegistry::default();
    let tasks: [(&str, TaskFn); 6] = [
        (resources::DOCUMENT_PROCESSOR, |s, i, c| Box::pin(process_document(s, i, c))),
        (resources::LLM_PROCESSOR, |s, i, c| Box::pin(process_unit(s, i, c))),
        (resources::UNIT_FAILURE_RECORDER, |s, i, c| Box::pin(record_unit_failure(s, i, c))),
        (resources::RESULT_INTEGRATOR, |s, i, c| Box::pin(integrate_results(s, i, c))),
        (resources::BATCH_PREPARER, |s, i, c| Box::pin(prepare_batch(s, i, c))),
        (resources::BATCH_COLLECTOR, |s, i, c| Box::pin(collect_batch(s, i, c))),
    ];
    for (resource, run) in tasks {
        registry.register(resource, Arc::new(Task { services: services.clone(), run }));
    }
    registry
}

#[cfg(test)]
mod tests {
    use super::readable_cause;

    #[test]
    fn a_lambda_error_document_reads_as_its_message() {
        assert_eq!(readable_cause(r#"{"errorType":"Beacon.Transient","errorMessage":"slow down"}"#), "slow down");
        assert_eq!(readable_cause("the provider refused"), "the provider refused");
        assert_eq!(readable_cause(r#"{"other":1}"#), r#"{"other":1}"#);
    }
}
