//! How far each state got, counted from the execution's history events as they are written
//! (its own and its distributed Map children's), so a drawing can colour every state.
//!
//! An event other than `...StateEntered` / `...StateExited` names no state; it belongs to the
//! state whose `...StateEntered` its `previousEventId` chain leads back to (AWS's histories are
//! linked that way), which is how a `TaskFailed` is put on its state even when inline Map
//! iterations interleave their events.

use std::collections::{HashMap, HashSet};

use beacon_store::journal::EventRecord;
use serde_json::Value;

/// Map iterations or child executions by how they stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub aborted: u64,
    /// Items the Map said it would run (`MapStateStarted.length`; 0 when an ItemReader reads them).
    pub items: u64,
}

impl Progress {
    pub fn running(&self) -> u64 {
        self.started.saturating_sub(self.succeeded + self.failed + self.aborted)
    }

    pub fn pending(&self) -> u64 {
        self.items.saturating_sub(self.started)
    }
}

/// What happened to one state (over all its iterations and child executions).
#[derive(Debug, Clone, Default)]
pub struct StateTally {
    pub entered: u64,
    pub exited: u64,
    /// Failure events of the state (a task's error, a Map's failure), retried or caught or not.
    pub failures: u64,
    /// Times it was left through a Catch (its last attempt failed, and the execution went on).
    pub caught: u64,
    /// A Map's iterations (inline) ...
    pub iterations: Progress,
    /// ... or child executions (distributed).
    pub children: Progress,
    /// The `Status` of the last AWS SDK answer (a Bedrock batch job's `InProgress`, ...).
    pub detail: Option<String>,
}

/// The tally of one execution's latest run.
#[derive(Debug, Default)]
pub struct Tally {
    /// The journal's `seq` of the last event counted.
    pub read_up_to: u64,
    states: HashMap<String, StateTally>,
    /// Every visit of a state (a `...StateEntered`), in the order they began.
    visits: Vec<Visit>,
    /// The visit each event belongs to, by execution (the parent and each child) and event id.
    owner: HashMap<(u32, u64), u32>,
    /// Events that begin a scope inside a Map or Parallel (`MapIterationStarted`,
    /// `ParallelStateStarted`): a state entered after one is inside the visit that owns it.
    scope_starts: HashSet<(u32, u64)>,
    executions: HashMap<String, u32>,
    /// Visits whose last attempt failed: left now, they are caught.
    failing: HashSet<u32>,
    /// The distributed Map whose Map Run started last: children belong to it.
    map_run: Option<String>,
}

/// One visit of a state: which, inside which visit (a Map's or Parallel's), still open or not.
#[derive(Debug)]
struct Visit {
    state: String,
    /// `Task`, `Map`, `Parallel`, ... (from `TaskStateEntered` and its kind).
    kind: String,
    parent: Option<u32>,
    open: bool,
}

const FAILURES: [&str; 11] = [
    "TaskFailed",
    "TaskTimedOut",
    "TaskStartFailed",
    "TaskSubmitFailed",
    "LambdaFunctionFailed",
    "LambdaFunctionTimedOut",
    "MapStateFailed",
    "ParallelStateFailed",
    "MapRunFailed",
    // A failure no task reported (a Pass's or Choice's runtime error, a path that failed).
    "ExecutionFailed",
    "ExecutionTimedOut",
];

const SUCCESSES: [&str; 5] =
    ["TaskSucceeded", "LambdaFunctionSucceeded", "MapStateSucceeded", "ParallelStateSucceeded", "MapRunSucceeded"];

impl Tally {
    pub fn state(&self, name: &str) -> Option<&StateTally> {
        self.states.get(name)
    }

    /// Counts one event of `execution` (the parent's name, or a child's `parent/child`).
    pub fn count(&mut self, parent: &str, execution: &str, event: &EventRecord) {
        let next = self.executions.len() as u32;
        let exec = *self.executions.entry(execution.to_string()).or_insert(next);
        let kind = event.event_type.as_str();
        // The details are read only for the events that need them, and once.
        let wanted = kind.ends_with("StateEntered")
            || kind.ends_with("StateExited")
            || kind.starts_with("MapIteration")
            || kind == "MapStateStarted"
            || kind == "TaskSucceeded";
        let details =
            if wanted { serde_json::from_str::<Value>(&event.details).unwrap_or(Value::Null) } else { Value::Null };
        let name = details.get("name").and_then(Value::as_str);
        let before = self.owner.get(&(exec, event.previous_id)).copied();

        if let Some(state) = kind.strip_suffix("StateEntered") {
            let Some(name) = name else { return };
            // Inside the visit that began this scope, or beside the visit before it.
            let inside = if self.scope_starts.contains(&(exec, event.previous_id)) {
                before
            } else {
                before.and_then(|v| self.visits[v as usize].parent)
            };
            let visit = self.visits.len() as u32;
            self.visits.push(Visit { state: name.to_string(), kind: state.to_string(), parent: inside, open: true });
            self.owner.insert((exec, event.id), visit);
            self.states.entry(name.to_string()).or_default().entered += 1;
            return;
        }
        if matches!(kind, "MapIterationStarted" | "ParallelStateStarted") {
            self.scope_starts.insert((exec, event.id));
        }
        // A Map's or Parallel's own events follow the last event of its iterations or branches
        // (as on AWS): they belong to the nearest open visit of that kind above it.
        let visit = if let Some(name) = kind.strip_suffix("StateExited").and(name) {
            self.open_above(before, |v| v.state == name)
        } else if kind.starts_with("MapState") || kind.starts_with("MapRun") {
            self.open_above(before, |v| v.kind == "Map")
        } else if kind.starts_with("ParallelState") {
            self.open_above(before, |v| v.kind == "Parallel")
        } else {
            before
        };
        if let Some(visit) = visit {
            self.owner.insert((exec, event.id), visit);
        }

        if execution != parent
            && let Some(map) = &self.map_run
        {
            let children = &mut self.states.entry(map.clone()).or_default().children;
            match kind {
                "ExecutionStarted" => children.started += 1,
                "ExecutionSucceeded" => children.succeeded += 1,
                "ExecutionFailed" | "ExecutionTimedOut" => children.failed += 1,
                "ExecutionAborted" => children.aborted += 1,
                _ => {}
            }
        }
        if kind.starts_with("MapIteration") {
            if let Some(name) = name {
                let iterations = &mut self.states.entry(name.to_string()).or_default().iterations;
                match kind {
                    "MapIterationStarted" => iterations.started += 1,
                    "MapIterationSucceeded" => iterations.succeeded += 1,
                    "MapIterationFailed" => iterations.failed += 1,
                    "MapIterationAborted" => iterations.aborted += 1,
                    _ => {}
                }
            }
            return;
        }
        let Some(visit) = visit else { return };
        let name = self.visits[visit as usize].state.clone();
        if kind.ends_with("StateExited") {
            self.visits[visit as usize].open = false;
            let state = self.states.entry(name).or_default();
            state.exited += 1;
            if self.failing.remove(&visit) {
                state.caught += 1;
            }
            return;
        }
        if !self.visits[visit as usize].open {
            return;
        }
        let state = self.states.entry(name.clone()).or_default();
        match kind {
            "MapStateStarted" => state.iterations.items += details.get("length").and_then(Value::as_u64).unwrap_or(0),
            "MapRunStarted" => self.map_run = Some(name),
            _ if FAILURES.contains(&kind) => {
                // The execution's failure after the state's own is one failure, not two.
                if !(kind.starts_with("Execution") && self.failing.contains(&visit)) {
                    state.failures += 1;
                }
                self.failing.insert(visit);
            }
            _ if SUCCESSES.contains(&kind) => {
                self.failing.remove(&visit);
                let sdk =
                    details.get("resourceType").and_then(Value::as_str).is_some_and(|t| t.starts_with("aws-sdk:"));
                if sdk {
                    let output = match details.get("output") {
                        Some(Value::String(text)) => serde_json::from_str(text).unwrap_or(Value::Null),
                        other => other.cloned().unwrap_or(Value::Null),
                    };
                    if let Some(status) = output.get("Status").and_then(Value::as_str) {
                        state.detail = Some(status.to_string());
                    }
                }
            }
            _ => {}
        }
    }

    /// The visit `from` or the nearest above it that is open and `fits`.
    fn open_above(&self, from: Option<u32>, fits: impl Fn(&Visit) -> bool) -> Option<u32> {
        let mut at = from;
        while let Some(v) = at {
            let visit = &self.visits[v as usize];
            if visit.open && fits(visit) {
                return Some(v);
            }
            at = visit.parent;
        }
        None
    }
}

/// How a state stands, as the drawing colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not entered (yet).
    NotRun,
    Running,
    Succeeded,
    /// It failed and the execution went on through a `Catch`.
    Caught,
    Failed,
    /// Entered and never left: the execution was stopped.
    Aborted,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::NotRun => "notRun",
            Standing::Running => "running",
            Standing::Succeeded => "succeeded",
            Standing::Caught => "caught",
            Standing::Failed => "failed",
            Standing::Aborted => "aborted",
        }
    }

    /// `running`: whether the execution is still going.
    pub fn of(tally: Option<&StateTally>, running: bool) -> Standing {
        let Some(t) = tally.filter(|t| t.entered > 0) else { return Standing::NotRun };
        let inside = t.entered > t.exited;
        match (inside, running) {
            (true, true) => Standing::Running,
            (true, false) if t.failures > 0 => Standing::Failed,
            (true, false) => Standing::Aborted,
            (false, _) if t.caught > 0 => Standing::Caught,
            (false, _) => Standing::Succeeded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: u64, previous: u64, kind: &str, details: Value) -> EventRecord {
        EventRecord {
            id,
            previous_id: previous,
            timestamp: String::new(),
            event_type: kind.into(),
            details: details.to_string(),
        }
    }

    #[test]
    fn interleaved_iterations_put_each_failure_on_its_state_and_a_caught_one_shows_as_caught() {
        let mut t = Tally::default();
        let p = "run";
        let events = [
            event(1, 0, "ExecutionStarted", json!({})),
            event(2, 1, "MapStateEntered", json!({"name": "Units"})),
            event(3, 2, "MapStateStarted", json!({"length": 2})),
            event(4, 3, "MapIterationStarted", json!({"name": "Units", "index": 0})),
            event(5, 3, "MapIterationStarted", json!({"name": "Units", "index": 1})),
            event(6, 4, "TaskStateEntered", json!({"name": "Analyse"})),
            event(7, 5, "TaskStateEntered", json!({"name": "Analyse"})),
            event(8, 6, "TaskScheduled", json!({})),
            event(9, 7, "TaskScheduled", json!({})),
            event(10, 9, "TaskFailed", json!({"error": "Beacon.Transient"})),
            event(11, 8, "TaskSucceeded", json!({"output": "{}"})),
            event(12, 11, "TaskStateExited", json!({"name": "Analyse"})),
            event(13, 12, "MapIterationSucceeded", json!({"name": "Units", "index": 0})),
        ];
        for e in &events {
            t.count(p, p, e);
        }
        let analyse = t.state("Analyse").unwrap();
        assert_eq!((analyse.entered, analyse.exited, analyse.failures), (2, 1, 1));
        assert_eq!(Standing::of(Some(analyse), true), Standing::Running);
        assert_eq!(Standing::of(Some(analyse), false), Standing::Failed, "stuck in it after a failure");
        let units = t.state("Units").unwrap();
        assert_eq!(units.iterations, Progress { started: 2, succeeded: 1, failed: 0, aborted: 0, items: 2 });
        assert_eq!(units.iterations.running(), 1);
        assert_eq!(units.iterations.pending(), 0);
        // The failed iteration's task is caught: its state is left after the failure.
        t.count(p, p, &event(14, 10, "TaskStateExited", json!({"name": "Analyse"})));
        let analyse = t.state("Analyse").unwrap();
        assert_eq!(Standing::of(Some(analyse), false), Standing::Caught);
        assert_eq!(Standing::of(t.state("Nowhere"), true), Standing::NotRun);
    }

    #[test]
    fn a_container_s_own_events_are_its_own_even_after_its_branches_last_event() {
        let mut t = Tally::default();
        let p = "run";
        let events = [
            event(1, 0, "ExecutionStarted", json!({})),
            event(2, 1, "ParallelStateEntered", json!({"name": "Both"})),
            event(3, 2, "ParallelStateStarted", json!(null)),
            event(4, 3, "PassStateEntered", json!({"name": "Left"})),
            event(5, 3, "TaskStateEntered", json!({"name": "Right"})),
            event(6, 4, "PassStateExited", json!({"name": "Left"})),
            event(7, 5, "TaskScheduled", json!({})),
            event(8, 7, "TaskFailed", json!({"error": "X"})),
            // AWS links the Parallel's failure to the last event of its branches.
            event(9, 8, "ParallelStateFailed", json!({})),
            event(10, 9, "ExecutionFailed", json!({"error": "X"})),
        ];
        for e in &events {
            t.count(p, p, e);
        }
        let both = t.state("Both").unwrap();
        assert_eq!((both.entered, both.exited, both.failures), (1, 0, 1));
        assert_eq!(Standing::of(Some(both), false), Standing::Failed, "not aborted: it failed");
        assert_eq!(t.state("Right").unwrap().failures, 1, "its task's failure once, not again for the Parallel's");
        assert_eq!(Standing::of(t.state("Left"), false), Standing::Succeeded);

        // A Pass's runtime error names no task; caught, the state is left through the Catch.
        let mut t = Tally::default();
        t.count(p, p, &event(1, 0, "PassStateEntered", json!({"name": "Shape"})));
        t.count(p, p, &event(2, 1, "ExecutionFailed", json!({"error": "States.Runtime"})));
        assert_eq!(Standing::of(t.state("Shape"), false), Standing::Failed);
    }

    #[test]
    fn child_executions_count_for_the_map_run_and_an_sdk_answer_s_status_is_kept() {
        let mut t = Tally::default();
        let p = "run";
        t.count(p, p, &event(1, 0, "MapStateEntered", json!({"name": "Many"})));
        t.count(p, p, &event(2, 1, "MapStateStarted", json!({"length": 0})));
        t.count(p, p, &event(3, 2, "MapRunStarted", json!({"mapRunArn": "arn"})));
        for (child, end) in [("run/a", "ExecutionSucceeded"), ("run/b", "ExecutionFailed")] {
            t.count(p, child, &event(1, 0, "ExecutionStarted", json!({})));
            t.count(p, child, &event(2, 1, "PassStateEntered", json!({"name": "Inner"})));
            t.count(p, child, &event(3, 2, "PassStateExited", json!({"name": "Inner"})));
            t.count(p, child, &event(4, 3, end, json!({})));
        }
        t.count(p, "run/c", &event(1, 0, "ExecutionStarted", json!({})));
        let many = t.state("Many").unwrap();
        assert_eq!((many.children.started, many.children.succeeded, many.children.failed), (3, 1, 1));
        assert_eq!(many.children.running(), 1);
        assert_eq!(t.state("Inner").unwrap().entered, 2, "a child's states count too");

        t.count(p, p, &event(4, 3, "TaskStateEntered", json!({"name": "Poll"})));
        t.count(p, p, &event(5, 4, "TaskScheduled", json!({})));
        let answer = json!({"resourceType": "aws-sdk:bedrock", "output": "{\"Status\":\"InProgress\"}"});
        t.count(p, p, &event(6, 5, "TaskSucceeded", answer));
        assert_eq!(t.state("Poll").unwrap().detail.as_deref(), Some("InProgress"));
    }
}
