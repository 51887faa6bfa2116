//! Task tokens: how a `.waitForTaskToken` Task state hears back from the outside, as
//! `SendTaskSuccess`, `SendTaskFailure` and `SendTaskHeartbeat` do on AWS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::mpsc;

/// What arrived for a waiting task.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Callback {
    Success(Value),
    Failure { error: String, cause: String },
    Heartbeat,
}

/// A callback for a token no task is waiting on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskTokenError {
    /// No task waits for this token: it was never issued, or its task already succeeded,
    /// failed or timed out (AWS answers `TaskDoesNotExist` or `TaskTimedOut`).
    #[error(
        "no task is waiting for the task token '{token}': it is unknown, or its task has already finished or \
         timed out"
    )]
    NotWaiting {
        /// The token that was sent.
        token: String,
    },
}

/// The tasks of an [`Interpreter`](crate::Interpreter) that wait for a callback, by token.
/// Cheap to clone; clones share the waiting tasks.
///
/// A Task state whose `Resource` ends in `.waitForTaskToken` gets a token in `$$.Task.Token`,
/// runs its handler (which passes the token on, in a message for instance), and then waits until
/// someone calls [`TaskTokens::send_success`] or [`TaskTokens::send_failure`] with that token.
/// With `HeartbeatSeconds`, [`TaskTokens::send_heartbeat`] must come at least that often.
#[derive(Clone, Default)]
pub struct TaskTokens {
    waiting: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Callback>>>>,
}

impl std::fmt::Debug for TaskTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskTokens").field("waiting", &self.lock().len()).finish()
    }
}

impl TaskTokens {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Callback>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Completes the task waiting for `token` with `output` as its result.
    pub fn send_success(&self, token: &str, output: Value) -> Result<(), TaskTokenError> {
        self.send(token, Callback::Success(output))
    }

    /// Fails the task waiting for `token` with `error` and `cause`, which its Retry and Catch
    /// see like any task error.
    pub fn send_failure(
        &self,
        token: &str,
        error: impl Into<String>,
        cause: impl Into<String>,
    ) -> Result<(), TaskTokenError> {
        self.send(token, Callback::Failure { error: error.into(), cause: cause.into() })
    }

    /// Tells the task waiting for `token` that its worker is still alive, restarting its
    /// `HeartbeatSeconds` clock.
    pub fn send_heartbeat(&self, token: &str) -> Result<(), TaskTokenError> {
        self.send(token, Callback::Heartbeat)
    }

    /// The tokens tasks are waiting on now, sorted.
    pub fn waiting(&self) -> Vec<String> {
        let mut tokens: Vec<String> = self.lock().keys().cloned().collect();
        tokens.sort();
        tokens
    }

    fn send(&self, token: &str, callback: Callback) -> Result<(), TaskTokenError> {
        let mut waiting = self.lock();
        let delivered = waiting.get(token).is_some_and(|tx| tx.send(callback.clone()).is_ok());
        if !delivered {
            waiting.remove(token);
            return Err(TaskTokenError::NotWaiting { token: token.to_string() });
        }
        // The first success or failure ends the wait; later ones are for a finished task.
        if !matches!(callback, Callback::Heartbeat) {
            waiting.remove(token);
        }
        Ok(())
    }

    /// Starts waiting for `token`; the wait ends when the returned guard is dropped.
    pub(crate) fn register(&self, token: &str) -> Waiting {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(token.to_string(), tx);
        Waiting { tokens: self.clone(), token: token.to_string(), rx }
    }
}

/// A task waiting for callbacks to its token.
pub(crate) struct Waiting {
    tokens: TaskTokens,
    token: String,
    rx: mpsc::UnboundedReceiver<Callback>,
}

impl Waiting {
    /// The next callback.
    pub(crate) async fn next(&mut self) -> Option<Callback> {
        self.rx.recv().await
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.tokens.lock().remove(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn callbacks_reach_the_waiting_task_until_it_finishes() {
        let tokens = TaskTokens::default();
        let mut waiting = tokens.register("t1");
        assert_eq!(tokens.waiting(), vec!["t1"]);
        tokens.send_heartbeat("t1").unwrap();
        tokens.send_success("t1", json!(1)).unwrap();
        assert_eq!(waiting.next().await, Some(Callback::Heartbeat));
        assert_eq!(waiting.next().await, Some(Callback::Success(json!(1))));
        assert!(matches!(tokens.send_success("t1", json!(2)), Err(TaskTokenError::NotWaiting { .. })));
        assert!(tokens.send_failure("nope", "E", "c").is_err());
        let other = tokens.register("t2");
        drop(other);
        assert!(tokens.send_heartbeat("t2").is_err());
        assert!(tokens.waiting().is_empty());
    }
}
