//! The Distributed Map ("Using Map state in Distributed mode", "ItemReader", "ItemBatcher",
//! "ResultWriter" in the AWS developer guide), over S3 held in memory.

mod common;

use std::sync::{Arc, Mutex};

use beacon_asl::{ExecutionObserver, ExecutionStatus, HistoryEvent, Interpreter, StateMachine, TaskRegistry};
use common::MemoryS3;
use serde_json::{Value, json};

fn machine(v: Value) -> StateMachine {
    StateMachine::from_value(&v).unwrap_or_else(|e| panic!("invalid test machine: {e}"))
}

fn distributed_map(extra: Value, processor_states: Value) -> Value {
    let mut map = json!({
        "Type": "Map",
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Work",
            "States": processor_states
        },
        "End": true
    });
    for (k, v) in extra.as_object().unwrap() {
        map[k] = v.clone();
    }
    json!({"StartAt": "Units", "States": {"Units": map}})
}

fn pass_through() -> Value {
    json!({"Work": {"Type": "Pass", "End": true}})
}

#[derive(Default)]
struct Recorder {
    parent: Mutex<Vec<String>>,
    children: Mutex<Vec<(String, String)>>,
}

impl ExecutionObserver for Recorder {
    fn on_event(&self, event: &HistoryEvent) {
        self.parent.lock().unwrap().push(event.event_type.clone());
    }
    fn on_child_event(&self, execution: &str, event: &HistoryEvent) {
        self.children.lock().unwrap().push((execution.to_string(), event.event_type.clone()));
    }
}

#[tokio::test]
async fn csv_items_in_batches_with_results_written_to_the_bucket() {
    let s3 = MemoryS3::default();
    s3.put_text("in", "units.csv", "id,title\n1,Intro\n2,Body\n3,\"Summary, short\"\n");
    s3.create_bucket("out");
    let mut registry = TaskRegistry::new();
    registry.register_fn("count", |input: Value, ctx: beacon_asl::TaskContext| async move {
        Ok(json!({"batch": input["BatchInput"]["doc"], "n": input["Items"].as_array().map(Vec::len), "execution": ctx.execution_name}))
    });
    let def = distributed_map(
        json!({
            "ItemReader": {
                "Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
                "Parameters": {"Bucket.$": "$.bucket", "Key": "units.csv"}
            },
            "ItemSelector": {"unit.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"},
            "ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"doc.$": "$.doc"}},
            "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": "out", "Prefix": "runs/"}},
            "Label": "Units"
        }),
        json!({"Work": {"Type": "Task", "Resource": "count", "End": true}}),
    );
    let recorder = Arc::new(Recorder::default());
    let result = Interpreter::new(registry)
        .with_object_storage(Arc::new(s3.clone()))
        .with_observer(recorder.clone())
        .execute(&machine(def).with_name("Beacon"), "exec-1", json!({"bucket": "in", "doc": "d-1"}))
        .await;
    let output = result.output().unwrap_or_else(|| panic!("{:?}", result.status)).clone();
    let map_run_arn = output["MapRunArn"].as_str().unwrap();
    assert!(map_run_arn.starts_with("arn:aws:states:local:000000000000:mapRun:Beacon/Units:"), "{map_run_arn}");
    let run_id = map_run_arn.rsplit(':').next().unwrap();
    let manifest_key = format!("runs/{run_id}/manifest.json");
    assert_eq!(output["ResultWriterDetails"], json!({"Bucket": "out", "Key": manifest_key}));
    assert_eq!(
        result.event_types(),
        vec![
            "ExecutionStarted",
            "MapStateEntered",
            "MapStateStarted",
            "MapRunStarted",
            "MapRunSucceeded",
            "MapStateSucceeded",
            "MapStateExited",
            "ExecutionSucceeded"
        ]
    );
    let manifest: Value = serde_json::from_str(&s3.text("out", &manifest_key).unwrap()).unwrap();
    assert_eq!(manifest["MapRunArn"], json!(map_run_arn));
    assert_eq!(manifest["ResultFiles"]["FAILED"], json!([]));
    let succeeded_key = manifest["ResultFiles"]["SUCCEEDED"][0]["Key"].as_str().unwrap();
    let succeeded: Value = serde_json::from_str(&s3.text("out", succeeded_key).unwrap()).unwrap();
    let children = succeeded.as_array().unwrap();
    assert_eq!(children.len(), 2);
    let first_input: Value = serde_json::from_str(children[0]["Input"].as_str().unwrap()).unwrap();
    assert_eq!(
        first_input,
        json!({"BatchInput": {"doc": "d-1"}, "Items": [
            {"unit": {"id": "1", "title": "Intro"}, "index": 0},
            {"unit": {"id": "2", "title": "Body"}, "index": 1}
        ]})
    );
    let second_output: Value = serde_json::from_str(children[1]["Output"].as_str().unwrap()).unwrap();
    assert_eq!(second_output["n"], json!(1));
    assert_eq!(second_output["batch"], json!("d-1"));
    assert_eq!(second_output["execution"], children[1]["Name"]);
    // The children's events reach the observer, but not the parent's history.
    let child_events = recorder.children.lock().unwrap().clone();
    assert_eq!(child_events.iter().filter(|(_, t)| t == "ExecutionStarted").count(), 2);
    assert_eq!(child_events.iter().filter(|(_, t)| t == "TaskSucceeded").count(), 2);
    assert!(!recorder.parent.lock().unwrap().iter().any(|t| t.starts_with("Task")));
}

#[tokio::test]
async fn list_objects_v2_jsonl_and_max_items() {
    let s3 = MemoryS3::default();
    s3.put_text("b", "logs/a.txt", "aaa");
    s3.put_text("b", "logs/b.txt", "bb");
    s3.put_text("b", "other.txt", "c");
    s3.put_text("b", "lines.jsonl", "{\"n\":1}\n\n{\"n\":2}\n{\"n\":3}\n");
    let run = |reader: Value| {
        let s3 = s3.clone();
        async move {
            let def = distributed_map(json!({"ItemReader": reader}), pass_through());
            Interpreter::new(TaskRegistry::new())
                .with_object_storage(Arc::new(s3))
                .execute(&machine(def), "e", json!({}))
                .await
        }
    };
    let listed = run(json!({
        "Resource": "arn:aws:states:::s3:listObjectsV2",
        "Parameters": {"Bucket": "b", "Prefix": "logs/"}
    }))
    .await;
    let items = listed.output().unwrap().as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["Key"], json!("logs/a.txt"));
    assert_eq!(items[0]["Size"], json!(3));
    assert_eq!(items[0]["StorageClass"], json!("STANDARD"));
    assert!(items[0]["Etag"].as_str().unwrap().starts_with('"'));
    let lines = run(json!({
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSONL", "MaxItems": 2},
        "Parameters": {"Bucket": "b", "Key": "lines.jsonl"}
    }))
    .await;
    assert_eq!(lines.output(), Some(&json!([{"n": 1}, {"n": 2}])));
}

#[tokio::test]
async fn reader_and_writer_failures_are_states_errors() {
    let s3 = MemoryS3::default();
    s3.put_text("b", "not-a-list.json", "{\"a\": 1}");
    let run = |extra: Value| {
        let s3 = s3.clone();
        async move {
            let def = distributed_map(extra, pass_through());
            Interpreter::new(TaskRegistry::new())
                .with_object_storage(Arc::new(s3))
                .execute(&machine(def), "e", json!(["x"]))
                .await
        }
    };
    let reader = |key: &str| {
        json!({"ItemReader": {
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSON"},
            "Parameters": {"Bucket": "b", "Key": key}
        }})
    };
    let missing = run(reader("nope.json")).await;
    match &missing.status {
        ExecutionStatus::Failed { error, cause } => {
            assert_eq!(error, "States.ItemReaderFailed");
            assert!(cause.contains("nope.json"), "{cause}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        missing.event_types(),
        vec![
            "ExecutionStarted",
            "MapStateEntered",
            "MapStateStarted",
            "MapRunStarted",
            "MapRunFailed",
            "MapStateFailed",
            "ExecutionFailed"
        ]
    );
    let not_a_list = run(reader("not-a-list.json")).await;
    assert_eq!(
        not_a_list.status,
        ExecutionStatus::Failed {
            error: "States.ItemReaderFailed".into(),
            cause: "Attempting to map over non-iterable node.".into()
        }
    );
    let no_bucket =
        run(json!({"ResultWriter": {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": "gone"}}}))
            .await;
    match &no_bucket.status {
        ExecutionStatus::Failed { error, .. } => assert_eq!(error, "States.ResultWriterFailed"),
        other => panic!("{other:?}"),
    }
    // Catchable like any Map failure.
    let mut caught = reader("nope.json");
    caught["Catch"] = json!([{"ErrorEquals": ["States.ItemReaderFailed"], "ResultPath": "$.error", "Next": "Handled"}]);
    let mut def = distributed_map(caught, pass_through());
    def["States"]["Handled"] = json!({"Type": "Pass", "End": true});
    let r = Interpreter::new(TaskRegistry::new())
        .with_object_storage(Arc::new(s3.clone()))
        .execute(&machine(def), "e", json!({}))
        .await;
    assert_eq!(r.output().unwrap()["error"]["Error"], json!("States.ItemReaderFailed"));
}

#[tokio::test]
async fn a_failing_child_fails_the_map_run_unless_tolerated() {
    let mut registry = TaskRegistry::new();
    registry.register_fn("odd", |input: Value, _| async move {
        if input.as_i64().unwrap_or_default() % 2 == 1 {
            Err(beacon_asl::TaskFailure::new("Odd", "odd item"))
        } else {
            Ok(input)
        }
    });
    let states = json!({"Work": {"Type": "Task", "Resource": "odd", "End": true}});
    let failing = Interpreter::new(registry.clone())
        .execute(&machine(distributed_map(json!({}), states.clone())), "e", json!([0, 1, 2]))
        .await;
    assert_eq!(failing.status, ExecutionStatus::Failed { error: "Odd".into(), cause: "odd item".into() });
    assert!(failing.event_types().contains(&"MapRunFailed"));
    let tolerated = Interpreter::new(registry)
        .execute(&machine(distributed_map(json!({"ToleratedFailureCount": 1}), states)), "e", json!([0, 1, 2]))
        .await;
    assert_eq!(tolerated.output(), Some(&json!([0, {"Error": "Odd", "Cause": "odd item"}, 2])));
}

#[test]
fn distributed_only_fields_are_rejected_in_an_inline_map() {
    let e = StateMachine::from_value(&json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": true,
        "ItemBatcher": {"MaxItemsPerBatch": 2},
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}
    }}}))
    .unwrap_err();
    assert_eq!(e.issues[0].pointer, "/States/M/ItemBatcher");
    let e = StateMachine::from_value(&distributed_map(
        json!({"ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "PARQUET"}}}),
        pass_through(),
    ))
    .unwrap_err();
    assert_eq!(e.issues[0].pointer, "/States/Units/ItemReader/ReaderConfig/InputType");
    let e = StateMachine::from_value(&distributed_map(json!({"Label": "has space"}), pass_through())).unwrap_err();
    assert_eq!(e.issues[0].pointer, "/States/Units/Label");
}

// The S3 Task resources of the test store and the ItemReader see the same buckets.
#[tokio::test]
async fn items_written_by_an_s3_task_are_read_by_the_item_reader() {
    let s3 = MemoryS3::default();
    s3.create_bucket("b");
    let mut registry = TaskRegistry::new();
    s3.register_tasks(&mut registry);
    let def = json!({"StartAt": "Put", "States": {
        "Put": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
                "Parameters": {"Bucket": "b", "Key": "items.json", "Body.$": "$.items"}, "ResultPath": null, "Next": "Each"},
        "Each": {"Type": "Map", "End": true,
            "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                           "Parameters": {"Bucket": "b", "Key": "items.json"}},
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                "StartAt": "Get", "States": {"Get": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
                    "Parameters": {"Bucket": "b", "Key": "items.json"}, "ResultSelector": {"length.$": "$.ContentLength"}, "End": true}}}}
    }});
    let result = Interpreter::new(registry)
        .with_object_storage(Arc::new(s3.clone()))
        .execute(&machine(def), "e", json!({"items": [1, 2]}))
        .await;
    assert_eq!(result.output(), Some(&json!([{"length": 5}, {"length": 5}])));
    assert_eq!(s3.keys("b"), vec!["items.json"]);
}
