//! `llm-processor`: one unit in the store → one unit result in the store.

use std::time::Instant;

use beacon_asl::{TaskContext, TaskFailure};
use beacon_ingest::{
    FLAG_NEEDS_OCR, FLAG_UNREADABLE, Format, Unit, UnitKind, detect_format, render_page_png, single_page_pdf,
    tiff_page_png,
};
use beacon_llm::{Attachment, AttachmentKind, Completion, CompletionRequest};

use crate::ProviderKind;
use beacon_store::keys;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{Instrument, info_span};

use super::{Services, UnitRecord, UnitRef, errors, failure, store_failure, task_input};
use crate::answer::{AnswerError, parse_answer};
use crate::report::UnitUsage;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    #[serde(flatten)]
    unit: UnitRef,
    language: Option<String>,
}

/// Analyse one unit with the LLM client stack and store the validated result.
pub async fn process_unit(services: Services, input: Value, ctx: TaskContext) -> Result<Value, TaskFailure> {
    let input: Input = task_input("llm-processor", input)?;
    let target = &input.unit;
    let span = info_span!("unit", index = target.index, execution = %target.run(&ctx));
    async move {
        let unit: Unit =
            services.store.get_json(&keys::unit(&target.document_id, target.index)).await.map_err(store_failure)?;
        if unit.flags.iter().any(|f| f == FLAG_UNREADABLE) {
            return Err(failure(
                errors::UNREADABLE_UNIT,
                format!("{} could not be read from the file (its content is damaged or missing)", unit.title),
            ));
        }
        let started = Instant::now();
        let page = unit_attachment(&services, &target.document_id, &unit).await?;
        let (result, usage, model) = if unit.text.trim().is_empty() && page.is_none() {
            // Nothing to read (a scanned page): asking a text model would only cost money.
            let result = json!({"title": unit.title, "summary": "", "flags": unit.flags});
            (result, UnitUsage::default(), services.config.model_name())
        } else {
            analyse(&services, &unit, input.language.as_deref(), page).await?
        };
        let usage = UnitUsage { duration_ms: started.elapsed().as_millis() as u64, ..usage };
        let record =
            UnitRecord::Succeeded { index: unit.index, title: unit.title, model, result, usage, path: target.path() };
        services.store.put_json(&target.result_key(&ctx), &record).await.map_err(store_failure)?;
        // The usage rides along for metrics (the Lambda publishes it); the Map discards the
        // output, so the state stays small.
        Ok(json!({ "index": unit.index, "usage": usage }))
    }
    .instrument(span)
    .await
}

/// The file a unit is sent with: an image unit's image and a scanned page's picture (unless the
/// offline analyzer, which reads no images, answers); with `[llm] attach_pages`, a PDF page
/// unit's page as a one-page PDF.
async fn unit_attachment(
    services: &Services,
    document_id: &str,
    unit: &Unit,
) -> Result<Option<Attachment>, TaskFailure> {
    let reads_images = services.config.provider.kind != ProviderKind::Offline;
    let image = unit.kind == UnitKind::Image && reads_images;
    let page = unit.kind == UnitKind::Page && services.config.llm.attach_pages;
    let scanned_page = unit.kind == UnitKind::Page
        && !page
        && reads_images
        && services.config.llm.render_scanned_pages
        && unit.flags.iter().any(|f| f == FLAG_NEEDS_OCR);
    if !image && !page && !scanned_page {
        return Ok(None);
    }
    let source = services.store.get(&keys::document_source(document_id)).await.map_err(store_failure)?;
    let format = detect_format(&source).ok();
    if image {
        let kind = match format {
            Some(Format::Png) => AttachmentKind::Png,
            Some(Format::Jpeg) => AttachmentKind::Jpeg,
            Some(Format::Gif) => AttachmentKind::Gif,
            Some(Format::Webp) => AttachmentKind::Webp,
            Some(Format::Tiff) => {
                // Models take no TIFF: the page goes as a PNG.
                let (limits, index) = (services.config.limits.clone(), unit.index);
                let bytes = tokio::task::spawn_blocking(move || tiff_page_png(&source, index, &limits))
                    .await
                    .map_err(|e| failure(errors::INVALID_DOCUMENT, format!("{}: {e}", unit.title)))?
                    .map_err(|e| failure(errors::INVALID_DOCUMENT, format!("{}: {e}", unit.title)))?;
                let name = format!("page-{}", index + 1);
                return Ok(Some(Attachment { kind: AttachmentKind::Png, name, bytes }));
            }
            _ => return Ok(None),
        };
        return Ok(Some(Attachment { kind, name: "image".into(), bytes: source.to_vec() }));
    }
    if format != Some(Format::Pdf) {
        return Ok(None);
    }
    let limits = services.config.limits.clone();
    let password = services.config.document_password.clone();
    let index = unit.index;
    // Cutting out (and rendering) a page parses the whole file: CPU work, off the async workers.
    let bytes = tokio::task::spawn_blocking(move || {
        let password = password.as_ref().map(|p| p.expose());
        if scanned_page {
            render_page_png(&source, index, &limits, password)
        } else {
            single_page_pdf(&source, index, &limits, password)
        }
    })
    .await
    .map_err(|e| failure(errors::INVALID_DOCUMENT, format!("page {}: {e}", index + 1)))?
    .map_err(|e| failure(errors::INVALID_DOCUMENT, format!("page {}: {e}", index + 1)))?;
    let kind = if scanned_page { AttachmentKind::Png } else { AttachmentKind::Pdf };
    Ok(Some(Attachment { kind, name: format!("page-{}", index + 1), bytes }))
}

/// Ask the model about `unit`; when the answer does not parse or does not follow the unit
/// schema, ask once more with the problems and the previous answer quoted (a repair request).
/// Usage covers both calls. A repaired answer that still does not follow the schema fails the
/// unit with `Beacon.InvalidAnswer`, which the state machine retries once from the start.
async fn analyse(
    services: &Services,
    unit: &Unit,
    language: Option<&str>,
    page: Option<Attachment>,
) -> Result<(Value, UnitUsage, String), TaskFailure> {
    let mut request = crate::prompt::unit_request(unit, language, &services.unit_schema, &services.config.llm);
    request.attachments.extend(page);
    let first = services.llm.complete(&request).await.map_err(|e| failure(e.error_name(), e))?;
    let mut usage = usage_of(&first);
    let first_problems = match parse_answer(&first.text, &services.unit_schema) {
        Ok(result) => return Ok((result, priced(services, usage, &first.model), first.model)),
        Err(err) => answer_problems(&err, &first, &request),
    };
    tracing::info!(problems = ?first_problems, "the answer is not usable; sending a repair request");
    let repair = crate::prompt::repair_request(&request, &first.text, &first_problems);
    let second = services.llm.complete(&repair).await.map_err(|e| failure(e.error_name(), e))?;
    add_usage(&mut usage, &usage_of(&second));
    match parse_answer(&second.text, &services.unit_schema) {
        Ok(result) => Ok((result, priced(services, usage, &second.model), second.model)),
        Err(err) => {
            let problems = answer_problems(&err, &second, &repair);
            tracing::warn!(problems = ?problems, "the repaired answer is not usable either");
            Err(failure(
                errors::INVALID_ANSWER,
                format!(
                    "the model's answer did not follow the unit schema, also after a repair request: {} \
                     (first answer: {})",
                    problems.join("; "),
                    first_problems.join("; "),
                ),
            ))
        }
    }
}

/// What is wrong with an answer, for the repair request and the failure's cause: the parse or
/// schema problems, and a note when the answer was cut at the token limit (the likely reason
/// its JSON is incomplete).
fn answer_problems(err: &AnswerError, completion: &Completion, request: &CompletionRequest) -> Vec<String> {
    let mut problems = err.problems();
    if completion.stop_reason == "max_tokens" {
        problems.push(format!(
            "the answer was cut off at the limit of {} tokens: keep the JSON object shorter",
            request.max_tokens
        ));
    }
    problems
}

fn usage_of(completion: &Completion) -> UnitUsage {
    UnitUsage {
        input_tokens: completion.usage.input_tokens,
        output_tokens: completion.usage.output_tokens,
        attempts: completion.attempts,
        throttles: completion.throttles,
        duration_ms: 0,
        cost_usd: None,
    }
}

fn add_usage(total: &mut UnitUsage, more: &UnitUsage) {
    total.input_tokens += more.input_tokens;
    total.output_tokens += more.output_tokens;
    total.attempts += more.attempts;
    total.throttles += more.throttles;
}

/// `usage` with its cost, when the model's price is configured.
fn priced(services: &Services, usage: UnitUsage, model: &str) -> UnitUsage {
    let cost_usd =
        services.config.price_of(model).map(|p| crate::pricing::cost_usd(p, usage.input_tokens, usage.output_tokens));
    UnitUsage { cost_usd, ..usage }
}
