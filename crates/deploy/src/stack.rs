//! Creating or updating a CloudFormation stack through a change set, with progress from the
//! stack's events, as `aws cloudformation deploy` and `sam deploy` do.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudformation::types::{Capability, ChangeSetStatus, ChangeSetType, Parameter, StackStatus};

use super::DeployError;

/// Where the template comes from.
pub enum TemplateLocation {
    /// Inline (CloudFormation takes up to 51,200 bytes this way).
    Body(String),
    /// An S3 URL (up to 1 MB): how the packaged BEACON template goes.
    Url(String),
}

/// What a deployment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    Created,
    Updated,
    /// The change set held no changes: the stack already is what the template describes.
    Unchanged,
}

/// A stack as DescribeStacks reports it.
pub struct StackState {
    pub status: StackStatus,
    pub parameters: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
}

/// CloudFormation calls, polling every `poll` and giving up waiting after `timeout` (the stack
/// operation itself goes on; the message says how to follow it).
pub struct Stacks {
    pub client: Client,
    pub poll: Duration,
    pub timeout: Duration,
}

pub(crate) fn api_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    error: SdkError<E, R>,
) -> DeployError {
    DeployError::Aws { operation, message: beacon_aws::describe(&error) }
}

impl StackState {
    /// The output `key` of `stack`, which must be a BEACON stack.
    pub fn output(&self, stack: &str, key: &str) -> Result<String, DeployError> {
        self.outputs
            .get(key)
            .cloned()
            .ok_or_else(|| DeployError::Usage(format!("stack {stack} has no {key} output: is it a BEACON stack?")))
    }
}

impl Stacks {
    /// For reading stacks only (no deployment to follow).
    pub fn reader(sdk: &aws_config::SdkConfig) -> Stacks {
        Stacks { client: Client::new(sdk), poll: Duration::from_secs(5), timeout: Duration::from_secs(60) }
    }

    /// The deployed stack `stack`; its absence is the user's error.
    pub async fn deployed(&self, stack: &str) -> Result<StackState, DeployError> {
        self.describe(stack)
            .await?
            .ok_or_else(|| DeployError::Usage(format!("there is no stack {stack} (deploy it with beacon deploy)")))
    }

    /// The stack, or `None` when there is none of that name.
    pub async fn describe(&self, stack: &str) -> Result<Option<StackState>, DeployError> {
        let output = match self.client.describe_stacks().stack_name(stack).send().await {
            Ok(output) => output,
            // CloudFormation answers a missing stack with a ValidationError "... does not exist".
            Err(e) if e.as_service_error().and_then(|s| s.message()).is_some_and(|m| m.contains("does not exist")) => {
                return Ok(None);
            }
            Err(e) => return Err(api_error("DescribeStacks", e)),
        };
        let Some(found) = output.stacks().first() else { return Ok(None) };
        let status = found.stack_status().cloned().unwrap_or(StackStatus::ReviewInProgress);
        let parameters = found
            .parameters()
            .iter()
            .filter_map(|p| Some((p.parameter_key()?.to_string(), p.parameter_value().unwrap_or_default().to_string())))
            .collect();
        let outputs = found
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value().unwrap_or_default().to_string())))
            .collect();
        Ok(Some(StackState { status, parameters, outputs }))
    }

    /// Creates `stack` or updates it to `template` with `parameters`; the template's parameters
    /// in `keep` that are not given keep their current value on an update. `progress` receives
    /// one line per step and per stack event.
    pub async fn deploy(
        &self,
        stack: &str,
        template: TemplateLocation,
        parameters: &BTreeMap<String, String>,
        keep: &[String],
        progress: &dyn Fn(&str),
    ) -> Result<(Rollout, StackState), DeployError> {
        let existing = self.describe(stack).await?;
        let change_type = match existing.as_ref().map(|s| &s.status) {
            // A stack that only ever had an unexecuted change set is still created by one.
            None | Some(StackStatus::ReviewInProgress) => ChangeSetType::Create,
            Some(StackStatus::RollbackComplete) => {
                return Err(DeployError::Stack(format!(
                    "stack {stack} is in ROLLBACK_COMPLETE: its creation failed and it cannot be updated. Delete it \
                     (aws cloudformation delete-stack --stack-name {stack}) and deploy again"
                )));
            }
            Some(status) if status.as_str().ends_with("_IN_PROGRESS") => {
                return Err(DeployError::Stack(format!(
                    "stack {stack} is busy ({}); wait for that operation to finish and deploy again",
                    status.as_str()
                )));
            }
            Some(_) => ChangeSetType::Update,
        };

        let mut request = self
            .client
            .create_change_set()
            .stack_name(stack)
            .change_set_name(format!("beacon-deploy-{}", unix_seconds()))
            .change_set_type(change_type.clone())
            .description("beacon deploy")
            // The template creates named IAM roles, one per function.
            .capabilities(Capability::CapabilityIam)
            .capabilities(Capability::CapabilityNamedIam);
        request = match template {
            TemplateLocation::Body(body) => request.template_body(body),
            TemplateLocation::Url(url) => request.template_url(url),
        };
        for (key, value) in parameters {
            request = request.parameters(Parameter::builder().parameter_key(key).parameter_value(value).build());
        }
        if let Some(existing) = &existing {
            for key in keep.iter().filter(|k| !parameters.contains_key(*k) && existing.parameters.contains_key(*k)) {
                request = request.parameters(Parameter::builder().parameter_key(key).use_previous_value(true).build());
            }
        }
        let created = request.send().await.map_err(|e| api_error("CreateChangeSet", e))?;
        let change_set = created.id().unwrap_or_default().to_string();
        progress(&format!(
            "change set to {} stack {stack} created; waiting for CloudFormation to compute it",
            if change_type == ChangeSetType::Create { "create" } else { "update" }
        ));

        // Wait for the change set.
        let started = Instant::now();
        loop {
            let described = self
                .client
                .describe_change_set()
                .change_set_name(&change_set)
                .stack_name(stack)
                .send()
                .await
                .map_err(|e| api_error("DescribeChangeSet", e))?;
            match described.status() {
                Some(ChangeSetStatus::CreateComplete) => {
                    let mut counts = BTreeMap::<String, usize>::new();
                    for change in described.changes() {
                        if let Some(action) = change.resource_change().and_then(|c| c.action()) {
                            *counts.entry(action.as_str().to_string()).or_default() += 1;
                        }
                    }
                    let summary: Vec<String> = counts.iter().map(|(action, n)| format!("{n} {action}")).collect();
                    if !summary.is_empty() {
                        progress(&format!("changes: {}", summary.join(", ")));
                    }
                    break;
                }
                Some(ChangeSetStatus::Failed) => {
                    let reason = described.status_reason().unwrap_or("no reason given").to_string();
                    if reason.contains("didn't contain changes") || reason.contains("No updates are to be performed") {
                        let _ =
                            self.client.delete_change_set().change_set_name(&change_set).stack_name(stack).send().await;
                        let state = existing.ok_or_else(|| DeployError::Stack(reason.clone()))?;
                        return Ok((Rollout::Unchanged, state));
                    }
                    return Err(DeployError::Stack(format!("the change set for {stack} failed: {reason}")));
                }
                _ => self.wait(started, stack).await?,
            }
        }

        // Events before the execution are not this deployment's.
        let mut seen = self.event_ids(stack).await?;
        self.client
            .execute_change_set()
            .change_set_name(&change_set)
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| api_error("ExecuteChangeSet", e))?;
        let started = Instant::now();
        let mut first_failure: Option<String> = None;
        loop {
            let events = self.client.describe_stack_events().stack_name(stack).send().await;
            let events = events.map_err(|e| api_error("DescribeStackEvents", e))?;
            // Newest first: print the new ones oldest first.
            let new: Vec<_> =
                events.stack_events().iter().filter(|e| e.event_id().is_some_and(|id| !seen.contains(id))).collect();
            for event in new.into_iter().rev() {
                seen.insert(event.event_id().unwrap_or_default().to_string());
                let status = event.resource_status().map(|s| s.as_str()).unwrap_or("?");
                let reason = event.resource_status_reason().unwrap_or_default();
                let logical = event.logical_resource_id().unwrap_or_default();
                if status.ends_with("_FAILED") && first_failure.is_none() && !reason.is_empty() {
                    first_failure = Some(format!("{logical}: {reason}"));
                }
                let line = format!("{status:<20} {:<38} {logical}", event.resource_type().unwrap_or_default());
                progress(
                    if reason.is_empty() { line.trim_end().to_string() } else { format!("{line}  ({reason})") }
                        .as_str(),
                );
            }
            let state = self
                .describe(stack)
                .await?
                .ok_or_else(|| DeployError::Stack(format!("stack {stack} disappeared while it was being deployed")))?;
            match state.status {
                StackStatus::CreateComplete => return Ok((Rollout::Created, state)),
                StackStatus::UpdateComplete => return Ok((Rollout::Updated, state)),
                ref status if status.as_str().ends_with("_IN_PROGRESS") => self.wait(started, stack).await?,
                status => {
                    let cause = first_failure.map(|f| format!(": first failure {f}")).unwrap_or_default();
                    return Err(DeployError::Stack(format!("stack {stack} ended in {}{cause}", status.as_str())));
                }
            }
        }
    }

    async fn event_ids(&self, stack: &str) -> Result<HashSet<String>, DeployError> {
        match self.client.describe_stack_events().stack_name(stack).send().await {
            Ok(events) => Ok(events.stack_events().iter().filter_map(|e| e.event_id().map(str::to_string)).collect()),
            Err(e) if e.as_service_error().and_then(|s| s.message()).is_some_and(|m| m.contains("does not exist")) => {
                Ok(HashSet::new())
            }
            Err(e) => Err(api_error("DescribeStackEvents", e)),
        }
    }

    /// Sleeps one polling interval, or fails once `timeout` has passed since `started`.
    async fn wait(&self, started: Instant, stack: &str) -> Result<(), DeployError> {
        if started.elapsed() >= self.timeout {
            return Err(DeployError::Stack(format!(
                "stack {stack} is still in progress after {} minutes; CloudFormation goes on without us: follow it \
                 with `aws cloudformation describe-stack-events --stack-name {stack}`",
                self.timeout.as_secs() / 60
            )));
        }
        tokio::time::sleep(self.poll).await;
        Ok(())
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
