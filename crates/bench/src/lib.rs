//! The measurements behind BENCHMARKS.md, as a library so that tests can run reduced forms of
//! them (see `tests/quota_reduced.rs`); the `beacon-bench` binary prints the tables.

pub mod engine;
pub mod ingest;
pub mod listing;
pub mod quota;
pub mod serve;
pub mod tokens;
pub mod world;
