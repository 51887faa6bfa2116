//! Connecting the embedded engine to the execution journal (`beacon_store::journal`): history
//! events go to the journal and drive the progress display; task outcomes are journaled before
//! the flow moves on, and a resumed execution takes them from the journal instead of running
//! the task again.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use beacon_asl::{ExecutionObserver, HistoryEvent, TaskFailure, TaskJournal};
use beacon_store::journal::{EventRecord, Journal, TaskRecord};
use serde_json::Value;

use crate::progress::{Progress, UnitEnd};
use crate::tasks::resources;

/// Task outcomes of one execution: those journaled by earlier attempts, and new ones.
pub struct JournaledTasks {
    journal: Journal,
    execution: String,
    recorded: HashMap<String, Result<Value, TaskFailure>>,
}

impl JournaledTasks {
    /// Load what earlier attempts of `execution` recorded.
    pub fn load(journal: &Journal, execution: &str) -> Result<JournaledTasks, beacon_store::journal::JournalError> {
        let recorded = journal
            .tasks(execution)?
            .into_iter()
            .map(|(key, record)| {
                let outcome = match record {
                    // A stored output that no longer parses is treated as missing: the task runs again.
                    TaskRecord::Succeeded { output } => serde_json::from_str(&output).map_err(|_| None),
                    TaskRecord::Failed { error, cause } => Err(Some(TaskFailure { error, cause })),
                };
                (key, outcome)
            })
            .filter_map(|(key, outcome)| match outcome {
                Ok(v) => Some((key, Ok(v))),
                Err(Some(f)) => Some((key, Err(f))),
                Err(None) => None,
            })
            .collect();
        Ok(JournaledTasks { journal: journal.clone(), execution: execution.to_string(), recorded })
    }

    /// How many outcomes earlier attempts recorded.
    pub fn recorded_count(&self) -> usize {
        self.recorded.len()
    }
}

#[async_trait]
impl TaskJournal for JournaledTasks {
    fn recorded(&self, key: &str) -> Option<Result<Value, TaskFailure>> {
        self.recorded.get(key).cloned()
    }

    async fn record(&self, key: &str, outcome: &Result<Value, TaskFailure>) {
        let record = match outcome {
            Ok(v) => TaskRecord::Succeeded { output: v.to_string() },
            Err(f) => TaskRecord::Failed { error: f.error.clone(), cause: f.cause.clone() },
        };
        if let Err(e) = self.journal.record_task(&self.execution, key, record).await {
            // The run goes on; only its resumability is at risk, which the user should know.
            tracing::error!(error = %e, key, "cannot journal a task outcome");
        }
    }
}

/// Journals every history event of one attempt of an execution.
pub struct EventJournal {
    pub journal: Journal,
    pub execution: String,
    pub attempt: u32,
}

impl ExecutionObserver for EventJournal {
    fn on_event(&self, event: &HistoryEvent) {
        let record = EventRecord {
            id: event.id,
            previous_id: event.previous_event_id,
            timestamp: event.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event_type: event.event_type.clone(),
            details: event.details.to_string(),
        };
        if let Err(e) = self.journal.record_event(&self.execution, self.attempt, record) {
            tracing::error!(error = %e, "cannot journal a history event");
        }
    }
}

/// Journals every history event and turns the ones that matter into progress.
pub(crate) struct FlowObserver {
    pub(crate) events: EventJournal,
    pub(crate) progress: Arc<dyn Progress>,
}

/// A JSON value that AWS-shaped details may hold as JSON text.
fn json_field(details: &Value, name: &str) -> Value {
    match details.get(name) {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => Value::Null,
    }
}

impl ExecutionObserver for FlowObserver {
    fn on_event(&self, event: &HistoryEvent) {
        self.events.on_event(event);
        self.progress_from(event);
    }

    /// A distributed Map's child execution: journaled as `<execution>/<child>` (on AWS it is an
    /// execution of its own, listed under the Map Run), and its units count as progress.
    fn on_child_event(&self, child: &str, event: &HistoryEvent) {
        let journal = &self.events;
        let name = format!("{}/{child}", journal.execution);
        EventJournal { journal: journal.journal.clone(), execution: name, attempt: journal.attempt }.on_event(event);
        self.progress_from(event);
    }
}

impl FlowObserver {
    /// Units planned and finished, from the task events that say so.
    fn progress_from(&self, event: &HistoryEvent) {
        let details = &event.details;
        if event.event_type != "TaskSucceeded" {
            return;
        }
        let resource = details.get("resource").and_then(Value::as_str).unwrap_or_default();
        let output = json_field(details, "output");
        let index = output.get("index").and_then(Value::as_u64).map(|i| i as usize);
        match (resource, index) {
            (resources::DOCUMENT_PROCESSOR, _) => {
                if let Some(units) = output.get("unitCount").and_then(Value::as_u64) {
                    self.progress.units_planned(units as usize);
                }
            }
            (resources::LLM_PROCESSOR, Some(index)) => self.progress.unit_finished(index, UnitEnd::Succeeded),
            // The units a batch job answered, all at once.
            (resources::BATCH_COLLECTOR, _) => {
                for index in output.get("succeeded").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(index) = index.as_u64() {
                        self.progress.unit_finished(index as usize, UnitEnd::Succeeded);
                    }
                }
            }
            (resources::UNIT_FAILURE_RECORDER, Some(index)) => self.progress.unit_finished(index, UnitEnd::Failed),
            _ => {}
        }
    }
}
