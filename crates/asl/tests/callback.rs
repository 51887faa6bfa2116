//! `.waitForTaskToken` tasks, heartbeats and timeouts ("Wait for a Callback with Task Token",
//! "Task state: Timeouts and heartbeats" in the AWS developer guide), and the machine-level
//! `TimeoutSeconds`. Time is tokio's paused clock: nothing really waits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use beacon_asl::{
    ExecutionResult, ExecutionStatus, Interpreter, StateMachine, TaskContext, TaskRegistry, TaskTokenError, TaskTokens,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn machine(v: Value) -> StateMachine {
    StateMachine::from_value(&v).unwrap_or_else(|e| panic!("invalid test machine: {e}"))
}

/// `notify` stands for a service that passes the token on (an SQS message, say): it hands its
/// input to the test through `sent` and answers like SQS would.
fn notify_registry(sent: mpsc::UnboundedSender<(Value, TaskContext)>) -> TaskRegistry {
    let mut r = TaskRegistry::new();
    r.register_fn("notify", move |input: Value, ctx: TaskContext| {
        let sent = sent.clone();
        async move {
            sent.send((input, ctx)).ok();
            Ok(json!({"MessageId": "m-1"}))
        }
    });
    r
}

fn callback_machine(extra: Value) -> Value {
    let mut state = json!({
        "Type": "Task",
        "Resource": "notify.waitForTaskToken",
        "Parameters": {"Message.$": "$.message", "TaskToken.$": "$$.Task.Token"},
        "End": true
    });
    for (k, v) in extra.as_object().unwrap() {
        state[k] = v.clone();
    }
    json!({"StartAt": "Ask", "States": {"Ask": state}})
}

async fn run_with(
    def: Value,
    input: Value,
    answer: impl FnOnce(TaskTokens, mpsc::UnboundedReceiver<(Value, TaskContext)>) -> tokio::task::JoinHandle<()>,
) -> ExecutionResult {
    let (tx, rx) = mpsc::unbounded_channel();
    let interpreter = Interpreter::new(notify_registry(tx));
    let worker = answer(interpreter.task_tokens(), rx);
    let result = interpreter.execute(&machine(def), "exec-1", input).await;
    worker.abort();
    result
}

fn failed(r: &ExecutionResult) -> (&str, &str) {
    match &r.status {
        ExecutionStatus::Failed { error, cause } => (error.as_str(), cause.as_str()),
        other => panic!("expected failure, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_task_waits_for_send_task_success_with_its_token() {
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let r =
        run_with(callback_machine(json!({"ResultPath": "$.reply"})), json!({"message": "hello"}), |tokens, mut rx| {
            tokio::spawn(async move {
                let (input, ctx) = rx.recv().await.unwrap();
                *s.lock().unwrap() = Some((input.clone(), ctx.context.clone()));
                tokio::time::sleep(Duration::from_secs(3600)).await;
                let token = input["TaskToken"].as_str().unwrap();
                tokens.send_success(token, json!({"approved": true})).unwrap();
            })
        })
        .await;
    assert_eq!(r.output(), Some(&json!({"message": "hello", "reply": {"approved": true}})));
    let (input, context) = seen.lock().unwrap().clone().unwrap();
    assert_eq!(input["Message"], json!("hello"));
    assert_eq!(context["Task"]["Token"], input["TaskToken"]);
    assert_eq!(
        r.event_types(),
        vec![
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskSubmitted",
            "TaskSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded"
        ]
    );
    let submitted = r.history.iter().find(|e| e.event_type == "TaskSubmitted").unwrap();
    assert_eq!(submitted.details["output"], json!("{\"MessageId\":\"m-1\"}"));
    assert_eq!(submitted.details["resource"], json!("notify.waitForTaskToken"));
}

#[tokio::test(start_paused = true)]
async fn send_task_failure_fails_the_task_through_catch() {
    let def = json!({"StartAt": "Ask", "States": {
        "Ask": {"Type": "Task", "Resource": "notify.waitForTaskToken",
                "Parameters": {"TaskToken.$": "$$.Task.Token"},
                "Catch": [{"ErrorEquals": ["Rejected"], "Next": "Handled"}], "End": true},
        "Handled": {"Type": "Pass", "End": true}
    }});
    let r = run_with(def, json!({}), |tokens, mut rx| {
        tokio::spawn(async move {
            let (input, _) = rx.recv().await.unwrap();
            tokens.send_failure(input["TaskToken"].as_str().unwrap(), "Rejected", "not today").unwrap();
        })
    })
    .await;
    assert_eq!(r.output(), Some(&json!({"Error": "Rejected", "Cause": "not today"})));
    assert!(r.event_types().contains(&"TaskFailed"));
}

#[tokio::test(start_paused = true)]
async fn without_a_callback_the_task_times_out() {
    let r = run_with(callback_machine(json!({"TimeoutSeconds": 5})), json!({"message": "m"}), |_tokens, mut rx| {
        tokio::spawn(async move { while rx.recv().await.is_some() {} })
    })
    .await;
    assert_eq!(failed(&r), ("States.Timeout", ""));
    assert_eq!(
        r.event_types(),
        vec![
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskSubmitted",
            "TaskTimedOut",
            "ExecutionFailed"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_long_task_alive() {
    let def = callback_machine(json!({"TimeoutSeconds": 600, "HeartbeatSecondsPath": "$.beat"}));
    let r = run_with(def, json!({"message": "m", "beat": 5}), |tokens, mut rx| {
        tokio::spawn(async move {
            let (input, _) = rx.recv().await.unwrap();
            let token = input["TaskToken"].as_str().unwrap().to_string();
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                tokens.send_heartbeat(&token).unwrap();
            }
            tokens.send_success(&token, json!("done")).unwrap();
        })
    })
    .await;
    assert_eq!(r.output(), Some(&json!("done")));
    let scheduled = r.history.iter().find(|e| e.event_type == "TaskScheduled").unwrap();
    assert_eq!(scheduled.details["heartbeatInSeconds"], json!(5));
    assert_eq!(scheduled.details["timeoutInSeconds"], json!(600));
}

#[tokio::test(start_paused = true)]
async fn a_missed_heartbeat_is_states_heartbeat_timeout() {
    let def = callback_machine(json!({"TimeoutSeconds": 600, "HeartbeatSeconds": 5,
        "Retry": [{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 3}]}));
    let tokens_seen = Arc::new(Mutex::new(Vec::new()));
    let seen = tokens_seen.clone();
    let r = run_with(def, json!({"message": "m"}), |tokens, mut rx| {
        tokio::spawn(async move {
            let (input, _) = rx.recv().await.unwrap();
            let token = input["TaskToken"].as_str().unwrap().to_string();
            seen.lock().unwrap().push(token.clone());
            tokio::time::sleep(Duration::from_secs(3)).await;
            tokens.send_heartbeat(&token).unwrap();
            // Then silence: the task gives up 5 s after this heartbeat.
            while rx.recv().await.is_some() {}
        })
    })
    .await;
    // States.Timeout retriers do not apply to heartbeat timeouts.
    assert_eq!(failed(&r), ("States.HeartbeatTimeout", ""));
    assert!(r.event_types().contains(&"TaskTimedOut"));
    // Tokens are opaque.
    let token = tokens_seen.lock().unwrap()[0].clone();
    assert!(token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
}

#[tokio::test]
async fn callbacks_for_unknown_tokens_are_rejected() {
    let interpreter = Interpreter::new(TaskRegistry::new());
    let tokens = interpreter.task_tokens();
    assert_eq!(tokens.send_success("nope", json!(1)), Err(TaskTokenError::NotWaiting { token: "nope".to_string() }));
    assert!(tokens.send_heartbeat("nope").is_err());
    assert!(tokens.waiting().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failing_handler_fails_the_task_without_waiting() {
    let mut r = TaskRegistry::new();
    r.register_fn("notify", |_input: Value, _ctx| async move {
        Err(beacon_asl::TaskFailure::new("Queue.Gone", "no queue"))
    });
    let interpreter = Interpreter::new(r);
    let result = interpreter.execute(&machine(callback_machine(json!({}))), "e", json!({"message": "m"})).await;
    assert_eq!(failed(&result), ("Queue.Gone", "no queue"));
    assert!(!result.event_types().contains(&"TaskSubmitted"));
    assert!(interpreter.task_tokens().waiting().is_empty());
}

// "TimeoutSeconds: If the execution runs longer than the specified seconds, the execution fails
// with a States.Timeout Error name" — the status is TIMED_OUT.
#[tokio::test(start_paused = true)]
async fn machine_timeout_seconds_times_the_execution_out() {
    let mut r = TaskRegistry::new();
    r.register_fn("slow", |_input: Value, _ctx| async move {
        tokio::time::sleep(Duration::from_secs(100)).await;
        Ok(json!("late"))
    });
    let def = json!({"TimeoutSeconds": 10, "StartAt": "Slow", "States": {"Slow": {"Type": "Task", "Resource": "slow", "End": true}}});
    let result = Interpreter::new(r.clone()).execute(&machine(def), "e", json!({})).await;
    assert_eq!(result.status, ExecutionStatus::TimedOut);
    assert_eq!(result.output(), None);
    let last = result.history.last().unwrap();
    assert_eq!(last.event_type, "ExecutionTimedOut");
    assert_eq!(last.details["error"], json!("States.Timeout"));
    let def = json!({"TimeoutSeconds": 1000, "StartAt": "Slow", "States": {"Slow": {"Type": "Task", "Resource": "slow", "End": true}}});
    let result = Interpreter::new(r).execute(&machine(def), "e", json!({})).await;
    assert_eq!(result.output(), Some(&json!("late")));
}

#[tokio::test(start_paused = true)]
async fn timeout_seconds_path_is_read_from_the_input() {
    let mut r = TaskRegistry::new();
    r.register_fn("slow", |_input: Value, _ctx| async move {
        tokio::time::sleep(Duration::from_secs(100)).await;
        Ok(json!("late"))
    });
    let def = json!({"StartAt": "Slow", "States": {"Slow": {"Type": "Task", "Resource": "slow", "TimeoutSecondsPath": "$.t", "End": true}}});
    let result = Interpreter::new(r.clone()).execute(&machine(def.clone()), "e", json!({"t": 5})).await;
    assert_eq!(failed(&result).0, "States.Timeout");
    let result = Interpreter::new(r.clone()).execute(&machine(def.clone()), "e", json!({"t": 500})).await;
    assert_eq!(result.output(), Some(&json!("late")));
    let result = Interpreter::new(r).execute(&machine(def), "e", json!({"t": "soon"})).await;
    let (error, cause) = failed(&result);
    assert_eq!(error, "States.Runtime");
    assert!(cause.contains("TimeoutSecondsPath") && cause.contains("soon"), "{cause}");
}
