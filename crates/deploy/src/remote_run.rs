//! `beacon run --engine aws`: one document through a deployed stack. The file is uploaded where
//! the embedded engine puts it (`documents/<sha256>/source`, which the document processor may
//! read and which does not trigger the uploads rule), an execution starts with the input the
//! embedded engine would give it, progress comes from the execution's history and Map Runs, and
//! the report is read back from the bucket.

use std::path::Path;
use std::time::Duration;

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use beacon_pipeline::flow::{RunError, RunOutcome};
use beacon_pipeline::plan::Strategy;
use beacon_pipeline::progress::{Progress, UnitEnd};
use beacon_store::{Store, keys};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{DeployError, Stacks};

/// A deployed stack to run documents on: its bucket, state machine and model.
pub struct RemoteStack {
    sfn: aws_sdk_sfn::Client,
    store: Store,
    state_machine: String,
    model: String,
    /// Between two looks at a running execution.
    pub poll: Duration,
}

fn engine_error(e: impl std::fmt::Display) -> RunError {
    RunError::Engine(e.to_string())
}

impl RemoteStack {
    /// The stack's outputs and parameters, and clients for `region` (or `endpoint`).
    pub async fn connect(
        stack: &str,
        region: Option<&str>,
        endpoint: Option<&str>,
    ) -> Result<RemoteStack, DeployError> {
        let sdk = beacon_aws::sdk_config(region, endpoint).await;
        let state = Stacks::reader(&sdk).deployed(stack).await?;
        let bucket = state.output(stack, "BucketName")?;
        let state_machine = state.output(stack, "StateMachineArn")?;
        let region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| beacon_aws::FALLBACK_REGION.to_string());
        let store = crate::s3_store(&sdk, &bucket, &region, endpoint)?;
        // The model the functions use: the Provisioned Throughput ARN when the stack has one.
        let parameter = |key: &str| state.parameters.get(key).filter(|v| !v.is_empty()).cloned();
        let model = parameter("ProvisionedModelArn").or_else(|| parameter("ModelId")).unwrap_or_default();
        Ok(RemoteStack {
            sfn: aws_sdk_sfn::Client::new(&sdk),
            store,
            state_machine,
            model,
            poll: Duration::from_secs(5),
        })
    }

    /// Uploads `path`, runs the deployed state machine on it, and reads the report back.
    pub async fn run_file(
        &self,
        path: &Path,
        max_file_bytes: u64,
        strategy: Option<Strategy>,
        progress: &dyn Progress,
    ) -> Result<RunOutcome, RunError> {
        let started = self.start(path, max_file_bytes, strategy).await?;
        self.wait(&started, progress).await
    }

    /// Uploads `path` and starts an execution on it.
    pub async fn start(
        &self,
        path: &Path,
        max_file_bytes: u64,
        strategy: Option<Strategy>,
    ) -> Result<Started, RunError> {
        let shown = path.display().to_string();
        let bytes = beacon_pipeline::flow::read_document_file(path, max_file_bytes)
            .map_err(|message| RunError::Input { path: shown.clone(), message })?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| shown.clone());
        let document_id = hex::encode(Sha256::digest(&bytes));
        let source_key = keys::document_source(&document_id);
        self.store.put(&source_key, bytes).await?;
        let execution = beacon_pipeline::flow::execution_name(&document_id);
        // Batch inference is there on AWS: the stack runs on Bedrock.
        let input = beacon_pipeline::flow::execution_input(&source_key, &name, &self.model, true, strategy);
        let started = self
            .sfn
            .start_execution()
            .state_machine_arn(&self.state_machine)
            .name(&execution)
            .input(input.to_string())
            .send()
            .await
            .map_err(|e| engine_error(format!("StartExecution: {}", beacon_aws::describe(&e))))?;
        let arn = started.execution_arn().to_string();
        tracing::info!(execution, arn, "started on AWS");
        Ok(Started { execution, arn, document: shown })
    }

    /// Follows a started execution to its end, reporting progress, and reads the report back.
    pub async fn wait(&self, started: &Started, progress: &dyn Progress) -> Result<RunOutcome, RunError> {
        let (execution, arn) = (started.execution.clone(), started.arn.as_str());
        let mut seen = Seen::default();
        loop {
            let described = self
                .sfn
                .describe_execution()
                .execution_arn(arn)
                .send()
                .await
                .map_err(|e| engine_error(format!("DescribeExecution: {}", beacon_aws::describe(&e))))?;
            let events = self.history(arn).await?;
            let map_runs = self.map_run_items(arn, &events).await?;
            seen.report(&events, map_runs, progress);
            match described.status() {
                ExecutionStatus::Running | ExecutionStatus::PendingRedrive => tokio::time::sleep(self.poll).await,
                ExecutionStatus::Succeeded => {
                    let output: Value = serde_json::from_str(described.output().unwrap_or("null"))
                        .map_err(|e| engine_error(format!("the execution's output is not JSON: {e}")))?;
                    let (report, report_markdown) = beacon_pipeline::flow::fetch_report(&self.store, &output).await?;
                    return Ok(RunOutcome { execution, report, report_markdown, history_events: events.len() });
                }
                status => {
                    let error = described.error().unwrap_or(status.as_str()).to_string();
                    let cause = beacon_pipeline::tasks::readable_cause(described.cause().unwrap_or(""));
                    if error == beacon_pipeline::tasks::errors::INVALID_DOCUMENT {
                        return Err(RunError::Input { path: started.document.clone(), message: cause });
                    }
                    return Err(RunError::Execution { execution, error, cause });
                }
            }
        }
    }

    async fn history(&self, arn: &str) -> Result<Vec<aws_sdk_sfn::types::HistoryEvent>, RunError> {
        let mut events = Vec::new();
        let mut pages = self.sfn.get_execution_history().execution_arn(arn).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| engine_error(format!("GetExecutionHistory: {}", beacon_aws::describe(&e))))?;
            events.extend(page.events().iter().cloned());
        }
        Ok(events)
    }

    /// Succeeded and failed items of the execution's distributed Map Runs (none without one).
    async fn map_run_items(
        &self,
        arn: &str,
        events: &[aws_sdk_sfn::types::HistoryEvent],
    ) -> Result<(usize, usize), RunError> {
        if !events.iter().any(|e| *e.r#type() == HistoryEventType::MapRunStarted) {
            return Ok((0, 0));
        }
        let runs = self
            .sfn
            .list_map_runs()
            .execution_arn(arn)
            .send()
            .await
            .map_err(|e| engine_error(format!("ListMapRuns: {}", beacon_aws::describe(&e))))?;
        let (mut succeeded, mut failed) = (0, 0);
        for run in runs.map_runs() {
            let described = self
                .sfn
                .describe_map_run()
                .map_run_arn(run.map_run_arn())
                .send()
                .await
                .map_err(|e| engine_error(format!("DescribeMapRun: {}", beacon_aws::describe(&e))))?;
            if let Some(items) = described.item_counts() {
                succeeded += items.succeeded() as usize;
                failed += items.failed() as usize;
            }
        }
        Ok((succeeded, failed))
    }
}

/// An execution started on AWS.
pub struct Started {
    pub execution: String,
    pub arn: String,
    /// The document's path, for messages.
    pub document: String,
}

/// What progress has been reported so far.
#[derive(Default)]
struct Seen {
    planned: bool,
    succeeded: usize,
    failed: usize,
}

impl Seen {
    /// Reports what `events` and the Map Runs' item counts add to what was reported: the units
    /// planned (from the document processor's result, once) and the units finished (inline Map
    /// iterations plus distributed Map Run items).
    fn report(
        &mut self,
        events: &[aws_sdk_sfn::types::HistoryEvent],
        map_runs: (usize, usize),
        progress: &dyn Progress,
    ) {
        if !self.planned {
            let units = events
                .iter()
                .filter_map(|e| e.task_succeeded_event_details().and_then(|d| d.output()))
                .filter_map(|output| serde_json::from_str::<Value>(output).ok())
                .find_map(|output| output.get("unitCount").and_then(Value::as_u64));
            if let Some(units) = units {
                progress.units_planned(units as usize);
                self.planned = true;
            }
        }
        let count = |kind: HistoryEventType| events.iter().filter(|e| *e.r#type() == kind).count();
        let succeeded = count(HistoryEventType::MapIterationSucceeded) + map_runs.0;
        let failed = count(HistoryEventType::MapIterationFailed) + map_runs.1;
        while self.succeeded < succeeded {
            progress.unit_finished(self.succeeded + self.failed, UnitEnd::Succeeded);
            self.succeeded += 1;
        }
        while self.failed < failed {
            progress.unit_finished(self.succeeded + self.failed, UnitEnd::Failed);
            self.failed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use aws_sdk_sfn::primitives::DateTime;
    use aws_sdk_sfn::types::{HistoryEvent, TaskSucceededEventDetails};

    use super::*;

    #[derive(Default)]
    struct Recorded(Mutex<(Option<usize>, Vec<UnitEnd>)>);

    impl Progress for Recorded {
        fn units_planned(&self, units: usize) {
            self.0.lock().unwrap().0 = Some(units);
        }
        fn unit_finished(&self, _index: usize, end: UnitEnd) {
            self.0.lock().unwrap().1.push(end);
        }
    }

    fn event(id: i64, kind: HistoryEventType, output: Option<&str>) -> HistoryEvent {
        let mut event = HistoryEvent::builder().id(id).timestamp(DateTime::from_secs(id)).r#type(kind);
        if let Some(output) = output {
            let details =
                TaskSucceededEventDetails::builder().resource_type("lambda").resource("invoke").output(output);
            event = event.task_succeeded_event_details(details.build().unwrap());
        }
        event.build().unwrap()
    }

    #[test]
    fn progress_comes_from_the_processor_result_the_map_iterations_and_the_map_runs_once_each() {
        let recorded = Recorded::default();
        let mut seen = Seen::default();
        let mut events = vec![event(1, HistoryEventType::ExecutionStarted, None)];
        seen.report(&events, (0, 0), &recorded);
        assert_eq!(recorded.0.lock().unwrap().0, None);

        events.push(event(2, HistoryEventType::TaskSucceeded, Some(r#"{"documentId":"d","unitCount":5}"#)));
        events.push(event(3, HistoryEventType::MapIterationSucceeded, None));
        events.push(event(4, HistoryEventType::MapIterationFailed, None));
        seen.report(&events, (0, 0), &recorded);
        seen.report(&events, (0, 0), &recorded);
        assert_eq!(*recorded.0.lock().unwrap(), (Some(5), vec![UnitEnd::Succeeded, UnitEnd::Failed]));

        // A distributed Map Run's counts add the rest; nothing is reported twice.
        seen.report(&events, (2, 1), &recorded);
        seen.report(&events, (2, 1), &recorded);
        let ends = recorded.0.lock().unwrap().1.clone();
        assert_eq!(ends.iter().filter(|e| **e == UnitEnd::Succeeded).count(), 3);
        assert_eq!(ends.iter().filter(|e| **e == UnitEnd::Failed).count(), 2);
    }
}
