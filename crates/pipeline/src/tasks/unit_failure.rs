//! `record-unit-failure`: the state machine caught a unit's error; store it as that unit's
//! outcome so the report lists it with its reason.

use beacon_asl::{TaskContext, TaskFailure};
use beacon_ingest::Unit;
use beacon_store::keys;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Services, UnitRecord, store_failure, task_input};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    document_id: String,
    index: usize,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    cause: Option<String>,
}

/// Store the failure of one unit.
pub async fn record_unit_failure(services: Services, input: Value, ctx: TaskContext) -> Result<Value, TaskFailure> {
    let input: Input = task_input("record-unit-failure", input)?;
    let title = match services.store.get_json::<Unit>(&keys::unit(&input.document_id, input.index)).await {
        Ok(unit) => unit.title,
        Err(_) => format!("Unit {}", input.index + 1),
    };
    let record = UnitRecord::failed(
        input.index,
        title,
        input.error.filter(|e| !e.is_empty()).unwrap_or_else(|| "Beacon.UnitFailed".into()),
        input.cause.filter(|c| !c.is_empty()).unwrap_or_else(|| "the unit failed without a reason".into()),
    );
    let key = keys::unit_result(&input.document_id, &ctx.execution_name, input.index);
    services.store.put_json(&key, &record).await.map_err(store_failure)?;
    Ok(json!({ "index": input.index }))
}
