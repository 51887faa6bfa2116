//! `result-integrator`: the stored unit outcomes → `report.json` and `report.md` in the store.

use beacon_asl::{TaskContext, TaskFailure};
use beacon_ingest::Unit;
use beacon_store::keys;
use serde::Deserialize;
use serde_json::{Value, json};

use futures::StreamExt;

use super::{STORE_CONCURRENCY, Services, UnitRecord, store_failure, task_input};
use crate::report::{DocumentInfo, ReportContext, UnitOutcome, integrate, markdown};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    document: ProcessedDocument,
    strategy: String,
    #[serde(default)]
    strategy_note: Option<String>,
    execution: String,
    #[serde(default)]
    started_at: Option<String>,
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

/// One unit's stored outcome, with its text.
async fn unit_outcome(
    services: &Services,
    document_id: &str,
    execution: &str,
    index: usize,
    strategy_note: Option<&str>,
) -> Result<UnitOutcome, TaskFailure> {
    let unit: Unit = services.store.get_json(&keys::unit(document_id, index)).await.map_err(store_failure)?;
    let key = keys::unit_result(document_id, execution, index);
    match services.store.get_json::<UnitRecord>(&key).await {
        Ok(record) => Ok(record.into_outcome(unit.text)),
        // Every Map iteration stores a result or a failure; a missing one is still reported.
        Err(beacon_store::StoreError::NotFound { .. }) => Ok(UnitOutcome::Failed {
            index,
            title: unit.title,
            text: unit.text,
            error: "Beacon.NoResult".into(),
            // When the run left its path (a failed batch job), that is why nothing was recorded.
            cause: match strategy_note.filter(|n| !n.is_empty()) {
                Some(note) => format!("no result was recorded for this unit: {note}"),
                None => "no result was recorded for this unit".into(),
            },
            path: "none".into(),
        }),
        Err(e) => Err(store_failure(e)),
    }
}

/// Merge every unit's stored outcome into the report and store it.
pub async fn integrate_results(services: Services, input: Value, _ctx: TaskContext) -> Result<Value, TaskFailure> {
    let input: Input = task_input("result-integrator", input)?;
    let doc = &input.document;
    let note = input.strategy_note.as_deref();
    let reads =
        (0..doc.unit_count).map(|index| unit_outcome(&services, &doc.document_id, &input.execution, index, note));
    let outcomes: Vec<UnitOutcome> = futures::stream::iter(reads)
        .buffered(STORE_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
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
            strategy_note: input.strategy_note,
            model: services.config.model_name(),
            execution: input.execution.clone(),
            generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            started_at: input.started_at,
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
        // What a listing of executions shows without reading the report.
        "strategy": report.strategy,
        "requests": report.usage.requests,
        "throttles": report.usage.throttles,
        "costUsd": report.usage.cost_usd,
    }))
}
