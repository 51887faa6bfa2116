use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the report format; bumped on incompatible changes.
pub const REPORT_SCHEMA_VERSION: &str = "1";

/// The report of one document (`report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: String,
    pub generated_at: String,
    pub document: DocumentInfo,
    /// The parallel strategy the state machine chose: `inline`, `distributed` or `batch`.
    pub strategy: String,
    /// Why the run left its strategy's normal path, when it did (e.g. a batch job that ended
    /// `Failed`, so its units were analysed on demand).
    pub strategy_note: Option<String>,
    /// How many units took each processing path (`inline`, `distributed`, `batch`, `on-demand`).
    pub unit_paths: std::collections::BTreeMap<String, usize>,
    /// The model that analysed the units (`offline` for the built-in analyzer).
    pub model: String,
    /// The execution that produced this report.
    pub execution: String,
    /// A short summary of the whole document, in its language.
    pub summary: String,
    /// Section headings in document order, with the units they appear in.
    pub sections: Vec<Section>,
    /// Key-value fields merged across units (same name and value appear once).
    pub fields: Vec<Field>,
    pub dates: Vec<DateMention>,
    pub amounts: Vec<AmountMention>,
    pub tables: Vec<TableInfo>,
    /// One entry per unit, in document order, succeeded or failed.
    pub units: Vec<UnitReport>,
    pub usage: UsageTotals,
    /// The units that failed, with their reason (empty when all succeeded).
    pub failed_units: Vec<FailedUnit>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentInfo {
    pub name: String,
    /// SHA-256 of the document's bytes, hex; also the document id.
    pub sha256: String,
    pub format: String,
    pub unit_count: usize,
    pub bytes: u64,
    pub language: Option<String>,
    pub title: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub title: String,
    pub units: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub value: String,
    pub units: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DateMention {
    pub text: String,
    pub iso: Option<String>,
    pub units: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmountMention {
    pub text: String,
    pub value: Option<f64>,
    pub currency: Option<String>,
    pub units: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    pub unit: usize,
    pub title: Option<String>,
    pub columns: Vec<String>,
    pub row_count: Option<u64>,
}

/// `succeeded` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitStatus {
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitReport {
    pub index: usize,
    pub title: String,
    pub status: UnitStatus,
    /// The unit's text as it was analysed (page text, sheet as a Markdown table).
    pub text: String,
    /// The unit result (follows the unit schema) when succeeded, else null.
    pub result: Option<Value>,
    /// `{error, cause}` when failed, else null.
    pub error: Option<UnitError>,
    pub usage: UnitUsage,
    /// How the unit was processed: `inline` (inline Map), `distributed` (a child execution of
    /// the distributed Map), `batch` (a batch inference record), `on-demand` (a batch
    /// document's unit analysed by a direct request: its record failed, it could not go in a
    /// record, or the job failed) or `none` (no record was written for it).
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitError {
    pub error: String,
    pub cause: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Requests sent for this unit (retries included).
    pub attempts: u32,
    /// How many of them were throttled.
    pub throttles: u32,
    pub duration_ms: u64,
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub requests: u64,
    /// Requests that repeated an earlier attempt of the same unit (throttles, transient errors).
    pub retries: u64,
    pub throttles: u64,
    /// From the start of the execution's (latest) run to the report, in milliseconds.
    pub makespan_ms: Option<u64>,
    pub units_succeeded: usize,
    pub units_failed: usize,
    /// Total cost in USD; null when the model's price is unknown.
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedUnit {
    pub index: usize,
    pub title: String,
    pub error: String,
    pub cause: String,
}
