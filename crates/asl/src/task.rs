//! Task handlers: what a `Task` state's `Resource` runs.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

/// Runs the work of a Task state.
///
/// The interpreter passes the state's effective input (after `InputPath` and `Parameters`) and
/// gets back the raw result (before `ResultSelector` and `ResultPath`).
#[async_trait]
pub trait TaskHandler: Send + Sync {
    /// Runs the task once. A returned [`TaskFailure`] goes through the state's Retry and Catch.
    async fn invoke(&self, input: Value, ctx: TaskContext) -> Result<Value, TaskFailure>;
}

/// What a task handler knows about the call besides its input.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskContext {
    /// The execution's name.
    pub execution_name: String,
    /// The Task state's name.
    pub state_name: String,
    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub attempt: u32,
    /// This invocation's key: stable across runs of the same execution (see [`TaskJournal`]),
    /// so it can serve as an idempotency key.
    pub key: String,
    /// The context object, as `$$` sees it in this state. `Execution.Input` is present only when
    /// the definition refers to it (see [`crate::StateMachine::reads_execution_input`]).
    pub context: Value,
}

/// A durable record of task outcomes, which lets an execution resume after its process died.
///
/// Every task invocation has a key built from its path through the execution: the state names,
/// how many times each state was entered in its scope (`@visit`), Map item indexes (`[i]`),
/// Parallel branch indexes (`{i}`) and attempt numbers (`#n`), e.g.
/// `AnalyseUnitsInline@1#1[3]/ProcessUnit@1#2`. Running the same definition on the same input
/// walks the same keys as long as tasks return the same outcomes — which the journal makes sure
/// of, by answering from its records instead of calling the task again.
///
/// On a resumed run the history still shows `TaskScheduled`, `TaskStarted` and `TaskSucceeded`
/// or `TaskFailed` for a recorded invocation, so it matches the history of an uninterrupted run;
/// the retry delay before a recorded attempt is skipped.
///
/// Wait states are journaled too, under their state key without an attempt number (e.g.
/// `Pause@1`) and with the outcome `Ok(null)`, so that a resumed run does not wait again for a
/// Wait it already finished.
#[async_trait]
pub trait TaskJournal: Send + Sync {
    /// The recorded outcome of the invocation with this key, if there is one.
    fn recorded(&self, key: &str) -> Option<Result<Value, TaskFailure>>;
    /// An invocation finished. The interpreter waits for this before the execution moves on, so
    /// the journal can make the outcome durable first.
    async fn record(&self, key: &str, outcome: &Result<Value, TaskFailure>);
}

/// A task's error, with an error name that `Retry` and `Catch` match on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct TaskFailure {
    /// Error name, e.g. `Beacon.Throttled` or `States.TaskFailed`.
    pub error: String,
    /// Human-readable detail.
    pub cause: String,
}

impl TaskFailure {
    /// A failure with the given error name and cause.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> TaskFailure {
        TaskFailure { error: error.into(), cause: cause.into() }
    }
}

/// Task handlers by `Resource`. Cheap to clone: the map is shared and copied on write.
#[derive(Default, Clone)]
pub struct TaskRegistry {
    handlers: Arc<HashMap<String, Arc<dyn TaskHandler>>>,
}

impl fmt::Debug for TaskRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.handlers.keys().collect();
        names.sort();
        f.debug_struct("TaskRegistry").field("resources", &names).finish()
    }
}

impl TaskRegistry {
    /// An empty registry.
    pub fn new() -> TaskRegistry {
        TaskRegistry::default()
    }

    /// Registers (or replaces) the handler for `resource`, matched exactly against `Resource`.
    pub fn register(&mut self, resource: impl Into<String>, handler: Arc<dyn TaskHandler>) {
        Arc::make_mut(&mut self.handlers).insert(resource.into(), handler);
    }

    /// Registers an async closure as the handler for `resource`.
    ///
    /// ```
    /// use beacon_asl::{TaskFailure, TaskRegistry};
    /// use serde_json::{json, Value};
    ///
    /// let mut registry = TaskRegistry::new();
    /// registry.register_fn("double", |input: Value, _ctx| async move {
    ///     let n = input["n"].as_i64().ok_or_else(|| TaskFailure::new("Bad.Input", "n must be an integer"))?;
    ///     Ok(json!({"n": n * 2}))
    /// });
    /// assert!(registry.get("double").is_some());
    /// ```
    pub fn register_fn<F, Fut>(&mut self, resource: impl Into<String>, f: F)
    where
        F: Fn(Value, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, TaskFailure>> + Send + 'static,
    {
        self.register(resource, Arc::new(FnHandler(f)));
    }

    /// The handler for `resource`, if any.
    pub fn get(&self, resource: &str) -> Option<Arc<dyn TaskHandler>> {
        self.handlers.get(resource).cloned()
    }

    /// The registered resources, sorted.
    pub fn resources(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

struct FnHandler<F>(F);

#[async_trait]
impl<F, Fut> TaskHandler for FnHandler<F>
where
    F: Fn(Value, TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, TaskFailure>> + Send + 'static,
{
    async fn invoke(&self, input: Value, ctx: TaskContext) -> Result<Value, TaskFailure> {
        (self.0)(input, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn closures_are_handlers() {
        let mut r = TaskRegistry::new();
        r.register_fn(
            "echo",
            |input, ctx: TaskContext| async move { Ok(json!({"input": input, "state": ctx.state_name})) },
        );
        let h = r.get("echo").unwrap();
        let out = h
            .invoke(
                json!(1),
                TaskContext {
                    execution_name: "e".into(),
                    state_name: "S".into(),
                    attempt: 1,
                    key: "S@1#1".into(),
                    context: json!({}),
                },
            )
            .await
            .unwrap();
        assert_eq!(out, json!({"input": 1, "state": "S"}));
        assert!(r.get("nope").is_none());
    }

    #[test]
    fn clones_share_until_written() {
        let mut a = TaskRegistry::new();
        a.register_fn("x", |v, _| async move { Ok(v) });
        let mut b = a.clone();
        b.register_fn("y", |v, _| async move { Ok(v) });
        assert_eq!(a.resources(), vec!["x"]);
        assert_eq!(b.resources(), vec!["x", "y"]);
    }
}
