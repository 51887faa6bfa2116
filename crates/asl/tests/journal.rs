//! Crash-resume through the task journal: a resumed execution takes recorded task outcomes from
//! the journal instead of calling the task again, skips retry delays and Waits it already went
//! through, and ends with the same output and the same history as an uninterrupted run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use beacon_asl::{Interpreter, Sleeper, StateMachine, TaskContext, TaskFailure, TaskJournal, TaskRegistry};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// A journal in memory: what a durable journal would hold.
#[derive(Default)]
struct MemoryJournal(Mutex<HashMap<String, Result<Value, TaskFailure>>>);

impl MemoryJournal {
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.0.lock().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }
}

#[async_trait]
impl TaskJournal for MemoryJournal {
    fn recorded(&self, key: &str) -> Option<Result<Value, TaskFailure>> {
        self.0.lock().unwrap().get(key).cloned()
    }

    async fn record(&self, key: &str, outcome: &Result<Value, TaskFailure>) {
        let previous = self.0.lock().unwrap().insert(key.to_string(), outcome.clone());
        assert!(previous.is_none(), "{key} recorded twice");
    }
}

#[derive(Default)]
struct RecordingSleeper(Mutex<Vec<Duration>>);

#[async_trait]
impl Sleeper for RecordingSleeper {
    async fn sleep(&self, d: Duration) {
        self.0.lock().unwrap().push(d);
    }
}

/// Invocations per key.
type Calls = Arc<Mutex<HashMap<String, usize>>>;

/// `count` doubles its input; the first attempt of item 5 fails with `Flaky` (and is retried).
/// With `hang_on`, that item never finishes and `reached` is notified instead.
fn registry(calls: Calls, hang_on: Option<(u64, Arc<Notify>)>) -> TaskRegistry {
    let mut r = TaskRegistry::new();
    r.register_fn("count", move |input: Value, ctx: TaskContext| {
        let calls = calls.clone();
        let hang_on = hang_on.clone();
        async move {
            *calls.lock().unwrap().entry(ctx.key.clone()).or_default() += 1;
            let n = input.as_u64().unwrap_or_default();
            if let Some((item, reached)) = hang_on
                && item == n
            {
                reached.notify_one();
                std::future::pending::<()>().await;
            }
            if n == 5 && ctx.attempt == 1 {
                return Err(TaskFailure::new("Flaky", "first attempt of item 5"));
            }
            Ok(json!({"n": n * 2, "attempt": ctx.attempt}))
        }
    });
    r
}

fn machine() -> StateMachine {
    StateMachine::from_value(&json!({
        "StartAt": "Pause",
        "States": {
            "Pause": {"Type": "Wait", "Seconds": 30, "Next": "Units"},
            "Units": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 1,
                "ItemProcessor": {"StartAt": "Count", "States": {"Count": {
                    "Type": "Task", "Resource": "count", "End": true,
                    "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 5}]
                }}},
                "End": true
            }
        }
    }))
    .unwrap()
}

fn input() -> Value {
    json!({"items": (0..20).collect::<Vec<u64>>()})
}

#[tokio::test]
async fn a_resumed_execution_replays_recorded_tasks_and_matches_an_uninterrupted_run() {
    // The reference: one uninterrupted run.
    let reference_calls = Calls::default();
    let reference = Interpreter::new(registry(reference_calls.clone(), None))
        .with_sleeper(Arc::new(RecordingSleeper::default()))
        .with_task_journal(Arc::new(MemoryJournal::default()))
        .execute(&machine(), "exec", input())
        .await;
    assert!(reference.output().is_some(), "{:?}", reference.status);

    // The first run "crashes" while item 12 is running: its future is dropped.
    let journal = Arc::new(MemoryJournal::default());
    let first_calls = Calls::default();
    let reached = Arc::new(Notify::new());
    let first = Interpreter::new(registry(first_calls.clone(), Some((12, reached.clone()))))
        .with_sleeper(Arc::new(RecordingSleeper::default()))
        .with_task_journal(journal.clone());
    let m = machine();
    tokio::select! {
        r = first.execute(&m, "exec", input()) => panic!("the first run should hang on item 12, ended with {:?}", r.status),
        _ = reached.notified() => {}
    }
    let recorded = journal.keys();
    assert!(recorded.contains(&"Pause@1".to_string()), "{recorded:?}");
    assert!(recorded.contains(&"Units@1#1[5]/Count@1#1".to_string()), "{recorded:?}");
    assert!(recorded.contains(&"Units@1#1[5]/Count@1#2".to_string()), "{recorded:?}");
    assert!(recorded.contains(&"Units@1#1[11]/Count@1#1".to_string()), "{recorded:?}");
    assert!(!recorded.iter().any(|k| k.contains("[12]")), "{recorded:?}");

    // The second run resumes from the journal with a well-behaved handler.
    let second_calls = Calls::default();
    let sleeper = Arc::new(RecordingSleeper::default());
    let second = Interpreter::new(registry(second_calls.clone(), None))
        .with_sleeper(sleeper.clone())
        .with_task_journal(journal.clone())
        .execute(&machine(), "exec", input())
        .await;

    assert_eq!(second.output(), reference.output());
    assert_eq!(second.event_types(), reference.event_types());
    // Neither the Wait nor the retry delay of item 5 is waited for again.
    assert!(sleeper.0.lock().unwrap().is_empty(), "{:?}", sleeper.0.lock().unwrap());

    let first_calls = first_calls.lock().unwrap().clone();
    let second_calls = second_calls.lock().unwrap().clone();
    for (key, n) in &second_calls {
        assert_eq!(*n, 1, "{key} called {n} times on resume");
        let item: u64 = key["Units@1#1[".len()..key.find(']').unwrap()].parse().unwrap();
        assert!(item >= 12, "{key} was recorded by the first run but called again");
    }
    for item in 0..12 {
        assert!(first_calls.contains_key(&format!("Units@1#1[{item}]/Count@1#1")));
    }
    for item in 12..20 {
        assert_eq!(second_calls.get(&format!("Units@1#1[{item}]/Count@1#1")), Some(&1), "item {item}");
    }
    // Every invocation of the reference run happened exactly once over the two runs, except
    // item 12's, which the crash interrupted before it finished.
    for key in reference_calls.lock().unwrap().keys() {
        let total = first_calls.get(key).copied().unwrap_or(0) + second_calls.get(key).copied().unwrap_or(0);
        let expected = if key.contains("[12]") { 2 } else { 1 };
        assert_eq!(total, expected, "{key}");
    }
}

#[tokio::test]
async fn keys_name_the_path_through_parallel_branches_nested_maps_and_loops() {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let mut r = TaskRegistry::new();
    let seen = keys.clone();
    r.register_fn("k", move |input: Value, ctx: TaskContext| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(ctx.key);
            Ok(input)
        }
    });
    let m = StateMachine::from_value(&json!({
        "StartAt": "Loop",
        "States": {
            "Loop": {"Type": "Task", "Resource": "k", "ResultPath": null, "Next": "Again"},
            "Again": {"Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericLessThan": 1, "Next": "Bump"}],
                "Default": "Par"},
            "Bump": {"Type": "Pass", "Result": 1, "ResultPath": "$.n", "Next": "Loop"},
            "Par": {"Type": "Parallel", "End": true, "Branches": [
                {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "k", "End": true}}},
                {"StartAt": "Outer", "States": {"Outer": {
                    "Type": "Map", "ItemsPath": "$.rows", "End": true,
                    "ItemProcessor": {"StartAt": "Inner", "States": {"Inner": {
                        "Type": "Map", "End": true,
                        "ItemProcessor": {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "k", "End": true}}}
                    }}}
                }}}
            ]}
        }
    }))
    .unwrap();
    let result = Interpreter::new(r).execute(&m, "e", json!({"n": 0, "rows": [[1], [2, 3]]})).await;
    assert!(result.output().is_some(), "{:?}", result.status);
    let mut keys = keys.lock().unwrap().clone();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "Loop@1#1",
            "Loop@2#1",
            "Par@1#1{0}/A@1#1",
            "Par@1#1{1}/Outer@1#1[0]/Inner@1#1[0]/B@1#1",
            "Par@1#1{1}/Outer@1#1[1]/Inner@1#1[0]/B@1#1",
            "Par@1#1{1}/Outer@1#1[1]/Inner@1#1[1]/B@1#1",
        ]
    );
}

#[tokio::test]
async fn recorded_failures_are_replayed_through_retry_and_catch() {
    let journal = Arc::new(MemoryJournal::default());
    journal.0.lock().unwrap().insert("Work@1#1".into(), Err(TaskFailure::new("Boom", "recorded")));
    let calls = Calls::default();
    let mut r = TaskRegistry::new();
    let c = calls.clone();
    r.register_fn("w", move |_input: Value, ctx: TaskContext| {
        let c = c.clone();
        async move {
            *c.lock().unwrap().entry(ctx.key).or_default() += 1;
            Ok(json!("fresh"))
        }
    });
    let m = StateMachine::from_value(&json!({"StartAt": "Work", "States": {"Work": {
        "Type": "Task", "Resource": "w", "End": true,
        "Retry": [{"ErrorEquals": ["Boom"], "IntervalSeconds": 3}]
    }}}))
    .unwrap();
    let sleeper = Arc::new(RecordingSleeper::default());
    let result = Interpreter::new(r)
        .with_sleeper(sleeper.clone())
        .with_task_journal(journal.clone())
        .execute(&m, "e", json!({}))
        .await;
    assert_eq!(result.output(), Some(&json!("fresh")));
    assert_eq!(*calls.lock().unwrap(), HashMap::from([("Work@1#2".to_string(), 1)]));
    // The second attempt was not recorded, so its retry delay is waited for as usual.
    assert_eq!(*sleeper.0.lock().unwrap(), vec![Duration::from_secs(3)]);
    assert_eq!(
        result.event_types(),
        vec![
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskFailed",
            "TaskScheduled",
            "TaskStarted",
            "TaskSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded"
        ]
    );
}
