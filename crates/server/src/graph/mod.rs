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

/// One execution's drawing and tally: `None` until first drawn (or after a new attempt began).
#[derive(Default)]
struct Kept {
    drawn: Option<(u32, Arc<Drawing>, Tally)>,
}

/// An execution's entry, shared by everyone drawing it, and when it was last used.
type Entry = (Arc<Mutex<Kept>>, Instant);

/// The drawings and tallies kept between calls; callers for one execution share its entry (one
/// reads the journal, the next finds it read).
#[derive(Default)]
pub struct Graphs {
    kept: Mutex<HashMap<String, Entry>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Graphs {
    fn entry(&self, name: &str) -> Arc<Mutex<Kept>> {
        let mut all = lock(&self.kept);
        if let Some((kept, used)) = all.get_mut(name) {
            *used = Instant::now();
            return kept.clone();
        }
        if all.len() >= KEPT
            && let Some(oldest) = all.iter().min_by_key(|(_, (_, used))| *used).map(|(n, _)| n.clone())
        {
            all.remove(&oldest);
        }
        let kept = Arc::new(Mutex::new(Kept::default()));
        all.insert(name.to_string(), (kept.clone(), Instant::now()));
        kept
    }
}

/// A state (or a scope's start or end) in the drawing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphNode {
    /// Unique in the drawing (`n0`, `n1`, ...); arrows and `parent` name boxes by it.
    pub id: String,
    /// The state's name (`Start` or `End` for a scope's markers).
    pub name: String,
    /// The state's name; none for a marker.
    pub state: Option<String>,
    /// `start`, `end` or `state`.
    pub kind: String,
    /// The state's `Type` (`Task`, `Choice`, `Map`, ...).
    #[serde(rename = "type")]
    pub state_type: Option<String>,
    /// The id of the Map or Parallel it is drawn inside.
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
    /// Node ids.
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
    /// Where its label goes, `[x, y]`.
    #[schema(value_type = Vec<f64>)]
    pub label_at: [f64; 2],
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
    let entry = state.graphs.entry(&name);
    // Reading and counting a long history is blocking work: off the async threads.
    let view = tokio::task::spawn_blocking(move || -> Result<GraphView, ApiError> {
        let mut kept = lock(&entry);
        let fresh = kept.drawn.as_ref().is_none_or(|(attempt, _, _)| *attempt != record.attempt);
        if fresh {
            let definition: serde_json::Value = serde_json::from_str(&record.definition)
                .map_err(|e| ApiError::internal("the journaled definition is not JSON", e))?;
            let scope = shape::machine(&definition)
                .ok_or_else(|| ApiError::internal("the journaled definition has no states", "no States object"))?;
            kept.drawn = Some((record.attempt, Arc::new(layout::draw(&scope)), Tally::default()));
        }
        let Some((_, drawing, tally)) = kept.drawn.as_mut() else {
            return Err(ApiError::internal("the drawing could not be made", "nothing drawn"));
        };
        let journal = state.executor.journal();
        loop {
            let events = journal.events_after(&name, record.attempt, tally.read_up_to, READ_BATCH)?;
            let complete = events.len() < READ_BATCH;
            for (seq, execution, event) in events {
                tally.read_up_to = seq;
                tally.count(&name, &execution, &event);
            }
            if complete {
                break;
            }
        }
        Ok(view(drawing, tally, record.status))
    })
    .await
    .map_err(|e| ApiError::internal("the drawing could not be made", e))??;
    Ok(Json(view))
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn view(drawing: &Drawing, tally: &Tally, status: ExecutionState) -> GraphView {
    let running = matches!(status, ExecutionState::Running | ExecutionState::Queued);
    let ids: HashMap<&str, String> =
        drawing.boxes.iter().enumerate().map(|(i, b)| (b.id.as_str(), format!("n{i}"))).collect();
    let id_of = |internal: &str| ids.get(internal).cloned().unwrap_or_default();
    let mut nodes: Vec<GraphNode> = Vec::with_capacity(drawing.boxes.len());
    for b in &drawing.boxes {
        let t = match b.kind {
            Kind::State(_) => tally.state(&b.name),
            _ => None,
        };
        let owner = b.parent.as_deref().and_then(|p| tally.state(p));
        let standing = match (&b.kind, &b.parent) {
            (Kind::State(_), _) => Standing::of(t, running),
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
            (Kind::Start, Some(_)) if owner.is_some_and(|o| o.entered > 0) => Standing::Succeeded,
            (Kind::End, Some(_)) if owner.is_some_and(|o| o.exited > 0) => Standing::Succeeded,
            _ => Standing::NotRun,
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
        let (kind, state_type, state) = match &b.kind {
            Kind::Start => ("start", None, None),
            Kind::End => ("end", None, None),
            Kind::State(t) => ("state", Some(t.clone()), Some(b.name.clone())),
        };
        nodes.push(GraphNode {
            id: id_of(&b.id),
            name: b.name.clone(),
            state,
            kind: kind.into(),
            state_type,
            parent: b.parent.as_deref().map(id_of),
            distributed: b.distributed,
            x: round(b.x),
            y: round(b.y),
            w: round(b.w),
            h: round(b.h),
            status: standing.as_str().into(),
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
        .map(|a| {
            let (from, to) = (id_of(&a.from), id_of(&a.to));
            let taken =
                ran.get(from.as_str()).copied().unwrap_or(false) && ran.get(to.as_str()).copied().unwrap_or(false);
            GraphEdge {
                kind: a.kind.as_str().into(),
                label: a.label.clone(),
                rules: a.rules.clone(),
                points: a.points.iter().map(|p| [round(p[0]), round(p[1])]).collect(),
                back: a.back,
                taken,
                label_at: label_at(a),
                from,
                to,
            }
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

/// Where an arrow's label goes: two thirds down its first stretch (where arrows leaving one box
/// have parted), or halfway up the lane of an arrow going back up.
fn label_at(arrow: &layout::PlacedArrow) -> [f64; 2] {
    let (a, b, at) = match (arrow.back, arrow.points.as_slice()) {
        (true, [_, _, _, a, b, ..]) => (*a, *b, 0.5),
        (_, [a, b, ..]) => (*a, *b, 0.66),
        _ => ([0.0, 0.0], [0.0, 0.0], 0.0),
    };
    [round(a[0] + (b[0] - a[0]) * at + 4.0), round(a[1] + (b[1] - a[1]) * at)]
}
