//! `GET /v1/executions/{name}/graph`: the state machine that ran, laid out as boxes and arrows,
//! each state with how it stands (from the history), a Map with its iterations or child
//! executions, an AWS SDK task with the status it last read (a batch job's). The console draws
//! it as it is given; the layout is here so that it is tested with the rest of the server.
//!
//! The layout of a definition and the tally of an execution's history are kept between calls
//! (for the last [`KEPT`] executions looked at), so following a live execution reads only the
//! events written since the last look.

mod layout;
mod shape;
mod tally;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use beacon_store::journal::ExecutionState;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::api::execution_record;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiPath;
use layout::Drawing;
use shape::Kind;
use tally::{Progress, Standing, Tally};

/// Executions whose drawing and tally are kept.
const KEPT: usize = 32;
/// Events read from the journal at a time.
const READ_BATCH: usize = 5000;

struct Kept {
    attempt: u32,
    drawing: Arc<Drawing>,
    tally: Tally,
    used: Instant,
}

/// The drawings and tallies kept between calls.
#[derive(Default)]
pub struct Graphs {
    kept: Mutex<HashMap<String, Kept>>,
}

impl Graphs {
    fn take(&self, name: &str) -> Option<Kept> {
        self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(name)
    }

    fn keep(&self, name: &str, kept: Kept) {
        let mut all = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if all.len() >= KEPT
            && let Some(oldest) = all.iter().min_by_key(|(_, k)| k.used).map(|(n, _)| n.clone())
        {
            all.remove(&oldest);
        }
        all.insert(name.to_string(), kept);
    }
}

/// A state (or a scope's start or end) in the drawing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphNode {
    /// Unique in the drawing: the state's name, or `<scope>#start` / `<scope>#end`.
    pub id: String,
    pub name: String,
    /// `start`, `end` or `state`.
    pub kind: String,
    /// The state's `Type` (`Task`, `Choice`, `Map`, ...).
    #[serde(rename = "type")]
    pub state_type: Option<String>,
    /// The Map or Parallel it is drawn inside.
    pub parent: Option<String>,
    /// A Map whose iterations are child executions.
    pub distributed: bool,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    /// `notRun`, `running`, `succeeded`, `caught` (failed, then went on through a Catch),
    /// `failed` or `aborted`.
    pub status: String,
    /// Times entered (a state inside a Map: once per iteration) and failure events seen.
    pub entered: u64,
    pub failures: u64,
    /// A Map's iterations (or child executions when it is distributed).
    pub progress: Option<GraphProgress>,
    /// What an AWS SDK task last read (`Status` of its answer, e.g. a batch job's `InProgress`).
    pub detail: Option<String>,
}

/// A Map's iterations by how they stand.
#[derive(Debug, Serialize, ToSchema)]
pub struct GraphProgress {
    pub succeeded: u64,
    pub running: u64,
    pub failed: u64,
    pub aborted: u64,
    /// Not started yet (known when the Map was given its items; not for an ItemReader's).
    pub pending: u64,
    /// Whether these are child executions (a distributed Map) rather than inline iterations.
    pub children: bool,
}

/// A transition.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphEdge {
    pub from: String,
    pub to: String,
    /// `next`, `choice`, `default` or `catch`.
    pub kind: String,
    /// The Choice rules (`|` between them), `Default`, or the errors a Catch takes.
    pub label: Option<String>,
    /// The numbers (from 1) of the Choice rules it stands for.
    pub rules: Vec<usize>,
    /// The points it passes through, `[x, y]`.
    #[schema(value_type = Vec<Vec<f64>>)]
    pub points: Vec<[f64; 2]>,
    /// It goes back up (a loop).
    pub back: bool,
    /// Both its ends ran.
    pub taken: bool,
}

/// The drawing of an execution's state machine, in pixels.
#[derive(Debug, Serialize, ToSchema)]
pub struct GraphView {
    /// The execution's status.
    pub status: String,
    pub width: f64,
    pub height: f64,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

/// The execution's state machine with each state's status.
#[utoipa::path(
    get,
    path = "/v1/executions/{name}/graph",
    tag = "executions",
    params(("name" = String, Path, description = "The execution's name")),
    responses(
        (status = 200, description = "The drawing", body = GraphView),
        (status = 404, description = "No such execution", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_graph(
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<GraphView>, ApiError> {
    let record = execution_record(&state, &name)?;
    let mut kept = match state.graphs.take(&name) {
        Some(kept) if kept.attempt == record.attempt => kept,
        _ => {
            let definition: serde_json::Value = serde_json::from_str(&record.definition)
                .map_err(|e| ApiError::internal("the journaled definition is not JSON", e))?;
            let scope = shape::machine(&definition)
                .ok_or_else(|| ApiError::internal("the journaled definition has no states", "no States object"))?;
            Kept {
                attempt: record.attempt,
                drawing: Arc::new(layout::draw(&scope)),
                tally: Tally::default(),
                used: Instant::now(),
            }
        }
    };
    let journal = state.executor.journal();
    loop {
        let events = journal.events_after(&name, record.attempt, kept.tally.read_up_to, READ_BATCH)?;
        let complete = events.len() < READ_BATCH;
        for (seq, execution, event) in events {
            kept.tally.read_up_to = seq;
            kept.tally.count(&name, &execution, &event);
        }
        if complete {
            break;
        }
    }
    kept.used = Instant::now();
    let view = view(&kept.drawing, &kept.tally, record.status);
    state.graphs.keep(&name, kept);
    Ok(Json(view))
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn view(drawing: &Drawing, tally: &Tally, status: ExecutionState) -> GraphView {
    let running = matches!(status, ExecutionState::Running | ExecutionState::Queued);
    let standing = |id: &str| Standing::of(tally.state(id), running);
    let mut nodes: Vec<GraphNode> = Vec::with_capacity(drawing.boxes.len());
    for b in &drawing.boxes {
        let t = tally.state(&b.id);
        let status = match (&b.kind, &b.parent) {
            (Kind::State(_), _) => standing(&b.id),
            // The top level's start and end are the execution's.
            (Kind::Start, None) if status == ExecutionState::Queued => Standing::NotRun,
            (Kind::Start, None) => Standing::Succeeded,
            (Kind::End, None) => match status {
                ExecutionState::Succeeded => Standing::Succeeded,
                ExecutionState::Failed | ExecutionState::TimedOut => Standing::Failed,
                ExecutionState::Aborted => Standing::Aborted,
                _ => Standing::NotRun,
            },
            // A scope inside a Map or Parallel starts when its owner is entered, ends when left.
            (kind, Some(parent)) => {
                let owner = tally.state(parent);
                let reached = if *kind == Kind::Start {
                    owner.is_some_and(|o| o.entered > 0)
                } else {
                    owner.is_some_and(|o| o.exited > 0)
                };
                if reached { Standing::Succeeded } else { Standing::NotRun }
            }
        };
        let progress = t.filter(|_| b.kind == Kind::State("Map".into())).map(|t| {
            let (p, children): (&Progress, bool) =
                if b.distributed { (&t.children, true) } else { (&t.iterations, false) };
            GraphProgress {
                succeeded: p.succeeded,
                running: p.running(),
                failed: p.failed,
                aborted: p.aborted,
                pending: p.pending(),
                children,
            }
        });
        nodes.push(GraphNode {
            id: b.id.clone(),
            name: b.name.clone(),
            kind: match b.kind {
                Kind::Start => "start",
                Kind::End => "end",
                Kind::State(_) => "state",
            }
            .into(),
            state_type: match &b.kind {
                Kind::State(t) => Some(t.clone()),
                _ => None,
            },
            parent: b.parent.clone(),
            distributed: b.distributed,
            x: round(b.x),
            y: round(b.y),
            w: round(b.w),
            h: round(b.h),
            status: status.as_str().into(),
            entered: t.map_or(0, |t| t.entered),
            failures: t.map_or(0, |t| t.failures),
            progress,
            detail: t.and_then(|t| t.detail.clone()),
        });
    }
    let ran: HashMap<&str, bool> = nodes.iter().map(|n| (n.id.as_str(), n.status != "notRun")).collect();
    let edges = drawing
        .arrows
        .iter()
        .map(|a| GraphEdge {
            from: a.from.clone(),
            to: a.to.clone(),
            kind: a.kind.as_str().into(),
            label: a.label.clone(),
            rules: a.rules.clone(),
            points: a.points.iter().map(|p| [round(p[0]), round(p[1])]).collect(),
            back: a.back,
            taken: ran.get(a.from.as_str()).copied().unwrap_or(false)
                && ran.get(a.to.as_str()).copied().unwrap_or(false),
        })
        .collect();
    GraphView {
        status: status.as_str().into(),
        width: round(drawing.width),
        height: round(drawing.height),
        nodes,
        edges,
    }
}
