//! Amazon States Language (JSONPath dialect): parsing, validation and an embedded interpreter.
//!
//! BEACON runs its state machine with this interpreter locally and deploys the same definition
//! unchanged to AWS Step Functions, so the interpreter follows AWS's documented semantics: the
//! input/output processing order (`InputPath` → `Parameters` → task → `ResultSelector` →
//! `ResultPath` → `OutputPath`), Retry and Catch, the context object, error names and
//! messages, and the history event names and shapes.
//!
//! The crate knows nothing about documents or LLMs: Task states call [`TaskHandler`]s looked up
//! by `Resource` in a [`TaskRegistry`].
//!
//! # Map
//!
//! * [`StateMachine`]: a validated definition ([`StateMachine::parse`]; problems come back as a
//!   [`DefinitionError`] listing every [`DefinitionIssue`] with a JSON pointer).
//! * [`substitute`]: `${Name}` substitution as SAM/CloudFormation `DefinitionSubstitutions` do.
//! * [`Interpreter`]: runs an execution and returns an [`ExecutionResult`] with the history.
//! * [`JsonPath`]: the path language; [`intrinsics`] for `States.Format` and friends.
//!
//! # Beyond the basic states
//!
//! * [`TaskJournal`] ([`Interpreter::with_task_journal`]): task outcomes are recorded under a key
//!   stable across runs, and a resumed run takes them from the journal instead of calling the
//!   task again.
//! * Payload quota ([`Interpreter::with_payload_limit`], [`DEFAULT_PAYLOAD_LIMIT`]):
//!   `States.DataLimitExceeded` as AWS raises it.
//! * Workflow variables: `Assign` on Pass, Task, Choice (and its rules), Wait, Map, Parallel and
//!   catchers; `$name` wherever a path is read.
//! * Callbacks: `.waitForTaskToken` resources, `$$.Task.Token`, `HeartbeatSeconds`, and
//!   [`TaskTokens`] ([`Interpreter::task_tokens`]) to send success, failure or heartbeats. The
//!   machine-level `TimeoutSeconds` ends an execution [`ExecutionStatus::TimedOut`].
//! * Distributed Map: child executions of a Map Run, `ItemReader` (S3 `getObject` with JSON,
//!   JSONL or CSV; `listObjectsV2`), `ItemBatcher`, `ResultWriter` and `Label`, over the
//!   embedder's [`ObjectStorage`] ([`Interpreter::with_object_storage`]).
//!
//! # Not supported
//!
//! JSONata, `Credentials`, `.sync` integrations, redrive and stopping an execution. See
//! `CONFORMANCE.md` at the repository root for how the engine compares with AWS's recordings.

#![warn(missing_docs)]

mod choice;
mod definition;
mod distributed;
pub mod errors;
mod history;
mod interpreter;
pub mod intrinsics;
mod json;
mod path;
mod payload;
mod retry;
mod storage;
mod substitute;
mod task;
mod task_token;
mod variables;

pub use definition::{DEFAULT_STATE_MACHINE_NAME, DefinitionError, DefinitionIssue, StateMachine};
pub use history::{ExecutionObserver, HistoryEvent};
pub use interpreter::{DEFAULT_PAYLOAD_LIMIT, ExecutionResult, ExecutionStatus, Interpreter, Sleeper, TokioSleeper};
pub use path::{JsonPath, PathError, ValuePath};
pub use storage::{ObjectInfo, ObjectStorage};
pub use substitute::substitute;
pub use task::{TaskContext, TaskFailure, TaskHandler, TaskJournal, TaskRegistry};
pub use task_token::{TaskTokenError, TaskTokens};
