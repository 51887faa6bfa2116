//! Workflow variables (`Assign`, `$name`) in the JSONPath dialect, with the behaviour the AWS
//! Step Functions developer guide describes ("Passing data between states with variables").

use beacon_asl::{ExecutionResult, ExecutionStatus, Interpreter, StateMachine, TaskRegistry};
use serde_json::{Value, json};

fn machine(v: Value) -> StateMachine {
    StateMachine::from_value(&v).unwrap_or_else(|e| panic!("invalid test machine: {e}"))
}

async fn run(def: Value, input: Value) -> ExecutionResult {
    let mut r = TaskRegistry::new();
    r.register_fn("echo", |input, _| async move { Ok(input) });
    r.register_fn("lookup", |_input, _| async move { Ok(json!({"Payload": {"price": 12, "currency": "EUR"}})) });
    r.register_fn("boom", |_input, _| async move { Err(beacon_asl::TaskFailure::new("Out.Of.Stock", "none left")) });
    Interpreter::new(r).execute(&machine(def), "exec-1", input).await
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

#[tokio::test]
async fn variables_are_read_by_later_states_in_every_kind_of_field() {
    let r = run(
        json!({"StartAt": "Set", "States": {
            "Set": {"Type": "Pass", "Assign": {"limit": 3, "order": {"id": "o-1", "items": ["a", "b"]}, "who.$": "$.user"},
                    "Next": "Check"},
            "Check": {"Type": "Choice", "Choices": [
                {"Variable": "$order.items[1]", "StringEquals": "b", "Next": "Use"}
            ], "Default": "Nope"},
            "Nope": {"Type": "Fail", "Error": "Wrong.Branch"},
            "Use": {"Type": "Task", "Resource": "echo", "InputPath": "$order", "Parameters": {
                "id.$": "$.id",
                "limit.$": "$limit",
                "greeting.$": "States.Format('hi {}, {} items', $who, States.ArrayLength($order.items))"
            }, "End": true}
        }}),
        json!({"user": "ada"}),
    )
    .await;
    assert_eq!(output(&r), &json!({"id": "o-1", "limit": 3, "greeting": "hi ada, 2 items"}));
}

// "Every expression in a state reads the values from state entry": a state does not see its
// own assignments, and all of its Assign entries are evaluated against the same values.
#[tokio::test]
async fn assignments_take_effect_when_the_state_exits() {
    let r = run(
        json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Assign": {"x": 1}, "Next": "B"},
            "B": {"Type": "Pass", "Assign": {"x": 2, "previous.$": "$x"}, "Parameters": {"seen.$": "$x"}, "Next": "C"},
            "C": {"Type": "Pass", "Parameters": {"x.$": "$x", "previous.$": "$previous"}, "End": true}
        }}),
        json!({}),
    )
    .await;
    assert_eq!(output(&r), &json!({"x": 2, "previous": 1}));
    let exited: Vec<&Value> =
        r.history.iter().filter(|e| e.event_type == "PassStateExited").map(|e| &e.details).collect();
    assert_eq!(exited[0]["assignedVariables"], json!({"x": "1"}));
    assert_eq!(exited[1]["assignedVariables"], json!({"x": "2", "previous": "1"}));
    assert_eq!(exited[1]["assignedVariablesDetails"], json!({"truncated": false}));
    assert_eq!(exited[1]["output"], json!("{\"seen\":1}"));
    assert!(exited[2].get("assignedVariables").is_none());
}

// In a Task, `$` in Assign is the task's result, before ResultSelector.
#[tokio::test]
async fn task_assign_sees_the_raw_result() {
    let r = run(
        json!({"StartAt": "Price", "States": {
            "Price": {"Type": "Task", "Resource": "lookup",
                      "Assign": {"price.$": "$.Payload.price"},
                      "ResultSelector": {"currency.$": "$.Payload.currency"},
                      "ResultPath": "$.lookup", "Next": "Show"},
            "Show": {"Type": "Pass", "Parameters": {"price.$": "$price", "input.$": "$"}, "End": true}
        }}),
        json!({"sku": 7}),
    )
    .await;
    assert_eq!(output(&r), &json!({"price": 12, "input": {"sku": 7, "lookup": {"currency": "EUR"}}}));
}

// A catcher's Assign sees the error output.
#[tokio::test]
async fn catch_assign_sees_the_error_output() {
    let r = run(
        json!({"StartAt": "Buy", "States": {
            "Buy": {"Type": "Task", "Resource": "boom", "Assign": {"bought": true}, "Catch": [
                {"ErrorEquals": ["States.ALL"], "Assign": {"problem.$": "$.Error"}, "ResultPath": null, "Next": "Report"}
            ], "End": true},
            "Report": {"Type": "Pass", "Parameters": {"problem.$": "$problem"}, "End": true}
        }}),
        json!({}),
    )
    .await;
    assert_eq!(output(&r), &json!({"problem": "Out.Of.Stock"}));
}

// A Choice state's Assign applies whichever way it goes; the matching rule's Assign on top.
#[tokio::test]
async fn choice_state_and_rule_assign() {
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Assign": {"path": "default", "checked": true}, "Choices": [
            {"Variable": "$.n", "NumericGreaterThan": 10, "Assign": {"path": "big"}, "Next": "Out"}
        ], "Default": "Out"},
        "Out": {"Type": "Pass", "Parameters": {"path.$": "$path", "checked.$": "$checked"}, "End": true}
    }});
    assert_eq!(output(&run(def.clone(), json!({"n": 50})).await), &json!({"path": "big", "checked": true}));
    assert_eq!(output(&run(def, json!({"n": 5})).await), &json!({"path": "default", "checked": true}));
}

#[tokio::test]
async fn wait_assign() {
    let r = run(
        json!({"StartAt": "W", "States": {
            "W": {"Type": "Wait", "Seconds": 0, "Assign": {"waited.$": "$.label"}, "Next": "Out"},
            "Out": {"Type": "Pass", "Parameters": {"w.$": "$waited"}, "End": true}
        }}),
        json!({"label": "done"}),
    )
    .await;
    assert_eq!(output(&r), &json!({"w": "done"}));
}

// Map iterations and Parallel branches read outer variables; what they assign stays inside.
#[tokio::test]
async fn inner_scopes_read_outer_variables_and_keep_their_own() {
    let r = run(
        json!({"StartAt": "Set", "States": {
            "Set": {"Type": "Pass", "Assign": {"factor": 10}, "Next": "Each"},
            "Each": {"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": {"StartAt": "Mul", "States": {
                "Mul": {"Type": "Pass", "Assign": {"mine.$": "$"}, "Next": "Show"},
                "Show": {"Type": "Pass", "Parameters": {"item.$": "$mine", "factor.$": "$factor"}, "End": true}
            }}, "ResultPath": "$.results", "Next": "Both"},
            "Both": {"Type": "Parallel", "ResultPath": "$.branches", "Branches": [
                {"StartAt": "B1", "States": {"B1": {"Type": "Pass", "Assign": {"b": 1}, "Parameters": {"f.$": "$factor"}, "End": true}}},
                {"StartAt": "B2", "States": {"B2": {"Type": "Pass", "Assign": {"b": 2}, "Parameters": {"f.$": "$factor"}, "End": true}}}
            ], "Next": "After"},
            "After": {"Type": "Pass", "Parameters": {"results.$": "$.results", "branches.$": "$.branches", "mineLeaked.$": "States.ArrayContains(States.Array($factor), 10)"}, "End": true}
        }}),
        json!({"items": [1, 2]}),
    )
    .await;
    assert_eq!(
        output(&r),
        &json!({
            "results": [{"item": 1, "factor": 10}, {"item": 2, "factor": 10}],
            "branches": [{"f": 10}, {"f": 10}],
            "mineLeaked": true
        })
    );
    let leaked = run(
        json!({"StartAt": "Each", "States": {
            "Each": {"Type": "Map", "ItemProcessor": {"StartAt": "Mine", "States": {
                "Mine": {"Type": "Pass", "Assign": {"mine": 1}, "End": true}
            }}, "Next": "After"},
            "After": {"Type": "Pass", "Parameters": {"mine.$": "$mine"}, "End": true}
        }}),
        json!([1]),
    )
    .await;
    let (error, cause) = failed(&leaked);
    assert_eq!(error, "States.Runtime");
    assert!(cause.contains("'$mine'"), "{cause}");
}

#[tokio::test]
async fn inner_scopes_cannot_assign_outer_variables() {
    let r = run(
        json!({"StartAt": "Set", "States": {
            "Set": {"Type": "Pass", "Assign": {"total": 0}, "Next": "Each"},
            "Each": {"Type": "Map", "ItemProcessor": {"StartAt": "Add", "States": {
                "Add": {"Type": "Pass", "Assign": {"total.$": "$"}, "End": true}
            }}, "End": true}
        }}),
        json!([1, 2]),
    )
    .await;
    let (error, cause) = failed(&r);
    assert_eq!(error, "States.Runtime");
    assert!(cause.contains("'total'") && cause.contains("outer scope"), "{cause}");
}

#[tokio::test]
async fn distributed_map_iterations_see_no_outer_variables() {
    let r = run(
        json!({"StartAt": "Set", "States": {
            "Set": {"Type": "Pass", "Assign": {"factor": 10}, "Next": "Each"},
            "Each": {"Type": "Map", "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Use", "States": {"Use": {"Type": "Pass", "Parameters": {"f.$": "$factor"}, "End": true}}
            }, "End": true}
        }}),
        json!([1]),
    )
    .await;
    assert_eq!(failed(&r).0, "States.Runtime");
}

#[tokio::test]
async fn undefined_variable_is_a_runtime_error_naming_the_field() {
    let r = run(
        json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"a.$": "$nope"}, "End": true}}}),
        json!({}),
    )
    .await;
    let (error, cause) = failed(&r);
    assert_eq!(error, "States.Runtime");
    assert!(cause.contains("'$nope'") && cause.contains("'a.$'"), "{cause}");
}

#[test]
fn invalid_names_and_misplaced_assign_are_definition_errors() {
    let e = StateMachine::from_value(
        &json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Assign": {"1x": 1, "a-b.$": "$"}, "End": true}}}),
    )
    .unwrap_err();
    let pointers: Vec<&str> = e.issues.iter().map(|i| i.pointer.as_str()).collect();
    assert_eq!(pointers, vec!["/States/P/Assign/1x", "/States/P/Assign/a-b.$"]);
    let e =
        StateMachine::from_value(&json!({"StartAt": "S", "States": {"S": {"Type": "Succeed", "Assign": {"x": 1}}}}))
            .unwrap_err();
    assert_eq!(e.issues[0].pointer, "/States/S/Assign");
    let e = StateMachine::from_value(&json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Not": {"Variable": "$.a", "IsNull": true, "Assign": {"x": 1}}, "Next": "D"}], "Default": "D"},
        "D": {"Type": "Succeed"}
    }}))
    .unwrap_err();
    assert_eq!(e.issues[0].pointer, "/States/C/Choices/0/Not/Assign");
    // Context paths do not belong in InputPath; variables do.
    assert!(
        StateMachine::from_value(
            &json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "InputPath": "$$.Execution.Input", "End": true}}})
        )
        .is_err()
    );
    assert!(
        StateMachine::from_value(
            &json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "InputPath": "$v.a", "End": true}}})
        )
        .is_ok()
    );
}
