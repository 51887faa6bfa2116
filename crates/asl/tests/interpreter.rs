//! Behaviour of the interpreter through the public API, with expectations from the AWS Step
//! Functions developer guide.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use beacon_asl::{
    ExecutionObserver, ExecutionResult, ExecutionStatus, HistoryEvent, Interpreter, Sleeper, StateMachine, TaskContext,
    TaskFailure, TaskRegistry,
};
use serde_json::{Value, json};

/// Records requested delays instead of waiting.
#[derive(Default)]
struct RecordingSleeper(Mutex<Vec<Duration>>);

impl RecordingSleeper {
    fn delays(&self) -> Vec<u64> {
        self.0.lock().unwrap().iter().map(|d| d.as_secs()).collect()
    }
}

#[async_trait]
impl Sleeper for RecordingSleeper {
    async fn sleep(&self, d: Duration) {
        self.0.lock().unwrap().push(d);
    }
}

fn machine(v: Value) -> StateMachine {
    StateMachine::from_value(&v).unwrap_or_else(|e| panic!("invalid test machine: {e}"))
}

async fn run(def: Value, registry: TaskRegistry, input: Value) -> (ExecutionResult, Arc<RecordingSleeper>) {
    let sleeper = Arc::new(RecordingSleeper::default());
    let result = Interpreter::new(registry).with_sleeper(sleeper.clone()).execute(&machine(def), "exec-1", input).await;
    (result, sleeper)
}

fn output(r: &ExecutionResult) -> &Value {
    r.output().unwrap_or_else(|| panic!("execution failed: {:?}", r.status))
}

fn failed(r: &ExecutionResult) -> (&str, &str) {
    match &r.status {
        ExecutionStatus::Failed { error, cause } => (error.as_str(), cause.as_str()),
        other => panic!("expected failure, got {other:?}"),
    }
}

/// A one-Task machine around `state` (which must not set Type/Resource/End).
fn task_machine(state: Value) -> Value {
    let mut s = json!({"Type": "Task", "Resource": "work", "End": true});
    for (k, v) in state.as_object().unwrap() {
        s[k] = v.clone();
    }
    json!({"StartAt": "Work", "States": {"Work": s}})
}

fn echo_registry() -> TaskRegistry {
    let mut r = TaskRegistry::new();
    r.register_fn("work", |input, _| async move { Ok(input) });
    r
}

// ---- Input and output processing ------------------------------------------------------------

// "Manipulate parameters in Step Functions workflows": InputPath example.
#[tokio::test]
async fn input_path_selects_part_of_the_input() {
    let input = json!({
        "comment": "Example for InputPath.",
        "dataset1": {"val1": 1, "val2": 2, "val3": 3},
        "dataset2": {"val1": "a", "val2": "b", "val3": "c"}
    });
    let (r, _) = run(task_machine(json!({"InputPath": "$.dataset2"})), echo_registry(), input).await;
    assert_eq!(output(&r), &json!({"val1": "a", "val2": "b", "val3": "c"}));
}

// Same page, ResultSelector example: only ClusterId and resourceType survive.
#[tokio::test]
async fn result_selector_then_result_path() {
    let mut registry = TaskRegistry::new();
    registry.register_fn("work", |_, _| async move {
        Ok(json!({
            "resourceType": "elasticmapreduce",
            "resource": "createCluster.sync",
            "output": {
                "SdkHttpMetadata": {"HttpStatusCode": 200},
                "SdkResponseMetadata": {"RequestId": "1234-5678-9012"},
                "ClusterId": "AKIAIOSFODNN7EXAMPLE"
            }
        }))
    });
    let def = task_machine(json!({
        "ResultSelector": {"ClusterId.$": "$.output.ClusterId", "ResourceType.$": "$.resourceType"},
        "ResultPath": "$.EMROutput"
    }));
    let (r, _) = run(def, registry, json!({"cluster": "x"})).await;
    assert_eq!(
        output(&r),
        &json!({"cluster": "x", "EMROutput": {"ClusterId": "AKIAIOSFODNN7EXAMPLE", "ResourceType": "elasticmapreduce"}})
    );
}

// "Specifying state output using ResultPath": the four examples with the same input and the
// task result "Hello, Step Functions!".
#[tokio::test]
async fn result_path_examples_from_the_docs() {
    let input = json!({"comment": "This is a test", "details": "Default example", "who": "Step Functions"});
    let mut registry = TaskRegistry::new();
    registry.register_fn("work", |_, _| async move { Ok(json!("Hello, Step Functions!")) });
    let cases = [
        (json!("$"), json!("Hello, Step Functions!")),
        (Value::Null, input.clone()),
        (
            json!("$.taskresult"),
            json!({"comment": "This is a test", "details": "Default example", "who": "Step Functions", "taskresult": "Hello, Step Functions!"}),
        ),
        (
            json!("$.strings.lambdaresult"),
            json!({"comment": "This is a test", "details": "Default example", "who": "Step Functions", "strings": {"lambdaresult": "Hello, Step Functions!"}}),
        ),
    ];
    for (result_path, expected) in cases {
        let (r, _) = run(task_machine(json!({"ResultPath": result_path})), registry.clone(), input.clone()).await;
        assert_eq!(output(&r), &expected, "ResultPath {result_path}");
    }
}

#[tokio::test]
async fn result_path_replaces_a_nested_node() {
    let mut registry = TaskRegistry::new();
    registry.register_fn("work", |_, _| async move { Ok(json!([6])) });
    let (r, _) = run(
        task_machine(json!({"ResultPath": "$.master.detail"})),
        registry,
        json!({"master": {"detail": [1, 2, 3], "keep": true}}),
    )
    .await;
    assert_eq!(output(&r), &json!({"master": {"detail": [6], "keep": true}}));
}

#[tokio::test]
async fn output_path_filters_the_combined_output() {
    let mut registry = TaskRegistry::new();
    registry.register_fn("work", |_, _| async move { Ok(json!({"Payload": {"n": 1}, "StatusCode": 200})) });
    let (r, _) =
        run(task_machine(json!({"ResultPath": "$.result", "OutputPath": "$.result.Payload"})), registry, json!({}))
            .await;
    assert_eq!(output(&r), &json!({"n": 1}));
}

#[tokio::test]
async fn null_input_and_output_paths_give_empty_objects() {
    let seen = Arc::new(Mutex::new(Value::Null));
    let mut registry = TaskRegistry::new();
    let s = seen.clone();
    registry.register_fn("work", move |input, _| {
        let s = s.clone();
        async move {
            *s.lock().unwrap() = input;
            Ok(json!(1))
        }
    });
    let (r, _) = run(task_machine(json!({"InputPath": null, "OutputPath": null})), registry, json!({"a": 1})).await;
    assert_eq!(*seen.lock().unwrap(), json!({}));
    assert_eq!(output(&r), &json!({}));
}

// Parameters are computed from the input *after* InputPath.
#[tokio::test]
async fn parameters_apply_after_input_path() {
    let def = json!({"StartAt": "P", "States": {"P": {
        "Type": "Pass",
        "InputPath": "$.product",
        "Parameters": {"size.$": "$.details.size", "static": "foo", "nested": [{"sku.$": "$.sku"}]},
        "End": true
    }}});
    let (r, _) = run(def, TaskRegistry::new(), json!({"product": {"details": {"size": "small"}, "sku": "2317"}})).await;
    assert_eq!(output(&r), &json!({"size": "small", "static": "foo", "nested": [{"sku": "2317"}]}));
}

#[tokio::test]
async fn intrinsic_functions_in_parameters() {
    let def = json!({"StartAt": "P", "States": {"P": {
        "Type": "Pass",
        "Parameters": {
            "greeting.$": "States.Format('Hello, my name is {}.', $.name)",
            "parsed.$": "States.StringToJson($.text)",
            "text.$": "States.JsonToString($.obj)",
            "list.$": "States.Array($.name, 1, true)"
        },
        "End": true
    }}});
    let (r, _) = run(def, TaskRegistry::new(), json!({"name": "Arnav", "text": "{\"a\":1}", "obj": {"b": [1]}})).await;
    assert_eq!(
        output(&r),
        &json!({
            "greeting": "Hello, my name is Arnav.",
            "parsed": {"a": 1},
            "text": "{\"b\":[1]}",
            "list": ["Arnav", 1, true]
        })
    );
}

#[tokio::test]
async fn pass_result_with_result_path() {
    // "Pass workflow state" page: Result placed at $.coords.
    let def = json!({"StartAt": "P", "States": {"P": {
        "Type": "Pass", "Result": {"x-datum": 0.381018, "y-datum": 622.2269926397355},
        "ResultPath": "$.coords", "End": true
    }}});
    let (r, _) = run(def, TaskRegistry::new(), json!({"georefOf": "Home"})).await;
    assert_eq!(output(&r), &json!({"georefOf": "Home", "coords": {"x-datum": 0.381018, "y-datum": 622.2269926397355}}));
}

#[tokio::test]
async fn missing_input_path_is_a_runtime_error_with_jayway_wording() {
    let def = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": "$.a.b", "End": true}}});
    let (r, _) = run(def, TaskRegistry::new(), json!({})).await;
    assert_eq!(
        failed(&r),
        (
            "States.Runtime",
            "An error occurred while executing the state 'A' (entered at the event id #2). Invalid path '$.a.b' : Missing property in path $['a']"
        )
    );
}

#[tokio::test]
async fn missing_parameters_path_names_the_field() {
    let def = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"x.$": "$.nope"}, "End": true}}});
    let (r, _) = run(def, TaskRegistry::new(), json!({"a": 1})).await;
    let (error, cause) = failed(&r);
    assert_eq!(error, "States.Runtime");
    assert!(
        cause.ends_with(
            "The JSONPath '$.nope' specified for the field 'x.$' could not be found in the input '{\"a\":1}'"
        ),
        "{cause}"
    );
}

#[tokio::test]
async fn result_path_into_a_non_object_fails() {
    let def = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": 1, "ResultPath": "$.x", "End": true}}});
    let (r, _) = run(def, TaskRegistry::new(), json!("text")).await;
    assert_eq!(failed(&r).0, "States.ResultPathMatchFailure");
}

// ---- Context object -------------------------------------------------------------------------

#[tokio::test]
async fn context_object_fields() {
    let def = json!({"StartAt": "Ctx", "States": {"Ctx": {
        "Type": "Pass",
        "Parameters": {
            "execId.$": "$$.Execution.Id",
            "execName.$": "$$.Execution.Name",
            "start.$": "$$.Execution.StartTime",
            "input.$": "$$.Execution.Input",
            "state.$": "$$.State.Name",
            "entered.$": "$$.State.EnteredTime",
            "retry.$": "$$.State.RetryCount",
            "smId.$": "$$.StateMachine.Id",
            "smName.$": "$$.StateMachine.Name"
        },
        "End": true
    }}});
    let m = machine(def).with_name("beacon");
    let r = Interpreter::new(TaskRegistry::new()).execute(&m, "run-7", json!({"k": 1})).await;
    let out = output(&r);
    assert_eq!(out["execName"], "run-7");
    assert!(out["execId"].as_str().unwrap().ends_with(":execution:beacon:run-7"));
    assert_eq!(out["input"], json!({"k": 1}));
    assert_eq!(out["state"], "Ctx");
    assert_eq!(out["retry"], 0);
    assert!(out["smId"].as_str().unwrap().ends_with(":stateMachine:beacon"));
    assert_eq!(out["smName"], "beacon");
    for ts in ["start", "entered"] {
        let s = out[ts].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.ends_with('Z'), "{ts}: {s}");
    }
}

#[tokio::test]
async fn task_context_carries_names_attempt_and_context() {
    let seen: Arc<Mutex<Vec<TaskContext>>> = Arc::default();
    let mut registry = TaskRegistry::new();
    let s = seen.clone();
    registry.register_fn("work", move |_, ctx: TaskContext| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(ctx.clone());
            if ctx.attempt < 3 { Err(TaskFailure::new("Beacon.Throttled", "slow down")) } else { Ok(json!("done")) }
        }
    });
    let def = task_machine(json!({
        "Parameters": {"retry.$": "$$.State.RetryCount"},
        "Retry": [{"ErrorEquals": ["Beacon.Throttled"], "MaxAttempts": 5}]
    }));
    let (r, _) = run(def, registry, json!({})).await;
    assert_eq!(output(&r), &json!("done"));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.iter().map(|c| c.attempt).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(seen.iter().all(|c| c.execution_name == "exec-1" && c.state_name == "Work"));
    assert_eq!(seen[2].context["State"]["RetryCount"], 2);
}

// ---- Choice -----------------------------------------------------------------------------------

fn choice_machine() -> Value {
    json!({"StartAt": "Choose", "States": {
        "Choose": {"Type": "Choice", "Choices": [
            {"Variable": "$.n", "NumericLessThan": 0, "Next": "Negative"},
            {"And": [{"Variable": "$.n", "NumericGreaterThanEquals": 0}, {"Variable": "$.n", "NumericLessThan": 10}], "Next": "Small"},
            {"Not": {"Variable": "$.kind", "StringMatches": "big*"}, "Next": "Other"}
        ], "Default": "Big"},
        "Negative": {"Type": "Pass", "Result": "negative", "End": true},
        "Small": {"Type": "Pass", "Result": "small", "End": true},
        "Other": {"Type": "Pass", "Result": "other", "End": true},
        "Big": {"Type": "Pass", "Result": "big", "End": true}
    }})
}

#[tokio::test]
async fn choice_routes_by_first_matching_rule_and_default() {
    for (input, expected) in [
        (json!({"n": -1}), "negative"),
        (json!({"n": 5}), "small"),
        (json!({"n": 50, "kind": "medium"}), "other"),
        (json!({"n": 50, "kind": "bigger"}), "big"),
    ] {
        let (r, _) = run(choice_machine(), TaskRegistry::new(), input.clone()).await;
        assert_eq!(output(&r), &json!(expected), "{input}");
    }
}

#[tokio::test]
async fn no_choice_matched_without_default() {
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "BooleanEquals": true, "Next": "Y"}]},
        "Y": {"Type": "Succeed"}
    }});
    let (r, _) = run(def, TaskRegistry::new(), json!({"x": false})).await;
    assert_eq!(failed(&r).0, "States.NoChoiceMatched");
    assert_eq!(r.event_types(), vec!["ExecutionStarted", "ChoiceStateEntered", "ExecutionFailed"]);
}

#[tokio::test]
async fn choice_output_path_applies() {
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "OutputPath": "$.keep", "Choices": [{"Variable": "$.go", "IsPresent": true, "Next": "Y"}]},
        "Y": {"Type": "Succeed"}
    }});
    let (r, _) = run(def, TaskRegistry::new(), json!({"go": 1, "keep": {"a": 1}})).await;
    assert_eq!(output(&r), &json!({"a": 1}));
}

// ---- Retry -----------------------------------------------------------------------------------

fn failing_registry(calls: Arc<AtomicUsize>, error: &'static str, succeed_on: usize) -> TaskRegistry {
    let mut r = TaskRegistry::new();
    r.register_fn("work", move |_, _| {
        let calls = calls.clone();
        async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= succeed_on {
                Ok(json!({"attempts": n}))
            } else {
                Err(TaskFailure::new(error, format!("attempt {n} failed")))
            }
        }
    });
    r
}

// "Handling errors in Step Functions workflows": IntervalSeconds 3, MaxAttempts 2, BackoffRate
// 1.5 waits 3 then 4.5 seconds; defaults are 1 second, 3 attempts, rate 2.0.
#[tokio::test]
async fn retry_backoff_and_defaults() {
    let calls = Arc::new(AtomicUsize::new(0));
    let def = task_machine(json!({"Retry": [{"ErrorEquals": ["States.ALL"]}]}));
    let (r, sleeper) = run(def, failing_registry(calls.clone(), "Boom", 99), json!({})).await;
    assert_eq!(failed(&r), ("Boom", "attempt 4 failed"));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(sleeper.delays(), vec![1, 2, 4]);

    let def = task_machine(
        json!({"Retry": [{"ErrorEquals": ["Boom"], "IntervalSeconds": 3, "MaxAttempts": 2, "BackoffRate": 1.5}]}),
    );
    let (_, sleeper) = run(def, failing_registry(Arc::default(), "Boom", 99), json!({})).await;
    let millis: Vec<u128> = sleeper.0.lock().unwrap().iter().map(|d| d.as_millis()).collect();
    assert_eq!(millis, vec![3000, 4500]);
}

#[tokio::test]
async fn retry_max_delay_and_zero_attempts() {
    let def = task_machine(
        json!({"Retry": [{"ErrorEquals": ["Boom"], "IntervalSeconds": 10, "MaxAttempts": 4, "MaxDelaySeconds": 25}]}),
    );
    let (_, sleeper) = run(def, failing_registry(Arc::default(), "Boom", 99), json!({})).await;
    assert_eq!(sleeper.delays(), vec![10, 20, 25, 25]);

    let calls = Arc::new(AtomicUsize::new(0));
    let def = task_machine(json!({"Retry": [{"ErrorEquals": ["Boom"], "MaxAttempts": 0}]}));
    let (r, sleeper) = run(def, failing_registry(calls.clone(), "Boom", 99), json!({})).await;
    assert_eq!(failed(&r).0, "Boom");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(sleeper.delays().is_empty());
}

#[tokio::test]
async fn full_jitter_delays_do_not_exceed_the_backoff() {
    let def = task_machine(
        json!({"Retry": [{"ErrorEquals": ["Boom"], "IntervalSeconds": 8, "MaxAttempts": 3, "JitterStrategy": "FULL"}]}),
    );
    let (_, sleeper) = run(def, failing_registry(Arc::default(), "Boom", 99), json!({})).await;
    let delays = sleeper.0.lock().unwrap().clone();
    assert_eq!(delays.len(), 3);
    for (d, cap) in delays.iter().zip([8, 16, 32]) {
        assert!(*d <= Duration::from_secs(cap), "{d:?} > {cap}s");
    }
}

// Each retrier keeps its own count, and the first one whose ErrorEquals matches is used.
#[tokio::test]
async fn retriers_are_matched_in_order_with_own_counters() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut registry = TaskRegistry::new();
    let c = calls.clone();
    registry.register_fn("work", move |_, _| {
        let c = c.clone();
        async move {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            // A, B, A, B, ...
            let error = if n % 2 == 1 { "A" } else { "B" };
            Err::<Value, _>(TaskFailure::new(error, format!("call {n}")))
        }
    });
    let def = task_machine(json!({"Retry": [
        {"ErrorEquals": ["A"], "MaxAttempts": 2, "IntervalSeconds": 1, "BackoffRate": 1},
        {"ErrorEquals": ["B", "C"], "MaxAttempts": 1, "IntervalSeconds": 7},
        {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5, "IntervalSeconds": 100}
    ]}));
    let (r, sleeper) = run(def, registry, json!({})).await;
    // call1 A (retry A#1), call2 B (retry B#1), call3 A (retry A#2), call4 B (B exhausted: fail).
    assert_eq!(failed(&r), ("B", "call 4"));
    assert_eq!(sleeper.delays(), vec![1, 7, 1]);
}

#[tokio::test]
async fn task_failed_matches_everything_but_timeouts() {
    let def = task_machine(json!({"Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 1}]}));
    let calls = Arc::new(AtomicUsize::new(0));
    let (r, _) = run(def, failing_registry(calls.clone(), "Custom.Error", 2), json!({})).await;
    assert_eq!(output(&r), &json!({"attempts": 2}));
}

// ---- Catch -------------------------------------------------------------------------------------

fn catch_machine(catcher: Value) -> Value {
    json!({"StartAt": "Work", "States": {
        "Work": {"Type": "Task", "Resource": "work", "Catch": [catcher], "OutputPath": "$.never", "Next": "Done"},
        "Done": {"Type": "Pass", "End": true},
        "Recover": {"Type": "Pass", "End": true}
    }})
}

#[tokio::test]
async fn catch_places_error_output_at_result_path() {
    let input = json!({"doc": "a.pdf"});
    let cases = [
        (
            json!({"ErrorEquals": ["States.ALL"], "Next": "Recover"}),
            json!({"Error": "Boom", "Cause": "attempt 1 failed"}),
        ),
        (
            json!({"ErrorEquals": ["Boom"], "Next": "Recover", "ResultPath": "$.error"}),
            json!({"doc": "a.pdf", "error": {"Error": "Boom", "Cause": "attempt 1 failed"}}),
        ),
        (json!({"ErrorEquals": ["States.TaskFailed"], "Next": "Recover", "ResultPath": null}), input.clone()),
    ];
    for (catcher, expected) in cases {
        let (r, _) =
            run(catch_machine(catcher.clone()), failing_registry(Arc::default(), "Boom", 99), input.clone()).await;
        // OutputPath of the failed state does not apply to the catcher's output.
        assert_eq!(output(&r), &expected, "{catcher}");
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
    }
}

#[tokio::test]
async fn uncaught_error_fails_the_execution() {
    let (r, _) = run(
        catch_machine(json!({"ErrorEquals": ["Other"], "Next": "Recover"})),
        failing_registry(Arc::default(), "Boom", 99),
        json!({}),
    )
    .await;
    assert_eq!(failed(&r), ("Boom", "attempt 1 failed"));
    assert_eq!(
        r.event_types(),
        vec!["ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskStarted", "TaskFailed", "ExecutionFailed"]
    );
}

#[tokio::test]
async fn retry_then_catch() {
    let def = json!({"StartAt": "Work", "States": {
        "Work": {"Type": "Task", "Resource": "work", "End": true,
                 "Retry": [{"ErrorEquals": ["Boom"], "MaxAttempts": 2}],
                 "Catch": [{"ErrorEquals": ["Boom"], "Next": "Recover", "ResultPath": "$.err"}]},
        "Recover": {"Type": "Pass", "End": true}
    }});
    let calls = Arc::new(AtomicUsize::new(0));
    let (r, sleeper) = run(def, failing_registry(calls.clone(), "Boom", 99), json!({})).await;
    assert_eq!(output(&r), &json!({"err": {"Error": "Boom", "Cause": "attempt 3 failed"}}));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(sleeper.delays(), vec![1, 2]);
}

#[tokio::test]
async fn runtime_errors_are_not_caught() {
    let def = json!({"StartAt": "Work", "States": {
        "Work": {"Type": "Task", "Resource": "work", "InputPath": "$.missing", "End": true,
                 "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recover"}]},
        "Recover": {"Type": "Pass", "End": true}
    }});
    let (r, _) = run(def, echo_registry(), json!({})).await;
    assert_eq!(failed(&r).0, "States.Runtime");
}

#[tokio::test]
async fn unknown_resource_is_a_runtime_failure_and_check_resources_reports_it() {
    let def = json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "nobody", "End": true}}});
    let (r, _) = run(def.clone(), TaskRegistry::new(), json!({})).await;
    let (error, cause) = failed(&r);
    assert_eq!(error, "States.Runtime");
    assert!(cause.contains("'nobody'"), "{cause}");
    let err = machine(def).check_resources(&echo_registry()).unwrap_err();
    assert_eq!(err.issues[0].pointer, "/States/A/Resource");
    assert!(machine(task_machine(json!({}))).check_resources(&echo_registry()).is_ok());
}

// ---- Timeouts ------------------------------------------------------------------------------------

fn hanging_registry() -> TaskRegistry {
    let mut r = TaskRegistry::new();
    r.register_fn("work", |_, _| async move {
        futures::future::pending::<()>().await;
        Ok(json!(null))
    });
    r
}

#[tokio::test(start_paused = true)]
async fn timeout_seconds_raises_states_timeout() {
    let (r, _) = run(task_machine(json!({"TimeoutSeconds": 5})), hanging_registry(), json!({})).await;
    assert_eq!(failed(&r).0, "States.Timeout");
    assert_eq!(
        r.event_types(),
        vec!["ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskStarted", "TaskTimedOut", "ExecutionFailed"]
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_caught_by_name_but_not_by_task_failed() {
    let def = |errors: Value| {
        json!({"StartAt": "Work", "States": {
            "Work": {"Type": "Task", "Resource": "work", "TimeoutSeconds": 1, "End": true,
                     "Catch": [{"ErrorEquals": errors, "Next": "Recover"}]},
            "Recover": {"Type": "Pass", "End": true}
        }})
    };
    let (r, _) = run(def(json!(["States.TaskFailed"])), hanging_registry(), json!({})).await;
    assert_eq!(failed(&r).0, "States.Timeout");
    let (r, _) = run(def(json!(["States.Timeout"])), hanging_registry(), json!({})).await;
    assert_eq!(output(&r), &json!({"Error": "States.Timeout"}));
}

// ---- Map ----------------------------------------------------------------------------------------

/// Counts concurrent invocations; each call yields a few times so others can start.
fn concurrency_registry(in_flight: Arc<AtomicUsize>, peak: Arc<AtomicUsize>) -> TaskRegistry {
    let mut r = TaskRegistry::new();
    r.register_fn("work", move |input: Value, _| {
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            // Later items finish first, so the output order proves results are re-ordered.
            let n = input["n"].as_u64().unwrap_or(0);
            for _ in 0..(20 - n) {
                tokio::task::yield_now().await;
            }
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(json!(n * 10))
        }
    });
    r
}

fn map_machine(max_concurrency: u64) -> Value {
    json!({"StartAt": "M", "States": {"M": {
        "Type": "Map",
        "ItemsPath": "$.items",
        "MaxConcurrency": max_concurrency,
        "ItemSelector": {"n.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index", "batch.$": "$.batch"},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "work", "End": true}
        }},
        "ResultPath": "$.results",
        "End": true
    }}})
}

#[tokio::test]
async fn map_runs_items_concurrently_up_to_the_limit_in_item_order() {
    for (max, expected_peak) in [(0, 8), (3, 3), (1, 1)] {
        let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let items: Vec<u64> = (1..=8).collect();
        let (r, _) = run(
            map_machine(max),
            concurrency_registry(in_flight, peak.clone()),
            json!({"items": items, "batch": "b1"}),
        )
        .await;
        let out = output(&r);
        assert_eq!(out["results"], json!([10, 20, 30, 40, 50, 60, 70, 80]), "MaxConcurrency {max}");
        assert_eq!(peak.load(Ordering::SeqCst), expected_peak, "MaxConcurrency {max}");
    }
}

// "Map state" page, ItemSelector example: each item is rebuilt from the context object.
#[tokio::test]
async fn map_item_selector_sees_index_value_and_input() {
    let def = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map",
        "ItemsPath": "$.detail.shipped",
        "ItemSelector": {"parcel.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index", "courier.$": "$.detail.delivery-partner"},
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}},
        "End": true
    }}});
    let input = json!({"detail": {"delivery-partner": "UQS", "shipped": [{"prod": "R31"}, {"prod": "S39"}]}});
    let (r, _) = run(def, TaskRegistry::new(), input).await;
    assert_eq!(
        output(&r),
        &json!([
            {"parcel": {"prod": "R31"}, "index": 0, "courier": "UQS"},
            {"parcel": {"prod": "S39"}, "index": 1, "courier": "UQS"}
        ])
    );
}

#[tokio::test]
async fn legacy_iterator_and_parameters() {
    let def = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map",
        "Parameters": {"v.$": "$$.Map.Item.Value"},
        "Iterator": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}},
        "End": true
    }}});
    let (r, _) = run(def, TaskRegistry::new(), json!([1, 2])).await;
    assert_eq!(output(&r), &json!([{"v": 1}, {"v": 2}]));
}

fn item_failing_registry(bad: u64) -> TaskRegistry {
    let mut r = TaskRegistry::new();
    r.register_fn("work", move |input: Value, _| async move {
        if input == json!(bad) { Err(TaskFailure::new("Item.Bad", format!("item {bad} is bad"))) } else { Ok(input) }
    });
    r
}

#[tokio::test]
async fn a_failed_iteration_fails_the_map_and_can_be_caught() {
    let def = |catch: Value| {
        json!({"StartAt": "M", "States": {
            "M": {"Type": "Map", "MaxConcurrency": 1, "Catch": catch, "Next": "Done",
                  "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "work", "End": true}}}},
            "Done": {"Type": "Pass", "End": true},
            "Recover": {"Type": "Pass", "End": true}
        }})
    };
    let (r, _) =
        run(def(json!([{"ErrorEquals": ["Other"], "Next": "Recover"}])), item_failing_registry(2), json!([1, 2, 3]))
            .await;
    assert_eq!(failed(&r), ("Item.Bad", "item 2 is bad"));
    let types = r.event_types();
    assert!(types.contains(&"MapIterationFailed") && types.contains(&"MapStateFailed"));
    // Item 3 never starts: MaxConcurrency 1 and the Map stopped at item 2.
    assert_eq!(types.iter().filter(|t| **t == "MapIterationStarted").count(), 2);

    let (r, _) = run(
        def(json!([{"ErrorEquals": ["Item.Bad"], "Next": "Recover", "ResultPath": null}])),
        item_failing_registry(2),
        json!([1, 2, 3]),
    )
    .await;
    assert_eq!(output(&r), &json!([1, 2, 3]));
}

#[tokio::test]
async fn caught_map_failure_continues_at_the_catcher() {
    let def = json!({"StartAt": "M", "States": {
        "M": {"Type": "Map", "ItemsPath": "$.items", "Next": "Done",
              "Catch": [{"ErrorEquals": ["Item.Bad"], "Next": "Recover", "ResultPath": "$.error"}],
              "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "work", "End": true}}}},
        "Done": {"Type": "Pass", "End": true},
        "Recover": {"Type": "Pass", "End": true}
    }});
    let (r, _) = run(def, item_failing_registry(2), json!({"items": [1, 2, 3]})).await;
    assert_eq!(output(&r), &json!({"items": [1, 2, 3], "error": {"Error": "Item.Bad", "Cause": "item 2 is bad"}}));
    let types = r.event_types();
    let tail = &types[types.len() - 5..];
    assert_eq!(tail, ["MapStateFailed", "MapStateExited", "PassStateEntered", "PassStateExited", "ExecutionSucceeded"]);
}

#[tokio::test]
async fn map_retry_reruns_all_items() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut registry = TaskRegistry::new();
    let c = calls.clone();
    registry.register_fn("work", move |input: Value, _| {
        let c = c.clone();
        async move {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            // The second call (item 2 of the first run) fails once.
            if n == 2 { Err(TaskFailure::new("Flaky", "once")) } else { Ok(input) }
        }
    });
    let def = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "MaxConcurrency": 1, "End": true,
        "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 2}],
        "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "work", "End": true}}}
    }}});
    let (r, sleeper) = run(def, registry, json!(["a", "b", "c"])).await;
    assert_eq!(output(&r), &json!(["a", "b", "c"]));
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(sleeper.delays(), vec![2]);
    assert_eq!(r.event_types().iter().filter(|t| **t == "MapStateStarted").count(), 2);
}

#[tokio::test]
async fn items_path_must_select_an_array() {
    let def = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "ItemsPath": "$.items", "End": true,
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}
    }}});
    let (r, _) = run(def.clone(), TaskRegistry::new(), json!({"items": {"a": 1}})).await;
    assert_eq!(failed(&r).0, "States.Runtime");
    let (r, _) = run(def, TaskRegistry::new(), json!({})).await;
    let (error, cause) = failed(&r);
    assert_eq!(error, "States.Runtime");
    assert!(cause.ends_with("Invalid path '$.items' : No results for path: $['items']"), "{cause}");
}

// ---- Fail, Succeed, Parallel, Wait ------------------------------------------------------------

#[tokio::test]
async fn fail_state_error_and_cause() {
    let def = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Doc.Invalid", "Cause": "no pages"}}});
    let (r, _) = run(def, TaskRegistry::new(), json!({})).await;
    assert_eq!(failed(&r), ("Doc.Invalid", "no pages"));
    assert_eq!(r.event_types(), vec!["ExecutionStarted", "FailStateEntered", "ExecutionFailed"]);

    let def = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "States.Format('bad {}', $.n)"}}});
    let (r, _) = run(def, TaskRegistry::new(), json!({"e": "Dyn.Error", "n": 3})).await;
    assert_eq!(failed(&r), ("Dyn.Error", "bad 3"));
}

#[tokio::test]
async fn succeed_state_applies_paths() {
    let def = json!({"StartAt": "S", "States": {"S": {"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"}}});
    let (r, _) = run(def, TaskRegistry::new(), json!({"a": {"b": 7}})).await;
    assert_eq!(output(&r), &json!(7));
}

#[tokio::test]
async fn parallel_branches_results_in_branch_order() {
    let def = json!({"StartAt": "P", "States": {"P": {
        "Type": "Parallel", "End": true, "ResultPath": "$.out",
        "Branches": [
            {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "a", "End": true}}},
            {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "work", "End": true}}}
        ]
    }}});
    let (r, _) = run(def, echo_registry(), json!({"x": 1})).await;
    assert_eq!(output(&r), &json!({"x": 1, "out": ["a", {"x": 1}]}));
}

#[tokio::test]
async fn wait_goes_through_the_sleeper() {
    let def = json!({"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 30, "Next": "W2"},
        "W2": {"Type": "Wait", "SecondsPath": "$.s", "End": true}
    }});
    let (r, sleeper) = run(def, TaskRegistry::new(), json!({"s": 5})).await;
    assert_eq!(output(&r), &json!({"s": 5}));
    assert_eq!(sleeper.delays(), vec![30, 5]);
}

// ---- History -------------------------------------------------------------------------------------

#[derive(Default)]
struct Collect(Mutex<Vec<HistoryEvent>>);

impl ExecutionObserver for Collect {
    fn on_event(&self, event: &HistoryEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

#[tokio::test]
async fn history_events_have_aws_names_ids_and_details() {
    let observer = Arc::new(Collect::default());
    let def = json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Next": "T"},
        "T": {"Type": "Task", "Resource": "work", "Next": "S"},
        "S": {"Type": "Succeed"}
    }});
    let r = Interpreter::new(echo_registry())
        .with_observer(observer.clone())
        .execute(&machine(def), "exec-1", json!({"a": 1}))
        .await;
    assert_eq!(
        r.event_types(),
        vec![
            "ExecutionStarted",
            "PassStateEntered",
            "PassStateExited",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskSucceeded",
            "TaskStateExited",
            "SucceedStateEntered",
            "SucceedStateExited",
            "ExecutionSucceeded"
        ]
    );
    for (i, e) in r.history.iter().enumerate() {
        assert_eq!(e.id, i as u64 + 1);
        assert_eq!(e.previous_event_id, i as u64, "{}", e.event_type);
    }
    assert_eq!(*observer.0.lock().unwrap(), r.history);
    let entered = serde_json::to_value(&r.history[1]).unwrap();
    assert_eq!(entered["type"], "PassStateEntered");
    assert_eq!(entered["previousEventId"], 1);
    assert_eq!(entered["stateEnteredEventDetails"]["name"], "P");
    assert_eq!(entered["stateEnteredEventDetails"]["input"], "{\"a\":1}");
    let done = serde_json::to_value(r.history.last().unwrap()).unwrap();
    assert_eq!(done["executionSucceededEventDetails"]["output"], "{\"a\":1}");
}

#[tokio::test]
async fn map_history_is_consistent_under_concurrency() {
    let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, _) =
        run(map_machine(0), concurrency_registry(in_flight, peak), json!({"items": [1, 2, 3, 4], "batch": 1})).await;
    let types = r.event_types();
    assert_eq!(types.iter().filter(|t| **t == "MapIterationStarted").count(), 4);
    assert_eq!(types.iter().filter(|t| **t == "MapIterationSucceeded").count(), 4);
    assert_eq!(types[..4], ["ExecutionStarted", "MapStateEntered", "MapStateStarted", "MapIterationStarted"]);
    assert_eq!(types[types.len() - 3..], ["MapStateSucceeded", "MapStateExited", "ExecutionSucceeded"]);
    for (i, e) in r.history.iter().enumerate() {
        assert_eq!(e.id, i as u64 + 1);
        assert!(e.previous_event_id < e.id);
    }
    let started = serde_json::to_value(&r.history[2]).unwrap();
    assert_eq!(started["mapStateStartedEventDetails"]["length"], 4);
}

#[tokio::test]
async fn a_failure_aborts_the_iterations_still_running() {
    let mut registry = TaskRegistry::new();
    registry.register_fn("work", |input: Value, _| async move {
        if input == json!(1) {
            return Err(TaskFailure::new("Item.Bad", "one"));
        }
        futures::future::pending::<()>().await;
        Ok(input)
    });
    let def = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": true,
        "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "work", "End": true}}}
    }}});
    let (r, _) = run(def, registry, json!([0, 1, 2])).await;
    assert_eq!(failed(&r), ("Item.Bad", "one"));
    let aborted: Vec<&Value> =
        r.history.iter().filter(|e| e.event_type == "MapIterationAborted").map(|e| &e.details["index"]).collect();
    assert!(aborted.contains(&&json!(0)), "{aborted:?}");
    // Every iteration that started ends in exactly one terminal event.
    let count = |t: &str| r.history.iter().filter(|e| e.event_type == t).count();
    assert_eq!(
        count("MapIterationStarted"),
        count("MapIterationSucceeded") + count("MapIterationFailed") + count("MapIterationAborted")
    );
}

#[test]
fn executions_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_shared<T: Send + Sync + Clone>() {}
    assert_shared::<StateMachine>();
    assert_shared::<TaskRegistry>();
    assert_shared::<Interpreter>();
    let m = machine(json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}));
    let interpreter = Interpreter::new(TaskRegistry::new());
    let fut = interpreter.execute(&m, "e", json!({}));
    assert_send(&fut);
}
