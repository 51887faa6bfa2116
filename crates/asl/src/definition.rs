//! The state machine model: parsing a definition, validating it, and the typed states the
//! interpreter walks.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::choice::{ChoiceRule, parse_timestamp};
use crate::distributed::{
    ItemBatcher, ItemReader, ResultWriter, check_label, compile_item_batcher, compile_item_reader,
    compile_result_writer,
};
use crate::intrinsics::IntrinsicCall;
use crate::path::{JsonPath, ValuePath};
use crate::payload::PayloadTemplate;
use crate::retry::{Catcher, Retrier, compile_catch, compile_retry};
use crate::task::TaskRegistry;
use crate::variables::compile_assign;

/// A definition that is not a valid state machine, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct DefinitionError {
    /// All problems, in the order they were found.
    pub issues: Vec<DefinitionIssue>,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl DefinitionError {
    pub(crate) fn single(pointer: &str, message: impl Into<String>) -> DefinitionError {
        DefinitionError {
            issues: vec![DefinitionIssue { state: None, pointer: pointer.to_string(), message: message.into() }],
        }
    }
}

/// One problem in a definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefinitionIssue {
    /// The state the problem is in, if it is in one.
    pub state: Option<String>,
    /// JSON pointer to the offending field, e.g. `/States/Foo/Next` (`""` is the whole document).
    pub pointer: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for DefinitionIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() { "/" } else { self.pointer.as_str() };
        match &self.state {
            Some(state) => write!(f, "state '{state}' ({at}): {}", self.message),
            None => write!(f, "{at}: {}", self.message),
        }
    }
}

/// Collects issues while a definition is compiled, tagging each with the current state.
#[derive(Debug)]
pub(crate) struct Problems {
    state: Option<String>,
    issues: Vec<DefinitionIssue>,
}

impl Problems {
    pub(crate) fn new(state: Option<String>) -> Problems {
        Problems { state, issues: Vec::new() }
    }

    pub(crate) fn push(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.issues.push(DefinitionIssue {
            state: self.state.clone(),
            pointer: pointer.into(),
            message: message.into(),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.issues.is_empty()
    }

    pub(crate) fn into_issues(self) -> Vec<DefinitionIssue> {
        self.issues
    }

    fn enter_state(&mut self, name: Option<String>) -> Option<String> {
        std::mem::replace(&mut self.state, name)
    }
}

/// Escapes a JSON pointer token (RFC 6901).
pub(crate) fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A validated state machine, ready to run. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StateMachine {
    inner: Arc<Definition>,
    name: String,
}

#[derive(Debug)]
struct Definition {
    comment: Option<String>,
    timeout_seconds: Option<u64>,
    scope: Scope,
    /// Whether any field could read `$$.Execution.Input` (see [`StateMachine::reads_execution_input`]).
    reads_execution_input: bool,
}

/// Whether a string anywhere in the definition refers to the execution input through the context
/// object: `$$.Execution.Input...`, the whole `$$.Execution`, or the whole `$$`. Conservative: a
/// mention in a Comment counts too.
fn reads_execution_input(v: &Value) -> bool {
    fn mentions(s: &str) -> bool {
        s.match_indices("$$").any(|(i, _)| {
            let rest = &s[i + 2..];
            match rest.strip_prefix('.') {
                None => true,
                Some(r) => match r.strip_prefix("Execution") {
                    None => false,
                    Some(after) => !after.starts_with('.') || after.starts_with(".Input"),
                },
            }
        })
    }
    match v {
        Value::String(s) => mentions(s),
        Value::Array(a) => a.iter().any(reads_execution_input),
        Value::Object(o) => o.iter().any(|(k, v)| mentions(k) || reads_execution_input(v)),
        _ => false,
    }
}

/// The name used for `$$.StateMachine.Name` unless [`StateMachine::with_name`] sets one.
pub const DEFAULT_STATE_MACHINE_NAME: &str = "StateMachine";

impl StateMachine {
    /// Parses and validates a definition (ASL, JSONPath dialect).
    ///
    /// ```
    /// let machine = beacon_asl::StateMachine::parse(r#"{
    ///     "StartAt": "Hello",
    ///     "States": {"Hello": {"Type": "Pass", "Result": "world", "End": true}}
    /// }"#).unwrap();
    /// assert_eq!(machine.start_at(), "Hello");
    /// ```
    pub fn parse(definition_json: &str) -> Result<StateMachine, DefinitionError> {
        let value: Value = serde_json::from_str(definition_json)
            .map_err(|e| DefinitionError::single("", format!("the definition is not valid JSON: {e}")))?;
        StateMachine::from_value(&value)
    }

    /// Validates an already parsed definition.
    pub fn from_value(v: &Value) -> Result<StateMachine, DefinitionError> {
        let mut problems = Problems::new(None);
        let Some(obj) = v.as_object() else {
            return Err(DefinitionError::single("", "the definition must be a JSON object with StartAt and States"));
        };
        for key in obj.keys() {
            match key.as_str() {
                "Comment" | "StartAt" | "States" | "Version" | "TimeoutSeconds" => {}
                "QueryLanguage" => check_query_language(obj, "", &mut problems),
                other => {
                    problems.push(format!("/{}", escape_pointer(other)), format!("unknown top-level field '{other}'"))
                }
            }
        }
        if let Some(t) = obj.get("TimeoutSeconds")
            && t.as_u64().is_none_or(|n| n == 0)
        {
            problems.push("/TimeoutSeconds", "'TimeoutSeconds' must be a positive integer");
        }
        let comment = obj.get("Comment").and_then(Value::as_str).map(str::to_string);
        let timeout_seconds = obj.get("TimeoutSeconds").and_then(Value::as_u64);
        let mut names = HashMap::new();
        let scope = compile_scope(obj, "", &mut problems, &mut names);
        match scope {
            Some(scope) if problems.is_empty() => Ok(StateMachine {
                inner: Arc::new(Definition {
                    comment,
                    timeout_seconds,
                    scope,
                    reads_execution_input: reads_execution_input(v),
                }),
                name: DEFAULT_STATE_MACHINE_NAME.to_string(),
            }),
            _ => Err(DefinitionError { issues: problems.into_issues() }),
        }
    }

    /// Sets the name the context object reports as `$$.StateMachine.Name`.
    pub fn with_name(mut self, name: impl Into<String>) -> StateMachine {
        self.name = name.into();
        self
    }

    /// The state machine's name (see [`StateMachine::with_name`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The definition's top-level `Comment`.
    pub fn comment(&self) -> Option<&str> {
        self.inner.comment.as_deref()
    }

    /// The machine-level `TimeoutSeconds`: an execution running longer ends `TIMED_OUT`.
    pub fn timeout_seconds(&self) -> Option<u64> {
        self.inner.timeout_seconds
    }

    /// Whether the definition can read `$$.Execution.Input`. When it cannot, the interpreter
    /// leaves the input out of the context object it builds for every state, which would
    /// otherwise copy the whole execution input once per state (quadratic on large Maps).
    pub fn reads_execution_input(&self) -> bool {
        self.inner.reads_execution_input
    }

    /// The first state.
    pub fn start_at(&self) -> &str {
        &self.inner.scope.start_at
    }

    /// The top-level states' names, in definition order.
    pub fn state_names(&self) -> Vec<&str> {
        self.inner.scope.states.iter().map(|s| s.name.as_str()).collect()
    }

    /// Every distinct Task `Resource`, including those inside Map and Parallel states.
    pub fn resources(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.inner.scope.visit_tasks(&mut |task, _| {
            if !out.contains(&task.resource.as_str()) {
                out.push(task.resource.as_str());
            }
        });
        out
    }

    /// Reports every Task whose `Resource` has no handler in `registry`.
    pub fn check_resources(&self, registry: &TaskRegistry) -> Result<(), DefinitionError> {
        let mut issues = Vec::new();
        self.inner.scope.visit_tasks(&mut |task, state| {
            if registry.get(&task.resource).is_none() {
                issues.push(DefinitionIssue {
                    state: Some(state.name.clone()),
                    pointer: format!("{}/Resource", state.pointer),
                    message: format!(
                        "no task handler is registered for resource '{}'; register one in the \
                         TaskRegistry or fix the Resource",
                        task.resource
                    ),
                });
            }
        });
        if issues.is_empty() { Ok(()) } else { Err(DefinitionError { issues }) }
    }

    pub(crate) fn scope(&self) -> &Scope {
        &self.inner.scope
    }
}

/// A set of states with a start: the machine itself, a Map's processor or a Parallel branch.
#[derive(Debug)]
pub(crate) struct Scope {
    pub(crate) start_at: String,
    pub(crate) states: Vec<State>,
    index: HashMap<String, usize>,
}

impl Scope {
    pub(crate) fn get(&self, name: &str) -> Option<&State> {
        self.index.get(name).map(|&i| &self.states[i])
    }

    fn visit_tasks<'a>(&'a self, f: &mut dyn FnMut(&'a TaskState, &'a State)) {
        for state in &self.states {
            match &state.kind {
                StateKind::Task(t) => f(t, state),
                StateKind::Map(m) => m.processor.visit_tasks(f),
                StateKind::Parallel(p) => p.branches.iter().for_each(|b| b.visit_tasks(f)),
                _ => {}
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) name: String,
    pub(crate) pointer: String,
    pub(crate) kind: StateKind,
    /// `Assign`: the variables the state sets when it exits normally.
    pub(crate) assign: Option<PayloadTemplate>,
}

#[derive(Debug)]
pub(crate) enum StateKind {
    Pass(PassState),
    Task(Box<TaskState>),
    Choice(ChoiceState),
    Wait(WaitState),
    Succeed(IoPaths),
    Fail(FailState),
    Map(Box<MapState>),
    Parallel(Box<ParallelState>),
}

impl StateKind {
    /// The prefix of this state type's history events (`PassStateEntered`, ...).
    pub(crate) fn event_prefix(&self) -> &'static str {
        match self {
            StateKind::Pass(_) => "Pass",
            StateKind::Task(_) => "Task",
            StateKind::Choice(_) => "Choice",
            StateKind::Wait(_) => "Wait",
            StateKind::Succeed(_) => "Succeed",
            StateKind::Fail(_) => "Fail",
            StateKind::Map(_) => "Map",
            StateKind::Parallel(_) => "Parallel",
        }
    }
}

/// Where control goes after a state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Transition {
    Next(String),
    End,
}

/// `InputPath` and `OutputPath`; `None` means the field was `null` (the state sees `{}`).
#[derive(Debug)]
pub(crate) struct IoPaths {
    pub(crate) input_path: Option<ValuePath>,
    pub(crate) output_path: Option<ValuePath>,
}

#[derive(Debug)]
pub(crate) struct PassState {
    pub(crate) io: IoPaths,
    pub(crate) parameters: Option<PayloadTemplate>,
    pub(crate) result: Option<Value>,
    pub(crate) result_path: Option<JsonPath>,
    pub(crate) transition: Transition,
}

/// A value given literally or read from the input with a `...Path` field.
#[derive(Debug, Clone)]
pub(crate) enum Setting<T> {
    Fixed(T),
    Path(ValuePath),
}

#[derive(Debug)]
pub(crate) struct TaskState {
    pub(crate) io: IoPaths,
    pub(crate) resource: String,
    pub(crate) parameters: Option<PayloadTemplate>,
    pub(crate) result_selector: Option<PayloadTemplate>,
    pub(crate) result_path: Option<JsonPath>,
    pub(crate) retry: Vec<Retrier>,
    pub(crate) catch: Vec<Catcher>,
    pub(crate) timeout: Option<Setting<u64>>,
    pub(crate) heartbeat: Option<Setting<u64>>,
    pub(crate) transition: Transition,
}

/// A top-level choice rule with where it leads and what it assigns.
#[derive(Debug)]
pub(crate) struct ChoiceBranch {
    pub(crate) rule: ChoiceRule,
    pub(crate) next: String,
    pub(crate) assign: Option<PayloadTemplate>,
}

#[derive(Debug)]
pub(crate) struct ChoiceState {
    pub(crate) io: IoPaths,
    pub(crate) choices: Vec<ChoiceBranch>,
    pub(crate) default: Option<String>,
}

#[derive(Debug)]
pub(crate) enum WaitFor {
    Seconds(u64),
    SecondsPath(ValuePath),
    Timestamp(DateTime<FixedOffset>),
    TimestampPath(ValuePath),
}

#[derive(Debug)]
pub(crate) struct WaitState {
    pub(crate) io: IoPaths,
    pub(crate) wait: WaitFor,
    pub(crate) transition: Transition,
}

/// `Error`/`Cause` of a Fail state, literal or computed.
#[derive(Debug)]
pub(crate) enum FailText {
    Literal(String),
    Path(ValuePath),
    Intrinsic(IntrinsicCall),
}

#[derive(Debug)]
pub(crate) struct FailState {
    pub(crate) error: Option<FailText>,
    pub(crate) cause: Option<FailText>,
}

#[derive(Debug)]
pub(crate) struct MapState {
    pub(crate) io: IoPaths,
    pub(crate) items_path: ValuePath,
    pub(crate) item_selector: Option<PayloadTemplate>,
    pub(crate) processor: Scope,
    /// `ProcessorConfig.Mode` is `DISTRIBUTED`: iterations are child executions (run inline
    /// here), which see none of the parent's variables.
    pub(crate) distributed: bool,
    pub(crate) item_reader: Option<ItemReader>,
    pub(crate) item_batcher: Option<ItemBatcher>,
    pub(crate) result_writer: Option<ResultWriter>,
    /// `Label`: names the Map Run (defaults to the state's name).
    pub(crate) label: Option<String>,
    pub(crate) max_concurrency: Setting<u64>,
    pub(crate) tolerated_count: Option<Setting<Value>>,
    pub(crate) tolerated_percentage: Option<Setting<Value>>,
    pub(crate) result_selector: Option<PayloadTemplate>,
    pub(crate) result_path: Option<JsonPath>,
    pub(crate) retry: Vec<Retrier>,
    pub(crate) catch: Vec<Catcher>,
    pub(crate) transition: Transition,
}

#[derive(Debug)]
pub(crate) struct ParallelState {
    pub(crate) io: IoPaths,
    pub(crate) parameters: Option<PayloadTemplate>,
    pub(crate) branches: Vec<Scope>,
    pub(crate) result_selector: Option<PayloadTemplate>,
    pub(crate) result_path: Option<JsonPath>,
    pub(crate) retry: Vec<Retrier>,
    pub(crate) catch: Vec<Catcher>,
    pub(crate) transition: Transition,
}

fn check_query_language(obj: &Map<String, Value>, pointer: &str, problems: &mut Problems) {
    match obj.get("QueryLanguage") {
        None => {}
        Some(Value::String(s)) if s == "JSONPath" => {}
        Some(Value::String(s)) if s == "JSONata" => problems.push(
            format!("{pointer}/QueryLanguage"),
            "JSONata is not supported by this interpreter; use the JSONPath dialect",
        ),
        Some(_) => {
            problems.push(format!("{pointer}/QueryLanguage"), "'QueryLanguage' must be \"JSONPath\" or \"JSONata\"")
        }
    }
}

/// Compiles `{StartAt, States}` at `pointer`; `names` records every state name seen in the whole
/// machine, because AWS requires names to be unique across nested scopes too.
fn compile_scope(
    obj: &Map<String, Value>,
    pointer: &str,
    problems: &mut Problems,
    names: &mut HashMap<String, String>,
) -> Option<Scope> {
    let start_at = match obj.get("StartAt") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            problems.push(format!("{pointer}/StartAt"), "'StartAt' must be a state name");
            None
        }
        None => {
            problems.push(pointer, "'StartAt' is required: the name of the first state");
            None
        }
    };
    let states_ptr = format!("{pointer}/States");
    let states_obj = match obj.get("States") {
        Some(Value::Object(m)) if !m.is_empty() => Some(m),
        Some(_) => {
            problems.push(&states_ptr, "'States' must be a non-empty object of named states");
            None
        }
        None => {
            problems.push(pointer, "'States' is required: an object of named states");
            None
        }
    };
    let (start_at, states_obj) = (start_at?, states_obj?);
    let mut states = Vec::with_capacity(states_obj.len());
    for (name, v) in states_obj {
        let ptr = format!("{states_ptr}/{}", escape_pointer(name));
        let outer = problems.enter_state(Some(name.clone()));
        if let Some(first) = names.get(name) {
            problems
                .push(&ptr, format!("state names must be unique in the whole machine; '{name}' is also at {first}"));
        } else {
            names.insert(name.clone(), ptr.clone());
        }
        if name.is_empty() || name.chars().count() > 80 {
            problems.push(&ptr, "a state name must be 1 to 80 characters long");
        }
        if let Some(kind) = compile_state(v, &ptr, problems, names) {
            let assign = v.get("Assign").and_then(|a| compile_assign(a, &format!("{ptr}/Assign"), problems));
            states.push(State { name: name.clone(), pointer: ptr, kind, assign });
        }
        problems.enter_state(outer);
    }
    let index: HashMap<String, usize> = states.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect();
    if !states_obj.contains_key(&start_at) {
        problems.push(
            format!("{pointer}/StartAt"),
            format!("'StartAt' names '{start_at}', which is not a state in 'States'"),
        );
    }
    check_transitions(&states, states_obj, &start_at, &states_ptr, problems);
    Some(Scope { start_at, states, index })
}

/// Every target exists, and every state can be reached from `StartAt`.
fn check_transitions(
    states: &[State],
    declared: &Map<String, Value>,
    start_at: &str,
    states_ptr: &str,
    problems: &mut Problems,
) {
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for state in states {
        let mut targets: Vec<(String, &str)> = Vec::new();
        let (transition, catch) = match &state.kind {
            StateKind::Pass(s) => (Some(&s.transition), None),
            StateKind::Task(s) => (Some(&s.transition), Some(&s.catch)),
            StateKind::Wait(s) => (Some(&s.transition), None),
            StateKind::Map(s) => (Some(&s.transition), Some(&s.catch)),
            StateKind::Parallel(s) => (Some(&s.transition), Some(&s.catch)),
            StateKind::Choice(c) => {
                for (i, branch) in c.choices.iter().enumerate() {
                    targets.push((format!("/Choices/{i}/Next"), branch.next.as_str()));
                }
                if let Some(d) = &c.default {
                    targets.push(("/Default".to_string(), d.as_str()));
                }
                (None, None)
            }
            StateKind::Succeed(_) | StateKind::Fail(_) => (None, None),
        };
        if let Some(Transition::Next(n)) = transition {
            targets.push(("/Next".to_string(), n.as_str()));
        }
        for (i, c) in catch.into_iter().flatten().enumerate() {
            if !c.next.is_empty() {
                targets.push((format!("/Catch/{i}/Next"), c.next.as_str()));
            }
        }
        let outer = problems.enter_state(Some(state.name.clone()));
        for (field, target) in &targets {
            if !declared.contains_key(*target) {
                problems.push(
                    format!("{}{field}", state.pointer),
                    format!("'{target}' is not a state in this scope; transitions can only go to states defined in the same 'States' object"),
                );
            }
        }
        problems.enter_state(outer);
        edges.insert(state.name.as_str(), targets.into_iter().map(|(_, t)| t).collect());
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut queue: VecDeque<&str> = VecDeque::from([start_at]);
    while let Some(name) = queue.pop_front() {
        if seen.insert(name) {
            for t in edges.get(name).into_iter().flatten() {
                queue.push_back(t);
            }
        }
    }
    for name in declared.keys() {
        if !seen.contains(name.as_str()) && declared.contains_key(start_at) {
            let outer = problems.enter_state(Some(name.clone()));
            problems.push(
                format!("{states_ptr}/{}", escape_pointer(name)),
                format!("state '{name}' is not reachable from '{start_at}'; remove it or add a transition to it"),
            );
            problems.enter_state(outer);
        }
    }
}

const COMMON_FIELDS: &[&str] = &["Type", "Comment", "QueryLanguage"];
const IO_FIELDS: &[&str] = &["InputPath", "OutputPath"];
const TRANSITION_FIELDS: &[&str] = &["Next", "End"];
const RESULT_FIELDS: &[&str] = &["ResultPath", "ResultSelector", "Retry", "Catch"];
/// Fields of newer ASL features this interpreter does not run.
const UNSUPPORTED_FIELDS: &[&str] = &["Output", "Arguments", "Credentials"];

fn allowed_fields(type_name: &str) -> Option<Vec<&'static str>> {
    let mut f: Vec<&'static str> = COMMON_FIELDS.to_vec();
    match type_name {
        "Pass" => {
            f.push("Assign");
            f.extend(IO_FIELDS);
            f.extend(TRANSITION_FIELDS);
            f.extend(["Parameters", "Result", "ResultPath"]);
        }
        "Task" => {
            f.push("Assign");
            f.extend(IO_FIELDS);
            f.extend(TRANSITION_FIELDS);
            f.extend(RESULT_FIELDS);
            f.extend([
                "Resource",
                "Parameters",
                "TimeoutSeconds",
                "TimeoutSecondsPath",
                "HeartbeatSeconds",
                "HeartbeatSecondsPath",
            ]);
        }
        "Choice" => {
            f.push("Assign");
            f.extend(IO_FIELDS);
            f.extend(["Choices", "Default"]);
        }
        "Wait" => {
            f.push("Assign");
            f.extend(IO_FIELDS);
            f.extend(TRANSITION_FIELDS);
            f.extend(["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]);
        }
        "Succeed" => f.extend(IO_FIELDS),
        "Fail" => f.extend(["Error", "ErrorPath", "Cause", "CausePath"]),
        "Map" => {
            f.push("Assign");
            f.extend(IO_FIELDS);
            f.extend(TRANSITION_FIELDS);
            f.extend(RESULT_FIELDS);
            f.extend([
                "Parameters",
                "ItemSelector",
                "ItemsPath",
                "ItemProcessor",
                "Iterator",
                "MaxConcurrency",
                "MaxConcurrencyPath",
                "ToleratedFailureCount",
                "ToleratedFailureCountPath",
                "ToleratedFailurePercentage",
                "ToleratedFailurePercentagePath",
                "Label",
                "ItemReader",
                "ItemBatcher",
                "ResultWriter",
            ]);
        }
        "Parallel" => {
            f.push("Assign");
            f.extend(IO_FIELDS);
            f.extend(TRANSITION_FIELDS);
            f.extend(RESULT_FIELDS);
            f.extend(["Parameters", "Branches"]);
        }
        _ => return None,
    }
    Some(f)
}

fn compile_state(
    v: &Value,
    pointer: &str,
    problems: &mut Problems,
    names: &mut HashMap<String, String>,
) -> Option<StateKind> {
    let Some(obj) = v.as_object() else {
        problems.push(pointer, "a state must be a JSON object");
        return None;
    };
    let type_name = match obj.get("Type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => {
            problems.push(format!("{pointer}/Type"), "'Type' must be a string");
            return None;
        }
        None => {
            problems.push(pointer, "'Type' is required: one of Pass, Task, Choice, Wait, Succeed, Fail, Map, Parallel");
            return None;
        }
    };
    let Some(allowed) = allowed_fields(type_name) else {
        problems.push(
            format!("{pointer}/Type"),
            format!(
                "unknown state type '{type_name}'; expected one of Pass, Task, Choice, Wait, \
                 Succeed, Fail, Map, Parallel"
            ),
        );
        return None;
    };
    for key in obj.keys() {
        let ptr = format!("{pointer}/{}", escape_pointer(key));
        if UNSUPPORTED_FIELDS.contains(&key.as_str()) {
            problems.push(ptr, format!("'{key}' is not supported by this interpreter"));
        } else if !allowed.contains(&key.as_str()) {
            problems.push(ptr, format!("field '{key}' is not valid in a {type_name} state"));
        }
    }
    check_query_language(obj, pointer, problems);
    let c = Fields { obj, pointer };
    let io = || IoPaths { input_path: None, output_path: None };
    let mut io_paths = io();
    if allowed.contains(&"InputPath") {
        io_paths =
            IoPaths { input_path: c.io_path("InputPath", problems), output_path: c.io_path("OutputPath", problems) };
    }
    let kind = match type_name {
        "Pass" => StateKind::Pass(PassState {
            io: io_paths,
            parameters: c.template("Parameters", problems),
            result: obj.get("Result").cloned(),
            result_path: result_path_field(obj.get("ResultPath"), &c.ptr("ResultPath"), problems),
            transition: c.transition(problems),
        }),
        "Task" => {
            let resource = match obj.get("Resource") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(_) => {
                    problems.push(c.ptr("Resource"), "'Resource' must be a non-empty string");
                    String::new()
                }
                None => {
                    problems.push(pointer, "a Task state needs 'Resource', the task to run");
                    String::new()
                }
            };
            let timeout = c.setting_u64("TimeoutSeconds", "TimeoutSecondsPath", 1, problems);
            let heartbeat = c.setting_u64("HeartbeatSeconds", "HeartbeatSecondsPath", 1, problems);
            if let (Some(Setting::Fixed(t)), Some(Setting::Fixed(h))) = (&timeout, &heartbeat)
                && h >= t
            {
                problems.push(c.ptr("HeartbeatSeconds"), "'HeartbeatSeconds' must be smaller than 'TimeoutSeconds'");
            }
            StateKind::Task(Box::new(TaskState {
                io: io_paths,
                resource,
                parameters: c.template("Parameters", problems),
                result_selector: c.template("ResultSelector", problems),
                result_path: result_path_field(obj.get("ResultPath"), &c.ptr("ResultPath"), problems),
                retry: compile_retry(obj.get("Retry"), &c.ptr("Retry"), problems),
                catch: compile_catch(obj.get("Catch"), &c.ptr("Catch"), problems),
                timeout,
                heartbeat,
                transition: c.transition(problems),
            }))
        }
        "Choice" => {
            let mut choices = Vec::new();
            match obj.get("Choices") {
                Some(Value::Array(items)) if !items.is_empty() => {
                    for (i, item) in items.iter().enumerate() {
                        let ptr = format!("{}/{i}", c.ptr("Choices"));
                        if let Some(rule) = ChoiceRule::compile(item, &ptr, true, problems) {
                            let next = item.get("Next").and_then(Value::as_str).unwrap_or_default().to_string();
                            let assign =
                                item.get("Assign").and_then(|a| compile_assign(a, &format!("{ptr}/Assign"), problems));
                            choices.push(ChoiceBranch { rule, next, assign });
                        }
                    }
                }
                Some(_) => problems.push(c.ptr("Choices"), "'Choices' must be a non-empty array of choice rules"),
                None => problems.push(pointer, "a Choice state needs 'Choices', a non-empty array of rules"),
            }
            let default = match obj.get("Default") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    problems.push(c.ptr("Default"), "'Default' must be a state name");
                    None
                }
            };
            StateKind::Choice(ChoiceState { io: io_paths, choices, default })
        }
        "Wait" => {
            let present: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]
                .into_iter()
                .filter(|k| obj.contains_key(*k))
                .collect();
            if present.len() != 1 {
                problems
                    .push(pointer, "a Wait state needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath");
            }
            let wait = match present.first().copied() {
                Some("Seconds") => match obj["Seconds"].as_u64() {
                    Some(n) if n <= 99_999_999 => WaitFor::Seconds(n),
                    _ => {
                        problems.push(c.ptr("Seconds"), "'Seconds' must be a non-negative integer");
                        WaitFor::Seconds(0)
                    }
                },
                Some("Timestamp") => match obj["Timestamp"].as_str().and_then(parse_timestamp) {
                    Some(t) => WaitFor::Timestamp(t),
                    None => {
                        problems.push(
                            c.ptr("Timestamp"),
                            "'Timestamp' must be an RFC 3339 timestamp such as \"2016-03-14T01:59:00Z\"",
                        );
                        WaitFor::Seconds(0)
                    }
                },
                Some(field) => match c.reference_path(field, problems) {
                    Some(p) if field == "SecondsPath" => WaitFor::SecondsPath(p),
                    Some(p) => WaitFor::TimestampPath(p),
                    None => WaitFor::Seconds(0),
                },
                None => WaitFor::Seconds(0),
            };
            StateKind::Wait(WaitState { io: io_paths, wait, transition: c.transition(problems) })
        }
        "Succeed" => StateKind::Succeed(io_paths),
        "Fail" => StateKind::Fail(FailState {
            error: c.fail_text("Error", "ErrorPath", problems),
            cause: c.fail_text("Cause", "CausePath", problems),
        }),
        "Map" => {
            let (processor, distributed) = match c.map_processor(problems, names) {
                Some((scope, distributed)) => (Some(scope), distributed),
                None => (None, false),
            };
            let item_selector = match (obj.contains_key("ItemSelector"), obj.contains_key("Parameters")) {
                (true, true) => {
                    problems.push(
                        c.ptr("Parameters"),
                        "use either 'ItemSelector' or its older name 'Parameters', not both",
                    );
                    None
                }
                (true, false) => c.template("ItemSelector", problems),
                (false, true) => c.template("Parameters", problems),
                (false, false) => None,
            };
            let items_path = match obj.get("ItemsPath") {
                None => Some(ValuePath::Input(JsonPath::root())),
                Some(_) => c.reference_path("ItemsPath", problems),
            };
            let max_concurrency =
                c.setting_u64("MaxConcurrency", "MaxConcurrencyPath", 0, problems).unwrap_or(Setting::Fixed(0));
            let tolerated_count = c.setting_value(
                "ToleratedFailureCount",
                "ToleratedFailureCountPath",
                |v| v.as_u64().is_some(),
                "a non-negative integer",
                problems,
            );
            let tolerated_percentage = c.setting_value(
                "ToleratedFailurePercentage",
                "ToleratedFailurePercentagePath",
                |v| v.as_f64().is_some_and(|p| (0.0..=100.0).contains(&p)),
                "a number between 0 and 100",
                problems,
            );
            for field in ["ItemReader", "ItemBatcher", "ResultWriter", "Label"] {
                if obj.contains_key(field) && !distributed {
                    problems.push(
                        c.ptr(field),
                        format!("'{field}' is only allowed in a Map whose ItemProcessor runs in DISTRIBUTED mode"),
                    );
                }
            }
            let item_reader =
                obj.get("ItemReader").and_then(|v| compile_item_reader(v, &c.ptr("ItemReader"), problems));
            let item_batcher =
                obj.get("ItemBatcher").and_then(|v| compile_item_batcher(v, &c.ptr("ItemBatcher"), problems));
            let result_writer =
                obj.get("ResultWriter").and_then(|v| compile_result_writer(v, &c.ptr("ResultWriter"), problems));
            let label = obj.get("Label").and_then(|v| check_label(v, &c.ptr("Label"), problems));
            StateKind::Map(Box::new(MapState {
                io: io_paths,
                item_reader,
                item_batcher,
                result_writer,
                label,
                items_path: items_path.unwrap_or_else(|| ValuePath::Input(JsonPath::root())),
                item_selector,
                processor: processor?,
                distributed,
                max_concurrency,
                tolerated_count,
                tolerated_percentage,
                result_selector: c.template("ResultSelector", problems),
                result_path: result_path_field(obj.get("ResultPath"), &c.ptr("ResultPath"), problems),
                retry: compile_retry(obj.get("Retry"), &c.ptr("Retry"), problems),
                catch: compile_catch(obj.get("Catch"), &c.ptr("Catch"), problems),
                transition: c.transition(problems),
            }))
        }
        "Parallel" => {
            let mut branches = Vec::new();
            match obj.get("Branches") {
                Some(Value::Array(items)) if !items.is_empty() => {
                    for (i, item) in items.iter().enumerate() {
                        let ptr = format!("{}/{i}", c.ptr("Branches"));
                        let Some(bobj) = item.as_object() else {
                            problems.push(ptr, "a branch must be an object with StartAt and States");
                            continue;
                        };
                        for key in bobj.keys() {
                            if !matches!(key.as_str(), "StartAt" | "States" | "Comment" | "QueryLanguage") {
                                problems.push(
                                    format!("{ptr}/{}", escape_pointer(key)),
                                    format!("unknown field '{key}' in a Parallel branch"),
                                );
                            }
                        }
                        if let Some(scope) = compile_scope(bobj, &ptr, problems, names) {
                            branches.push(scope);
                        }
                    }
                }
                Some(_) => problems.push(c.ptr("Branches"), "'Branches' must be a non-empty array"),
                None => problems.push(pointer, "a Parallel state needs 'Branches'"),
            }
            StateKind::Parallel(Box::new(ParallelState {
                io: io_paths,
                parameters: c.template("Parameters", problems),
                branches,
                result_selector: c.template("ResultSelector", problems),
                result_path: result_path_field(obj.get("ResultPath"), &c.ptr("ResultPath"), problems),
                retry: compile_retry(obj.get("Retry"), &c.ptr("Retry"), problems),
                catch: compile_catch(obj.get("Catch"), &c.ptr("Catch"), problems),
                transition: c.transition(problems),
            }))
        }
        _ => return None,
    };
    Some(kind)
}

/// `ResultPath`: absent means `$`, `null` means discard the result (`None`).
pub(crate) fn result_path_field(value: Option<&Value>, pointer: &str, problems: &mut Problems) -> Option<JsonPath> {
    match value {
        None => Some(JsonPath::root()),
        Some(Value::Null) => None,
        Some(Value::String(s)) => match JsonPath::parse(s) {
            Ok(p) if p.is_reference() => Some(p),
            Ok(_) => {
                problems.push(
                    pointer,
                    format!(
                        "'{s}' is not a reference path: ResultPath may only use '.name', ['name'] and [index] steps"
                    ),
                );
                Some(JsonPath::root())
            }
            Err(e) => {
                problems.push(pointer, e.to_string());
                Some(JsonPath::root())
            }
        },
        Some(_) => {
            problems.push(pointer, "'ResultPath' must be a path string or null");
            Some(JsonPath::root())
        }
    }
}

/// A path that selects from the state's input or a variable (`InputPath`, `ItemsPath`,
/// `...Path` settings); the context object is not available there.
fn selector_path(text: &str) -> Result<ValuePath, String> {
    match ValuePath::parse(text) {
        Ok(ValuePath::Context(_)) => Err(format!(
            "'{text}' reads the context object, which is not available here; use a path into the input ('$...') \
             or a variable ('$name...')"
        )),
        Ok(p) => Ok(p),
        Err(e) => Err(e.to_string()),
    }
}

/// Field accessors for one state object, reporting problems at the right pointer.
pub(crate) struct Fields<'a> {
    obj: &'a Map<String, Value>,
    pointer: &'a str,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(obj: &'a Map<String, Value>, pointer: &'a str) -> Fields<'a> {
        Fields { obj, pointer }
    }

    fn ptr(&self, field: &str) -> String {
        format!("{}/{field}", self.pointer)
    }

    fn io_path(&self, field: &str, problems: &mut Problems) -> Option<ValuePath> {
        let root = || Some(ValuePath::Input(JsonPath::root()));
        match self.obj.get(field) {
            None => root(),
            Some(Value::Null) => None,
            Some(Value::String(s)) => match selector_path(s) {
                Ok(p) => Some(p),
                Err(e) => {
                    problems.push(self.ptr(field), e);
                    root()
                }
            },
            Some(_) => {
                problems.push(self.ptr(field), format!("'{field}' must be a path string or null"));
                root()
            }
        }
    }

    fn reference_path(&self, field: &str, problems: &mut Problems) -> Option<ValuePath> {
        match self.obj.get(field) {
            Some(Value::String(s)) => match selector_path(s) {
                Ok(p) if p.is_reference() => Some(p),
                Ok(_) => {
                    problems.push(
                        self.ptr(field),
                        format!(
                            "'{s}' is not a reference path: only '.name', ['name'] and [index] steps are allowed here"
                        ),
                    );
                    None
                }
                Err(e) => {
                    problems.push(self.ptr(field), e);
                    None
                }
            },
            Some(_) => {
                problems.push(self.ptr(field), format!("'{field}' must be a path string"));
                None
            }
            None => None,
        }
    }

    pub(crate) fn template(&self, field: &str, problems: &mut Problems) -> Option<PayloadTemplate> {
        self.obj.get(field).map(|v| PayloadTemplate::compile(v, &self.ptr(field), problems))
    }

    fn transition(&self, problems: &mut Problems) -> Transition {
        let next = self.obj.get("Next");
        let end = self.obj.get("End");
        if let Some(e) = end
            && !e.is_boolean()
        {
            problems.push(self.ptr("End"), "'End' must be true or false");
        }
        let is_end = end == Some(&Value::Bool(true));
        match (next, is_end) {
            (Some(Value::String(n)), false) => Transition::Next(n.clone()),
            (Some(Value::String(_)), true) => {
                problems.push(self.pointer, "a state cannot have both 'Next' and 'End': true");
                Transition::End
            }
            (Some(_), _) => {
                problems.push(self.ptr("Next"), "'Next' must be a state name");
                Transition::End
            }
            (None, true) => Transition::End,
            (None, false) => {
                problems.push(self.pointer, "the state needs either 'Next' (the following state) or 'End': true");
                Transition::End
            }
        }
    }

    /// A `Field`/`FieldPath` pair of which at most one may be present.
    fn setting_u64(&self, field: &str, path_field: &str, min: u64, problems: &mut Problems) -> Option<Setting<u64>> {
        match (self.obj.get(field), self.obj.contains_key(path_field)) {
            (Some(_), true) => {
                problems.push(self.pointer, format!("use either '{field}' or '{path_field}', not both"));
                None
            }
            (Some(v), false) => match v.as_u64() {
                Some(n) if n >= min && n <= 99_999_999 => Some(Setting::Fixed(n)),
                _ => {
                    let what = if min == 0 { "a non-negative integer" } else { "a positive integer" };
                    problems.push(self.ptr(field), format!("'{field}' must be {what}"));
                    None
                }
            },
            (None, true) => self.reference_path(path_field, problems).map(Setting::Path),
            (None, false) => None,
        }
    }

    pub(crate) fn setting_value(
        &self,
        field: &str,
        path_field: &str,
        valid: impl Fn(&Value) -> bool,
        what: &str,
        problems: &mut Problems,
    ) -> Option<Setting<Value>> {
        match (self.obj.get(field), self.obj.contains_key(path_field)) {
            (Some(_), true) => {
                problems.push(self.pointer, format!("use either '{field}' or '{path_field}', not both"));
                None
            }
            (Some(v), false) if valid(v) => Some(Setting::Fixed(v.clone())),
            (Some(_), false) => {
                problems.push(self.ptr(field), format!("'{field}' must be {what}"));
                None
            }
            (None, true) => self.reference_path(path_field, problems).map(Setting::Path),
            (None, false) => None,
        }
    }

    fn fail_text(&self, field: &str, path_field: &str, problems: &mut Problems) -> Option<FailText> {
        match (self.obj.get(field), self.obj.get(path_field)) {
            (Some(_), Some(_)) => {
                problems.push(self.pointer, format!("use either '{field}' or '{path_field}', not both"));
                None
            }
            (Some(Value::String(s)), None) => Some(FailText::Literal(s.clone())),
            (Some(_), None) => {
                problems.push(self.ptr(field), format!("'{field}' must be a string"));
                None
            }
            (None, Some(Value::String(s))) => {
                if IntrinsicCall::looks_like_call(s) {
                    match IntrinsicCall::parse(s) {
                        Ok(call) => Some(FailText::Intrinsic(call)),
                        Err(e) => {
                            problems.push(self.ptr(path_field), e.to_string());
                            None
                        }
                    }
                } else {
                    match ValuePath::parse(s) {
                        Ok(p) => Some(FailText::Path(p)),
                        Err(e) => {
                            problems.push(self.ptr(path_field), e.to_string());
                            None
                        }
                    }
                }
            }
            (None, Some(_)) => {
                problems.push(self.ptr(path_field), format!("'{path_field}' must be a path string"));
                None
            }
            (None, None) => None,
        }
    }

    /// The Map's `ItemProcessor` (or `Iterator`), and whether it runs in DISTRIBUTED mode.
    fn map_processor(&self, problems: &mut Problems, names: &mut HashMap<String, String>) -> Option<(Scope, bool)> {
        let (field, value) = match (self.obj.get("ItemProcessor"), self.obj.get("Iterator")) {
            (Some(_), Some(_)) => {
                problems.push(self.pointer, "use either 'ItemProcessor' or its older name 'Iterator', not both");
                return None;
            }
            (Some(v), None) => ("ItemProcessor", v),
            (None, Some(v)) => ("Iterator", v),
            (None, None) => {
                problems.push(self.pointer, "a Map state needs 'ItemProcessor' with StartAt and States");
                return None;
            }
        };
        let ptr = self.ptr(field);
        let Some(pobj) = value.as_object() else {
            problems.push(ptr, format!("'{field}' must be an object with StartAt and States"));
            return None;
        };
        for key in pobj.keys() {
            if !matches!(key.as_str(), "StartAt" | "States" | "Comment" | "ProcessorConfig" | "QueryLanguage") {
                problems.push(format!("{ptr}/{}", escape_pointer(key)), format!("unknown field '{key}' in '{field}'"));
            }
        }
        let mut distributed = false;
        if let Some(config) = pobj.get("ProcessorConfig") {
            let cptr = format!("{ptr}/ProcessorConfig");
            match config.as_object() {
                Some(cfg) => {
                    match cfg.get("Mode") {
                        None => {}
                        // DISTRIBUTED runs inline locally: same semantics for the states inside,
                        // without child executions.
                        Some(Value::String(m)) if m == "INLINE" => {}
                        Some(Value::String(m)) if m == "DISTRIBUTED" => distributed = true,
                        Some(_) => {
                            problems.push(format!("{cptr}/Mode"), "'Mode' must be \"INLINE\" or \"DISTRIBUTED\"")
                        }
                    }
                    match cfg.get("ExecutionType") {
                        None => {}
                        Some(Value::String(m)) if m == "STANDARD" || m == "EXPRESS" => {}
                        Some(_) => problems.push(
                            format!("{cptr}/ExecutionType"),
                            "'ExecutionType' must be \"STANDARD\" or \"EXPRESS\"",
                        ),
                    }
                    for key in cfg.keys() {
                        if key != "Mode" && key != "ExecutionType" {
                            problems.push(
                                format!("{cptr}/{}", escape_pointer(key)),
                                format!("unknown field '{key}' in 'ProcessorConfig'"),
                            );
                        }
                    }
                }
                None => problems.push(cptr, "'ProcessorConfig' must be an object"),
            }
        }
        compile_scope(pobj, &ptr, problems, names).map(|scope| (scope, distributed))
    }
}

#[cfg(test)]
mod execution_input_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_references_to_the_execution_input() {
        for (text, reads) in [
            ("$$.Execution.Input.a", true),
            ("$$.Execution", true),
            ("$$", true),
            ("States.Format('{}', $$.Execution.Input)", true),
            ("$$.Execution.Name", false),
            ("$$.Map.Item.Value", false),
            ("$.Execution.Input", false),
        ] {
            assert_eq!(reads_execution_input(&json!({"Parameters": {"x.$": text}})), reads, "{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issues(v: Value) -> Vec<(Option<String>, String)> {
        match StateMachine::from_value(&v) {
            Ok(_) => Vec::new(),
            Err(e) => e.issues.into_iter().map(|i| (i.state, i.pointer)).collect(),
        }
    }

    fn has(v: Value, pointer: &str) -> bool {
        let found = issues(v);
        found.iter().any(|(_, p)| p == pointer) || panic!("no issue at {pointer}: {found:?}")
    }

    #[test]
    fn minimal_machine() {
        let m = StateMachine::parse(r#"{"StartAt":"A","States":{"A":{"Type":"Succeed"}}}"#).unwrap();
        assert_eq!(m.start_at(), "A");
        assert_eq!(m.state_names(), vec!["A"]);
    }

    #[test]
    fn start_at_must_exist() {
        assert!(has(json!({"StartAt": "B", "States": {"A": {"Type": "Succeed"}}}), "/StartAt"));
    }

    #[test]
    fn next_must_exist() {
        let found = issues(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nope"}}}));
        assert_eq!(found, vec![(Some("A".to_string()), "/States/A/Next".to_string())]);
    }

    #[test]
    fn next_or_end() {
        assert!(has(json!({"StartAt": "A", "States": {"A": {"Type": "Pass"}}}), "/States/A"));
        assert!(has(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Next": "A"}}}), "/States/A"));
        assert!(has(json!({"StartAt": "A", "States": {"A": {"Type": "Succeed", "End": true}}}), "/States/A/End"));
        assert!(has(
            json!({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [{"Variable": "$", "IsNull": true, "Next": "A"}], "Next": "A"}}}),
            "/States/A/Next"
        ));
    }

    #[test]
    fn unknown_type_and_missing_fields() {
        assert!(has(json!({"StartAt": "A", "States": {"A": {"Type": "Magic", "End": true}}}), "/States/A/Type"));
        assert!(has(json!({"StartAt": "A", "States": {"A": {"Type": "Task", "End": true}}}), "/States/A"));
        assert!(has(json!({"StartAt": "A", "States": {"A": {"Type": "Choice"}}}), "/States/A"));
        assert!(has(json!({"StartAt": "A", "States": {"A": {"Type": "Map", "End": true}}}), "/States/A"));
        assert!(has(json!({"StartAt": "A", "States": {"A": {"End": true}}}), "/States/A"));
    }

    #[test]
    fn unreachable_state() {
        let found = issues(json!({"StartAt": "A", "States": {
            "A": {"Type": "Succeed"},
            "Lost": {"Type": "Succeed"}
        }}));
        assert_eq!(found, vec![(Some("Lost".to_string()), "/States/Lost".to_string())]);
    }

    #[test]
    fn catch_targets_count_as_reachable() {
        let m = StateMachine::from_value(&json!({"StartAt": "A", "States": {
            "A": {"Type": "Task", "Resource": "r", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "B"}], "End": true},
            "B": {"Type": "Succeed"}
        }}));
        assert!(m.is_ok(), "{m:?}");
    }

    #[test]
    fn states_all_alone_and_last() {
        let v = json!({"StartAt": "A", "States": {
            "A": {"Type": "Task", "Resource": "r", "End": true,
                  "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]}
        }});
        assert!(has(v, "/States/A/Retry/0/ErrorEquals"));
    }

    #[test]
    fn bad_paths() {
        assert!(has(
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": "a.b", "End": true}}}),
            "/States/A/InputPath"
        ));
        assert!(has(
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "ResultPath": "$.a[*]", "End": true}}}),
            "/States/A/ResultPath"
        ));
        assert!(has(
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "OutputPath": 3, "End": true}}}),
            "/States/A/OutputPath"
        ));
        assert!(has(
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"x.$": "x"}, "End": true}}}),
            "/States/A/Parameters/x.$"
        ));
    }

    #[test]
    fn field_value_types() {
        let map = |extra: Value| {
            let mut state = json!({"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}});
            for (k, v) in extra.as_object().unwrap() {
                state[k] = v.clone();
            }
            json!({"StartAt": "M", "States": {"M": state}})
        };
        assert!(has(map(json!({"MaxConcurrency": -1})), "/States/M/MaxConcurrency"));
        assert!(has(map(json!({"MaxConcurrency": 1.5})), "/States/M/MaxConcurrency"));
        assert!(has(
            map(json!({"Retry": [{"ErrorEquals": ["X"], "IntervalSeconds": 0}]})),
            "/States/M/Retry/0/IntervalSeconds"
        ));
        assert!(has(
            map(json!({"Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.9}]})),
            "/States/M/Retry/0/BackoffRate"
        ));
        assert!(has(
            map(json!({"Retry": [{"ErrorEquals": ["X"], "MaxAttempts": -1}]})),
            "/States/M/Retry/0/MaxAttempts"
        ));
        assert!(has(map(json!({"Bogus": 1})), "/States/M/Bogus"));
    }

    #[test]
    fn nested_validation_inside_map() {
        let found = issues(json!({"StartAt": "M", "States": {"M": {
            "Type": "Map", "End": true,
            "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "Next": "Outside"}}}
        }}}));
        assert_eq!(found, vec![(Some("I".to_string()), "/States/M/ItemProcessor/States/I/Next".to_string())]);
    }

    #[test]
    fn duplicate_names_across_scopes() {
        assert!(has(
            json!({"StartAt": "M", "States": {"M": {
                "Type": "Map", "End": true,
                "Iterator": {"StartAt": "M", "States": {"M": {"Type": "Succeed"}}}
            }}}),
            "/States/M/Iterator/States/M"
        ));
    }

    #[test]
    fn pointer_escaping() {
        assert!(has(json!({"StartAt": "a/b", "States": {"a/b": {"Type": "Pass"}}}), "/States/a~1b"));
    }

    #[test]
    fn unsupported_features_are_named() {
        let e = StateMachine::from_value(
            &json!({"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Succeed"}}}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("JSONata"), "{e}");
    }

    #[test]
    fn display_lists_all_issues() {
        let e = StateMachine::from_value(
            &json!({"StartAt": "A", "States": {"A": {"Type": "Pass"}, "B": {"Type": "Nope"}}}),
        )
        .unwrap_err();
        let text = e.to_string();
        assert_eq!(text.lines().count(), e.issues.len());
        assert!(text.contains("state 'B' (/States/B/Type)"), "{text}");
    }

    #[test]
    fn invalid_json() {
        let e = StateMachine::parse("{").unwrap_err();
        assert!(e.to_string().contains("not valid JSON"));
    }
}
