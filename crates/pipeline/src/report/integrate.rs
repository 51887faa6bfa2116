//! Merging unit results into one report.

use serde_json::Value;

use super::model::*;

/// What happened to one unit, as the state machine's Map returns it.
#[derive(Debug, Clone, PartialEq)]
/// `path` is how the unit was processed (`inline`, `distributed`, `batch`, `on-demand`).
pub enum UnitOutcome {
    Succeeded { index: usize, title: String, text: String, result: Value, usage: UnitUsage, path: String },
    Failed { index: usize, title: String, text: String, error: String, cause: String, path: String },
}

impl UnitOutcome {
    fn index(&self) -> usize {
        match self {
            UnitOutcome::Succeeded { index, .. } | UnitOutcome::Failed { index, .. } => *index,
        }
    }
}

/// Most entries kept per merged list, so a huge document still gives a readable report.
const MAX_MERGED: usize = 500;
/// Unit summaries that feed the document summary.
const SUMMARY_UNITS: usize = 3;
const SUMMARY_MAX_CHARS: usize = 600;

/// Everything the integrator knows besides the unit outcomes.
#[derive(Debug, Clone)]
pub struct ReportContext {
    pub document: DocumentInfo,
    pub strategy: String,
    /// Why the run left its strategy's normal path (a batch job that failed, a Map Run that
    /// failed), if it did.
    pub strategy_note: Option<String>,
    pub model: String,
    pub execution: String,
    pub generated_at: String,
    /// When the execution's (latest) run started (RFC 3339), for the makespan.
    pub started_at: Option<String>,
}

/// Merge unit outcomes (any order) into a report.
pub fn integrate(ctx: ReportContext, mut outcomes: Vec<UnitOutcome>) -> Report {
    outcomes.sort_by_key(UnitOutcome::index);
    let ctx_started_at = ctx.started_at;
    let mut report = Report {
        schema_version: REPORT_SCHEMA_VERSION.to_string(),
        generated_at: ctx.generated_at,
        document: ctx.document,
        strategy: ctx.strategy,
        strategy_note: ctx.strategy_note.filter(|n| !n.is_empty()),
        unit_paths: Default::default(),
        model: ctx.model,
        execution: ctx.execution,
        summary: String::new(),
        sections: vec![],
        fields: vec![],
        dates: vec![],
        amounts: vec![],
        tables: vec![],
        units: vec![],
        usage: UsageTotals::default(),
        failed_units: vec![],
    };
    let mut summaries = Vec::new();
    let mut cost: Option<f64> = Some(0.0);
    for outcome in outcomes {
        let path = match &outcome {
            UnitOutcome::Succeeded { path, .. } | UnitOutcome::Failed { path, .. } => path.clone(),
        };
        *report.unit_paths.entry(path.clone()).or_insert(0) += 1;
        match outcome {
            UnitOutcome::Succeeded { index, title, text, result, usage, .. } => {
                merge_result(&mut report, index, &result);
                if let Some(s) = result.get("summary").and_then(Value::as_str).filter(|s| !s.trim().is_empty()) {
                    summaries.push(s.trim().to_string());
                }
                let totals = &mut report.usage;
                totals.input_tokens += usage.input_tokens;
                totals.output_tokens += usage.output_tokens;
                totals.requests += u64::from(usage.attempts);
                totals.retries += u64::from(usage.attempts.saturating_sub(1));
                totals.throttles += u64::from(usage.throttles);
                totals.units_succeeded += 1;
                cost = match (cost, usage.cost_usd) {
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                };
                report.units.push(UnitReport {
                    index,
                    title,
                    status: UnitStatus::Succeeded,
                    text,
                    result: Some(result),
                    error: None,
                    usage,
                    path,
                });
            }
            UnitOutcome::Failed { index, title, text, error, cause, .. } => {
                report.usage.units_failed += 1;
                report.failed_units.push(FailedUnit {
                    index,
                    title: title.clone(),
                    error: error.clone(),
                    cause: cause.clone(),
                });
                report.units.push(UnitReport {
                    index,
                    title,
                    status: UnitStatus::Failed,
                    text,
                    result: None,
                    error: Some(UnitError { error, cause }),
                    usage: UnitUsage::default(),
                    path,
                });
            }
        }
    }
    drop_running_headers(&mut report.sections, report.usage.units_succeeded);
    report.usage.total_tokens = report.usage.input_tokens + report.usage.output_tokens;
    report.usage.makespan_ms = makespan_ms(ctx_started_at.as_deref(), &report.generated_at);
    report.usage.cost_usd = cost.map(|c| (c * 1e6).round() / 1e6);
    let cjk = report.document.language.as_deref().is_some_and(|l| matches!(l, "ja" | "zh" | "ko"));
    report.summary = compose_summary(&summaries, cjk);
    report
}

fn str_field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

fn items<'a>(result: &'a Value, name: &str) -> impl Iterator<Item = &'a Value> {
    result.get(name).and_then(Value::as_array).into_iter().flatten()
}

fn add_unit(units: &mut Vec<usize>, index: usize) {
    if !units.contains(&index) {
        units.push(index);
    }
}

/// Merged report entries remember which units mention them.
trait MentionedIn {
    fn units_mut(&mut self) -> &mut Vec<usize>;
}

macro_rules! mentioned_in {
    ($($t:ty),*) => {$(
        impl MentionedIn for $t {
            fn units_mut(&mut self) -> &mut Vec<usize> {
                &mut self.units
            }
        }
    )*};
}
mentioned_in!(Section, Field, DateMention, AmountMention);

/// Add unit `index` to the entry `same` finds, or append `make()` while under the cap.
fn merge<T: MentionedIn>(list: &mut Vec<T>, index: usize, same: impl Fn(&T) -> bool, make: impl FnOnce() -> T) {
    match list.iter().position(same) {
        Some(pos) => add_unit(list[pos].units_mut(), index),
        None if list.len() < MAX_MERGED => list.push(make()),
        None => {}
    }
}

fn merge_result(report: &mut Report, index: usize, result: &Value) {
    for heading in items(result, "headings").filter_map(Value::as_str).map(str::trim).filter(|h| !h.is_empty()) {
        merge(
            &mut report.sections,
            index,
            |s| s.title == heading,
            || Section { title: heading.to_string(), units: vec![index] },
        );
    }
    for field in items(result, "fields") {
        let (Some(name), Some(value)) = (str_field(field, "name"), str_field(field, "value")) else {
            continue;
        };
        merge(
            &mut report.fields,
            index,
            |f| f.name == name && f.value == value,
            || Field { name: name.to_string(), value: value.to_string(), units: vec![index] },
        );
    }
    for date in items(result, "dates") {
        let Some(text) = str_field(date, "text") else { continue };
        let iso = str_field(date, "iso").map(str::to_string);
        merge(
            &mut report.dates,
            index,
            |d| d.text == text && d.iso == iso,
            || DateMention { text: text.to_string(), iso: iso.clone(), units: vec![index] },
        );
    }
    for amount in items(result, "amounts") {
        let Some(text) = str_field(amount, "text") else { continue };
        let currency = str_field(amount, "currency").map(str::to_string);
        merge(
            &mut report.amounts,
            index,
            |a| a.text == text && a.currency == currency,
            || AmountMention {
                text: text.to_string(),
                value: amount.get("value").and_then(Value::as_f64),
                currency: currency.clone(),
                units: vec![index],
            },
        );
    }
    for table in items(result, "tables") {
        if report.tables.len() >= MAX_MERGED {
            break;
        }
        let columns: Vec<String> = items(table, "columns").filter_map(Value::as_str).map(str::to_string).collect();
        report.tables.push(TableInfo {
            unit: index,
            title: str_field(table, "title").map(str::to_string),
            columns,
            row_count: table.get("row_count").and_then(Value::as_u64),
        });
    }
}

fn makespan_ms(started_at: Option<&str>, finished_at: &str) -> Option<u64> {
    let start = chrono::DateTime::parse_from_rfc3339(started_at?).ok()?;
    let end = chrono::DateTime::parse_from_rfc3339(finished_at).ok()?;
    u64::try_from((end - start).num_milliseconds()).ok()
}

/// A "heading" found on every page of a longer document is a running header (the document
/// title printed at the top of each page), not a section.
fn drop_running_headers(sections: &mut Vec<Section>, units_succeeded: usize) {
    const MIN_UNITS: usize = 3;
    if units_succeeded >= MIN_UNITS {
        sections.retain(|s| s.units.len() < units_succeeded);
    }
}

/// The first sentence of each of the first few unit summaries, within a length budget.
fn compose_summary(summaries: &[String], cjk: bool) -> String {
    let mut out = String::new();
    for s in summaries.iter().take(SUMMARY_UNITS) {
        let sentence = first_sentence(s);
        if out.contains(sentence) {
            continue;
        }
        if out.chars().count() + sentence.chars().count() > SUMMARY_MAX_CHARS && !out.is_empty() {
            break;
        }
        if !out.is_empty() && !cjk {
            out.push(' ');
        }
        out.push_str(sentence);
    }
    out
}

fn first_sentence(s: &str) -> &str {
    let mut end = s.len();
    for (i, c) in s.char_indices() {
        let boundary = match c {
            '。' | '！' | '？' => true,
            '.' | '!' | '?' => s[i + c.len_utf8()..].starts_with(char::is_whitespace),
            _ => false,
        };
        if boundary {
            end = i + c.len_utf8();
            break;
        }
    }
    s[..end].trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(language: &str) -> ReportContext {
        ReportContext {
            document: DocumentInfo {
                name: "d.pdf".into(),
                sha256: "ab".into(),
                format: "pdf".into(),
                unit_count: 3,
                bytes: 10,
                language: Some(language.into()),
                title: None,
            },
            strategy: "inline".into(),
            strategy_note: None,
            model: "offline".into(),
            execution: "e".into(),
            generated_at: "2026-01-01T00:00:02.500Z".into(),
            started_at: Some("2026-01-01T00:00:00Z".into()),
        }
    }

    fn ok(index: usize, result: Value, cost: Option<f64>) -> UnitOutcome {
        UnitOutcome::Succeeded {
            index,
            title: format!("Page {}", index + 1),
            text: String::new(),
            result,
            usage: UnitUsage {
                input_tokens: 10,
                output_tokens: 5,
                attempts: 2,
                throttles: 1,
                duration_ms: 1,
                cost_usd: cost,
            },
            path: "inline".into(),
        }
    }

    #[test]
    fn merges_in_document_order_and_lists_failures() {
        let outcomes = vec![
            UnitOutcome::Failed {
                index: 2,
                title: "Page 3".into(),
                text: String::new(),
                error: "Beacon.GaveUp".into(),
                cause: "throttled".into(),
                path: "inline".into(),
            },
            ok(
                1,
                json!({"summary": "Second. More.", "headings": ["Intro"], "fields": [{"name": "Total", "value": "$5"}]}),
                Some(0.5),
            ),
            ok(
                0,
                json!({"summary": "First page is here. Then more.", "headings": ["Intro", "Scope"], "fields": [{"name": "Total", "value": "$5"}]}),
                Some(0.25),
            ),
        ];
        let r = integrate(ctx("en"), outcomes);
        assert_eq!(r.units.iter().map(|u| u.index).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(r.sections[0].title, "Intro");
        assert_eq!(r.sections[0].units, vec![0, 1]);
        assert_eq!(r.fields.len(), 1);
        assert_eq!(r.fields[0].units, vec![0, 1]);
        assert_eq!(r.failed_units.len(), 1);
        assert_eq!(r.failed_units[0].cause, "throttled");
        assert_eq!(r.usage.units_succeeded, 2);
        assert_eq!(r.usage.units_failed, 1);
        assert_eq!(r.usage.throttles, 2);
        assert_eq!(r.usage.requests, 4);
        assert_eq!(r.usage.retries, 2, "one retry per unit that took two attempts");
        assert_eq!(r.usage.makespan_ms, Some(2500));
        assert_eq!(r.usage.total_tokens, 30);
        assert_eq!(r.usage.cost_usd, Some(0.75));
        assert_eq!(r.summary, "First page is here. Second.");
        assert_eq!(r.unit_paths.get("inline"), Some(&3));
    }

    #[test]
    fn headings_on_every_page_are_running_headers_not_sections() {
        let page = |i: usize, h: &str| ok(i, json!({"summary": "s", "headings": ["ACME Annual Report", h]}), None);
        let r = integrate(ctx("en"), vec![page(0, "Intro"), page(1, "Results"), page(2, "Outlook")]);
        let titles: Vec<&str> = r.sections.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, vec!["Intro", "Results", "Outlook"]);
        let short = integrate(ctx("en"), vec![page(0, "Intro"), page(1, "Results")]);
        assert_eq!(short.sections.len(), 3, "two pages are too few to call anything a running header");
    }

    #[test]
    fn unknown_price_makes_total_cost_unknown() {
        let r =
            integrate(ctx("en"), vec![ok(0, json!({"summary": "a"}), None), ok(1, json!({"summary": "b"}), Some(1.0))]);
        assert_eq!(r.usage.cost_usd, None);
    }

    #[test]
    fn japanese_summaries_join_without_spaces() {
        let r = integrate(
            ctx("ja"),
            vec![
                ok(0, json!({"summary": "売上は増加した。詳細は後述。"}), None),
                ok(1, json!({"summary": "社員は4名。"}), None),
            ],
        );
        assert_eq!(r.summary, "売上は増加した。社員は4名。");
    }
}
