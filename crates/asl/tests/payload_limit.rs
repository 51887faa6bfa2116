//! The payload size quota ("Maximum input or output size for a task, state, or execution":
//! 256 KiB of UTF-8 JSON text) and `States.DataLimitExceeded`, as the AWS developer guide's
//! error-handling page describes it and as AWS's recorded executions show it.

use beacon_asl::{
    DEFAULT_PAYLOAD_LIMIT, ExecutionResult, ExecutionStatus, Interpreter, StateMachine, TaskFailure, TaskRegistry,
};
use serde_json::{Value, json};

fn registry() -> TaskRegistry {
    let mut r = TaskRegistry::new();
    // Returns a string of `len` characters.
    r.register_fn("big", |input: Value, _| async move {
        let len = input["len"].as_u64().unwrap_or_default() as usize;
        Ok(Value::String("x".repeat(len)))
    });
    r.register_fn("echo", |input, _| async move { Ok(input) });
    r
}

async fn run(def: Value, input: Value, limit: Option<usize>) -> ExecutionResult {
    let machine = StateMachine::from_value(&def).unwrap_or_else(|e| panic!("invalid test machine: {e}"));
    let mut interpreter = Interpreter::new(registry());
    if let Some(limit) = limit {
        interpreter = interpreter.with_payload_limit(limit);
    }
    interpreter.execute(&machine, "exec-1", input).await
}

fn failed(r: &ExecutionResult) -> (&str, &str) {
    match &r.status {
        ExecutionStatus::Failed { error, cause } => (error.as_str(), cause.as_str()),
        other => panic!("expected failure, got {other:?}"),
    }
}

// A task result over the quota fails the task; AWS's recorded executions show `States.ALL`
// catching it, with this cause.
#[tokio::test]
async fn an_oversized_task_result_fails_the_task_and_states_all_catches_it() {
    let r = run(
        json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "big", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handled"}], "End": true},
            "Handled": {"Type": "Pass", "End": true}
        }}),
        json!({"len": DEFAULT_PAYLOAD_LIMIT}),
        None,
    )
    .await;
    assert_eq!(
        r.output(),
        Some(&json!({
            "Error": "States.DataLimitExceeded",
            "Cause": "The state/task 'big' returned a result with a size exceeding the maximum number of bytes service limit."
        }))
    );
    assert_eq!(
        r.event_types(),
        vec![
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskFailed",
            "TaskStateExited",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
    // Just under the quota is fine: the result is the JSON string, quotes included.
    let r = run(
        json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "big", "ResultSelector": {"ok": true}, "End": true}}}),
        json!({"len": DEFAULT_PAYLOAD_LIMIT - 2}),
        None,
    )
    .await;
    assert_eq!(r.output(), Some(&json!({"ok": true})));
}

// An oversized state output is terminal: `States.ALL` does not catch it.
#[tokio::test]
async fn an_oversized_state_output_is_not_caught_by_states_all() {
    let r = run(
        json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "big", "ResultPath": "$.big",
                  "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handled"}], "End": true},
            "Handled": {"Type": "Pass", "End": true}
        }}),
        json!({"len": 60, "padding": "p".repeat(40)}),
        Some(100),
    )
    .await;
    let (error, cause) = failed(&r);
    assert_eq!(error, "States.DataLimitExceeded");
    assert_eq!(
        cause,
        "The state/task 'T' returned a result with a size exceeding the maximum number of bytes service limit."
    );
    assert!(!r.event_types().contains(&"TaskStateExited"), "{:?}", r.event_types());
}

// The state input after Parameters counts too; a Catch naming the error handles it.
#[tokio::test]
async fn oversized_parameters_can_be_caught_by_name() {
    let def = |error_equals: &str| {
        json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "echo",
                  "Parameters": {"a.$": "$.text", "b.$": "$.text"},
                  "Catch": [{"ErrorEquals": [error_equals], "ResultPath": null, "Next": "Handled"}], "End": true},
            "Handled": {"Type": "Pass", "Result": "handled", "End": true}
        }})
    };
    let input = json!({"text": "t".repeat(60)});
    let r = run(def("States.DataLimitExceeded"), input.clone(), Some(100)).await;
    assert_eq!(r.output(), Some(&json!("handled")));
    let r = run(def("States.ALL"), input, Some(100)).await;
    assert_eq!(failed(&r).0, "States.DataLimitExceeded");
}

#[tokio::test]
async fn an_oversized_execution_input_fails_the_execution() {
    let r =
        run(json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}), json!("y".repeat(200)), Some(100))
            .await;
    assert_eq!(failed(&r).0, "States.DataLimitExceeded");
    assert_eq!(r.event_types(), vec!["ExecutionStarted", "ExecutionFailed"]);
}

#[tokio::test]
async fn retriers_for_task_errors_also_retry_an_oversized_result() {
    let mut r = TaskRegistry::new();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    r.register_fn("shrinking", move |_input: Value, _| {
        let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            if n == 0 { Ok(Value::String("z".repeat(500))) } else { Err(TaskFailure::new("Done", "second attempt")) }
        }
    });
    let machine = StateMachine::from_value(&json!({"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "shrinking", "End": true,
        "Retry": [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 1, "MaxAttempts": 1}]
    }}}))
    .unwrap();
    struct NoSleep;
    #[async_trait::async_trait]
    impl beacon_asl::Sleeper for NoSleep {
        async fn sleep(&self, _d: std::time::Duration) {}
    }
    let result = Interpreter::new(r)
        .with_sleeper(std::sync::Arc::new(NoSleep))
        .with_payload_limit(100)
        .execute(&machine, "e", json!({}))
        .await;
    assert_eq!(failed(&result), ("Done", "second attempt"));
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}
