//! `result-integrator`: the Map's unit outcomes → `report.json` and `report.md` in the store.

use beacon_asl::{TaskContext, TaskFailure};
use beacon_ingest::Unit;
use beacon_store::keys;
use serde::Deserialize;
use serde_json::{Value, json};

use super::llm_processor::UnitResultRecord;
use super::{Services, store_failure, task_input};
use crate::report::{DocumentInfo, ReportContext, UnitOutcome, integrate, markdown};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    document: ProcessedDocument,
    unit_results: Vec<MapEntry>,
    strategy: String,
    execution: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProcessedDocument {
    document_id: String,
    name: String,
    format: String,
    bytes: u64,
    language: Option<String>,
    title: Option<String>,
    unit_count: usize,
}

/// One element of the Map's result: what `llm-processor` returned, or what the `UnitFailed`
/// state recorded.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MapEntry {
    index: usize,
    #[serde(default)]
    title: Option<String>,
    status: String,
    #[serde(default)]
    result_key: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    cause: Option<String>,
}

/// Merge the unit results into the report and store it.
pub async fn integrate_results(services: Services, input: Value, _ctx: TaskContext) -> Result<Value, TaskFailure> {
    let input: Input = task_input("result-integrator", input)?;
    let doc = &input.document;
    let mut outcomes = Vec::with_capacity(input.unit_results.len());
    for entry in input.unit_results {
        let title = entry.title.unwrap_or_else(|| format!("Unit {}", entry.index + 1));
        let unit: Unit =
            services.store.get_json(&keys::unit(&doc.document_id, entry.index)).await.map_err(store_failure)?;
        match (entry.status.as_str(), entry.result_key) {
            ("succeeded", Some(key)) => {
                let record: UnitResultRecord = services.store.get_json(&key).await.map_err(store_failure)?;
                outcomes.push(UnitOutcome::Succeeded {
                    index: record.index,
                    title: record.title,
                    text: unit.text,
                    result: record.result,
                    usage: record.usage,
                });
            }
            _ => outcomes.push(UnitOutcome::Failed {
                index: entry.index,
                title,
                text: unit.text,
                error: entry.error.unwrap_or_else(|| "Beacon.UnitFailed".into()),
                cause: entry.cause.unwrap_or_else(|| "the unit failed without a reason".into()),
            }),
        }
    }
    let report = integrate(
        ReportContext {
            document: DocumentInfo {
                name: doc.name.clone(),
                sha256: doc.document_id.clone(),
                format: doc.format.clone(),
                unit_count: doc.unit_count,
                bytes: doc.bytes,
                language: doc.language.clone(),
                title: doc.title.clone(),
            },
            strategy: input.strategy,
            model: services.config.model_name(),
            execution: input.execution.clone(),
            generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        },
        outcomes,
    );
    let json_key = keys::report_json(&doc.document_id, &input.execution);
    let md_key = keys::report_markdown(&doc.document_id, &input.execution);
    services.store.put_json(&json_key, &report).await.map_err(store_failure)?;
    services.store.put(&md_key, markdown::render(&report).into_bytes()).await.map_err(store_failure)?;
    Ok(json!({
        "reportKey": json_key,
        "markdownKey": md_key,
        "unitsSucceeded": report.usage.units_succeeded,
        "unitsFailed": report.usage.units_failed,
    }))
}
