//! `GET /v1/executions/{name}/events`: Server-Sent Events read from the execution's journaled
//! history, so a stream that drops and comes back with `Last-Event-ID` misses nothing — the
//! journal is the one source, live or after a restart.
//!
//! Event ids are the journal's event numbers (one order over the execution and its distributed
//! Map child executions); the events:
//! - `execution`: `{status}` when the execution starts, succeeds, fails, times out or is aborted;
//! - `unit.started` `{index}`, `unit.succeeded` `{index, attempts, throttles}`, `unit.failed`
//!   `{index}`, `unit.retried` / `unit.throttled` `{error, cause}` (an attempt the state
//!   machine retries);
//! - `map`: `{state, total, succeeded, failed}` once the document is split and after every unit.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use beacon_store::journal::{EventRecord, ExecutionState};
use futures::Stream;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiPath;

/// How long a stream waits for a change signal before it looks at the journal anyway (events
/// are committed in groups, a moment after the signal).
const LOOK_AGAIN: Duration = Duration::from_millis(500);

/// The task resources whose outcomes are units' outcomes.
const UNIT_TASK: &str = "llm-processor";
const DOCUMENT_TASK: &str = "document-processor";
const UNIT_FAILURE_TASK: &str = "record-unit-failure";

/// A position in the stream: the journal event's number, and which of the events it gave.
type Position = (u64, usize);

/// `seq` or `seq.k` (the k-th event one journal event gave, from 0).
fn event_id((seq, k): Position) -> String {
    if k == 0 { seq.to_string() } else { format!("{seq}.{k}") }
}

fn parse_last_event_id(headers: &HeaderMap) -> Option<Position> {
    let text = headers.get("last-event-id")?.to_str().ok()?.trim();
    match text.split_once('.') {
        Some((seq, k)) => Some((seq.parse().ok()?, k.parse().ok()?)),
        None => Some((text.parse().ok()?, 0)),
    }
}

/// What the stream has seen of the execution's units.
#[derive(Debug, Default)]
struct Units {
    total: u64,
    started: HashSet<u64>,
    succeeded: u64,
    failed: u64,
}

impl Units {
    fn progress(&self, state: &str) -> Value {
        json!({"state": state, "total": self.total, "succeeded": self.succeeded, "failed": self.failed})
    }
}

/// The SSE events one history event gives (of the execution, or of one of its child
/// executions: `child` is true for those).
fn translate(event: &EventRecord, child: bool, units: &mut Units) -> Vec<(&'static str, Value)> {
    let details: Value = serde_json::from_str(&event.details).unwrap_or(Value::Null);
    let resource = details["resource"].as_str().unwrap_or_default();
    let embedded =
        |field: &str| serde_json::from_str::<Value>(details[field].as_str().unwrap_or("null")).unwrap_or(Value::Null);
    let status = |status: &str| vec![("execution", json!({"status": status}))];
    match event.event_type.as_str() {
        "ExecutionStarted" if !child => status("RUNNING"),
        "ExecutionSucceeded" if !child => status("SUCCEEDED"),
        "ExecutionFailed" if !child => {
            vec![("execution", json!({"status": "FAILED", "error": details["error"], "cause": details["cause"]}))]
        }
        "ExecutionTimedOut" if !child => status("TIMED_OUT"),
        "ExecutionAborted" if !child => status("ABORTED"),
        "TaskSucceeded" if resource.ends_with(DOCUMENT_TASK) && !child => {
            units.total = embedded("output")["unitCount"].as_u64().unwrap_or(0);
            vec![("map", units.progress("running"))]
        }
        "TaskScheduled" if resource.ends_with(UNIT_TASK) => {
            let index = embedded("parameters")["index"].as_u64();
            match index {
                Some(index) if units.started.insert(index) => vec![("unit.started", json!({"index": index}))],
                _ => Vec::new(),
            }
        }
        "TaskSucceeded" if resource.ends_with(UNIT_TASK) => {
            let output = embedded("output");
            units.succeeded += 1;
            vec![
                (
                    "unit.succeeded",
                    json!({"index": output["index"], "attempts": output["usage"]["attempts"], "throttles": output["usage"]["throttles"]}),
                ),
                ("map", units.progress("running")),
            ]
        }
        "TaskSucceeded" if resource.ends_with(UNIT_FAILURE_TASK) => {
            units.failed += 1;
            vec![("unit.failed", json!({"index": embedded("output")["index"]})), ("map", units.progress("running"))]
        }
        "TaskFailed" | "TaskTimedOut" if resource.ends_with(UNIT_TASK) => {
            let throttled = details["error"].as_str().is_some_and(|e| e.contains("Throttl"));
            let kind = if throttled { "unit.throttled" } else { "unit.retried" };
            vec![(kind, json!({"error": details["error"], "cause": details["cause"]}))]
        }
        _ => Vec::new(),
    }
}

struct Follow {
    state: Arc<AppState>,
    name: String,
    attempt: u32,
    /// The last event read (its `seq`).
    read_up_to: u64,
    /// Events up to this were sent on an earlier connection (`Last-Event-ID`).
    sent_before: Position,
    units: Units,
    pending: VecDeque<Event>,
    changes: tokio::sync::watch::Receiver<u64>,
    unit_changes: Option<tokio::sync::watch::Receiver<u64>>,
    ended: bool,
}

/// The place of the closing `ABORTED` event after the last journal event (a stop writes none).
const ABORTED_EVENT: usize = 1 << 20;

/// Events read from the journal at a time.
const READ_BATCH: usize = 1000;

impl Follow {
    /// Reads the journal past what was read; whether the execution has ended (and everything of
    /// it was read).
    fn read(&mut self) -> Result<bool, ApiError> {
        let journal = self.state.executor.journal();
        let record = journal.get(&self.name)?;
        if record.attempt != self.attempt {
            // A new run (a resume): its own events, its own counts.
            self.attempt = record.attempt;
            self.read_up_to = 0;
            self.units = Units::default();
        }
        let ended = !matches!(record.status, ExecutionState::Queued | ExecutionState::Running);
        let events = journal.events_after(&self.name, record.attempt, self.read_up_to, READ_BATCH)?;
        let complete = events.len() < READ_BATCH;
        for (seq, execution, event) in events {
            self.read_up_to = seq;
            let child = execution != self.name;
            for (k, (kind, data)) in translate(&event, child, &mut self.units).into_iter().enumerate() {
                if (seq, k) > self.sent_before {
                    self.pending.push_back(Event::default().id(event_id((seq, k))).event(kind).data(data.to_string()));
                }
            }
        }
        if ended && complete && record.status == ExecutionState::Aborted {
            // A stop through the API writes no history event: say it, under the last id.
            let position = (self.read_up_to, ABORTED_EVENT);
            if position > self.sent_before {
                self.pending.push_back(
                    Event::default()
                        .id(event_id(position))
                        .event("execution")
                        .data(json!({"status": "ABORTED"}).to_string()),
                );
            }
        }
        Ok(ended && complete)
    }

    async fn wait(&mut self) {
        if self.unit_changes.is_none() {
            self.unit_changes = self.state.executor.progress(&self.name).map(|p| p.subscribe());
        }
        let changes = self.changes.changed();
        match &mut self.unit_changes {
            Some(units) => {
                let gone = tokio::select! {
                    _ = changes => false,
                    changed = units.changed() => changed.is_err(),
                    () = tokio::time::sleep(LOOK_AGAIN) => false,
                };
                if gone {
                    // The run's progress ended: only the journal tells from now on.
                    self.unit_changes = None;
                }
            }
            None => {
                tokio::select! {
                    _ = changes => {}
                    () = tokio::time::sleep(LOOK_AGAIN) => {}
                }
            }
        }
    }
}

/// Live events of an execution (Server-Sent Events); `Last-Event-ID` resumes a dropped stream.
#[utoipa::path(
    get,
    path = "/v1/executions/{name}/events",
    tag = "executions",
    params(
        ("name" = String, Path, description = "The execution's name"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received: the stream goes on after it")
    ),
    responses(
        (status = 200, description = "A text/event-stream of execution, map and unit events", content_type = "text/event-stream", body = serde_json::Value),
        (status = 404, description = "No such execution", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn events(
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    crate::api::execution_record(&state, &name)?;
    let follow = Follow {
        changes: state.executor.subscribe(),
        unit_changes: None,
        state,
        name,
        attempt: 0,
        read_up_to: 0,
        sent_before: parse_last_event_id(&headers).unwrap_or((0, 0)),
        units: Units::default(),
        pending: VecDeque::new(),
        ended: false,
    };
    let stream = futures::stream::unfold(follow, |mut follow| async move {
        loop {
            if let Some(event) = follow.pending.pop_front() {
                return Some((Ok(event), follow));
            }
            if follow.ended || !follow.state.ready.load(Ordering::Relaxed) {
                return None;
            }
            match follow.read() {
                Ok(true) => follow.ended = true,
                Ok(false) if follow.pending.is_empty() => follow.wait().await,
                Ok(false) => {}
                Err(error) => {
                    follow.ended = true;
                    follow.pending.push_back(Event::default().event("error").data(error.message));
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
