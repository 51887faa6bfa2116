//! The interpreter: runs a [`StateMachine`] with task handlers from a [`TaskRegistry`],
//! recording the history AWS would record.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use futures::future::BoxFuture;
use futures::stream::{self, FuturesUnordered, StreamExt};
use serde_json::{Map, Value, json};
use tracing::Instrument;

use crate::choice::parse_timestamp;
use crate::definition::{
    ChoiceState, FailText, IoPaths, MapState, ParallelState, PassState, Scope, Setting, State, StateKind, StateMachine,
    TaskState, Transition, WaitFor, WaitState,
};
use crate::distributed::{
    ChildRecord, ItemReader, MAX_ITEMS_LIMIT, ReaderSource, ResultWriter, batches, object_items, parse_items,
    result_files,
};
use crate::errors;
use crate::history::{ExecutionObserver, History, HistoryEvent};
use crate::json::{as_integer, to_compact};
use crate::path::JsonPath;
use crate::path::{Sources, ValuePath};
use crate::payload::{PayloadError, PayloadTemplate};
use crate::retry::{Catcher, Retrier};
use crate::storage::ObjectStorage;
use crate::task::{TaskContext, TaskFailure, TaskJournal, TaskRegistry};
use crate::task_token::{Callback, TaskTokens, Waiting};

/// The `Resource` suffix of Task states that wait for a callback with their task token.
const WAIT_FOR_TASK_TOKEN: &str = ".waitForTaskToken";
use crate::variables::Variables;

/// Waits for a duration. Retry delays and Wait states go through it, so tests can record the
/// delays instead of sleeping.
#[async_trait]
pub trait Sleeper: Send + Sync {
    /// Returns after `d` (or, in tests, whenever it likes).
    async fn sleep(&self, d: Duration);
}

/// The default [`Sleeper`]: `tokio::time::sleep`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioSleeper;

#[async_trait]
impl Sleeper for TokioSleeper {
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionStatus {
    /// The execution reached an end state; `output` is its final output.
    Succeeded {
        /// The execution's output.
        output: Value,
    },
    /// A state failed and nothing caught the error. Empty strings stand for an error or cause
    /// that was not given (a Fail state without `Error`, for instance).
    Failed {
        /// The error name, e.g. `States.Runtime` or a task's error.
        error: String,
        /// The explanation.
        cause: String,
    },
    /// The execution ran longer than the machine-level `TimeoutSeconds` and was stopped.
    TimedOut,
}

/// The outcome of [`Interpreter::execute`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionResult {
    /// Succeeded or failed, with output or error.
    pub status: ExecutionStatus,
    /// Every history event, in id order.
    pub history: Vec<HistoryEvent>,
}

impl ExecutionResult {
    /// The output when the execution succeeded.
    pub fn output(&self) -> Option<&Value> {
        match &self.status {
            ExecutionStatus::Succeeded { output } => Some(output),
            ExecutionStatus::Failed { .. } | ExecutionStatus::TimedOut => None,
        }
    }

    /// The event types in order, handy for comparing with AWS's history.
    pub fn event_types(&self) -> Vec<&str> {
        self.history.iter().map(|e| e.event_type.as_str()).collect()
    }
}

/// Runs state machines locally.
///
/// ```
/// # tokio_test_block(async {
/// use beacon_asl::{Interpreter, StateMachine, TaskRegistry};
/// use serde_json::json;
///
/// let machine = StateMachine::parse(r#"{
///   "StartAt": "Greet",
///   "States": {"Greet": {"Type": "Task", "Resource": "greet", "ResultPath": "$.greeting", "End": true}}
/// }"#).unwrap();
/// let mut registry = TaskRegistry::new();
/// registry.register_fn("greet", |input, _ctx| async move {
///     Ok(json!(format!("hello {}", input["who"].as_str().unwrap_or("?"))))
/// });
/// let result = Interpreter::new(registry).execute(&machine, "run-1", json!({"who": "ada"})).await;
/// assert_eq!(result.output(), Some(&json!({"who": "ada", "greeting": "hello ada"})));
/// # });
/// # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct Interpreter {
    registry: TaskRegistry,
    sleeper: Arc<dyn Sleeper>,
    observer: Option<Arc<dyn ExecutionObserver>>,
    task_journal: Option<Arc<dyn TaskJournal>>,
    payload_limit: usize,
    tokens: TaskTokens,
    storage: Option<Arc<dyn ObjectStorage>>,
}

/// AWS's quota for a state's or a task's input or output: 256 KiB of UTF-8 JSON text.
pub const DEFAULT_PAYLOAD_LIMIT: usize = 256 * 1024;

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("registry", &self.registry)
            .field("observer", &self.observer.is_some())
            .field("task_journal", &self.task_journal.is_some())
            .field("payload_limit", &self.payload_limit)
            .finish()
    }
}

/// Region and account in the ARNs of the context object (`$$.Execution.Id`, ...).
const LOCAL_ARN_PREFIX: &str = "arn:aws:states:local:000000000000";
const LOCAL_ROLE_ARN: &str = "arn:aws:iam::000000000000:role/beacon-local";

impl Interpreter {
    /// An interpreter that runs tasks from `registry` and sleeps with tokio.
    pub fn new(registry: TaskRegistry) -> Self {
        Interpreter {
            registry,
            sleeper: Arc::new(TokioSleeper),
            observer: None,
            task_journal: None,
            payload_limit: DEFAULT_PAYLOAD_LIMIT,
            tokens: TaskTokens::default(),
            storage: None,
        }
    }

    /// Replaces the sleeper used for retry delays and Wait states.
    pub fn with_sleeper(mut self, s: Arc<dyn Sleeper>) -> Self {
        self.sleeper = s;
        self
    }

    /// Sends every history event to `o` as it is recorded.
    pub fn with_observer(mut self, o: Arc<dyn ExecutionObserver>) -> Self {
        self.observer = Some(o);
        self
    }

    /// Records every task outcome in `j`, and takes outcomes `j` already has from it instead of
    /// calling the task again (resuming an execution after a crash).
    pub fn with_task_journal(mut self, j: Arc<dyn TaskJournal>) -> Self {
        self.task_journal = Some(j);
        self
    }

    /// Sets the largest state input, state output and task result, in bytes of compact JSON
    /// text ([`DEFAULT_PAYLOAD_LIMIT`], AWS's 256 KiB, unless set). A larger task result fails
    /// the task with `States.DataLimitExceeded`, which `Retry` and `Catch` handle like any task
    /// error; a larger state output, or state input after `Parameters`, fails the state with
    /// `States.DataLimitExceeded` that only a `Catch` naming it handles (`States.ALL` does not).
    pub fn with_payload_limit(mut self, bytes: usize) -> Self {
        self.payload_limit = bytes;
        self
    }

    /// Gives the Distributed Map's `ItemReader` and `ResultWriter` their buckets.
    pub fn with_object_storage(mut self, s: Arc<dyn ObjectStorage>) -> Self {
        self.storage = Some(s);
        self
    }

    /// The handle for completing `.waitForTaskToken` tasks (`SendTaskSuccess`,
    /// `SendTaskFailure`, `SendTaskHeartbeat`) of this interpreter's executions.
    pub fn task_tokens(&self) -> TaskTokens {
        self.tokens.clone()
    }

    /// The task handlers this interpreter calls.
    pub fn registry(&self) -> &TaskRegistry {
        &self.registry
    }

    /// Runs one execution to its end. Dropping the future cancels the execution, including
    /// running tasks and Map iterations.
    pub async fn execute(&self, machine: &StateMachine, execution_name: &str, input: Value) -> ExecutionResult {
        let span = tracing::info_span!("execution", machine = machine.name(), execution = execution_name);
        self.execute_inner(machine, execution_name, input).instrument(span).await
    }

    async fn execute_inner(&self, machine: &StateMachine, execution_name: &str, input: Value) -> ExecutionResult {
        let started_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let machine_arn = format!("{LOCAL_ARN_PREFIX}:stateMachine:{}", machine.name());
        let execution_arn = format!("{LOCAL_ARN_PREFIX}:execution:{}:{execution_name}", machine.name());
        let mut context_base = json!({
            "Execution": {
                "Id": execution_arn,
                "Name": execution_name,
                "RoleArn": LOCAL_ROLE_ARN,
                "StartTime": started_at,
                "RedriveCount": 0,
            },
            "StateMachine": {"Id": machine_arn, "Name": machine.name()},
        });
        if machine.reads_execution_input() {
            context_base["Execution"]["Input"] = input.clone();
        }
        let run = Run {
            interp: self,
            history: History::new(self.observer.clone()),
            execution_name: execution_name.to_string(),
            context_base,
        };
        let mut cursor = run.history.record(
            0,
            "ExecutionStarted",
            json!({
                "input": to_compact(&input),
                "inputDetails": {"truncated": false},
                "roleArn": LOCAL_ROLE_ARN,
                "stateMachineArn": run.context_base["StateMachine"]["Id"],
            }),
        );
        let input_size = to_compact(&input).len();
        let outcome = if input_size > self.payload_limit {
            Err(Failure::new(
                errors::DATA_LIMIT_EXCEEDED,
                format!(
                    "The execution input has {input_size} bytes, more than the maximum number of bytes service limit \
                     ({}).",
                    self.payload_limit
                ),
            ))
        } else {
            let states = run.run_scope(machine.scope(), input, &mut cursor, String::new(), Variables::default());
            match machine.timeout_seconds() {
                None => states.await,
                Some(secs) => match tokio::time::timeout(Duration::from_secs(secs), states).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        // The states still running were cancelled with the future.
                        run.history.record(
                            run.history.last_id(),
                            "ExecutionTimedOut",
                            json!({"error": errors::TIMEOUT, "cause": format!(
                                "The execution ran longer than the state machine's TimeoutSeconds ({secs})."
                            )}),
                        );
                        tracing::info!(timeout_seconds = secs, "execution timed out");
                        return ExecutionResult { status: ExecutionStatus::TimedOut, history: run.history.take() };
                    }
                },
            }
        };
        let status = match outcome {
            Ok(output) => {
                run.history.record(
                    cursor,
                    "ExecutionSucceeded",
                    json!({"output": to_compact(&output), "outputDetails": {"truncated": false}}),
                );
                tracing::info!("execution succeeded");
                ExecutionStatus::Succeeded { output }
            }
            Err(f) => {
                run.history.record(cursor, "ExecutionFailed", f.details());
                tracing::info!(error = %f.error, cause = %f.cause, "execution failed");
                ExecutionStatus::Failed { error: f.error, cause: f.cause }
            }
        };
        ExecutionResult { status, history: run.history.take() }
    }
}

/// An error travelling up from a state. Empty strings mean "not given".
#[derive(Debug, Clone)]
struct Failure {
    error: String,
    cause: String,
    handling: Handling,
}

/// Which `Retry` and `Catch` entries may handle a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handling {
    /// Those whose `ErrorEquals` matches, wildcards included.
    Any,
    /// Only those that name the error: a terminal error such as `States.DataLimitExceeded`.
    ByName,
    /// None: `States.Runtime` ends the execution.
    Never,
}

impl Failure {
    fn new(error: impl Into<String>, cause: impl Into<String>) -> Failure {
        let error = error.into();
        let handling = match error.as_str() {
            errors::RUNTIME => Handling::Never,
            errors::DATA_LIMIT_EXCEEDED => Handling::ByName,
            _ => Handling::Any,
        };
        Failure { error, cause: cause.into(), handling }
    }

    /// A task returned more than the payload limit. AWS reports it as the task's failure, which
    /// `States.ALL` catches (unlike an oversized state output).
    fn task_result_too_large(resource: &str) -> Failure {
        Failure {
            error: errors::DATA_LIMIT_EXCEEDED.to_string(),
            cause: format!(
                "The state/task '{resource}' returned a result with a size exceeding the maximum number of bytes \
                 service limit."
            ),
            handling: Handling::Any,
        }
    }

    /// False for `States.Runtime` and friends, which skip Retry and Catch and end the execution.
    fn is_catchable(&self) -> bool {
        self.handling != Handling::Never
    }

    /// True when a retrier or catcher with `error_equals` handles this failure.
    fn handled_by(&self, error_equals: &[String]) -> bool {
        match self.handling {
            Handling::Never => false,
            Handling::ByName => error_equals.contains(&self.error),
            Handling::Any => errors::matches(error_equals, &self.error),
        }
    }

    fn details(&self) -> Value {
        let mut d = serde_json::Map::new();
        if !self.error.is_empty() {
            d.insert("error".into(), Value::String(self.error.clone()));
        }
        if !self.cause.is_empty() {
            d.insert("cause".into(), Value::String(self.cause.clone()));
        }
        Value::Object(d)
    }

    /// What a catcher places at its ResultPath.
    fn error_output(&self) -> Value {
        let mut d = serde_json::Map::new();
        if !self.error.is_empty() {
            d.insert("Error".into(), Value::String(self.error.clone()));
        }
        if !self.cause.is_empty() {
            d.insert("Cause".into(), Value::String(self.cause.clone()));
        }
        Value::Object(d)
    }
}

impl From<TaskFailure> for Failure {
    fn from(f: TaskFailure) -> Failure {
        Failure::new(f.error, f.cause)
    }
}

/// How a state ended: where control goes, its output, and the variables it assigned.
struct Step<'s> {
    /// `None` at the end of the scope.
    next: Option<&'s str>,
    output: Value,
    assigned: Option<Map<String, Value>>,
}

/// What a state knows about its own run, for the context object and error messages.
struct StateRun<'s, 'v> {
    state: &'s State,
    entered_id: u64,
    entered_time: String,
    /// The state's place in the execution (see [`TaskJournal`]): scope path, name and visit.
    key: String,
    /// The variables in scope, as they were when the state was entered.
    vars: &'v Variables,
}

impl StateRun<'_, '_> {
    /// A failure whose cause carries AWS's prefix naming the state and its entered event.
    fn fail(&self, error: &str, message: impl std::fmt::Display) -> Failure {
        Failure::new(
            error,
            format!(
                "An error occurred while executing the state '{}' (entered at the event id #{}). {message}",
                self.state.name, self.entered_id
            ),
        )
    }

    fn runtime(&self, message: impl std::fmt::Display) -> Failure {
        self.fail(errors::RUNTIME, message)
    }

    fn payload(&self, e: PayloadError) -> Failure {
        self.fail(e.error_name(), e)
    }
}

/// One execution in progress.
struct Run<'i> {
    interp: &'i Interpreter,
    history: History,
    execution_name: String,
    context_base: Value,
}

impl Run<'_> {
    /// The task token of the invocation `key`: opaque, and the same when a resumed execution
    /// runs the invocation again, so a callback sent to the first run still finds the task.
    fn task_token(&self, key: &str) -> String {
        use sha2::Digest;
        let execution = self.context_base["Execution"]["Id"].as_str().unwrap_or_default();
        let digest = sha2::Sha256::digest(format!("{execution}\n{key}"));
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn context(&self, sr: &StateRun<'_, '_>, retry_count: u32) -> Value {
        let mut ctx = self.context_base.clone();
        ctx["State"] = json!({
            "EnteredTime": sr.entered_time,
            "Name": sr.state.name,
            "RetryCount": retry_count,
        });
        ctx
    }

    /// Runs the states of `scope`; `path` is the scope's place in the execution (empty at the
    /// top, `Map@1#1[3]/` for a Map iteration), the prefix of its states' keys; `vars` are the
    /// variables the scope starts with.
    fn run_scope<'s>(
        &'s self,
        scope: &'s Scope,
        input: Value,
        cursor: &'s mut u64,
        path: String,
        vars: Variables,
    ) -> BoxFuture<'s, Result<Value, Failure>> {
        Box::pin(async move {
            let mut vars = vars;
            let mut name = scope.start_at.as_str();
            let mut input = input;
            let mut visits: HashMap<&str, u32> = HashMap::new();
            loop {
                let Some(state) = scope.get(name) else {
                    // Validation guarantees every target exists; this keeps a bug from panicking.
                    return Err(Failure::new(errors::RUNTIME, format!("the state '{name}' does not exist")));
                };
                let visit = visits.entry(name).or_insert(0);
                *visit += 1;
                let key = format!("{path}{name}@{visit}");
                let step = self.run_state(state, input, cursor, key, &vars).await?;
                if let Some(assigned) = step.assigned {
                    vars.assign(assigned);
                }
                match step.next {
                    Some(next) => {
                        name = next;
                        input = step.output;
                    }
                    None => return Ok(step.output),
                }
            }
        })
    }

    async fn run_state<'s>(
        &'s self,
        state: &'s State,
        input: Value,
        cursor: &mut u64,
        key: String,
        vars: &Variables,
    ) -> Result<Step<'s>, Failure> {
        let prefix = state.kind.event_prefix();
        let entered_id = self.history.record(
            *cursor,
            &format!("{prefix}StateEntered"),
            json!({
                "name": state.name,
                "input": to_compact(&input),
                "inputDetails": {"truncated": false},
            }),
        );
        *cursor = entered_id;
        tracing::debug!(state = %state.name, "state entered");
        let sr = StateRun {
            state,
            entered_id,
            entered_time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            key,
            vars,
        };
        match &state.kind {
            StateKind::Pass(p) => self.run_pass(&sr, p, input, cursor),
            StateKind::Task(t) => self.run_task(&sr, t, input, cursor).await,
            StateKind::Choice(c) => self.run_choice(&sr, c, input, cursor),
            StateKind::Wait(w) => self.run_wait(&sr, w, input, cursor).await,
            StateKind::Succeed(io) => {
                let effective = input_path(&sr, io, &input)?;
                let output = output_path(&sr, io, effective)?;
                self.exit(&sr, &output, None, cursor)?;
                Ok(Step { next: None, output, assigned: None })
            }
            StateKind::Fail(f) => {
                let ctx = self.context(&sr, 0);
                let src = Sources::new(&input, &ctx, sr.vars);
                let text = |t: &Option<FailText>, field: &str| -> Result<String, Failure> {
                    let v = match t {
                        None => return Ok(String::new()),
                        Some(FailText::Literal(s)) => return Ok(s.clone()),
                        Some(FailText::Path(p)) => {
                            p.select_in(&src).map_err(|e| sr.runtime(format!("Invalid path '{p}' : {e}")))?
                        }
                        Some(FailText::Intrinsic(call)) => {
                            call.evaluate_in(&src).map_err(|e| sr.fail(errors::INTRINSIC_FAILURE, e))?
                        }
                    };
                    match v {
                        Value::String(s) => Ok(s),
                        other => {
                            Err(sr.runtime(format!("The {field} must resolve to a string, got {}", to_compact(&other))))
                        }
                    }
                };
                let error = text(&f.error, "ErrorPath")?;
                let cause = text(&f.cause, "CausePath")?;
                Err(Failure::new(error, cause))
            }
            StateKind::Map(m) => self.run_map(&sr, m, input, cursor).await,
            StateKind::Parallel(p) => self.run_parallel(&sr, p, input, cursor).await,
        }
    }

    /// Records the state's exit with its output and the variables it assigned. A state whose
    /// output exceeds the payload limit fails instead.
    fn exit(
        &self,
        sr: &StateRun<'_, '_>,
        output: &Value,
        assigned: Option<&Map<String, Value>>,
        cursor: &mut u64,
    ) -> Result<(), Failure> {
        let text = to_compact(output);
        if text.len() > self.interp.payload_limit {
            return Err(Failure::new(
                errors::DATA_LIMIT_EXCEEDED,
                format!(
                    "The state/task '{}' returned a result with a size exceeding the maximum number of bytes service \
                     limit.",
                    sr.state.name
                ),
            ));
        }
        let mut details = json!({
            "name": sr.state.name,
            "output": text,
            "outputDetails": {"truncated": false},
        });
        if let Some(assigned) = assigned.filter(|a| !a.is_empty()) {
            let texts: Map<String, Value> =
                assigned.iter().map(|(k, v)| (k.clone(), Value::String(to_compact(v)))).collect();
            details["assignedVariables"] = Value::Object(texts);
            details["assignedVariablesDetails"] = json!({"truncated": false});
        }
        *cursor = self.history.record(*cursor, &format!("{}StateExited", sr.state.kind.event_prefix()), details);
        tracing::debug!(state = %sr.state.name, "state exited");
        Ok(())
    }

    fn finish<'s>(
        &self,
        sr: &StateRun<'_, '_>,
        transition: &'s Transition,
        output: Value,
        assigned: Option<Map<String, Value>>,
        cursor: &mut u64,
    ) -> Result<Step<'s>, Failure> {
        self.exit(sr, &output, assigned.as_ref(), cursor)?;
        let next = match transition {
            Transition::Next(n) => Some(n.as_str()),
            Transition::End => None,
        };
        Ok(Step { next, output, assigned })
    }

    /// A state's input after `Parameters` (or a Map item's after `ItemSelector`) must fit the
    /// payload limit.
    fn check_input_size(&self, sr: &StateRun<'_, '_>, input: &Value) -> Result<(), Failure> {
        if json_size(input) > self.interp.payload_limit {
            return Err(Failure::new(
                errors::DATA_LIMIT_EXCEEDED,
                format!(
                    "The state/task '{}' has an input with a size exceeding the maximum number of bytes service limit.",
                    sr.state.name
                ),
            ));
        }
        Ok(())
    }

    /// Evaluates an `Assign` block; `dollar` is what `$` refers to in it.
    fn assign(
        &self,
        sr: &StateRun<'_, '_>,
        template: Option<&PayloadTemplate>,
        dollar: &Value,
        retry_count: u32,
    ) -> Result<Option<Map<String, Value>>, Failure> {
        let Some(template) = template else {
            return Ok(None);
        };
        let ctx = self.context(sr, retry_count);
        let values = match template.evaluate_in(&Sources::new(dollar, &ctx, sr.vars)).map_err(|e| sr.payload(e))? {
            Value::Object(values) => values,
            // Assign is compiled from an object, so it evaluates to one.
            other => return Err(sr.runtime(format!("Assign evaluated to {}, not an object", to_compact(&other)))),
        };
        if let Some(name) = sr.vars.outer_name(&values) {
            return Err(sr.runtime(format!(
                "Cannot assign the variable '{name}': it belongs to an outer scope, which states inside a Map or \
                 Parallel state can read but not assign."
            )));
        }
        Ok(Some(values))
    }

    fn run_pass<'s>(
        &self,
        sr: &StateRun<'_, '_>,
        p: &'s PassState,
        input: Value,
        cursor: &mut u64,
    ) -> Result<Step<'s>, Failure> {
        let effective = input_path(sr, &p.io, &input)?;
        let effective = match &p.parameters {
            None => effective,
            Some(t) => {
                let v = self.apply_template(sr, Some(t), effective, 0)?;
                self.check_input_size(sr, &v)?;
                v
            }
        };
        let result = p.result.clone().unwrap_or(effective);
        let assigned = self.assign(sr, sr.state.assign.as_ref(), &result, 0)?;
        let combined = result_path(sr, p.result_path.as_ref(), &input, result)?;
        let output = output_path(sr, &p.io, combined)?;
        self.finish(sr, &p.transition, output, assigned, cursor)
    }

    /// Rules are tried in order; the first that matches decides. The state's `Assign` applies
    /// whichever way the state goes, a matching rule's own `Assign` on top of it.
    fn run_choice<'s>(
        &self,
        sr: &StateRun<'_, '_>,
        c: &'s ChoiceState,
        input: Value,
        cursor: &mut u64,
    ) -> Result<Step<'s>, Failure> {
        let effective = input_path(sr, &c.io, &input)?;
        let ctx = self.context(sr, 0);
        let src = Sources::new(&effective, &ctx, sr.vars);
        let mut matched = None;
        for branch in &c.choices {
            if branch.rule.evaluate(&src).map_err(|m| sr.runtime(m))? {
                matched = Some(branch);
                break;
            }
        }
        let target = match (matched, c.default.as_deref()) {
            (Some(branch), _) => branch.next.as_str(),
            (None, Some(default)) => default,
            (None, None) => {
                return Err(sr.fail(errors::NO_CHOICE_MATCHED, "No Choice Rules matched and no Default was specified."));
            }
        };
        let mut assigned = self.assign(sr, sr.state.assign.as_ref(), &effective, 0)?;
        if let Some(branch) = matched
            && let Some(values) = self.assign(sr, branch.assign.as_ref(), &effective, 0)?
        {
            assigned.get_or_insert_with(Map::new).extend(values);
        }
        let output = output_path(sr, &c.io, effective)?;
        self.exit(sr, &output, assigned.as_ref(), cursor)?;
        Ok(Step { next: Some(target), output, assigned })
    }

    fn apply_template(
        &self,
        sr: &StateRun<'_, '_>,
        template: Option<&PayloadTemplate>,
        input: Value,
        retry_count: u32,
    ) -> Result<Value, Failure> {
        match template {
            None => Ok(input),
            Some(t) => {
                let ctx = self.context(sr, retry_count);
                t.evaluate_in(&Sources::new(&input, &ctx, sr.vars)).map_err(|e| sr.payload(e))
            }
        }
    }

    /// ResultSelector, ResultPath and OutputPath, in that order.
    fn process_result(
        &self,
        sr: &StateRun<'_, '_>,
        spec: ResultSpec<'_>,
        raw_input: &Value,
        result: Value,
        retry_count: u32,
    ) -> Result<Value, Failure> {
        let result = self.apply_template(sr, spec.selector, result, retry_count)?;
        let combined = result_path(sr, spec.path, raw_input, result)?;
        output_path(sr, spec.io, combined)
    }

    async fn run_task<'s>(
        &self,
        sr: &StateRun<'_, '_>,
        t: &'s TaskState,
        input: Value,
        cursor: &mut u64,
    ) -> Result<Step<'s>, Failure> {
        let selected = input_path(sr, &t.io, &input)?;
        // A callback task's handler may be registered under the resource without the suffix:
        // it sends the token on, the same as the plain integration does.
        let base_resource = t.resource.strip_suffix(WAIT_FOR_TASK_TOKEN);
        let callback = base_resource.is_some();
        let registry = &self.interp.registry;
        let Some(handler) = registry.get(&t.resource).or_else(|| base_resource.and_then(|b| registry.get(b))) else {
            return Err(sr.runtime(format!("No task handler is registered for the resource '{}'.", t.resource)));
        };
        let timeout = seconds_setting(sr, t.timeout.as_ref(), &selected, "TimeoutSecondsPath")?;
        let heartbeat = seconds_setting(sr, t.heartbeat.as_ref(), &selected, "HeartbeatSecondsPath")?;
        let (resource_type, resource) = resource_parts(&t.resource);
        // How AWS names the task in the cause of an oversized result: the service for
        // `arn:aws:states:::service:action`, the resource itself otherwise.
        let shown_resource = if resource_type == "local" { resource.clone() } else { resource_type.clone() };
        let mut retry_counts = vec![0u32; t.retry.len()];
        let mut retries = 0u32;
        loop {
            let key = task_key(sr, retries);
            let token = callback.then(|| self.task_token(&key));
            let mut ctx = self.context(sr, retries);
            if let Some(token) = &token {
                ctx["Task"] = json!({"Token": token});
            }
            // Parameters are filled in for every attempt, so `$$.State.RetryCount` is current.
            let effective = match t.parameters.as_ref() {
                None => Ok(selected.clone()),
                Some(p) => p.evaluate_in(&Sources::new(&selected, &ctx, sr.vars)).map_err(|e| sr.payload(e)),
            };
            let effective = match effective.and_then(|v| self.check_input_size(sr, &v).map(|()| v)) {
                Ok(v) => v,
                // An intrinsic that fails on its arguments is an error the state's Catch may
                // handle; retrying would compute the same thing again.
                Err(f) if f.is_catchable() => return self.catch(sr, &t.catch, &input, f, cursor),
                Err(f) => return Err(f),
            };
            let mut scheduled = json!({
                "resourceType": resource_type,
                "resource": resource,
                "region": "local",
                "parameters": to_compact(&effective),
            });
            if let Some(secs) = timeout {
                scheduled["timeoutInSeconds"] = json!(secs);
            }
            if let Some(secs) = heartbeat {
                scheduled["heartbeatInSeconds"] = json!(secs);
            }
            *cursor = self.history.record(*cursor, "TaskScheduled", scheduled);
            *cursor = self.history.record(
                *cursor,
                "TaskStarted",
                json!({"resourceType": resource_type, "resource": resource}),
            );
            let journal = self.interp.task_journal.as_ref();
            let outcome = match journal.and_then(|j| j.recorded(&key)) {
                Some(recorded) => {
                    if callback && recorded.is_ok() {
                        *cursor = self.history.record(
                            *cursor,
                            "TaskSubmitted",
                            json!({"resourceType": resource_type, "resource": resource}),
                        );
                    }
                    recorded.map_err(Failure::from)
                }
                None => {
                    let deadline = timeout.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
                    // Registered before the handler runs, which may already pass the token on.
                    let mut waiting = token.as_deref().map(|t| self.interp.tokens.register(t));
                    let task_ctx = TaskContext {
                        execution_name: self.execution_name.clone(),
                        state_name: sr.state.name.clone(),
                        attempt: retries + 1,
                        key: key.clone(),
                        context: ctx,
                    };
                    let started = tokio::time::Instant::now();
                    let call = handler.invoke(effective.clone(), task_ctx);
                    let submitted = before(deadline, async { call.await.map_err(Failure::from) }).await;
                    let outcome = match (submitted, waiting.as_mut()) {
                        (Err(f), _) => Err(f),
                        (Ok(result), None) => Ok(result),
                        (Ok(sent), Some(waiting)) => {
                            *cursor = self.history.record(
                                *cursor,
                                "TaskSubmitted",
                                json!({
                                    "resourceType": resource_type,
                                    "resource": resource,
                                    "output": to_compact(&sent),
                                    "outputDetails": {"truncated": false},
                                }),
                            );
                            before(deadline, await_callback(waiting, heartbeat, started)).await
                        }
                    };
                    drop(waiting);
                    if let Some(j) = journal {
                        let record = match &outcome {
                            Ok(v) => Ok(v.clone()),
                            Err(f) => Err(TaskFailure::new(f.error.clone(), f.cause.clone())),
                        };
                        j.record(&key, &record).await;
                    }
                    outcome
                }
            };
            let outcome = outcome.and_then(|result| {
                let text = to_compact(&result);
                if text.len() > self.interp.payload_limit {
                    Err(Failure::task_result_too_large(&shown_resource))
                } else {
                    Ok((result, text))
                }
            });
            let failure = match outcome {
                Ok((result, text)) => {
                    *cursor = self.history.record(
                        *cursor,
                        "TaskSucceeded",
                        json!({
                            "resourceType": resource_type,
                            "resource": resource,
                            "output": text,
                            "outputDetails": {"truncated": false},
                        }),
                    );
                    // Assign sees the task's result before ResultSelector.
                    let done = self.assign(sr, sr.state.assign.as_ref(), &result, retries).and_then(|assigned| {
                        let spec = ResultSpec::of(t.result_selector.as_ref(), t.result_path.as_ref(), &t.io);
                        Ok((self.process_result(sr, spec, &input, result, retries)?, assigned))
                    });
                    match done {
                        Ok((output, assigned)) => return self.finish(sr, &t.transition, output, assigned, cursor),
                        Err(f) => f,
                    }
                }
                Err(f) => {
                    let timed_out = f.error == errors::TIMEOUT || f.error == errors::HEARTBEAT_TIMEOUT;
                    let event = if timed_out { "TaskTimedOut" } else { "TaskFailed" };
                    let mut details = json!({"resourceType": resource_type, "resource": resource});
                    if let (Value::Object(d), Value::Object(e)) = (&mut details, f.details()) {
                        d.extend(e);
                    }
                    *cursor = self.history.record(*cursor, event, details);
                    tracing::debug!(state = %sr.state.name, error = %f.error, "task failed");
                    f
                }
            };
            if !failure.is_catchable() {
                return Err(failure);
            }
            match self.retry_delay(&t.retry, &mut retry_counts, &failure) {
                Some(delay) => {
                    // A resumed execution does not wait again for an attempt it already made.
                    let next_recorded = self
                        .interp
                        .task_journal
                        .as_ref()
                        .is_some_and(|j| j.recorded(&task_key(sr, retries + 1)).is_some());
                    if !next_recorded {
                        self.interp.sleeper.sleep(delay).await;
                    }
                    retries += 1;
                }
                None => return self.catch(sr, &t.catch, &input, failure, cursor),
            }
        }
    }

    /// The delay before the next attempt, or `None` when no retrier applies any more. The
    /// first retrier whose `ErrorEquals` matches decides, with its own attempt count.
    fn retry_delay(&self, retriers: &[Retrier], counts: &mut [u32], f: &Failure) -> Option<Duration> {
        let i = retriers.iter().position(|r| f.handled_by(&r.error_equals))?;
        if u64::from(counts[i]) >= retriers[i].max_attempts {
            return None;
        }
        counts[i] += 1;
        Some(retriers[i].delay(counts[i]))
    }

    fn catch<'s>(
        &self,
        sr: &StateRun<'_, '_>,
        catchers: &'s [Catcher],
        raw_input: &Value,
        failure: Failure,
        cursor: &mut u64,
    ) -> Result<Step<'s>, Failure> {
        let Some(c) = catchers.iter().find(|c| failure.handled_by(&c.error_equals)) else {
            return Err(failure);
        };
        let error_output = failure.error_output();
        // The catcher's Assign sees the error output as `$`.
        let assigned = self.assign(sr, c.assign.as_ref(), &error_output, 0)?;
        // A catcher's output is the error placed into the raw input; OutputPath does not apply.
        let output = result_path(sr, c.result_path.as_ref(), raw_input, error_output)?;
        self.exit(sr, &output, assigned.as_ref(), cursor)?;
        tracing::debug!(state = %sr.state.name, error = %failure.error, next = %c.next, "error caught");
        Ok(Step { next: Some(c.next.as_str()), output, assigned })
    }

    async fn run_wait<'s>(
        &self,
        sr: &StateRun<'_, '_>,
        w: &'s WaitState,
        input: Value,
        cursor: &mut u64,
    ) -> Result<Step<'s>, Failure> {
        let effective = input_path(sr, &w.io, &input)?;
        let until = |t: chrono::DateTime<chrono::FixedOffset>| {
            (t.with_timezone(&Utc) - Utc::now()).to_std().unwrap_or(Duration::ZERO)
        };
        let duration = match &w.wait {
            WaitFor::Seconds(s) => Duration::from_secs(*s),
            WaitFor::Timestamp(t) => until(*t),
            WaitFor::SecondsPath(p) => {
                let v = select(sr, p, &effective)?;
                match v.as_i64().or_else(|| v.as_u64().map(|_| i64::MAX)) {
                    Some(s) if s < 0 => {
                        return Err(sr.runtime(format!(
                            "The SecondsPath parameter references a negative value: {p} == {}",
                            display_raw(&v)
                        )));
                    }
                    Some(s) => Duration::from_secs(s.unsigned_abs()),
                    None => {
                        return Err(sr.runtime(format!(
                            "The SecondsPath parameter cannot be parsed as a long value: {p} == {}",
                            display_raw(&v)
                        )));
                    }
                }
            }
            WaitFor::TimestampPath(p) => {
                let v = select(sr, p, &effective)?;
                match v.as_str().and_then(parse_timestamp) {
                    Some(t) => until(t),
                    None => {
                        return Err(sr.runtime(format!(
                            "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {p} == {}",
                            display_raw(&v)
                        )));
                    }
                }
            }
        };
        // A Wait is journaled like a task (key without an attempt number), so a resumed
        // execution does not wait again for a Wait it already finished.
        let journal = self.interp.task_journal.as_ref();
        if journal.and_then(|j| j.recorded(&sr.key)).is_none() {
            self.interp.sleeper.sleep(duration).await;
            if let Some(j) = journal {
                j.record(&sr.key, &Ok(Value::Null)).await;
            }
        }
        let assigned = self.assign(sr, sr.state.assign.as_ref(), &effective, 0)?;
        let output = output_path(sr, &w.io, effective)?;
        self.finish(sr, &w.transition, output, assigned, cursor)
    }

    fn tolerance(&self, sr: &StateRun<'_, '_>, m: &MapState, effective: &Value) -> Result<Tolerance, Failure> {
        let resolve = |setting: &Option<Setting<Value>>, field: &str| -> Result<Option<Value>, Failure> {
            match setting {
                None => Ok(None),
                Some(Setting::Fixed(v)) => Ok(Some(v.clone())),
                Some(Setting::Path(p)) => p
                    .select_in(&Sources::new(effective, &Value::Null, sr.vars))
                    .map(Some)
                    .map_err(|e| sr.runtime(format!("Invalid path '{p}' : {e} ({field})"))),
            }
        };
        let path_text = |setting: &Option<Setting<Value>>| match setting {
            Some(Setting::Path(p)) => p.to_string(),
            _ => String::new(),
        };
        let count = match resolve(&m.tolerated_count, "ToleratedFailureCountPath")? {
            None => None,
            Some(v) => match as_integer(&v) {
                Some(n) if n < 0 => return Err(sr.runtime("ToleratedFailureCount cannot be negative.")),
                Some(n) => Some(n.unsigned_abs()),
                None => {
                    return Err(sr.runtime(format!(
                        "The ToleratedFailureCountPath field refers to value \"{}\" which is not a valid integer: {}",
                        display_raw(&v),
                        path_text(&m.tolerated_count)
                    )));
                }
            },
        };
        let percentage = match resolve(&m.tolerated_percentage, "ToleratedFailurePercentagePath")? {
            None => None,
            Some(v) => match v.as_f64() {
                Some(p) if (0.0..=100.0).contains(&p) => Some(p),
                Some(_) => {
                    return Err(sr.runtime("ToleratedFailurePercentage must be between 0 and 100."));
                }
                None => {
                    return Err(sr.runtime(format!(
                        "The ToleratedFailurePercentagePath field refers to value \"{}\" which is not a valid float: {}",
                        display_raw(&v),
                        path_text(&m.tolerated_percentage)
                    )));
                }
            },
        };
        Ok(Tolerance { count, percentage })
    }

    async fn run_map<'s>(
        &self,
        sr: &StateRun<'_, '_>,
        m: &'s MapState,
        input: Value,
        cursor: &mut u64,
    ) -> Result<Step<'s>, Failure> {
        let effective = input_path(sr, &m.io, &input)?;
        // With an ItemReader the items are read once the Map Run has started, and ItemsPath
        // does not apply (AWS's recorded executions show it ignored).
        let input_items = match &m.item_reader {
            Some(_) => None,
            None => {
                let items = select(sr, &m.items_path, &effective)?;
                let Value::Array(items) = items else {
                    return Err(sr.runtime(format!(
                        "The ItemsPath field refers to value \"{}\" which is not a valid JSON array: {}",
                        display_raw(&items),
                        m.items_path
                    )));
                };
                Some(items)
            }
        };
        let max_concurrency = match &m.max_concurrency {
            Setting::Fixed(n) => *n,
            Setting::Path(p) => {
                let v = select(sr, p, &effective)?;
                match as_integer(&v) {
                    Some(n) if n >= 0 => n.unsigned_abs(),
                    Some(_) => return Err(sr.runtime("MaxConcurrency cannot be negative.")),
                    None => {
                        return Err(sr.runtime(format!(
                            "The MaxConcurrencyPath field refers to value \"{}\" which is not a valid integer: {p}",
                            display_raw(&v)
                        )));
                    }
                }
            }
        };
        let mut retry_counts = vec![0u32; m.retry.len()];
        let mut retries = 0u32;
        loop {
            let length = input_items.as_ref().map_or(0, Vec::len);
            let started = self.history.record(*cursor, "MapStateStarted", json!({"length": length}));
            *cursor = started;
            let tolerance = self.tolerance(sr, m, &effective)?;
            let outcome = if m.distributed {
                let run =
                    MapRunSetup { effective: &effective, items: input_items.as_deref(), max_concurrency, tolerance };
                self.run_map_run(sr, m, run, cursor, retries).await?
            } else {
                let items = input_items.as_deref().unwrap_or_default();
                let inputs = self.item_inputs(sr, m, &effective, items, retries)?;
                let iterations =
                    Iterations { max_concurrency, tolerance, started_id: started, retries, children: None };
                let outcome = self.run_iterations(sr, m, inputs, iterations).await;
                *cursor = self.history.last_id();
                outcome.map(|(results, _)| Value::Array(results))
            };
            let failure = match outcome {
                Ok(results) => {
                    *cursor = self.history.record(*cursor, "MapStateSucceeded", Value::Null);
                    let assigned = self.assign(sr, sr.state.assign.as_ref(), &results, retries)?;
                    let output = self.process_result(
                        sr,
                        ResultSpec::of(m.result_selector.as_ref(), m.result_path.as_ref(), &m.io),
                        &input,
                        results,
                        retries,
                    )?;
                    return self.finish(sr, &m.transition, output, assigned, cursor);
                }
                Err(f) => f,
            };
            // AWS records MapStateFailed only when the state gives up, not before a retry.
            let delay =
                if failure.is_catchable() { self.retry_delay(&m.retry, &mut retry_counts, &failure) } else { None };
            match delay {
                Some(delay) => {
                    self.interp.sleeper.sleep(delay).await;
                    retries += 1;
                }
                None => {
                    *cursor = self.history.record(*cursor, "MapStateFailed", Value::Null);
                    return self.catch(sr, &m.catch, &input, failure, cursor);
                }
            }
        }
    }

    /// The input of each iteration: the item, or what `ItemSelector` makes of it.
    fn item_inputs(
        &self,
        sr: &StateRun<'_, '_>,
        m: &MapState,
        effective: &Value,
        items: &[Value],
        retries: u32,
    ) -> Result<Vec<Value>, Failure> {
        let Some(selector) = &m.item_selector else {
            return Ok(items.to_vec());
        };
        // One context object for all items, instead of copying the context (which holds the
        // whole execution input) once per item.
        let mut ctx = self.context(sr, retries);
        let mut inputs = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            ctx["Map"] = json!({"Item": {"Index": index, "Value": item}});
            let item_input =
                selector.evaluate_in(&Sources::new(effective, &ctx, sr.vars)).map_err(|e| sr.payload(e))?;
            self.check_input_size(sr, &item_input)?;
            inputs.push(item_input);
        }
        Ok(inputs)
    }

    /// A Distributed Map's run: the reader reads the items, the batcher groups them, each
    /// iteration runs as a child execution with a history of its own, and the result writer
    /// stores the results. The parent's history shows `MapRunStarted` and `MapRunSucceeded` or
    /// `MapRunFailed`. `Ok(Err(_))` is a failure of the run; `Err(_)` a runtime error before it
    /// started.
    async fn run_map_run(
        &self,
        sr: &StateRun<'_, '_>,
        m: &MapState,
        setup: MapRunSetup<'_>,
        cursor: &mut u64,
        retries: u32,
    ) -> Result<Result<Value, Failure>, Failure> {
        let effective = setup.effective;
        let max_items = match &m.item_reader {
            Some(reader) => self.integer_setting(sr, reader.max_items.as_ref(), effective, "MaxItemsPath")?,
            None => None,
        };
        let (batch_items, batch_bytes) = match &m.item_batcher {
            Some(b) => (
                self.integer_setting(sr, b.max_items.as_ref(), effective, "MaxItemsPerBatchPath")?,
                self.integer_setting(sr, b.max_bytes.as_ref(), effective, "MaxInputBytesPerBatchPath")?,
            ),
            None => (None, None),
        };
        let run = self.map_run(sr, m, retries);
        *cursor = self.history.record(*cursor, "MapRunStarted", json!({"mapRunArn": run.arn}));
        let outcome: Result<Value, Failure> = async {
            let items = match (&m.item_reader, setup.items) {
                (Some(reader), _) => self.read_items(sr, reader, effective, max_items).await?,
                (None, Some(items)) => items.to_vec(),
                (None, None) => Vec::new(),
            };
            let mut inputs = self.item_inputs(sr, m, effective, &items, retries)?;
            if let Some(batcher) = &m.item_batcher {
                let positive = |n: Option<i64>, field: &str| match n {
                    Some(n) if n <= 0 => Err(sr.runtime(format!("{field} must be positive, got {n}."))),
                    n => Ok(n.and_then(|n| usize::try_from(n).ok())),
                };
                let max_items = positive(batch_items, "MaxItemsPerBatch")?;
                let max_bytes = positive(batch_bytes, "MaxInputBytesPerBatch")?;
                let batch_input = match &batcher.batch_input {
                    None => None,
                    Some(t) => {
                        let ctx = self.context(sr, retries);
                        Some(t.evaluate_in(&Sources::new(effective, &ctx, sr.vars)).map_err(|e| sr.payload(e))?)
                    }
                };
                inputs = batches(inputs, max_items, max_bytes, batch_input.as_ref());
            }
            let iterations = Iterations {
                max_concurrency: setup.max_concurrency,
                tolerance: setup.tolerance,
                started_id: *cursor,
                retries,
                children: Some(&run),
            };
            let (results, records) = self.run_iterations(sr, m, inputs, iterations).await?;
            match &m.result_writer {
                None => Ok(Value::Array(results)),
                Some(writer) => self.write_results(sr, writer, effective, &run, &records).await,
            }
        }
        .await;
        *cursor = match &outcome {
            Ok(_) => self.history.record(*cursor, "MapRunSucceeded", Value::Null),
            Err(f) => self.history.record(*cursor, "MapRunFailed", f.details()),
        };
        // Runtime errors end the execution, as they would outside a Map Run.
        match outcome {
            Err(f) if !f.is_catchable() => Err(f),
            other => Ok(other),
        }
    }

    /// The Map Run of this state and attempt: its ARN and the names its child executions get.
    fn map_run(&self, sr: &StateRun<'_, '_>, m: &MapState, retries: u32) -> MapRun {
        use sha2::Digest;
        let execution = self.context_base["Execution"]["Id"].as_str().unwrap_or_default();
        let machine = self.context_base["StateMachine"]["Name"].as_str().unwrap_or_default();
        // Stable across runs of the same execution, so a resumed run writes where the first did.
        let digest = sha2::Sha256::digest(format!("{execution}\n{}#{}", sr.key, retries + 1));
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let id = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
        let label = m.label.as_deref().unwrap_or(&sr.state.name);
        let child_machine = format!("{machine}/{label}");
        MapRun {
            arn: format!("{LOCAL_ARN_PREFIX}:mapRun:{child_machine}:{id}"),
            child_machine_arn: format!("{LOCAL_ARN_PREFIX}:stateMachine:{child_machine}"),
            child_machine,
            id,
        }
    }

    /// An integer setting read from the input (`MaxItemsPath` and the batcher's paths).
    fn integer_setting(
        &self,
        sr: &StateRun<'_, '_>,
        setting: Option<&Setting<Value>>,
        effective: &Value,
        path_field: &str,
    ) -> Result<Option<i64>, Failure> {
        let (value, path) = match setting {
            None => return Ok(None),
            Some(Setting::Fixed(v)) => (v.clone(), None),
            Some(Setting::Path(p)) => (select(sr, p, effective)?, Some(p)),
        };
        match (as_integer(&value), path) {
            (Some(n), _) => Ok(Some(n)),
            (None, Some(p)) => Err(sr.runtime(format!(
                "The {path_field} field refers to value \"{}\" which is not a valid integer: {p}",
                display_raw(&value)
            ))),
            // Validation only lets integers through as fixed values.
            (None, None) => Ok(None),
        }
    }

    async fn read_items(
        &self,
        sr: &StateRun<'_, '_>,
        reader: &ItemReader,
        effective: &Value,
        max_items: Option<i64>,
    ) -> Result<Vec<Value>, Failure> {
        let failed = |cause: String| Failure::new(errors::ITEM_READER_FAILED, cause);
        let max_items = match max_items {
            Some(n) if n < 0 => return Err(failed("field MaxItems must be positive".to_string())),
            Some(0) | None => MAX_ITEMS_LIMIT,
            Some(n) => n.unsigned_abs().min(MAX_ITEMS_LIMIT),
        };
        let max_items = usize::try_from(max_items).unwrap_or(usize::MAX);
        let Some(storage) = &self.interp.storage else {
            return Err(failed(
                "No object storage is configured: give the interpreter one with Interpreter::with_object_storage."
                    .to_string(),
            ));
        };
        let params = match &reader.parameters {
            None => json!({}),
            Some(t) => {
                let ctx = self.context(sr, 0);
                t.evaluate_in(&Sources::new(effective, &ctx, sr.vars)).map_err(|e| sr.payload(e))?
            }
        };
        let text = |field: &str| params.get(field).and_then(Value::as_str).map(str::to_string);
        let Some(bucket) = text("Bucket") else {
            return Err(failed("The ItemReader's Parameters must give 'Bucket' as a string.".to_string()));
        };
        match reader.source {
            ReaderSource::GetObject => {
                let Some(key) = text("Key") else {
                    return Err(failed("The ItemReader's Parameters must give 'Key' as a string.".to_string()));
                };
                let bytes = storage.get(&bucket, &key).await.map_err(failed)?;
                parse_items(&bytes, &reader.format, max_items).map_err(failed)
            }
            ReaderSource::ListObjectsV2 => {
                let prefix = text("Prefix").unwrap_or_default();
                let objects = storage.list(&bucket, &prefix).await.map_err(failed)?;
                Ok(object_items(objects, max_items))
            }
        }
    }

    async fn write_results(
        &self,
        sr: &StateRun<'_, '_>,
        writer: &ResultWriter,
        effective: &Value,
        run: &MapRun,
        records: &[ChildRecord],
    ) -> Result<Value, Failure> {
        let failed = |cause: String| Failure::new(errors::RESULT_WRITER_FAILED, cause);
        let Some(storage) = &self.interp.storage else {
            return Err(failed(
                "No object storage is configured: give the interpreter one with Interpreter::with_object_storage."
                    .to_string(),
            ));
        };
        let ctx = self.context(sr, 0);
        let params =
            writer.parameters.evaluate_in(&Sources::new(effective, &ctx, sr.vars)).map_err(|e| sr.payload(e))?;
        let Some(bucket) = params.get("Bucket").and_then(Value::as_str) else {
            return Err(failed("The ResultWriter's Parameters must give 'Bucket' as a string.".to_string()));
        };
        let prefix = params.get("Prefix").and_then(Value::as_str).unwrap_or_default().trim_end_matches('/');
        let dir = if prefix.is_empty() { run.id.clone() } else { format!("{prefix}/{}", run.id) };
        let files = result_files(records, &dir, bucket, &run.arn, &run.child_machine_arn);
        let mut manifest = String::new();
        for (key, bytes) in files {
            storage.put(bucket, &key, bytes).await.map_err(failed)?;
            manifest = key;
        }
        Ok(json!({"MapRunArn": run.arn, "ResultWriterDetails": {"Bucket": bucket, "Key": manifest}}))
    }

    /// The child execution that runs iteration `index` of a Distributed Map.
    fn child_run(&self, run: &MapRun, index: usize, input: &Value) -> Run<'_> {
        let name = format!("{}-{index}", run.id);
        let observer =
            self.interp.observer.clone().map(|parent| {
                Arc::new(ChildObserver { parent, execution: name.clone() }) as Arc<dyn ExecutionObserver>
            });
        Run {
            interp: self.interp,
            history: History::new(observer),
            execution_name: name.clone(),
            context_base: json!({
                "Execution": {
                    "Id": format!("{LOCAL_ARN_PREFIX}:execution:{}:{name}", run.child_machine),
                    "Input": input,
                    "Name": name,
                    "RoleArn": LOCAL_ROLE_ARN,
                    "StartTime": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                    "RedriveCount": 0,
                },
                "StateMachine": {"Id": run.child_machine_arn, "Name": run.child_machine},
            }),
        }
    }

    /// Runs the iterations of a Map, inline (events in this history) or as the child
    /// executions of a Map Run.
    async fn run_iterations(
        &self,
        sr: &StateRun<'_, '_>,
        m: &MapState,
        inputs: Vec<Value>,
        it: Iterations<'_>,
    ) -> Result<(Vec<Value>, Vec<ChildRecord>), Failure> {
        let total = inputs.len();
        let limit = match usize::try_from(it.max_concurrency) {
            Ok(0) | Err(_) => total.max(1),
            Ok(n) => n.min(total.max(1)),
        };
        // Iterations started and not finished, with their MapIterationStarted id, so that the
        // ones cut short by a failure can be reported as aborted.
        let in_flight: Mutex<BTreeMap<usize, u64>> = Mutex::new(BTreeMap::new());
        let name = &sr.state.name;
        let retries = it.retries;
        // A Distributed Map's iterations are child executions, which see no outer variables.
        let scope_vars = if m.distributed { Variables::default() } else { sr.vars.nested() };
        // Boxed so the compiler does not have to prove the closure general over lifetimes,
        // which it cannot for a future that must be Send.
        type Iteration<'f> = BoxFuture<'f, (usize, Result<Value, Failure>, Option<ChildRecord>)>;
        let iterations: Vec<Iteration<'_>> = inputs
            .into_iter()
            .enumerate()
            .map(|(index, item_input)| {
                let in_flight = &in_flight;
                let vars = scope_vars.clone();
                let path = format!("{}#{}[{index}]/", sr.key, retries + 1);
                let fut = async move {
                    if let Some(run) = it.children {
                        let child = self.child_run(run, index, &item_input);
                        let start = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
                        let mut cur = child.history.record(
                            0,
                            "ExecutionStarted",
                            json!({
                                "input": to_compact(&item_input),
                                "inputDetails": {"truncated": false},
                                "roleArn": LOCAL_ROLE_ARN,
                                "stateMachineArn": run.child_machine_arn,
                            }),
                        );
                        let outcome = child.run_scope(&m.processor, item_input.clone(), &mut cur, path, vars).await;
                        match &outcome {
                            Ok(output) => child.history.record(
                                cur,
                                "ExecutionSucceeded",
                                json!({"output": to_compact(output), "outputDetails": {"truncated": false}}),
                            ),
                            Err(f) => child.history.record(cur, "ExecutionFailed", f.details()),
                        };
                        let record = ChildRecord {
                            name: child.execution_name.clone(),
                            arn: child.context_base["Execution"]["Id"].as_str().unwrap_or_default().to_string(),
                            input: item_input,
                            start,
                            stop: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                            outcome: match &outcome {
                                Ok(v) => Ok(v.clone()),
                                Err(f) => Err((f.error.clone(), f.cause.clone())),
                            },
                        };
                        return (index, outcome, Some(record));
                    }
                    let mut cur = self.history.record(
                        it.started_id,
                        "MapIterationStarted",
                        json!({"name": name, "index": index}),
                    );
                    lock(in_flight).insert(index, cur);
                    let outcome = self.run_scope(&m.processor, item_input, &mut cur, path, vars).await;
                    lock(in_flight).remove(&index);
                    let event = if outcome.is_ok() { "MapIterationSucceeded" } else { "MapIterationFailed" };
                    self.history.record(cur, event, json!({"name": name, "index": index}));
                    (index, outcome, None)
                };
                Box::pin(fut) as Iteration<'_>
            })
            .collect();
        let mut running = stream::iter(iterations).buffer_unordered(limit);
        let mut results = vec![Value::Null; total];
        let mut records = Vec::new();
        let mut failures = 0usize;
        let mut first_failure = None;
        while let Some((index, outcome, record)) = running.next().await {
            records.extend(record);
            match outcome {
                Ok(v) => results[index] = v,
                // Runtime and terminal errors end the Map at once; only Map's own Catch (by
                // name) may still handle a terminal one.
                Err(f) if f.handling != Handling::Any => {
                    first_failure = Some(f);
                    break;
                }
                Err(f) => {
                    failures += 1;
                    if it.tolerance.exceeded(failures, total) {
                        first_failure = Some(if it.tolerance.is_explicit() {
                            Failure::new(
                                errors::EXCEED_TOLERATED_FAILURE_THRESHOLD,
                                "The specified tolerated failure threshold was exceeded",
                            )
                        } else {
                            f
                        });
                        break;
                    }
                    results[index] = f.error_output();
                }
            }
        }
        // Dropping the stream cancels the iterations still running.
        drop(running);
        let aborted = std::mem::take(&mut *lock(&in_flight));
        for (index, started) in aborted {
            self.history.record(started, "MapIterationAborted", json!({"name": name, "index": index}));
        }
        match first_failure {
            Some(f) => Err(f),
            None => {
                records.sort_by_key(|r| r.name.rsplit('-').next().and_then(|i| i.parse::<usize>().ok()));
                Ok((results, records))
            }
        }
    }

    async fn run_parallel<'s>(
        &self,
        sr: &StateRun<'_, '_>,
        p: &'s ParallelState,
        input: Value,
        cursor: &mut u64,
    ) -> Result<Step<'s>, Failure> {
        let effective = input_path(sr, &p.io, &input)?;
        let effective = match &p.parameters {
            None => effective,
            Some(t) => {
                let v = self.apply_template(sr, Some(t), effective, 0)?;
                self.check_input_size(sr, &v)?;
                v
            }
        };
        let branch_vars = sr.vars.nested();
        let mut retry_counts = vec![0u32; p.retry.len()];
        let mut retries = 0u32;
        loop {
            let started = self.history.record(*cursor, "ParallelStateStarted", Value::Null);
            let mut branches: FuturesUnordered<BoxFuture<'_, (usize, Result<Value, Failure>)>> = p
                .branches
                .iter()
                .enumerate()
                .map(|(i, scope)| {
                    let branch_input = effective.clone();
                    let vars = branch_vars.clone();
                    let path = format!("{}#{}{{{i}}}/", sr.key, retries + 1);
                    let fut = async move {
                        let mut cur = started;
                        (i, self.run_scope(scope, branch_input, &mut cur, path, vars).await)
                    };
                    Box::pin(fut) as BoxFuture<'_, _>
                })
                .collect();
            let mut results = vec![Value::Null; p.branches.len()];
            let mut failure = None;
            while let Some((i, outcome)) = branches.next().await {
                match outcome {
                    Ok(v) => results[i] = v,
                    Err(f) => {
                        failure = Some(f);
                        break;
                    }
                }
            }
            drop(branches);
            *cursor = self.history.last_id();
            let Some(failure) = failure else {
                // AWS's recorded histories have no ParallelStateSucceeded event: the state goes
                // straight to ParallelStateExited.
                let results = Value::Array(results);
                let assigned = self.assign(sr, sr.state.assign.as_ref(), &results, retries)?;
                let output = self.process_result(
                    sr,
                    ResultSpec::of(p.result_selector.as_ref(), p.result_path.as_ref(), &p.io),
                    &input,
                    results,
                    retries,
                )?;
                return self.finish(sr, &p.transition, output, assigned, cursor);
            };
            let delay =
                if failure.is_catchable() { self.retry_delay(&p.retry, &mut retry_counts, &failure) } else { None };
            match delay {
                Some(delay) => {
                    self.interp.sleeper.sleep(delay).await;
                    retries += 1;
                }
                None => {
                    *cursor = self.history.record(*cursor, "ParallelStateFailed", Value::Null);
                    return self.catch(sr, &p.catch, &input, failure, cursor);
                }
            }
        }
    }
}

/// The fields that turn a state's result into its output.
#[derive(Clone, Copy)]
struct ResultSpec<'a> {
    selector: Option<&'a PayloadTemplate>,
    path: Option<&'a JsonPath>,
    io: &'a IoPaths,
}

impl<'a> ResultSpec<'a> {
    fn of(selector: Option<&'a PayloadTemplate>, path: Option<&'a JsonPath>, io: &'a IoPaths) -> Self {
        ResultSpec { selector, path, io }
    }
}

/// What a Distributed Map's run starts from.
struct MapRunSetup<'a> {
    effective: &'a Value,
    /// The items from `ItemsPath`; `None` when the ItemReader reads them.
    items: Option<&'a [Value]>,
    max_concurrency: u64,
    tolerance: Tolerance,
}

/// How a Map's iterations run.
#[derive(Clone, Copy)]
struct Iterations<'a> {
    max_concurrency: u64,
    tolerance: Tolerance,
    /// The `MapStateStarted` event inline iterations follow.
    started_id: u64,
    retries: u32,
    /// The Map Run whose child executions the iterations are; `None` for an inline Map.
    children: Option<&'a MapRun>,
}

/// A Distributed Map's run.
struct MapRun {
    arn: String,
    /// The UUID-shaped last part of the ARN, also the result writer's directory.
    id: String,
    /// `Machine/Label`, the name of the child executions' state machine.
    child_machine: String,
    child_machine_arn: String,
}

/// Passes a child execution's events to the parent's observer.
struct ChildObserver {
    parent: Arc<dyn ExecutionObserver>,
    execution: String,
}

impl ExecutionObserver for ChildObserver {
    fn on_event(&self, event: &HistoryEvent) {
        self.parent.on_child_event(&self.execution, event);
    }
}

/// ToleratedFailureCount / ToleratedFailurePercentage of a Map run.
#[derive(Debug, Clone, Copy)]
struct Tolerance {
    count: Option<u64>,
    percentage: Option<f64>,
}

impl Tolerance {
    fn is_explicit(&self) -> bool {
        self.count.is_some() || self.percentage.is_some()
    }

    fn exceeded(&self, failures: usize, total: usize) -> bool {
        if !self.is_explicit() {
            return failures > 0;
        }
        let over_count = self.count.is_some_and(|c| failures as u64 > c);
        let over_pct = self.percentage.is_some_and(|p| total > 0 && failures as f64 * 100.0 / total as f64 > p);
        over_count || over_pct
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Selects with a path that reads the input or a variable (the `...Path` fields).
fn select(sr: &StateRun<'_, '_>, p: &ValuePath, doc: &Value) -> Result<Value, Failure> {
    // Validation keeps context paths out of these fields, so no context object is needed.
    p.select_in(&Sources::new(doc, &Value::Null, sr.vars)).map_err(|e| sr.runtime(format!("Invalid path '{p}' : {e}")))
}

fn input_path(sr: &StateRun<'_, '_>, io: &IoPaths, raw: &Value) -> Result<Value, Failure> {
    match &io.input_path {
        None => Ok(json!({})),
        Some(p) if p.is_root() => Ok(raw.clone()),
        Some(p) => select(sr, p, raw),
    }
}

fn output_path(sr: &StateRun<'_, '_>, io: &IoPaths, combined: Value) -> Result<Value, Failure> {
    match &io.output_path {
        None => Ok(json!({})),
        Some(p) if p.is_root() => Ok(combined),
        Some(p) => select(sr, p, &combined),
    }
}

/// The length of `v` as compact JSON text, without building the text.
fn json_size(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// Places `result` into the raw state input as `ResultPath` says.
fn result_path(
    sr: &StateRun<'_, '_>,
    path: Option<&JsonPath>,
    raw_input: &Value,
    result: Value,
) -> Result<Value, Failure> {
    match path {
        None => Ok(raw_input.clone()),
        Some(p) if p.is_root() => Ok(result),
        Some(p) => {
            let mut out = raw_input.clone();
            p.set(&mut out, result).map_err(|e| sr.fail(errors::RESULT_PATH_MATCH_FAILURE, e))?;
            Ok(out)
        }
    }
}

/// A value as AWS prints it after `==` in messages: strings without quotes, the rest as JSON.
fn display_raw(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => to_compact(other),
    }
}

/// `TimeoutSeconds`/`TimeoutSecondsPath` and `HeartbeatSeconds`/`HeartbeatSecondsPath`.
fn seconds_setting(
    sr: &StateRun<'_, '_>,
    setting: Option<&Setting<u64>>,
    input: &Value,
    path_field: &str,
) -> Result<Option<u64>, Failure> {
    match setting {
        None => Ok(None),
        Some(Setting::Fixed(s)) => Ok(Some(*s)),
        Some(Setting::Path(p)) => {
            let v = select(sr, p, input)?;
            match v.as_u64() {
                Some(s) if s > 0 => Ok(Some(s)),
                _ => Err(sr.runtime(format!(
                    "The {path_field} field refers to value \"{}\" which is not a valid positive integer: {p}",
                    display_raw(&v)
                ))),
            }
        }
    }
}

/// Runs `work` until `deadline`, after which the task has timed out (`States.Timeout`).
async fn before(
    deadline: Option<tokio::time::Instant>,
    work: impl Future<Output = Result<Value, Failure>>,
) -> Result<Value, Failure> {
    match deadline {
        None => work.await,
        Some(d) => tokio::time::timeout_at(d, work).await.unwrap_or_else(|_| Err(Failure::new(errors::TIMEOUT, ""))),
    }
}

/// Waits for the callback that completes a `.waitForTaskToken` task. With `heartbeat`, a
/// heartbeat (or the result) must arrive that many seconds after the task started or after the
/// previous heartbeat, or the task fails with `States.HeartbeatTimeout`.
async fn await_callback(
    waiting: &mut Waiting,
    heartbeat: Option<u64>,
    started: tokio::time::Instant,
) -> Result<Value, Failure> {
    let mut last_beat = started;
    loop {
        let next = match heartbeat {
            None => waiting.next().await,
            Some(secs) => match tokio::time::timeout_at(last_beat + Duration::from_secs(secs), waiting.next()).await {
                Ok(next) => next,
                Err(_) => return Err(Failure::new(errors::HEARTBEAT_TIMEOUT, "")),
            },
        };
        match next {
            Some(Callback::Success(output)) => return Ok(output),
            Some(Callback::Failure { error, cause }) => return Err(Failure::new(error, cause)),
            Some(Callback::Heartbeat) => last_beat = tokio::time::Instant::now(),
            // The sender lives in the interpreter's token table until the wait ends.
            None => return Err(Failure::new(errors::RUNTIME, "the task token was withdrawn")),
        }
    }
}

/// The key of attempt `retries + 1` of the task state `sr` (see [`TaskJournal`]).
fn task_key(sr: &StateRun<'_, '_>, retries: u32) -> String {
    format!("{}#{}", sr.key, retries + 1)
}

/// `resourceType` and `resource` of task events: AWS splits `arn:aws:states:::lambda:invoke`
/// into `lambda` and `invoke`; other resources are reported whole.
fn resource_parts(resource: &str) -> (String, String) {
    if let Some(rest) = resource.strip_prefix("arn:aws:states:::")
        && let Some((kind, action)) = rest.split_once(':')
    {
        return (kind.to_string(), action.to_string());
    }
    ("local".to_string(), resource.to_string())
}
