//! `report.md`: the report for people, with its labels in the document's language.

use std::fmt::Write;

use serde_json::Value;

use super::model::*;

/// The fixed words of the Markdown report in one language.
struct Labels {
    report: &'static str,
    document: &'static str,
    format: &'static str,
    units: &'static str,
    strategy: &'static str,
    strategy_note: &'static str,
    model: &'static str,
    language: &'static str,
    summary: &'static str,
    sections: &'static str,
    fields: &'static str,
    dates: &'static str,
    amounts: &'static str,
    tables: &'static str,
    unit_results: &'static str,
    failed_units: &'static str,
    usage: &'static str,
    tokens: &'static str,
    requests: &'static str,
    throttles: &'static str,
    retries: &'static str,
    makespan: &'static str,
    cost: &'static str,
    unknown: &'static str,
    none: &'static str,
    failed: &'static str,
    columns: &'static str,
    rows: &'static str,
    key_points: &'static str,
    name: &'static str,
    value: &'static str,
    unit: &'static str,
}

const EN: Labels = Labels {
    report: "Report",
    document: "Document",
    format: "Format",
    units: "Units",
    strategy: "Strategy",
    strategy_note: "Strategy note",
    model: "Model",
    language: "Language",
    summary: "Summary",
    sections: "Sections",
    fields: "Fields",
    dates: "Dates",
    amounts: "Amounts",
    tables: "Tables",
    unit_results: "Units",
    failed_units: "Failed units",
    usage: "Usage",
    tokens: "Tokens (input / output)",
    requests: "Requests",
    throttles: "Throttled requests",
    retries: "Retries",
    makespan: "Makespan",
    cost: "Cost",
    unknown: "unknown",
    none: "none",
    failed: "FAILED",
    columns: "columns",
    rows: "rows",
    key_points: "Key points",
    name: "Name",
    value: "Value",
    unit: "Units",
};

const JA: Labels = Labels {
    report: "レポート",
    document: "文書",
    format: "形式",
    units: "ユニット数",
    strategy: "並列方式",
    strategy_note: "並列方式の注記",
    model: "モデル",
    language: "言語",
    summary: "要約",
    sections: "見出し",
    fields: "項目",
    dates: "日付",
    amounts: "金額",
    tables: "表",
    unit_results: "ユニット別の結果",
    failed_units: "失敗したユニット",
    usage: "使用量",
    tokens: "トークン（入力 / 出力）",
    requests: "リクエスト数",
    throttles: "スロットリングされたリクエスト",
    retries: "リトライ",
    makespan: "処理時間",
    cost: "コスト",
    unknown: "不明",
    none: "なし",
    failed: "失敗",
    columns: "列",
    rows: "行",
    key_points: "要点",
    name: "項目名",
    value: "値",
    unit: "ユニット",
};

fn labels(language: Option<&str>) -> &'static Labels {
    match language {
        Some("ja") => &JA,
        _ => &EN,
    }
}

/// Escape text for a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn unit_list(units: &[usize]) -> String {
    units.iter().map(|u| (u + 1).to_string()).collect::<Vec<_>>().join(", ")
}

/// Render `report` as Markdown.
pub fn render(report: &Report) -> String {
    let l = labels(report.document.language.as_deref());
    let mut md = String::new();
    let title = report.document.title.as_deref().unwrap_or(&report.document.name);
    // Writing to a String cannot fail.
    let _ = writeln!(md, "# {}: {}\n", l.report, title);
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| {} | {} |", l.document, cell(&report.document.name));
    let _ = writeln!(md, "| {} | {} |", l.format, report.document.format);
    let _ = writeln!(md, "| {} | {} |", l.units, report.document.unit_count);
    // The strategy, and how many units took each path when that is not the strategy alone
    // (a batch run's failed records went on demand).
    let mut strategy = report.strategy.clone();
    if report.unit_paths.keys().any(|p| p != &report.strategy) {
        let paths: Vec<String> = report.unit_paths.iter().map(|(path, n)| format!("{n} {path}")).collect();
        strategy = format!("{strategy} ({})", paths.join(", "));
    }
    let _ = writeln!(md, "| {} | {} |", l.strategy, cell(&strategy));
    if let Some(note) = &report.strategy_note {
        let _ = writeln!(md, "| {} | {} |", l.strategy_note, cell(note));
    }
    let _ = writeln!(md, "| {} | {} |", l.model, cell(&report.model));
    if let Some(lang) = &report.document.language {
        let _ = writeln!(md, "| {} | {} |", l.language, lang);
    }
    let _ = writeln!(md, "| SHA-256 | `{}` |\n", report.document.sha256);

    let _ = writeln!(md, "## {}\n", l.summary);
    let _ = writeln!(md, "{}\n", if report.summary.is_empty() { l.none } else { &report.summary });

    if !report.failed_units.is_empty() {
        let _ = writeln!(md, "## {}\n", l.failed_units);
        for f in &report.failed_units {
            let _ = writeln!(md, "- **{}** ({}): {}", cell(&f.title), f.error, cell(&f.cause));
        }
        md.push('\n');
    }
    if !report.sections.is_empty() {
        let _ = writeln!(md, "## {}\n", l.sections);
        for s in &report.sections {
            let _ = writeln!(md, "- {} ({} {})", s.title, l.unit, unit_list(&s.units));
        }
        md.push('\n');
    }
    if !report.fields.is_empty() {
        let _ = writeln!(md, "## {}\n\n| {} | {} | {} |\n|---|---|---|", l.fields, l.name, l.value, l.unit);
        for f in &report.fields {
            let _ = writeln!(md, "| {} | {} | {} |", cell(&f.name), cell(&f.value), unit_list(&f.units));
        }
        md.push('\n');
    }
    if !report.dates.is_empty() {
        let _ = writeln!(md, "## {}\n", l.dates);
        for d in &report.dates {
            match &d.iso {
                Some(iso) => {
                    let _ = writeln!(md, "- {} ({}) [{} {}]", d.text, iso, l.unit, unit_list(&d.units));
                }
                None => {
                    let _ = writeln!(md, "- {} [{} {}]", d.text, l.unit, unit_list(&d.units));
                }
            }
        }
        md.push('\n');
    }
    if !report.amounts.is_empty() {
        let _ = writeln!(md, "## {}\n", l.amounts);
        for a in &report.amounts {
            let currency = a.currency.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
            let _ = writeln!(md, "- {}{} [{} {}]", a.text, currency, l.unit, unit_list(&a.units));
        }
        md.push('\n');
    }
    if !report.tables.is_empty() {
        let _ = writeln!(md, "## {}\n", l.tables);
        for t in &report.tables {
            let rows = t.row_count.map(|r| format!(", {r} {}", l.rows)).unwrap_or_default();
            let title = t.title.as_deref().map(|t| format!("{t}: ")).unwrap_or_default();
            let _ = writeln!(
                md,
                "- {}{} {}: {}{} [{} {}]",
                title,
                t.columns.len(),
                l.columns,
                t.columns.join(", "),
                rows,
                l.unit,
                t.unit + 1
            );
        }
        md.push('\n');
    }

    let _ = writeln!(md, "## {}\n", l.unit_results);
    for u in &report.units {
        let _ = writeln!(md, "### {}. {}\n", u.index + 1, u.title);
        match (&u.status, &u.result, &u.error) {
            (UnitStatus::Succeeded, Some(result), _) => {
                if let Some(s) = result.get("summary").and_then(Value::as_str) {
                    let _ = writeln!(md, "{s}\n");
                }
                let points: Vec<&str> = result
                    .get("key_points")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                if !points.is_empty() {
                    let _ = writeln!(md, "{}:\n", l.key_points);
                    for p in points {
                        let _ = writeln!(md, "- {p}");
                    }
                    md.push('\n');
                }
            }
            (_, _, Some(e)) => {
                let _ = writeln!(md, "**{}** — {}: {}\n", l.failed, e.error, cell(&e.cause));
            }
            _ => {}
        }
    }

    let u = &report.usage;
    let _ = writeln!(md, "## {}\n\n| | |\n|---|---|", l.usage);
    let _ = writeln!(md, "| {} | {} / {} |", l.tokens, u.input_tokens, u.output_tokens);
    let _ = writeln!(md, "| {} | {} |", l.requests, u.requests);
    let _ = writeln!(md, "| {} | {} |", l.throttles, u.throttles);
    let _ = writeln!(md, "| {} | {} |", l.retries, u.retries);
    if let Some(ms) = u.makespan_ms {
        let _ = writeln!(md, "| {} | {:.1} s |", l.makespan, ms as f64 / 1000.0);
    }
    let cost = u.cost_usd.map(|c| format!("${c:.4}")).unwrap_or_else(|| l.unknown.to_string());
    let _ = writeln!(md, "| {} | {} |", l.cost, cost);
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ReportContext, UnitOutcome, integrate};
    use serde_json::json;

    fn report(language: &str) -> Report {
        integrate(
            ReportContext {
                document: DocumentInfo {
                    name: "売上.xlsx".into(),
                    sha256: "00".into(),
                    format: "xlsx".into(),
                    unit_count: 2,
                    bytes: 1,
                    language: Some(language.into()),
                    title: None,
                },
                strategy: "batch".into(),
                strategy_note: Some("the batch job ended Expired".into()),
                model: "offline".into(),
                execution: "e".into(),
                generated_at: "t".into(),
                started_at: None,
            },
            vec![
                UnitOutcome::Succeeded {
                    index: 0,
                    title: "売上".into(),
                    text: String::new(),
                    result: json!({"summary": "6行の表。", "key_points": ["4月 | 12850"], "fields": [{"name": "a|b", "value": "1"}]}),
                    usage: UnitUsage::default(),
                    path: "batch".into(),
                },
                UnitOutcome::Failed {
                    index: 1,
                    title: "社員一覧".into(),
                    text: String::new(),
                    error: "Beacon.Rejected".into(),
                    cause: "bad".into(),
                    path: "on-demand".into(),
                },
            ],
        )
    }

    #[test]
    fn japanese_documents_get_japanese_labels() {
        let md = render(&report("ja"));
        assert!(md.starts_with("# レポート: 売上.xlsx"), "{md}");
        assert!(md.contains("## 要約\n\n6行の表。"));
        assert!(md.contains("## 失敗したユニット"));
        assert!(md.contains("| a\\|b | 1 | 1 |"), "pipes in cells are escaped: {md}");
        assert!(md.contains("**失敗** — Beacon.Rejected: bad"));
    }

    #[test]
    fn other_documents_get_english_labels() {
        let md = render(&report("en"));
        assert!(md.contains("## Summary"));
        assert!(md.contains("## Failed units\n\n- **社員一覧** (Beacon.Rejected): bad"));
        assert!(md.contains("| Cost | unknown |"), "no price known: {md}");
        assert!(md.contains("| Strategy | batch (1 batch, 1 on-demand) |"), "{md}");
        assert!(md.contains("| Strategy note | the batch job ended Expired |"), "{md}");
    }
}
