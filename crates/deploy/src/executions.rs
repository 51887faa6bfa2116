//! The executions of a deployed stack's state machine (`beacon executions --engine aws`),
//! through `aws-sdk-sfn`, in the shapes `beacon executions` prints for the local journal.

use aws_sdk_sfn::Client;
use aws_sdk_sfn::error::ProvideErrorMetadata;
use aws_sdk_sfn::primitives::DateTime;
use aws_sdk_sfn::types::HistoryEvent;
use aws_smithy_types::date_time::Format;
use serde_json::{Value, json};

use crate::stack::api_error;
use crate::{DeployError, Stacks};

fn time(t: &DateTime) -> String {
    t.fmt(Format::DateTime).unwrap_or_default()
}

/// A deployed stack's state machine and a Step Functions client for it.
pub struct DeployedMachine {
    pub sfn: Client,
    pub arn: String,
}

impl DeployedMachine {
    /// The state machine of `stack` in `region` (or at `endpoint`).
    pub async fn of_stack(
        stack: &str,
        region: Option<&str>,
        endpoint: Option<&str>,
    ) -> Result<DeployedMachine, DeployError> {
        let sdk = beacon_aws::sdk_config(region, endpoint).await;
        let arn = Stacks::reader(&sdk).deployed(stack).await?.output(stack, "StateMachineArn")?;
        Ok(DeployedMachine { sfn: Client::new(&sdk), arn })
    }

    /// The most recent executions, newest first.
    pub async fn list(&self, limit: usize) -> Result<Vec<Value>, DeployError> {
        list(&self.sfn, &self.arn, limit).await
    }

    /// One execution (by name or ARN), with its events when `history`.
    pub async fn show(&self, name: &str, history: bool) -> Result<Value, DeployError> {
        show(&self.sfn, &self.arn, name, history).await
    }
}

async fn list(sfn: &Client, state_machine: &str, limit: usize) -> Result<Vec<Value>, DeployError> {
    let mut found = Vec::new();
    let mut pages = sfn.list_executions().state_machine_arn(state_machine).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| api_error("ListExecutions", e))?;
        for execution in page.executions() {
            found.push(json!({
                "name": execution.name(),
                "arn": execution.execution_arn(),
                "status": execution.status().as_str(),
                "startedAt": time(execution.start_date()),
                "finishedAt": execution.stop_date().map(time),
            }));
            if found.len() >= limit {
                return Ok(found);
            }
        }
    }
    Ok(found)
}

async fn show(sfn: &Client, state_machine: &str, name: &str, history: bool) -> Result<Value, DeployError> {
    let arn = if name.starts_with("arn:") { name.to_string() } else { execution_arn(state_machine, name) };
    let described = sfn.describe_execution().execution_arn(&arn).send().await.map_err(|e| {
        match e.as_service_error().and_then(|s| s.code()) {
            Some("ExecutionDoesNotExist") => DeployError::Usage(format!("no execution {name} of {state_machine}")),
            _ => api_error("DescribeExecution", e),
        }
    })?;
    let parse = |text: Option<&str>| text.map(|t| serde_json::from_str::<Value>(t).unwrap_or_else(|_| json!(t)));
    let mut shown = json!({
        "name": described.name(),
        "arn": described.execution_arn(),
        "status": described.status().as_str(),
        "startedAt": time(described.start_date()),
        "finishedAt": described.stop_date().map(time),
        "input": parse(described.input()),
        "output": parse(described.output()),
        "error": described.error(),
        "cause": described.cause(),
    });
    if history {
        let mut events = Vec::new();
        let mut pages = sfn.get_execution_history().execution_arn(&arn).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error("GetExecutionHistory", e))?;
            events.extend(page.events().iter().map(event));
        }
        shown["events"] = Value::Array(events);
    }
    Ok(shown)
}

/// `arn:aws:states:R:A:stateMachine:M` + name → `arn:aws:states:R:A:execution:M:name`.
fn execution_arn(state_machine: &str, name: &str) -> String {
    format!("{}:{name}", state_machine.replacen(":stateMachine:", ":execution:", 1))
}

/// A history event in GetExecutionHistory's shape, with the state name and error where the
/// event has them.
fn event(e: &HistoryEvent) -> Value {
    let mut out = json!({
        "id": e.id(),
        "previousEventId": e.previous_event_id(),
        "timestamp": time(e.timestamp()),
        "type": e.r#type().as_str(),
    });
    if let Some(state) = e.state_entered_event_details() {
        out["stateName"] = json!(state.name());
    }
    if let Some(state) = e.state_exited_event_details() {
        out["stateName"] = json!(state.name());
    }
    let failure = e
        .task_failed_event_details()
        .map(|d| (d.error(), d.cause()))
        .or_else(|| e.execution_failed_event_details().map(|d| (d.error(), d.cause())))
        .or_else(|| e.lambda_function_failed_event_details().map(|d| (d.error(), d.cause())));
    if let Some((error, cause)) = failure {
        out["error"] = json!(error);
        out["cause"] = json!(cause);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_execution_arn_is_derived_from_its_state_machine() {
        assert_eq!(
            super::execution_arn("arn:aws:states:us-east-1:123456789012:stateMachine:beacon-beacon", "run-1"),
            "arn:aws:states:us-east-1:123456789012:execution:beacon-beacon:run-1"
        );
    }
}
