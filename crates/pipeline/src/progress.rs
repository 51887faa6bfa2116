//! Progress reporting from the flow to whoever shows it (a terminal bar, log lines, an API).

/// How one unit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitEnd {
    Succeeded,
    Failed,
}

/// Receives progress as the flow runs. Implementations must be cheap and non-blocking: they
/// are called from the tasks' hot path.
pub trait Progress: Send + Sync {
    /// The document was split; `units` will be analysed.
    fn units_planned(&self, _units: usize) {}
    /// One unit finished for good (after all retries).
    fn unit_finished(&self, _index: usize, _end: UnitEnd) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
