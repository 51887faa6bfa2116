//! The BEACON flow through the embedded engine, with the offline analyzer and a scripted client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use beacon_llm::offline::OfflineAnalyzer;
use beacon_llm::{Completion, CompletionRequest, LlmClient, LlmError};
use beacon_pipeline::report::UnitStatus;
use beacon_pipeline::{Config, Progress, RunError, RunOptions, Runner, Services, UnitEnd};
use beacon_store::Store;
use beacon_store::journal::{ExecutionState, Journal};
use serde_json::Value;

#[derive(Default)]
struct Recorder {
    planned: AtomicUsize,
    ends: Mutex<Vec<(usize, UnitEnd)>>,
}

impl Progress for Recorder {
    fn units_planned(&self, units: usize) {
        self.planned.store(units, Ordering::SeqCst);
    }
    fn unit_finished(&self, index: usize, end: UnitEnd) {
        self.ends.lock().unwrap().push((index, end));
    }
}

/// Answers like the offline analyzer, except that content containing "REJECT" is refused.
struct Picky;

#[async_trait]
impl LlmClient for Picky {
    fn name(&self) -> String {
        "picky".into()
    }
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        if request.content.contains("REJECT") {
            return Err(LlmError::Rejected {
                provider: "picky".into(),
                kind: "ValidationException".into(),
                message: "content refused".into(),
            });
        }
        OfflineAnalyzer.complete(request).await
    }
}

fn services(dir: &std::path::Path, llm: Arc<dyn LlmClient>) -> Services {
    let config = Config { data_dir: dir.to_path_buf(), ..Config::default() };
    Services {
        store: Store::local(&dir.join("store")).unwrap(),
        llm,
        config: Arc::new(config),
        unit_schema: Arc::new(beacon_pipeline::schema::default_unit_schema()),
    }
}

fn runner(dir: &std::path::Path, llm: Arc<dyn LlmClient>, progress: Arc<Recorder>) -> Runner {
    Runner::new(services(dir, llm), Journal::open(&dir.join("journal.sqlite")).unwrap(), progress)
}

/// The uploads rule starts an execution with the key of S3's event, URL-encoded as a form: the
/// document processor finds the object under the decoded key and names the document by it.
#[tokio::test]
async fn a_url_encoded_upload_key_from_an_s3_event_finds_the_japanese_file() {
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path(), Arc::new(OfflineAnalyzer));
    let stored = "uploads/報告書 v2.txt";
    services.store.put(stored, "売上: 1,234円\n\x0c納期: 2026-04-30\n".as_bytes().to_vec()).await.unwrap();
    let processor = beacon_pipeline::tasks::registry(&services).get("beacon:document-processor").unwrap();
    let encoded = "uploads/%E5%A0%B1%E5%91%8A%E6%9B%B8+v2.txt";
    let ctx = beacon_asl::TaskContext {
        execution_name: "upload-1".into(),
        state_name: "ProcessDocument".into(),
        attempt: 1,
        key: "ProcessDocument@1#1".into(),
        context: Value::Null,
    };
    let input = serde_json::json!({"document": {"key": encoded, "name": encoded}, "options": {}});
    let processed = processor.invoke(input, ctx).await.expect("the decoded key holds the upload");
    assert_eq!(processed["unitCount"], 2, "{processed}");
    let id = processed["documentId"].as_str().unwrap();
    let manifest: Value = services.store.get_json(&beacon_store::keys::manifest(id)).await.unwrap();
    assert_eq!(manifest["name"], stored);
}

fn report_schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/report.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn every_page_is_analysed_and_the_report_follows_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let progress = Arc::new(Recorder::default());
    let runner = runner(dir.path(), Arc::new(OfflineAnalyzer), progress.clone());
    let text = "Invoice No: INV-7\nTotal: $1,234.56\n\x0cDelivery on 2026-04-30.\n\x0cThanks for your order.\n";
    let outcome = runner.run_bytes("pages.txt", text.as_bytes().to_vec(), RunOptions::default()).await.unwrap();
    let report = serde_json::to_value(&outcome.report).unwrap();
    let problems = beacon_pipeline::schema::violations(&report_schema(), &report);
    assert!(problems.is_empty(), "report.json follows docs/report.schema.json: {problems:?}");
    assert_eq!(outcome.report.document.unit_count, 3);
    assert!(outcome.report.units.iter().all(|u| u.status == UnitStatus::Succeeded));
    assert_eq!(progress.planned.load(Ordering::SeqCst), 3);
    assert_eq!(progress.ends.lock().unwrap().len(), 3);
    assert!(outcome.report.dates.iter().any(|d| d.iso.as_deref() == Some("2026-04-30")));
    assert!(outcome.report_markdown.contains("## Units"));
    assert!(outcome.history_events > 10, "the execution history was recorded");
}

#[tokio::test]
async fn a_refused_unit_fails_alone_and_is_listed_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let progress = Arc::new(Recorder::default());
    let runner = runner(dir.path(), Arc::new(Picky), progress.clone());
    let text = "Page one is fine.\n\x0cPage two: REJECT me.\n\x0cPage three is fine.\n";
    let outcome = runner.run_bytes("mixed.txt", text.as_bytes().to_vec(), RunOptions::default()).await.unwrap();
    let r = &outcome.report;
    let statuses: Vec<UnitStatus> = r.units.iter().map(|u| u.status).collect();
    assert_eq!(statuses, vec![UnitStatus::Succeeded, UnitStatus::Failed, UnitStatus::Succeeded]);
    assert_eq!(r.failed_units.len(), 1);
    assert_eq!(r.failed_units[0].index, 1);
    assert_eq!(r.failed_units[0].error, "Beacon.Rejected");
    assert!(r.failed_units[0].cause.contains("content refused"), "{}", r.failed_units[0].cause);
    let mut ends = progress.ends.lock().unwrap().clone();
    ends.sort_by_key(|e| e.0);
    assert_eq!(ends, vec![(0, UnitEnd::Succeeded), (1, UnitEnd::Failed), (2, UnitEnd::Succeeded)]);
}

#[tokio::test]
async fn unusable_documents_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(dir.path(), Arc::new(OfflineAnalyzer), Arc::new(Recorder::default()));
    for (name, bytes) in [("empty.txt", Vec::new()), ("junk.bin", vec![0u8, 159, 146, 150, 0, 1, 2, 3, 255, 254, 0, 7])]
    {
        match runner.run_bytes(name, bytes, RunOptions::default()).await {
            Err(RunError::Input { path, message }) => {
                assert_eq!(path, name);
                assert!(!message.is_empty());
            }
            other => panic!("{name}: expected an input error, got {other:?}"),
        }
    }
}

#[test]
fn thresholds_and_concurrency_are_substituted_into_the_state_machine() {
    let mut config = Config::default();
    config.strategy.inline_max_concurrency = 3;
    config.strategy.distributed_threshold = 5;
    config.strategy.batch_threshold = 7;
    config.strategy.distributed_batch_size = 4;
    config.strategy.tolerated_failure_percentage = 2.5;
    let subs = beacon_pipeline::flow::substitutions(&config);
    let text = beacon_asl::substitute(beacon_pipeline::flow::STATE_MACHINE_DEFINITION, &subs).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["States"]["AnalyseUnits"]["MaxConcurrency"], 3);
    let choices = &v["States"]["ChooseStrategy"]["Choices"];
    assert_eq!(choices[3]["And"][0]["NumericGreaterThan"], 7);
    assert_eq!(choices[4]["NumericGreaterThan"], 5);
    let distributed = &v["States"]["AnalyseUnitsDistributed"];
    assert_eq!(distributed["ItemBatcher"]["MaxItemsPerBatch"], 4);
    assert_eq!(distributed["ToleratedFailurePercentage"], 2.5);
    assert_eq!(distributed["ItemReader"]["Parameters"]["Bucket"], "beacon-local");
    beacon_pipeline::flow::state_machine(&config).unwrap();
}

/// Answers like the offline analyzer, counts calls per unit, and never answers for units whose
/// content contains the `hang_on` marker (a process that dies while waiting for the model).
struct Counting {
    calls: Mutex<Vec<String>>,
    hang_on: Option<&'static str>,
}

#[async_trait]
impl LlmClient for Counting {
    fn name(&self) -> String {
        "counting".into()
    }
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        self.calls.lock().unwrap().push(request.content_label.clone());
        if let Some(marker) = self.hang_on
            && request.content.contains(marker)
        {
            std::future::pending::<()>().await;
        }
        OfflineAnalyzer.complete(request).await
    }
}

fn pages(n: usize) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("Page {i} says the total is ${i},000 on 2026-04-{i:02}.\n"))
        .collect::<Vec<_>>()
        .join("\x0c")
        .into_bytes()
}

#[tokio::test]
async fn a_crashed_execution_resumes_without_repeating_finished_units() {
    let dir = tempfile::tempdir().unwrap();
    let units = 20;
    // First run: page 13 never gets its answer; the "process" dies once 12 units are journaled.
    let first = Arc::new(Counting { calls: Mutex::new(vec![]), hang_on: Some("Page 13 ") });
    let runner1 = runner(dir.path(), first.clone(), Arc::new(Recorder::default()));
    let journal = runner1.journal().clone();
    let run = tokio::spawn(async move { runner1.run_bytes("pages.txt", pages(units), RunOptions::default()).await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let execution = loop {
        if let Some(e) = journal.list(1).unwrap().into_iter().next()
            && e.tasks_recorded >= 12
        {
            break e.name;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first run made no progress: {:?} {:?}",
            journal.list(1).unwrap(),
            first.calls.lock().unwrap()
        );
        tokio::task::yield_now().await;
    };
    run.abort();
    let _ = run.await;
    journal.flush().await.unwrap();
    let before = journal.get(&execution).unwrap();
    assert_eq!(before.status, ExecutionState::Running, "a crashed execution stays resumable");
    // Unit analyses journaled before the crash, by their unit's title ("Page N" for index N-1).
    let answered_before: Vec<String> = journal
        .tasks(&execution)
        .unwrap()
        .into_iter()
        .filter(|(key, _)| key.contains("ProcessUnit"))
        .filter_map(|(_, r)| match r {
            beacon_store::journal::TaskRecord::Succeeded { output } => {
                let v: Value = serde_json::from_str(&output).ok()?;
                v.get("index").and_then(Value::as_u64).map(|i| format!("Page {}", i + 1))
            }
            _ => None,
        })
        .collect();
    assert!(answered_before.len() >= 11, "units journaled before the crash: {answered_before:?}");

    // Resume with a client that answers everything.
    let second = Arc::new(Counting { calls: Mutex::new(vec![]), hang_on: None });
    let progress = Arc::new(Recorder::default());
    let runner2 = runner(dir.path(), second.clone(), progress.clone());
    let outcome = runner2.resume(&execution).await.unwrap();
    assert_eq!(outcome.execution, execution);
    assert!(outcome.report.units.iter().all(|u| u.status == UnitStatus::Succeeded));
    assert_eq!(outcome.report.units.len(), units);
    let again = second.calls.lock().unwrap().clone();
    for title in &answered_before {
        assert!(!again.contains(title), "{title} was journaled before the crash and must not be analysed again");
    }
    assert_eq!(again.len() + answered_before.len(), units, "every other unit was analysed exactly once");
    assert_eq!(progress.ends.lock().unwrap().len(), units, "replayed units count as progress too");
    let after = journal.get(&execution).unwrap();
    assert_eq!((after.status, after.attempt), (ExecutionState::Succeeded, 2));

    // The resumed report equals an uninterrupted run's, but for run-specific fields.
    let fresh = runner(dir.path(), Arc::new(OfflineAnalyzer), Arc::new(Recorder::default()))
        .run_bytes("pages.txt", pages(units), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(comparable(&outcome.report), comparable(&fresh.report));
    assert!(matches!(runner2.resume(&execution).await, Err(RunError::NotResumable(_))));
}

/// A report without the fields that differ between runs (names, times, durations).
fn comparable(report: &beacon_pipeline::report::Report) -> Value {
    let mut v = serde_json::to_value(report).unwrap();
    v["execution"] = Value::Null;
    v["generated_at"] = Value::Null;
    v["usage"]["makespan_ms"] = Value::Null;
    for unit in v["units"].as_array_mut().unwrap() {
        unit["usage"]["duration_ms"] = Value::Null;
    }
    v
}

/// A report's content: what the units say and how it merged, without how it was run (strategy,
/// paths, usage, names, times).
fn content(report: &beacon_pipeline::report::Report) -> Value {
    let mut v = comparable(report);
    for field in ["strategy", "strategy_note", "unit_paths", "usage"] {
        v[field] = Value::Null;
    }
    for unit in v["units"].as_array_mut().unwrap() {
        unit["path"] = Value::Null;
        unit["usage"] = Value::Null;
    }
    v
}

#[tokio::test]
async fn unit_counts_choose_inline_or_distributed_and_the_content_matches_a_forced_inline_run() {
    use beacon_pipeline::plan::Strategy;
    let dir = tempfile::tempdir().unwrap();
    for (units, expected) in [(30, "inline"), (60, "distributed")] {
        let progress = Arc::new(Recorder::default());
        let runner = runner(dir.path(), Arc::new(OfflineAnalyzer), progress.clone());
        let auto = runner.run_bytes("pages.txt", pages(units), RunOptions::default()).await.unwrap();
        let report = &auto.report;
        assert_eq!(report.strategy, expected, "{units} units");
        assert_eq!(report.units.len(), units);
        assert!(report.units.iter().all(|u| u.status == UnitStatus::Succeeded && u.path == expected));
        assert_eq!(report.unit_paths.get(expected), Some(&units));
        assert_eq!(report.strategy_note, None);
        assert_eq!(progress.ends.lock().unwrap().len(), units, "units in child executions count as progress");
        let schema_problems =
            beacon_pipeline::schema::violations(&report_schema(), &serde_json::to_value(report).unwrap());
        assert!(schema_problems.is_empty(), "{schema_problems:?}");

        let options = RunOptions { strategy: Some(Strategy::Inline), ..RunOptions::default() };
        let inline = runner.run_bytes("pages.txt", pages(units), options).await.unwrap();
        assert_eq!(inline.report.strategy, "inline");
        assert_eq!(content(&auto.report), content(&inline.report), "{units} units: same content either way");

        let children = runner.journal().children(&auto.execution).unwrap();
        if expected == "distributed" {
            // 60 units in batches of 10: six child executions, each with its own history.
            assert_eq!(children.len(), 6, "{children:?}");
            assert!(children.iter().all(|c| c.status == ExecutionState::Succeeded));
            let child = runner.journal().events(&children[0].name, None).unwrap();
            assert_eq!(child.first().map(|e| e.event_type.as_str()), Some("ExecutionStarted"));
            let parent: Vec<String> =
                runner.journal().events(&auto.execution, None).unwrap().into_iter().map(|e| e.event_type).collect();
            assert!(parent.contains(&"MapRunStarted".to_string()) && parent.contains(&"MapRunSucceeded".to_string()));
            // The ResultWriter wrote the Map Run's manifest to the store.
            let written = runner.store().list("map-runs/").await.unwrap();
            assert!(written.iter().any(|o| o.key.ends_with("/manifest.json")), "{written:?}");
        } else {
            assert!(children.is_empty());
        }
    }
}

#[tokio::test]
async fn a_forced_strategy_wins_and_batch_needs_bedrock() {
    use beacon_pipeline::plan::Strategy;
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(dir.path(), Arc::new(OfflineAnalyzer), Arc::new(Recorder::default()));
    let options = RunOptions { strategy: Some(Strategy::Distributed), ..RunOptions::default() };
    let outcome = runner.run_bytes("pages.txt", pages(3), options).await.unwrap();
    assert_eq!(outcome.report.strategy, "distributed");
    assert_eq!(outcome.report.unit_paths.get("distributed"), Some(&3));
    // Over the batch threshold, but the offline analyzer has no batch inference: distributed.
    let outcome = runner.run_bytes("pages.txt", pages(101), RunOptions::default()).await.unwrap();
    assert_eq!(outcome.report.strategy, "distributed");
    let options = RunOptions { strategy: Some(Strategy::Batch), ..RunOptions::default() };
    match runner.run_bytes("pages.txt", pages(3), options).await {
        Err(RunError::Options(message)) => assert!(message.contains("--provider bedrock"), "{message}"),
        other => panic!("expected an options error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_configured_payload_limit_applies_to_the_flow() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    config.asl.payload_limit_bytes = 200;
    let services = Services {
        store: Store::local(&dir.path().join("store")).unwrap(),
        llm: Arc::new(OfflineAnalyzer),
        config: Arc::new(config),
        unit_schema: Arc::new(beacon_pipeline::schema::default_unit_schema()),
    };
    let runner =
        Runner::new(services, Journal::open(&dir.path().join("j.sqlite")).unwrap(), Arc::new(Recorder::default()));
    match runner.run_bytes("pages.txt", pages(3), RunOptions::default()).await {
        Err(RunError::Execution { error, .. }) => assert_eq!(error, "States.DataLimitExceeded"),
        other => panic!("expected States.DataLimitExceeded, got {other:?}"),
    }
}

/// An object store that refuses every write of one unit's result (a full disk, a denied
/// prefix): the unit cannot even record its failure, so its distributed Map child fails.
#[derive(Debug)]
struct RefusingStore {
    inner: object_store::memory::InMemory,
    refused: &'static str,
}

impl std::fmt::Display for RefusingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RefusingStore({})", self.refused)
    }
}

#[async_trait]
impl object_store::ObjectStore for RefusingStore {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        let key = location.as_ref();
        if key.starts_with("results/") && key.ends_with(self.refused) {
            return Err(object_store::Error::PermissionDenied {
                path: location.to_string(),
                source: "writes to this key are refused".into(),
            });
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

struct NoSleep;

#[async_trait]
impl beacon_asl::Sleeper for NoSleep {
    async fn sleep(&self, _: std::time::Duration) {}
}

#[tokio::test]
async fn a_distributed_map_fails_beyond_its_tolerated_failures_and_the_report_still_lists_every_unit() {
    use beacon_pipeline::plan::Strategy;
    for (tolerated, map_fails) in [(5.0, true), (20.0, false)] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
        // One unit per child: ten children, one of which (unit 4's) cannot record anything.
        config.strategy.distributed_batch_size = 1;
        config.strategy.tolerated_failure_percentage = tolerated;
        let store = RefusingStore { inner: object_store::memory::InMemory::new(), refused: "/000003.json" };
        let services = Services {
            store: Store::from_object_store(Arc::new(store), "memory"),
            llm: Arc::new(OfflineAnalyzer),
            config: Arc::new(config),
            unit_schema: Arc::new(beacon_pipeline::schema::default_unit_schema()),
        };
        let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
        let runner = Runner::new(services, journal, Arc::new(Recorder::default())).with_sleeper(Arc::new(NoSleep));
        let options = RunOptions { strategy: Some(Strategy::Distributed), ..RunOptions::default() };
        let outcome = runner.run_bytes("pages.txt", pages(10), options).await.unwrap();
        let report = &outcome.report;
        assert_eq!(report.units.len(), 10, "tolerated {tolerated}%: every unit is listed");
        let failed: Vec<usize> = report.failed_units.iter().map(|f| f.index).collect();
        assert!(report.failed_units.iter().all(|f| f.error == "Beacon.NoResult"), "{:?}", report.failed_units);
        let children = runner.journal().children(&outcome.execution).unwrap();
        match (&report.strategy_note, map_fails) {
            (Some(note), true) => {
                // The Map Run stops when it fails, as on AWS: children not finished by then
                // leave their units without a record, each reported with the reason.
                assert!(note.contains("States.ExceedToleratedFailureThreshold"), "{note}");
                assert!(failed.contains(&3), "{failed:?}");
                assert!(
                    report.failed_units.iter().all(|f| f.cause.contains(note.as_str())),
                    "{:?}",
                    report.failed_units
                );
            }
            (None, false) => {
                assert_eq!(failed, vec![3], "within the tolerance every other child runs");
                assert_eq!(children.iter().filter(|c| c.status == ExecutionState::Failed).count(), 1);
            }
            (note, _) => panic!("tolerated {tolerated}%: unexpected note {note:?}"),
        }
    }
}
