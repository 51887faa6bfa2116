//! The BEACON flow: configuration, the state machine's task handlers, prompts, unit and report
//! schemas, and the integration of unit results into a report.
//!
//! This crate depends on `beacon-asl`, `beacon-ingest`, `beacon-llm` and `beacon-store` through
//! their public types only; it knows nothing about terminals (see `beacon-cli`) or AWS Lambda.

pub mod answer;
pub mod batch_jobs;
pub mod buckets;
pub mod config;
pub mod deadline;
pub mod flow;
pub mod journal;
pub mod plan;
pub mod pool;
pub mod pricing;
pub mod progress;
pub mod prompt;
pub mod report;
pub mod schema;
pub mod tasks;

pub use config::{Config, ProviderKind, Secret};
pub use flow::{Queued, RunError, RunOptions, RunOutcome, Runner, UnitOptions};
pub use progress::{NoProgress, Progress, UnitEnd};
pub use tasks::Services;
