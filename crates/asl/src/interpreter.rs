//! The interpreter: runs a [`StateMachine`] with task handlers from a [`TaskRegistry`],
//! recording the history AWS would record.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use futures::future::BoxFuture;
use futures::stream::{self, FuturesUnordered, StreamExt};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::choice::parse_timestamp;
use crate::definition::{
    FailText, IoPaths, MapState, ParallelState, PassState, Scope, Setting, State, StateKind, StateMachine, TaskState,
    Transition, WaitFor, WaitState,
};
use crate::errors;
use crate::history::{ExecutionObserver, History, HistoryEvent};
use crate::json::{as_integer, to_compact};
use crate::path::JsonPath;
use crate::payload::{PayloadError, PayloadTemplate};
use crate::retry::{Catcher, Retrier};
use crate::task::{TaskContext, TaskFailure, TaskRegistry};

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
            ExecutionStatus::Failed { .. } => None,
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
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("registry", &self.registry)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// Region and account in the ARNs of the context object (`$$.Execution.Id`, ...).
const LOCAL_ARN_PREFIX: &str = "arn:aws:states:local:000000000000";
const LOCAL_ROLE_ARN: &str = "arn:aws:iam::000000000000:role/beacon-local";

impl Interpreter {
    /// An interpreter that runs tasks from `registry` and sleeps with tokio.
    pub fn new(registry: TaskRegistry) -> Self {
        Interpreter { registry, sleeper: Arc::new(TokioSleeper), observer: None }
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
        let run = Run {
            interp: self,
            history: History::new(self.observer.clone()),
            execution_name: execution_name.to_string(),
            context_base: json!({
                "Execution": {
                    "Id": execution_arn,
                    "Input": input,
                    "Name": execution_name,
                    "RoleArn": LOCAL_ROLE_ARN,
                    "StartTime": started_at,
                    "RedriveCount": 0,
                },
                "StateMachine": {"Id": machine_arn, "Name": machine.name()},
            }),
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
        let outcome = run.run_scope(machine.scope(), input, &mut cursor).await;
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
}

impl Failure {
    fn new(error: impl Into<String>, cause: impl Into<String>) -> Failure {
        Failure { error: error.into(), cause: cause.into() }
    }

    /// `States.Runtime` and friends skip Retry and Catch and end the execution.
    fn is_catchable(&self) -> bool {
        self.error != errors::RUNTIME && self.error != errors::DATA_LIMIT_EXCEEDED
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

enum Step<'s> {
    Next(&'s str, Value),
    End(Value),
}

/// What a state knows about its own run, for the context object and error messages.
struct StateRun<'s> {
    state: &'s State,
    entered_id: u64,
    entered_time: String,
}

impl StateRun<'_> {
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
    fn context(&self, sr: &StateRun<'_>, retry_count: u32) -> Value {
        let mut ctx = self.context_base.clone();
        ctx["State"] = json!({
            "EnteredTime": sr.entered_time,
            "Name": sr.state.name,
            "RetryCount": retry_count,
        });
        ctx
    }

    fn run_scope<'s>(
        &'s self,
        scope: &'s Scope,
        input: Value,
        cursor: &'s mut u64,
    ) -> BoxFuture<'s, Result<Value, Failure>> {
        Box::pin(async move {
            let mut name = scope.start_at.as_str();
            let mut input = input;
            loop {
                let Some(state) = scope.get(name) else {
                    // Validation guarantees every target exists; this keeps a bug from panicking.
                    return Err(Failure::new(errors::RUNTIME, format!("the state '{name}' does not exist")));
                };
                match self.run_state(state, input, cursor).await? {
                    Step::Next(next, output) => {
                        name = next;
                        input = output;
                    }
                    Step::End(output) => return Ok(output),
                }
            }
        })
    }

    async fn run_state<'s>(&'s self, state: &'s State, input: Value, cursor: &mut u64) -> Result<Step<'s>, Failure> {
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
        let sr = StateRun { state, entered_id, entered_time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true) };
        match &state.kind {
            StateKind::Pass(p) => self.run_pass(&sr, p, input, cursor),
            StateKind::Task(t) => self.run_task(&sr, t, input, cursor).await,
            StateKind::Choice(c) => {
                let effective = input_path(&sr, &c.io, &input)?;
                let ctx = self.context(&sr, 0);
                let mut target = None;
                for (rule, next) in &c.choices {
                    if rule.evaluate(&effective, &ctx).map_err(|m| sr.runtime(m))? {
                        target = Some(next.as_str());
                        break;
                    }
                }
                let Some(target) = target.or(c.default.as_deref()) else {
                    return Err(
                        sr.fail(errors::NO_CHOICE_MATCHED, "No Choice Rules matched and no Default was specified.")
                    );
                };
                let output = output_path(&sr, &c.io, effective)?;
                self.exit(&sr, &output, cursor);
                Ok(Step::Next(target, output))
            }
            StateKind::Wait(w) => self.run_wait(&sr, w, input, cursor).await,
            StateKind::Succeed(io) => {
                let effective = input_path(&sr, io, &input)?;
                let output = output_path(&sr, io, effective)?;
                self.exit(&sr, &output, cursor);
                Ok(Step::End(output))
            }
            StateKind::Fail(f) => {
                let ctx = self.context(&sr, 0);
                let text = |t: &Option<FailText>, field: &str| -> Result<String, Failure> {
                    let v = match t {
                        None => return Ok(String::new()),
                        Some(FailText::Literal(s)) => return Ok(s.clone()),
                        Some(FailText::Path(p)) => {
                            p.select(&input, &ctx).map_err(|e| sr.runtime(format!("Invalid path '{p}' : {e}")))?
                        }
                        Some(FailText::Intrinsic(call)) => {
                            call.evaluate(&input, &ctx).map_err(|e| sr.fail(errors::INTRINSIC_FAILURE, e))?
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

    fn exit(&self, sr: &StateRun<'_>, output: &Value, cursor: &mut u64) {
        *cursor = self.history.record(
            *cursor,
            &format!("{}StateExited", sr.state.kind.event_prefix()),
            json!({
                "name": sr.state.name,
                "output": to_compact(output),
                "outputDetails": {"truncated": false},
            }),
        );
        tracing::debug!(state = %sr.state.name, "state exited");
    }

    fn finish<'s>(&self, sr: &StateRun<'_>, transition: &'s Transition, output: Value, cursor: &mut u64) -> Step<'s> {
        self.exit(sr, &output, cursor);
        match transition {
            Transition::Next(n) => Step::Next(n.as_str(), output),
            Transition::End => Step::End(output),
        }
    }

    fn run_pass<'s>(
        &self,
        sr: &StateRun<'_>,
        p: &'s PassState,
        input: Value,
        cursor: &mut u64,
    ) -> Result<Step<'s>, Failure> {
        let effective = input_path(sr, &p.io, &input)?;
        let effective = self.apply_template(sr, p.parameters.as_ref(), effective, 0)?;
        let result = p.result.clone().unwrap_or(effective);
        let combined = result_path(sr, p.result_path.as_ref(), &input, result)?;
        let output = output_path(sr, &p.io, combined)?;
        Ok(self.finish(sr, &p.transition, output, cursor))
    }

    fn apply_template(
        &self,
        sr: &StateRun<'_>,
        template: Option<&PayloadTemplate>,
        input: Value,
        retry_count: u32,
    ) -> Result<Value, Failure> {
        match template {
            None => Ok(input),
            Some(t) => t.evaluate(&input, &self.context(sr, retry_count)).map_err(|e| sr.payload(e)),
        }
    }

    /// ResultSelector, ResultPath and OutputPath, in that order.
    fn process_result(
        &self,
        sr: &StateRun<'_>,
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
        sr: &StateRun<'_>,
        t: &'s TaskState,
        input: Value,
        cursor: &mut u64,
    ) -> Result<Step<'s>, Failure> {
        let selected = input_path(sr, &t.io, &input)?;
        let Some(handler) = self.interp.registry.get(&t.resource) else {
            return Err(sr.runtime(format!("No task handler is registered for the resource '{}'.", t.resource)));
        };
        let timeout = match &t.timeout {
            None => None,
            Some(Setting::Fixed(s)) => Some(*s),
            Some(Setting::Path(p)) => {
                let v = p.select(&selected).map_err(|e| sr.runtime(format!("Invalid path '{p}' : {e}")))?;
                match v.as_u64() {
                    Some(s) if s > 0 => Some(s),
                    _ => {
                        return Err(sr.runtime(format!(
                            "The TimeoutSecondsPath field refers to value \"{}\" which is not a valid positive integer: {p}",
                            display_raw(&v)
                        )));
                    }
                }
            }
        };
        let (resource_type, resource) = resource_parts(&t.resource);
        let mut retry_counts = vec![0u32; t.retry.len()];
        let mut retries = 0u32;
        loop {
            // Parameters are filled in for every attempt, so `$$.State.RetryCount` is current.
            let effective = match self.apply_template(sr, t.parameters.as_ref(), selected.clone(), retries) {
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
            *cursor = self.history.record(*cursor, "TaskScheduled", scheduled);
            *cursor = self.history.record(
                *cursor,
                "TaskStarted",
                json!({"resourceType": resource_type, "resource": resource}),
            );
            let ctx = TaskContext {
                execution_name: self.execution_name.clone(),
                state_name: sr.state.name.clone(),
                attempt: retries + 1,
                context: self.context(sr, retries),
            };
            let call = handler.invoke(effective.clone(), ctx);
            let outcome = match timeout {
                None => call.await.map_err(Failure::from),
                Some(secs) => match tokio::time::timeout(Duration::from_secs(secs), call).await {
                    Ok(r) => r.map_err(Failure::from),
                    Err(_) => Err(Failure::new(errors::TIMEOUT, "")),
                },
            };
            let failure = match outcome {
                Ok(result) => {
                    *cursor = self.history.record(
                        *cursor,
                        "TaskSucceeded",
                        json!({
                            "resourceType": resource_type,
                            "resource": resource,
                            "output": to_compact(&result),
                            "outputDetails": {"truncated": false},
                        }),
                    );
                    match self.process_result(
                        sr,
                        ResultSpec::of(t.result_selector.as_ref(), t.result_path.as_ref(), &t.io),
                        &input,
                        result,
                        retries,
                    ) {
                        Ok(output) => return Ok(self.finish(sr, &t.transition, output, cursor)),
                        Err(f) => f,
                    }
                }
                Err(f) => {
                    let event = if f.error == errors::TIMEOUT { "TaskTimedOut" } else { "TaskFailed" };
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
                    self.interp.sleeper.sleep(delay).await;
                    retries += 1;
                }
                None => return self.catch(sr, &t.catch, &input, failure, cursor),
            }
        }
    }

    /// The delay before the next attempt, or `None` when no retrier applies any more. The
    /// first retrier whose `ErrorEquals` matches decides, with its own attempt count.
    fn retry_delay(&self, retriers: &[Retrier], counts: &mut [u32], f: &Failure) -> Option<Duration> {
        let i = retriers.iter().position(|r| errors::matches(&r.error_equals, &f.error))?;
        if u64::from(counts[i]) >= retriers[i].max_attempts {
            return None;
        }
        counts[i] += 1;
        Some(retriers[i].delay(counts[i]))
    }

    fn catch<'s>(
        &self,
        sr: &StateRun<'_>,
        catchers: &'s [Catcher],
        raw_input: &Value,
        failure: Failure,
        cursor: &mut u64,
    ) -> Result<Step<'s>, Failure> {
        if !failure.is_catchable() {
            return Err(failure);
        }
        let Some(c) = catchers.iter().find(|c| errors::matches(&c.error_equals, &failure.error)) else {
            return Err(failure);
        };
        // A catcher's output is the error placed into the raw input; OutputPath does not apply.
        let output = result_path(sr, c.result_path.as_ref(), raw_input, failure.error_output())?;
        self.exit(sr, &output, cursor);
        tracing::debug!(state = %sr.state.name, error = %failure.error, next = %c.next, "error caught");
        Ok(Step::Next(c.next.as_str(), output))
    }

    async fn run_wait<'s>(
        &self,
        sr: &StateRun<'_>,
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
                let v = p.select(&effective).map_err(|e| sr.runtime(format!("Invalid path '{p}' : {e}")))?;
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
                let v = p.select(&effective).map_err(|e| sr.runtime(format!("Invalid path '{p}' : {e}")))?;
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
        self.interp.sleeper.sleep(duration).await;
        let output = output_path(sr, &w.io, effective)?;
        Ok(self.finish(sr, &w.transition, output, cursor))
    }

    async fn run_map<'s>(
        &self,
        sr: &StateRun<'_>,
        m: &'s MapState,
        input: Value,
        cursor: &mut u64,
    ) -> Result<Step<'s>, Failure> {
        let effective = input_path(sr, &m.io, &input)?;
        let items = m
            .items_path
            .select(&effective)
            .map_err(|e| sr.runtime(format!("Invalid path '{}' : {e}", m.items_path)))?;
        let Value::Array(items) = items else {
            return Err(sr.runtime(format!(
                "The ItemsPath field refers to value \"{}\" which is not a valid JSON array: {}",
                display_raw(&items),
                m.items_path
            )));
        };
        let max_concurrency = match &m.max_concurrency {
            Setting::Fixed(n) => *n,
            Setting::Path(p) => {
                let v = p.select(&effective).map_err(|e| sr.runtime(format!("Invalid path '{p}' : {e}")))?;
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
            let started = self.history.record(*cursor, "MapStateStarted", json!({"length": items.len()}));
            *cursor = started;
            let tolerance = self.tolerance(sr, m, &effective)?;
            let outcome =
                self.run_iterations(sr, m, &effective, &items, max_concurrency, tolerance, started, retries).await;
            *cursor = self.history.last_id();
            let failure = match outcome {
                Ok(results) => {
                    *cursor = self.history.record(*cursor, "MapStateSucceeded", Value::Null);
                    let output = self.process_result(
                        sr,
                        ResultSpec::of(m.result_selector.as_ref(), m.result_path.as_ref(), &m.io),
                        &input,
                        Value::Array(results),
                        retries,
                    )?;
                    return Ok(self.finish(sr, &m.transition, output, cursor));
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

    fn tolerance(&self, sr: &StateRun<'_>, m: &MapState, effective: &Value) -> Result<Tolerance, Failure> {
        let resolve = |setting: &Option<Setting<Value>>, field: &str| -> Result<Option<Value>, Failure> {
            match setting {
                None => Ok(None),
                Some(Setting::Fixed(v)) => Ok(Some(v.clone())),
                Some(Setting::Path(p)) => {
                    p.select(effective).map(Some).map_err(|e| sr.runtime(format!("Invalid path '{p}' : {e} ({field})")))
                }
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

    #[allow(clippy::too_many_arguments)]
    async fn run_iterations(
        &self,
        sr: &StateRun<'_>,
        m: &MapState,
        effective: &Value,
        items: &[Value],
        max_concurrency: u64,
        tolerance: Tolerance,
        started_id: u64,
        retries: u32,
    ) -> Result<Vec<Value>, Failure> {
        let total = items.len();
        let limit = match usize::try_from(max_concurrency) {
            Ok(0) | Err(_) => total.max(1),
            Ok(n) => n.min(total.max(1)),
        };
        // Iterations started and not finished, with their MapIterationStarted id, so that the
        // ones cut short by a failure can be reported as aborted.
        let in_flight: Mutex<BTreeMap<usize, u64>> = Mutex::new(BTreeMap::new());
        let name = &sr.state.name;
        // Item inputs are built up front with one context object, instead of copying the context
        // (which holds the whole execution input) once per item.
        let inputs: Vec<Value> = match &m.item_selector {
            None => items.to_vec(),
            Some(t) => {
                let mut ctx = self.context(sr, retries);
                let mut inputs = Vec::with_capacity(total);
                for (index, item) in items.iter().enumerate() {
                    ctx["Map"] = json!({"Item": {"Index": index, "Value": item}});
                    inputs.push(t.evaluate(effective, &ctx).map_err(|e| sr.payload(e))?);
                }
                inputs
            }
        };
        // Boxed so the compiler does not have to prove the closure general over lifetimes,
        // which it cannot for a future that must be Send.
        let iterations: Vec<BoxFuture<'_, (usize, Result<Value, Failure>)>> = inputs
            .into_iter()
            .enumerate()
            .map(|(index, item_input)| {
                let in_flight = &in_flight;
                let fut = async move {
                    let mut cur =
                        self.history.record(started_id, "MapIterationStarted", json!({"name": name, "index": index}));
                    lock(in_flight).insert(index, cur);
                    let outcome = self.run_scope(&m.processor, item_input, &mut cur).await;
                    lock(in_flight).remove(&index);
                    let event = if outcome.is_ok() { "MapIterationSucceeded" } else { "MapIterationFailed" };
                    self.history.record(cur, event, json!({"name": name, "index": index}));
                    (index, outcome)
                };
                Box::pin(fut) as BoxFuture<'_, _>
            })
            .collect();
        let mut running = stream::iter(iterations).buffer_unordered(limit);
        let mut results = vec![Value::Null; total];
        let mut failures = 0usize;
        let mut first_failure = None;
        while let Some((index, outcome)) = running.next().await {
            match outcome {
                Ok(v) => results[index] = v,
                Err(f) if !f.is_catchable() => {
                    first_failure = Some(f);
                    break;
                }
                Err(f) => {
                    failures += 1;
                    if tolerance.exceeded(failures, total) {
                        first_failure = Some(if tolerance.is_explicit() {
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
            None => Ok(results),
        }
    }

    async fn run_parallel<'s>(
        &self,
        sr: &StateRun<'_>,
        p: &'s ParallelState,
        input: Value,
        cursor: &mut u64,
    ) -> Result<Step<'s>, Failure> {
        let effective = input_path(sr, &p.io, &input)?;
        let effective = self.apply_template(sr, p.parameters.as_ref(), effective, 0)?;
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
                    let fut = async move {
                        let mut cur = started;
                        (i, self.run_scope(scope, branch_input, &mut cur).await)
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
                let output = self.process_result(
                    sr,
                    ResultSpec::of(p.result_selector.as_ref(), p.result_path.as_ref(), &p.io),
                    &input,
                    Value::Array(results),
                    retries,
                )?;
                return Ok(self.finish(sr, &p.transition, output, cursor));
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

fn input_path(sr: &StateRun<'_>, io: &IoPaths, raw: &Value) -> Result<Value, Failure> {
    match &io.input_path {
        None => Ok(json!({})),
        Some(p) if p.is_root() => Ok(raw.clone()),
        Some(p) => p.select(raw).map_err(|e| sr.runtime(format!("Invalid path '{p}' : {e}"))),
    }
}

fn output_path(sr: &StateRun<'_>, io: &IoPaths, combined: Value) -> Result<Value, Failure> {
    match &io.output_path {
        None => Ok(json!({})),
        Some(p) if p.is_root() => Ok(combined),
        Some(p) => p.select(&combined).map_err(|e| sr.runtime(format!("Invalid path '{p}' : {e}"))),
    }
}

/// Places `result` into the raw state input as `ResultPath` says.
fn result_path(sr: &StateRun<'_>, path: Option<&JsonPath>, raw_input: &Value, result: Value) -> Result<Value, Failure> {
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
