//! `llm-processor`: one unit in the store → one unit result in the store.

use std::time::Instant;

use beacon_asl::{TaskContext, TaskFailure};
use beacon_ingest::{FLAG_UNREADABLE, Unit};
use beacon_store::keys;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{Instrument, info_span};

use super::{Services, UnitRecord, errors, failure, store_failure, task_input};
use crate::answer::parse_answer;
use crate::report::UnitUsage;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    document_id: String,
    language: Option<String>,
    index: usize,
}

/// Analyse one unit with the LLM client stack and store the validated result.
pub async fn process_unit(services: Services, input: Value, ctx: TaskContext) -> Result<Value, TaskFailure> {
    let input: Input = task_input("llm-processor", input)?;
    let span = info_span!("unit", index = input.index, execution = %ctx.execution_name);
    async move {
        let unit: Unit =
            services.store.get_json(&keys::unit(&input.document_id, input.index)).await.map_err(store_failure)?;
        if unit.flags.iter().any(|f| f == FLAG_UNREADABLE) {
            return Err(failure(
                errors::UNREADABLE_UNIT,
                format!("{} could not be read from the file (its content is damaged or missing)", unit.title),
            ));
        }
        let started = Instant::now();
        let (result, usage, model) = if unit.text.trim().is_empty() {
            // Nothing to read (a scanned page): asking a text model would only cost money.
            let result = json!({"title": unit.title, "summary": "", "flags": unit.flags});
            (result, UnitUsage::default(), services.config.model_name())
        } else {
            analyse(&services, &unit, input.language.as_deref()).await?
        };
        let usage = UnitUsage { duration_ms: started.elapsed().as_millis() as u64, ..usage };
        let record = UnitRecord::succeeded(unit.index, unit.title, model, result, usage);
        let key = keys::unit_result(&input.document_id, &ctx.execution_name, unit.index);
        services.store.put_json(&key, &record).await.map_err(store_failure)?;
        Ok(json!({ "index": unit.index }))
    }
    .instrument(span)
    .await
}

async fn analyse(
    services: &Services,
    unit: &Unit,
    language: Option<&str>,
) -> Result<(Value, UnitUsage, String), TaskFailure> {
    let request = crate::prompt::unit_request(unit, language, &services.unit_schema, &services.config.llm);
    let completion = services.llm.complete(&request).await.map_err(|e| failure(e.error_name(), e))?;
    let result =
        parse_answer(&completion.text, &services.unit_schema).map_err(|e| failure(errors::INVALID_ANSWER, e))?;
    let cost_usd = services
        .config
        .price_of(&completion.model)
        .map(|p| crate::pricing::cost_usd(p, completion.usage.input_tokens, completion.usage.output_tokens));
    let usage = UnitUsage {
        input_tokens: completion.usage.input_tokens,
        output_tokens: completion.usage.output_tokens,
        attempts: completion.attempts,
        throttles: completion.throttles,
        duration_ms: 0,
        cost_usd,
    };
    Ok((result, usage, completion.model))
}
