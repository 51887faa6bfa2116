//! `record-unit-failure`: the state machine caught a unit's error; store it as that unit's
//! outcome so the report lists it with its reason.

use beacon_asl::{TaskContext, TaskFailure};
use beacon_ingest::Unit;
use beacon_store::keys;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Services, UnitRecord, UnitRef, store_failure, task_input};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    #[serde(flatten)]
    unit: UnitRef,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    cause: Option<String>,
}

/// Store the failure of one unit.
pub async fn record_unit_failure(services: Services, input: Value, ctx: TaskContext) -> Result<Value, TaskFailure> {
    let input: Input = task_input("record-unit-failure", input)?;
    let target = &input.unit;
    let title = match services.store.get_json::<Unit>(&keys::unit(&target.document_id, target.index)).await {
        Ok(unit) => unit.title,
        Err(_) => format!("Unit {}", target.index + 1),
    };
    let record = UnitRecord::Failed {
        index: target.index,
        title,
        error: input.error.filter(|e| !e.is_empty()).unwrap_or_else(|| "Beacon.UnitFailed".into()),
        cause: input
            .cause
            .filter(|c| !c.is_empty())
            .map(|c| super::readable_cause(&c))
            .unwrap_or_else(|| "the unit failed without a reason".into()),
        path: target.path(),
    };
    services.store.put_json(&target.result_key(&ctx), &record).await.map_err(store_failure)?;
    Ok(json!({ "index": target.index }))
}
