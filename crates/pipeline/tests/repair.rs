//! The repair round trip: an answer that does not follow the unit schema gets one repair request;
//! a valid repaired answer is used (with the usage of both calls), an invalid one fails the unit
//! with `Beacon.InvalidAnswer` and the problems as its cause.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use beacon_asl::TaskContext;
use beacon_ingest::{Unit, UnitKind};
use beacon_llm::{Completion, CompletionRequest, LlmClient, LlmError, Usage};
use beacon_pipeline::report::UnitStatus;
use beacon_pipeline::{Config, NoProgress, RunOptions, Runner, Services};
use beacon_store::Store;
use beacon_store::journal::Journal;
use beacon_store::keys;
use serde_json::{Value, json};

/// Answers with the scripted texts in order (the last one repeats) and keeps every request.
struct Scripted {
    answers: Vec<&'static str>,
    requests: Mutex<Vec<CompletionRequest>>,
}

impl Scripted {
    fn new(answers: &[&'static str]) -> Arc<Self> {
        Arc::new(Scripted { answers: answers.to_vec(), requests: Mutex::new(Vec::new()) })
    }

    fn requests(&self) -> Vec<CompletionRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait]
impl LlmClient for Scripted {
    fn name(&self) -> String {
        "scripted".into()
    }
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        let mut requests = self.requests.lock().unwrap();
        let n = requests.len();
        requests.push(request.clone());
        let text = self.answers[n.min(self.answers.len() - 1)];
        Ok(Completion {
            text: text.to_string(),
            usage: Usage { input_tokens: 100 + n as u64, output_tokens: 10 + n as u64 },
            model: "scripted-model".into(),
            stop_reason: "end_turn".into(),
            // The first call took two attempts (one throttled), the others one.
            attempts: if n == 0 { 2 } else { 1 },
            throttles: if n == 0 { 1 } else { 0 },
        })
    }
}

const DOCUMENT: &str = "doc-1";
const EXECUTION: &str = "run-1";

fn services(dir: &std::path::Path, llm: Arc<dyn LlmClient>) -> Services {
    let config = Config { data_dir: dir.to_path_buf(), ..Config::default() };
    Services {
        store: Store::local(&dir.join("store")).unwrap(),
        llm,
        config: Arc::new(config),
        unit_schema: Arc::new(beacon_pipeline::schema::default_unit_schema()),
    }
}

/// Stores one page and runs `llm-processor` on it, as the state machine would.
async fn process_one_page(services: &Services) -> Result<Value, beacon_asl::TaskFailure> {
    let unit = Unit {
        index: 0,
        kind: UnitKind::Page,
        title: "page 1".into(),
        text: "Invoice INV-7. Total: 1,234.56 USD.".into(),
        table: None,
        flags: vec![],
    };
    services.store.put_json(&keys::unit(DOCUMENT, 0), &unit).await.unwrap();
    let ctx = TaskContext {
        execution_name: EXECUTION.into(),
        state_name: "ProcessUnit".into(),
        attempt: 1,
        key: "ProcessUnit@1#1[0]".into(),
        context: Value::Null,
    };
    let input = json!({"documentId": DOCUMENT, "language": "en", "index": 0});
    beacon_pipeline::tasks::process_unit(services.clone(), input, ctx).await
}

#[tokio::test]
async fn an_invalid_answer_is_repaired_once_and_the_usage_of_both_calls_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let llm = Scripted::new(&[
        r#"Sure! {"title": "Invoice", "headings": "INV-7"}"#,
        r#"{"summary": "Invoice INV-7 totals 1,234.56 USD.", "headings": ["INV-7"]}"#,
    ]);
    let services = services(dir.path(), llm.clone());
    let output = process_one_page(&services).await.unwrap();
    assert_eq!(output["index"], 0);
    assert_eq!(output["usage"]["attempts"], 3, "the output carries the usage of both calls: {output}");

    let record: Value = services.store.get_json(&keys::unit_result(DOCUMENT, EXECUTION, 0)).await.unwrap();
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["model"], "scripted-model");
    assert_eq!(record["result"]["summary"], "Invoice INV-7 totals 1,234.56 USD.");
    let usage = &record["usage"];
    assert_eq!((usage["input_tokens"].as_u64(), usage["output_tokens"].as_u64()), (Some(201), Some(21)));
    assert_eq!((usage["attempts"].as_u64(), usage["throttles"].as_u64()), (Some(3), Some(1)));

    let requests = llm.requests();
    assert_eq!(requests.len(), 2, "one repair request, no more");
    let (first, repair) = (&requests[0], &requests[1]);
    assert_eq!(repair.system, first.system);
    assert_eq!((&repair.content, &repair.content_label), (&first.content, &first.content_label));
    assert!(repair.instruction.starts_with(&first.instruction));
    assert!(repair.instruction.contains("- /: missing required property 'summary'"), "{}", repair.instruction);
    assert!(repair.instruction.contains("- /headings: expected array, found string"), "{}", repair.instruction);
    assert!(repair.instruction.contains(r#"Sure! {"title": "Invoice", "headings": "INV-7"}"#));
}

#[tokio::test]
async fn an_answer_that_stays_invalid_fails_the_unit_with_the_problems() {
    let dir = tempfile::tempdir().unwrap();
    let llm = Scripted::new(&["I cannot find a summary.", r#"{"title": "still no summary"}"#]);
    let services = services(dir.path(), llm.clone());
    let failure = process_one_page(&services).await.unwrap_err();
    assert_eq!(failure.error, "Beacon.InvalidAnswer");
    assert!(failure.cause.contains("also after a repair request"), "{}", failure.cause);
    assert!(failure.cause.contains("/: missing required property 'summary'"), "{}", failure.cause);
    assert!(failure.cause.contains("first answer: the answer contains no JSON object"), "{}", failure.cause);
    assert_eq!(llm.requests().len(), 2);
    let stored = services.store.get_json::<Value>(&keys::unit_result(DOCUMENT, EXECUTION, 0)).await;
    assert!(stored.is_err(), "nothing is stored for a failed attempt");
}

#[tokio::test]
async fn a_valid_first_answer_needs_no_repair() {
    let dir = tempfile::tempdir().unwrap();
    let llm = Scripted::new(&[r#"{"summary": "ok"}"#]);
    let services = services(dir.path(), llm.clone());
    process_one_page(&services).await.unwrap();
    assert_eq!(llm.requests().len(), 1);
}

#[tokio::test]
async fn a_repaired_unit_is_reported_as_succeeded_through_the_flow() {
    let dir = tempfile::tempdir().unwrap();
    let llm = Scripted::new(&["no JSON at all", r#"{"summary": "Fixed."}"#]);
    let services = services(dir.path(), llm.clone());
    let runner =
        Runner::new(services, Journal::open(&dir.path().join("journal.sqlite")).unwrap(), Arc::new(NoProgress));
    let outcome = runner.run_bytes("one.txt", b"Just one page.\n".to_vec(), RunOptions::default()).await.unwrap();
    let unit = &outcome.report.units[0];
    assert_eq!(unit.status, UnitStatus::Succeeded);
    assert_eq!(unit.result.as_ref().unwrap()["summary"], "Fixed.");
    assert_eq!((unit.usage.input_tokens, unit.usage.output_tokens, unit.usage.attempts), (201, 21, 3));
    assert_eq!(outcome.report.usage.input_tokens, 201);
}
