//! The offline analyzer: an [`LlmClient`] that needs no model and no network.
//!
//! It answers every request with the unit result JSON (the schema in
//! `crates/pipeline/schemas/unit-result.schema.json`) built by extractive analysis of the
//! request's content, so BEACON runs end to end on a machine without credentials, and tests and
//! benchmarks have a fast, deterministic provider. The system prompt and instruction are ignored:
//! the answer always follows the unit schema.
//!
//! What it finds, in English and Japanese alike:
//!
//! - `language`: from the scripts in the text (kana → `ja`, Hangul → `ko`, Han → `zh`/`ja`,
//!   Latin → `en` or another language by frequent words), else the hint.
//! - `title`, `headings`: Markdown headings, numbered headings (`2.3 Results`, `第2章`, `（１）`),
//!   marked ones (`【概要】`, `■ 目的`) and short stand-alone lines followed by body text.
//! - `key_points`, `summary`: the best sentences by a centroid score over content words (CJK:
//!   character bigrams), after joining lines broken inside paragraphs; for tables, a description
//!   and numeric facts.
//! - `fields`: `Key: Value`, `Key：Value`, `Key = Value`, `【Key】Value` lines, rows of
//!   two-column tables, header → value of one-row tables.
//! - `dates`: ISO and numeric dates, English month names, `2026年4月30日`, Japanese eras
//!   (`令和8年4月1日`), full-width digits; each with its ISO form (`YYYY-MM-DD`, `YYYY-MM`, or
//!   null for a month-day without a year).
//! - `amounts`: `$1,234.56`, `USD 1,000`, `€12`, `¥12,850`, `12,850円`, `1万2千円`, `1.2億円`,
//!   `12850千円`, `EUR 5.000,00`, with value and ISO 4217 currency; numbers in table columns
//!   or fields whose name states a currency (`売上高(千円)`, `Amount (USD)`, `請求金額`).
//! - `tables`: each Markdown table's title (the line before it), columns and row count.
//!
//! Output is small (every list is capped) and deterministic: the same input gives byte-identical
//! JSON.
//!
//! ```
//! let result = beacon_llm::offline::analyze("請求日：2026年4月30日\n合計金額 ¥12,850（税込）", "page 1", None);
//! assert_eq!(result["language"], "ja");
//! assert_eq!(result["dates"][0]["iso"], "2026-04-30");
//! assert_eq!(result["amounts"][0]["value"], 12850);
//! ```

mod amounts;
mod dates;
mod fields;
mod headings;
mod layout;
mod scoring;
mod script;
mod sentences;
mod tables;
mod tokens;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

pub use tokens::estimate_tokens;

use crate::{Completion, CompletionRequest, LlmClient, LlmError, Usage};
use amounts::AmountHit;
use layout::{Layout, LineKind};
use script::NormText;

/// Caps on the lists in a result.
const MAX_HEADINGS: usize = 20;
const MAX_KEY_POINTS: usize = 5;
const MAX_FIELDS: usize = 20;
const MAX_DATES: usize = 20;
const MAX_AMOUNTS: usize = 20;
const MAX_TABLES: usize = 20;
/// Characters in the summary (about; a single best sentence longer than this is cut).
const SUMMARY_CHARS: usize = 300;
/// Characters in one key point.
const KEY_POINT_CHARS: usize = 300;
/// Sentences in the summary.
const SUMMARY_SENTENCES: usize = 3;

/// The built-in extractive analyzer. See the [module documentation](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineAnalyzer;

#[async_trait]
impl LlmClient for OfflineAnalyzer {
    fn name(&self) -> String {
        "offline".into()
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        // The analysis is CPU work (tens of milliseconds on a long unit): run it off the async
        // workers so concurrent units and the rest of the flow keep moving.
        let (content, label, language) =
            (request.content.clone(), request.content_label.clone(), request.language.clone());
        let result = tokio::task::spawn_blocking(move || analyze(&content, &label, language.as_deref()))
            .await
            .map_err(|e| LlmError::Rejected {
                provider: "offline".into(),
                kind: "AnalyzerCrashed".into(),
                message: format!("the offline analyzer failed on {}: {e}", request.content_label),
            })?;
        let text = serde_json::to_string(&result).map_err(|e| LlmError::Rejected {
            provider: "offline".into(),
            kind: "Serialization".into(),
            message: format!("cannot serialise the analysis of {}: {e}", request.content_label),
        })?;
        let input_tokens = estimate_tokens(&request.system)
            + estimate_tokens(&request.instruction)
            + estimate_tokens(&request.content);
        let usage = Usage { input_tokens, output_tokens: estimate_tokens(&text) };
        tracing::debug!(label = %request.content_label, input_tokens, output_tokens = usage.output_tokens, "offline analysis");
        Ok(Completion {
            text,
            usage,
            model: "offline".into(),
            stop_reason: "end_turn".into(),
            attempts: 1,
            throttles: 0,
        })
    }
}

#[derive(Serialize)]
struct UnitResult {
    title: String,
    summary: String,
    language: String,
    headings: Vec<String>,
    key_points: Vec<String>,
    fields: Vec<Field>,
    dates: Vec<DateMention>,
    amounts: Vec<Amount>,
    tables: Vec<TableInfo>,
}

#[derive(Serialize)]
struct Field {
    name: String,
    value: String,
}

#[derive(Serialize)]
struct DateMention {
    text: String,
    iso: Option<String>,
}

#[derive(Serialize)]
struct Amount {
    text: String,
    value: Value,
    currency: Option<String>,
}

#[derive(Serialize)]
struct TableInfo {
    title: Option<String>,
    columns: Vec<String>,
    row_count: usize,
}

/// A JSON number, integral when the value is (so `12850`, not `12850.0`).
fn json_number(value: f64) -> Value {
    let v = amounts::tidy(value);
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Append a sentence to a running text: no space after East Asian sentence punctuation.
fn append_sentence(out: &mut String, sentence: &str) {
    let after_cjk_punctuation =
        out.chars().last().is_some_and(|c| matches!(c, '。' | '！' | '？' | '」' | '』' | '）' | '、'));
    if !out.is_empty() && !after_cjk_punctuation {
        out.push(' ');
    }
    out.push_str(sentence);
}

/// Analyse one unit's content and return the unit result JSON (see the
/// [module documentation](self)). `label` is the unit's label ("page 3", "sheet 売上"), used as
/// the title when the content has none; `language_hint` is the document's language when known.
/// Never panics; the same input always gives the same output.
pub fn analyze(content: &str, label: &str, language_hint: Option<&str>) -> Value {
    let result = build(content, label, language_hint);
    serde_json::to_value(result).unwrap_or_else(|_| serde_json::json!({ "summary": "" }))
}

fn build(content: &str, label: &str, language_hint: Option<&str>) -> UnitResult {
    let language = script::detect_language(content, language_hint);
    let ja = language == "ja";
    let layout = Layout::parse(content);

    let headings = headings::detect(&layout);
    let mut is_heading = vec![false; layout.lines.len()];
    for h in &headings {
        if let Some(slot) = is_heading.get_mut(h.line) {
            *slot = true;
        }
    }
    let (title, title_line) = match headings::title(&layout, &headings) {
        Some((text, line)) => (text, Some(line)),
        None => (label.trim().to_string(), None),
    };
    // The title line is not prose, nor a field.
    if let Some(slot) = title_line.and_then(|l| is_heading.get_mut(l)) {
        *slot = true;
    }

    // Fields: from lines, then from tables.
    let mut field_hits = fields::from_lines(&layout, &is_heading);
    for table in &layout.tables {
        field_hits.extend(fields::from_table(table));
    }
    let mut skip = is_heading.clone();
    for f in &field_hits {
        if let Some(slot) = f.line.filter(|_| !f.prose).and_then(|l| skip.get_mut(l)) {
            *slot = true;
        }
    }

    let norm = NormText::new(content);
    let dates = dates::extract(&norm, MAX_DATES);
    let amounts = collect_amounts(&norm, &layout, &field_hits, &language);

    // Prose.
    let paragraphs = sentences::paragraphs(&layout, &skip);
    let sentences = sentences::sentences(&paragraphs);
    let scores = scoring::score(&sentences);

    let mut table_lines: Vec<String> = Vec::new();
    let mut table_facts: Vec<String> = Vec::new();
    for table in layout.tables.iter().take(MAX_TABLES) {
        table_lines.push(tables::description(table, ja));
        table_facts.extend(tables::facts(table, ja));
    }

    // Summary: the best sentences in document order, then what the tables say.
    let mut summary = String::new();
    let mut summary_chosen = Vec::new();
    // A unit whose "prose" is only fragments (form rows, captions) but has fields or tables is
    // better summarised by those.
    let structured = !field_hits.is_empty() || !layout.tables.is_empty();
    let has_sentences = sentences.iter().any(|s| headings::ends_sentence(&s.text));
    let ranked = if structured && !has_sentences { Vec::new() } else { rank_order(&scores) };
    for &i in &ranked {
        if summary_chosen.len() == SUMMARY_SENTENCES {
            break;
        }
        // With full sentences at hand, fragments (`INVOICE`, form rows) stay out of the summary.
        if has_sentences && !headings::ends_sentence(&sentences[i].text) {
            continue;
        }
        let len = sentences[i].text.chars().count();
        let used: usize = summary_chosen.iter().map(|&k: &usize| sentences[k].text.chars().count()).sum();
        let repeated = summary_chosen.iter().any(|&k| sentences[k].text == sentences[i].text);
        if (summary_chosen.is_empty() || used + len <= SUMMARY_CHARS) && !repeated {
            summary_chosen.push(i);
        }
    }
    summary_chosen.sort_unstable();
    for &i in &summary_chosen {
        append_sentence(&mut summary, &sentences[i].text);
    }
    summary = truncate_chars(&summary, SUMMARY_CHARS);
    for extra in table_lines.iter().chain(&table_facts) {
        let fits = summary.chars().count() + extra.chars().count() < SUMMARY_CHARS;
        if summary.is_empty() || fits {
            append_sentence(&mut summary, extra);
        }
        if !fits {
            break;
        }
    }
    // Fields written as lines lead a summary of fragments; fields from a two-column table are
    // already described by the table's sentence.
    let line_fields = field_hits.iter().any(|f| f.line.is_some());
    if summary.is_empty() || (structured && !has_sentences && line_fields) {
        let fields_summary = fallback_summary(content, &title, &field_hits, &headings, ja);
        if summary.is_empty() {
            summary = fields_summary;
        } else {
            let mut combined = fields_summary;
            append_sentence(&mut combined, &summary);
            summary = combined;
        }
    }
    let summary = truncate_chars(&summary, SUMMARY_CHARS);

    // Key points: the best sentences, then table facts, then fields.
    let candidates: Vec<usize> = (0..sentences.len()).filter(|&i| is_informative(&sentences[i].text)).collect();
    let kept: Vec<sentences::Sentence> = candidates.iter().map(|&i| sentences[i].clone()).collect();
    let kept_scores: Vec<f64> = candidates.iter().map(|&i| scores[i]).collect();
    let mut key_points: Vec<String> = scoring::best(&kept, &kept_scores, MAX_KEY_POINTS)
        .into_iter()
        .map(|i| truncate_chars(&kept[i].text, KEY_POINT_CHARS))
        .collect();
    let field_points = field_hits.iter().map(|f| {
        if script::is_cjk_line(&f.name) {
            format!("{}：{}", f.name, f.value)
        } else {
            format!("{}: {}", f.name, f.value)
        }
    });
    for point in table_facts.iter().cloned().chain(field_points).chain(table_lines.iter().cloned()) {
        if key_points.len() >= MAX_KEY_POINTS {
            break;
        }
        if !key_points.contains(&point) {
            key_points.push(truncate_chars(&point, KEY_POINT_CHARS));
        }
    }

    let mut fields_out: Vec<Field> = Vec::new();
    for f in &field_hits {
        if fields_out.len() == MAX_FIELDS {
            break;
        }
        if !fields_out.iter().any(|x| x.name == f.name && x.value == f.value) {
            fields_out.push(Field { name: f.name.clone(), value: f.value.clone() });
        }
    }

    UnitResult {
        title,
        summary,
        language,
        headings: dedup(headings.into_iter().map(|h| h.text), MAX_HEADINGS),
        key_points,
        fields: fields_out,
        dates: dates.into_iter().map(|d| DateMention { text: d.text, iso: d.iso }).collect(),
        amounts: amounts
            .into_iter()
            .map(|a| Amount { text: a.text, value: a.value.map_or(Value::Null, json_number), currency: a.currency })
            .collect(),
        tables: layout
            .tables
            .iter()
            .take(MAX_TABLES)
            .map(|t| TableInfo { title: t.title.clone(), columns: t.header.clone(), row_count: t.rows.len() })
            .collect(),
    }
}

/// Whether a sentence can be a key point: a full sentence, or a fragment of some substance
/// (three words, or six CJK characters) rather than a lone word like `INVOICE`.
fn is_informative(text: &str) -> bool {
    headings::ends_sentence(text)
        || if script::is_cjk_line(text) {
            text.chars().filter(|c| !c.is_whitespace()).count() >= 6
        } else {
            text.split_whitespace().count() >= 3
        }
}

/// Indices sorted by score, best first, ties to the earlier.
fn rank_order(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

fn dedup(items: impl Iterator<Item = String>, limit: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if out.len() == limit {
            break;
        }
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Amounts written in the text, in money columns of tables, and in money fields
/// (`請求金額：1,250,000`), in document order, deduplicated, capped.
fn collect_amounts(
    norm: &NormText,
    layout: &Layout,
    field_hits: &[fields::FieldHit],
    language: &str,
) -> Vec<AmountHit> {
    let mut all = amounts::extract(norm, language);
    for table in &layout.tables {
        let offset = |r: usize| table.row_lines.get(r).and_then(|&l| layout.lines.get(l)).map_or(0, |l| l.offset);
        all.extend(tables::column_amounts(table, offset));
    }
    for f in field_hits {
        let Some(line) = f.line.and_then(|l| layout.lines.get(l)) else { continue };
        if line.kind != LineKind::Text || amounts::has_written_amount(&f.value) {
            continue;
        }
        let (Some(unit), Some(v)) = (amounts::money_unit(&f.name), amounts::parse_cell_number(&f.value)) else {
            continue;
        };
        let separator = if script::is_cjk_line(&f.name) { "：" } else { ": " };
        all.push(AmountHit {
            text: format!("{}{separator}{}", f.name, f.value),
            value: Some(amounts::tidy(v * unit.multiplier)),
            currency: unit.currency,
            start: line.offset,
        });
    }
    // Stable: equal offsets keep their order (text scan first).
    all.sort_by_key(|a| a.start);
    let mut out: Vec<AmountHit> = Vec::new();
    for a in all {
        if out.len() == MAX_AMOUNTS {
            break;
        }
        let duplicate = out.iter().any(|b| b.text == a.text && b.value == a.value && b.currency == a.currency);
        if !duplicate {
            out.push(a);
        }
    }
    out
}

/// A summary for a unit without prose or tables: its fields, its headings, or its first
/// characters.
fn fallback_summary(
    content: &str,
    title: &str,
    field_hits: &[fields::FieldHit],
    headings: &[headings::Heading],
    ja: bool,
) -> String {
    if !field_hits.is_empty() {
        let (sep, pair, end) = if ja { ("、", "：", "。") } else { ("; ", ": ", ".") };
        let listed: Vec<String> = field_hits.iter().take(6).map(|f| format!("{}{pair}{}", f.name, f.value)).collect();
        let head = if title.is_empty() {
            String::new()
        } else if ja {
            format!("{title}：")
        } else {
            format!("{title}: ")
        };
        return format!("{head}{}{end}", listed.join(sep));
    }
    if !headings.is_empty() {
        let names: Vec<&str> = headings.iter().map(|h| h.text.as_str()).collect();
        return if ja {
            format!("見出し：{}。", names.join("、"))
        } else {
            format!("Sections: {}.", names.join("; "))
        };
    }
    let text = content.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return if ja { "テキストはありません。".to_string() } else { "No text content.".to_string() };
    }
    text
}

#[cfg(test)]
mod tests;
