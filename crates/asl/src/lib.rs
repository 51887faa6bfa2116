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
//! # Not supported
//!
//! JSONata, variables (`Assign`), `ItemReader`/`ResultWriter`/`ItemBatcher`, `States.Hash`,
//! heartbeats and task tokens, and the machine-level `TimeoutSeconds` (accepted, not enforced).
//! A `DISTRIBUTED` Map runs inline.

#![warn(missing_docs)]

mod choice;
mod definition;
pub mod errors;
mod history;
mod interpreter;
pub mod intrinsics;
mod json;
mod path;
mod payload;
mod retry;
mod substitute;
mod task;

pub use definition::{DEFAULT_STATE_MACHINE_NAME, DefinitionError, DefinitionIssue, StateMachine};
pub use history::{ExecutionObserver, HistoryEvent};
pub use interpreter::{ExecutionResult, ExecutionStatus, Interpreter, Sleeper, TokioSleeper};
pub use path::{JsonPath, PathError, ValuePath};
pub use substitute::substitute;
pub use task::{TaskContext, TaskFailure, TaskHandler, TaskRegistry};
