//! The predefined `States.*` error names.

/// Wildcard in `ErrorEquals` matching any error except [`RUNTIME`] and [`DATA_LIMIT_EXCEEDED`].
pub const ALL: &str = "States.ALL";
/// A failure the execution cannot recover from (bad path, bad input shape); never retried or
/// caught.
pub const RUNTIME: &str = "States.Runtime";
/// A task failed; in `ErrorEquals` it matches any error except [`TIMEOUT`].
pub const TASK_FAILED: &str = "States.TaskFailed";
/// A task ran longer than its `TimeoutSeconds`.
pub const TIMEOUT: &str = "States.Timeout";
/// A `.waitForTaskToken` task heard no heartbeat for longer than its `HeartbeatSeconds`.
pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
/// A Distributed Map's `ItemReader` could not read or parse its items.
pub const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
/// A Distributed Map's `ResultWriter` could not write its results.
pub const RESULT_WRITER_FAILED: &str = "States.ResultWriterFailed";
/// A Choice state matched no rule and has no `Default`.
pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
/// An intrinsic function failed on its arguments.
pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
/// `ResultPath` could not be applied to the state's input.
pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
/// A Map state had more failed iterations than it tolerates.
pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
/// A state's input or output, or a task's result, is larger than the payload limit.
pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";

/// True when a retrier or catcher with `error_equals` handles `error` (terminal errors such as
/// an oversized state output are decided by the interpreter, which knows where they came from).
pub(crate) fn matches(error_equals: &[String], error: &str) -> bool {
    if error == RUNTIME {
        return false;
    }
    error_equals.iter().any(|name| name == error || name == ALL || (name == TASK_FAILED && error != TIMEOUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wildcards() {
        assert!(matches(&names(&["States.ALL"]), "Custom.Error"));
        assert!(matches(&names(&["States.ALL"]), TIMEOUT));
        assert!(matches(&names(&["States.TaskFailed"]), "Custom.Error"));
        assert!(!matches(&names(&["States.TaskFailed"]), TIMEOUT));
        assert!(!matches(&names(&["States.ALL"]), RUNTIME));
        assert!(matches(&names(&["A", "B"]), "B"));
        assert!(!matches(&names(&["A"]), "a"));
    }
}
