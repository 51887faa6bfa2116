//! `batch-prepare` and `batch-collect`: the two tasks around a Bedrock batch inference job.
//!
//! The state machine submits and watches the job itself (the `aws-sdk:bedrock` integration);
//! these tasks write the job's input and read its output:
//!
//! - **prepare** writes one JSONL record per unit that can be answered from its text
//!   (`recordId`, `modelInput` as an InvokeModel body: the same request a unit gets on demand)
//!   and names the units that cannot (pictures, scans, attached pages, empty or damaged units),
//!   which go on demand; the batch pool (`crate::pool`) then puts the file in a job, alone or
//!   with other documents' files;
//! - **collect** reads this document's `<file>.out` of the job's output, joins each output to its unit by
//!   `recordId` (never by line order), stores every usable answer as the unit's result (priced
//!   at the batch rate), and returns the units still without one — failed records, unusable
//!   answers, records missing from the output — for the on-demand Map.

use std::collections::{BTreeMap, BTreeSet};

use beacon_asl::{TaskContext, TaskFailure};
use beacon_ingest::{FLAG_NEEDS_OCR, FLAG_UNREADABLE, Unit, UnitKind};
use beacon_store::keys;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{STORE_CONCURRENCY, Services, UnitRecord, errors, failure, store_failure, task_input};
use crate::ProviderKind;
use crate::answer::parse_answer;
use crate::report::UnitUsage;

/// `U` and ten digits: Bedrock's record ids are 11 alphanumeric characters.
fn record_id(index: usize) -> String {
    format!("U{index:010}")
}

fn record_index(id: &str) -> Option<usize> {
    id.strip_prefix('U').filter(|d| d.len() == 10).and_then(|d| d.parse().ok())
}

/// `s3://<bucket>/<key>` of the configured bucket.
fn s3_uri(services: &Services, key: &str) -> String {
    format!("s3://{}/{key}", services.config.bucket)
}

/// The key of an `s3://` URI in the configured bucket.
fn key_of<'a>(services: &Services, uri: &'a str) -> Result<&'a str, TaskFailure> {
    let bucket = &services.config.bucket;
    uri.strip_prefix("s3://")
        .and_then(|rest| rest.strip_prefix(bucket.as_str()))
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(|| failure(errors::INVALID_INPUT, format!("{uri} is not in the bucket s3://{bucket}/")))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrepareInput {
    document_id: String,
    unit_count: usize,
    language: Option<String>,
    run: String,
}

/// Whether a unit's request can go in a batch record: it needs no picture or page file (which
/// would make records large) and has text to read; unreadable units fail on demand with their
/// reason.
fn batchable(services: &Services, unit: &Unit) -> bool {
    let llm = &services.config.llm;
    let reads_images = services.config.provider.kind != ProviderKind::Offline;
    let needs_file = unit.kind == UnitKind::Image
        || (unit.kind == UnitKind::Page && llm.attach_pages)
        || (unit.kind == UnitKind::Page
            && reads_images
            && llm.render_scanned_pages
            && unit.flags.iter().any(|f| f == FLAG_NEEDS_OCR));
    !needs_file && !unit.text.trim().is_empty() && !unit.flags.iter().any(|f| f == FLAG_UNREADABLE)
}

/// Write the batch input of one run; say which units go on demand instead.
pub async fn prepare_batch(services: Services, input: Value, _ctx: TaskContext) -> Result<Value, TaskFailure> {
    let input: PrepareInput = task_input("batch-prepare", input)?;
    let reads = (0..input.unit_count).map(|index| {
        let store = services.store.clone();
        let key = keys::unit(&input.document_id, index);
        async move { store.get_json::<Unit>(&key).await }
    });
    let units: Vec<Result<Unit, _>> = futures::stream::iter(reads).buffered(STORE_CONCURRENCY).collect().await;
    let mut lines = String::new();
    let mut on_demand = Vec::new();
    let mut cached = Vec::new();
    let mut records = 0usize;
    for unit in units {
        let unit = unit.map_err(store_failure)?;
        if !batchable(&services, &unit) {
            on_demand.push(unit.index);
            continue;
        }
        let request = unit_request(&services, &unit, input.language.as_deref());
        // A unit the result cache answers costs nothing on demand: a re-run pays only for what
        // changed, in batch as on demand.
        if services.llm.cached(&request).await.is_some() {
            cached.push(unit.index);
            continue;
        }
        let record = json!({
            "recordId": record_id(unit.index),
            "modelInput": beacon_llm::invoke::request_body(&request),
        });
        lines.push_str(&record.to_string());
        lines.push('\n');
        records += 1;
    }
    let input_key = keys::batch_input(&input.document_id, &input.run);
    services.store.put(&input_key, lines.into_bytes()).await.map_err(store_failure)?;
    tracing::info!(records, on_demand = on_demand.len(), cached = cached.len(), key = input_key, "batch input written");
    Ok(json!({
        "inputUri": s3_uri(&services, &input_key),
        "recordCount": records,
        "onDemand": on_demand,
        "cached": cached,
    }))
}

/// The request a unit gets on demand, which its batch record carries too.
fn unit_request(services: &Services, unit: &Unit, language: Option<&str>) -> beacon_llm::CompletionRequest {
    crate::prompt::unit_request(unit, language, &services.unit_schema, &services.config.llm)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CollectInput {
    document_id: String,
    unit_count: usize,
    run: String,
    output_uri: String,
    job_arn: String,
    /// This document's records file in the job's input (a pooled job reads several); only its
    /// `.out` is read.
    input_file: String,
    #[serde(default)]
    on_demand: Vec<usize>,
    /// Units the result cache answers (left out of the job).
    #[serde(default)]
    cached: Vec<usize>,
    language: Option<String>,
}

/// One line of a `.jsonl.out` file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutputRecord {
    #[serde(default)]
    record_id: String,
    #[serde(default)]
    model_output: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

/// Why a record gave no result, for the note.
#[derive(Default)]
struct Misses {
    errors: usize,
    unusable: usize,
    missing: usize,
}

/// Store the batch answers; return the units still to analyse on demand.
pub async fn collect_batch(services: Services, input: Value, _ctx: TaskContext) -> Result<Value, TaskFailure> {
    let input: CollectInput = task_input("batch-collect", input)?;
    // Bedrock writes under <output URI>/<job id>/, the job id being the ARN's last segment.
    let job_id = input.job_arn.rsplit('/').next().unwrap_or_default();
    let prefix = format!("{}{job_id}/", key_of(&services, &input.output_uri)?);
    let own_output = format!("{prefix}{}.out", input.input_file);
    let bytes = match services.store.get(&own_output).await {
        Ok(bytes) => bytes,
        // No output at all: every record is missing, and goes on demand.
        Err(beacon_store::StoreError::NotFound { .. }) => Default::default(),
        Err(e) => return Err(store_failure(e)),
    };
    let mut outputs: BTreeMap<usize, OutputRecord> = BTreeMap::new();
    for line in String::from_utf8_lossy(&bytes).lines().filter(|l| !l.trim().is_empty()) {
        let record: OutputRecord = match serde_json::from_str(line) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(key = own_output, error = %e, "a batch output line is not a record");
                continue;
            }
        };
        match record_index(&record.record_id).filter(|i| *i < input.unit_count) {
            Some(index) => {
                outputs.insert(index, record);
            }
            None => tracing::warn!(record_id = record.record_id, "a batch output names no unit of this document"),
        }
    }
    let left_out: BTreeSet<usize> = input.on_demand.iter().chain(&input.cached).copied().collect();
    let sent: BTreeSet<usize> = (0..input.unit_count).filter(|i| !left_out.contains(i)).collect();
    let model = services.config.model_name();
    let price = services.config.price_of(&model).map(|p| p.batch());
    let mut misses = Misses::default();
    let mut rerun = left_out.clone();
    let mut stored = Vec::new();
    for index in &sent {
        let Some(record) = outputs.remove(index) else {
            misses.missing += 1;
            rerun.insert(*index);
            continue;
        };
        let answer = match (record.model_output, record.error) {
            (Some(output), None) => output,
            _ => {
                misses.errors += 1;
                rerun.insert(*index);
                continue;
            }
        };
        let completion = beacon_llm::invoke::parse_response(answer.to_string().as_bytes(), &model);
        let result = completion.as_ref().ok().and_then(|c| parse_answer(&c.text, &services.unit_schema).ok());
        let (Ok(completion), Some(result)) = (completion, result) else {
            misses.unusable += 1;
            rerun.insert(*index);
            continue;
        };
        let (input_tokens, output_tokens) = (completion.usage.input_tokens, completion.usage.output_tokens);
        let usage = UnitUsage {
            input_tokens,
            output_tokens,
            attempts: 1,
            throttles: 0,
            duration_ms: 0,
            cost_usd: price.map(|p| crate::pricing::cost_usd(p, input_tokens, output_tokens)),
        };
        stored.push((*index, result, usage, completion));
    }
    let writes = stored.into_iter().map(|(index, result, usage, completion)| {
        let services = services.clone();
        let (document_id, run, model) = (input.document_id.clone(), input.run.clone(), model.clone());
        let language = input.language.clone();
        async move {
            let unit: Unit = services.store.get_json(&keys::unit(&document_id, index)).await?;
            // Into the result cache, so that a re-run of the document pays nothing for the answer.
            services.llm.remember(&unit_request(&services, &unit, language.as_deref()), &completion).await;
            let record = UnitRecord::Succeeded { index, title: unit.title, model, result, usage, path: "batch".into() };
            services.store.put_json(&keys::unit_result(&document_id, &run, index), &record).await?;
            Ok::<usize, beacon_store::StoreError>(index)
        }
    });
    let written: Vec<Result<usize, _>> =
        futures::stream::iter(writes).buffer_unordered(STORE_CONCURRENCY).collect().await;
    let mut succeeded = written.into_iter().collect::<Result<Vec<usize>, _>>().map_err(store_failure)?;
    succeeded.sort_unstable();
    let note = collect_note(sent.len(), input.on_demand.len(), input.cached.len(), &misses);
    tracing::info!(succeeded = succeeded.len(), rerun = rerun.len(), "batch output collected");
    Ok(json!({
        "units": rerun.into_iter().collect::<Vec<_>>(),
        "path": "on-demand",
        "succeeded": succeeded,
        "note": note,
    }))
}

/// What the report says about units that did not get their answer from the batch job.
fn collect_note(sent: usize, not_sent: usize, cached: usize, misses: &Misses) -> String {
    let mut parts = Vec::new();
    let failed = misses.errors + misses.unusable + misses.missing;
    if failed > 0 {
        let mut why = Vec::new();
        if misses.errors > 0 {
            why.push(format!("{} failed in the job", misses.errors));
        }
        if misses.unusable > 0 {
            why.push(format!("{} gave an unusable answer", misses.unusable));
        }
        if misses.missing > 0 {
            why.push(format!("{} missing from the output", misses.missing));
        }
        parts.push(format!("{failed} of {sent} batch records ({}) were analysed on demand", why.join(", ")));
    }
    if not_sent > 0 {
        parts.push(format!(
            "{not_sent} units could not go in a batch record (pictures, scans, empty or damaged units) and were analysed on demand"
        ));
    }
    if cached > 0 {
        parts.push(format!("{cached} units were answered from the result cache"));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_are_eleven_alphanumerics_and_round_trip() {
        assert_eq!(record_id(12), "U0000000012");
        assert_eq!(record_id(12).len(), 11);
        assert_eq!(record_index(&record_id(98_765)), Some(98_765));
        assert_eq!(record_index("X0000000001"), None);
        assert_eq!(record_index("U12"), None);
    }

    #[test]
    fn the_note_says_why_units_went_on_demand() {
        assert_eq!(collect_note(150, 0, 0, &Misses::default()), "");
        let misses = Misses { errors: 2, unusable: 1, missing: 0 };
        assert_eq!(
            collect_note(150, 3, 4, &misses),
            "3 of 150 batch records (2 failed in the job, 1 gave an unusable answer) were analysed on demand; \
             3 units could not go in a batch record (pictures, scans, empty or damaged units) and were analysed on demand; \
             4 units were answered from the result cache"
        );
    }
}
