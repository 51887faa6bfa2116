//! The integrated report: its JSON model ([`Report`]), how unit results merge into it
//! ([`integrate`]), and its Markdown rendering ([`markdown`]).
//!
//! The JSON shape is documented by `docs/report.schema.json` at the repository root; a test
//! keeps the two in step.

mod integrate;
pub mod markdown;
mod model;

pub use integrate::{ReportContext, UnitOutcome, integrate};
pub use model::*;
