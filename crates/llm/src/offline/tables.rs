//! What a table says: a one-sentence description, numeric facts per column (total, minimum,
//! maximum with the row they are on), and the amounts in money columns.

use super::amounts::{AmountHit, has_written_amount, money_unit, parse_cell_number, tidy};
use super::layout::MdTable;

/// Columns listed by name in a description; the rest are counted.
const MAX_NAMED_COLUMNS: usize = 8;
/// Numeric columns described with facts.
const MAX_FACT_COLUMNS: usize = 3;

/// Headers of columns whose numbers are identifiers or years, not quantities.
const ID_HEADERS: &[&str] = &[
    "no",
    "no.",
    "id",
    "#",
    "code",
    "year",
    "zip",
    "tel",
    "phone",
    "番号",
    "コード",
    "年",
    "年度",
    "電話",
    "郵便番号",
    "no",
    "№",
];
/// Headers of per-unit prices, whose totals mean nothing.
const UNIT_PRICE_HEADERS: &[&str] = &["単価", "unit price", "price", "rate", "単位"];
/// Headers of count columns, whose totals mean something.
const COUNT_HEADERS: &[&str] =
    &["数量", "件数", "個数", "人数", "台数", "本数", "qty", "quantity", "count", "units", "headcount"];

fn cell(row: &[String], c: usize) -> &str {
    row.get(c).map(String::as_str).unwrap_or("").trim()
}

/// `12,850`, `103.2`, `-5`.
pub(crate) fn format_number(value: f64) -> String {
    let value = tidy(value);
    if !value.is_finite() || value.abs() >= 1e15 {
        return format!("{value}");
    }
    let fixed = format!("{:.2}", value.abs());
    let (whole, decimals) = fixed.split_once('.').unwrap_or((&fixed, ""));
    let mut grouped = String::new();
    for (i, d) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(d);
    }
    let decimals = decimals.trim_end_matches('0');
    if !decimals.is_empty() {
        grouped.push('.');
        grouped.push_str(decimals);
    }
    if value < 0.0 && grouped.chars().any(|c| c != '0' && c != ',' && c != '.') {
        format!("-{grouped}")
    } else {
        grouped
    }
}

/// A sentence describing the table: `Table with 6 rows and columns 月, 売上高(千円).` /
/// `6行の表（列：月、売上高(千円)）。`
pub(crate) fn description(table: &MdTable, ja: bool) -> String {
    let names: Vec<&str> = table.header.iter().map(|h| h.trim()).filter(|h| !h.is_empty()).collect();
    let shown: Vec<&str> = names.iter().copied().take(MAX_NAMED_COLUMNS).collect();
    let more = names.len().saturating_sub(MAX_NAMED_COLUMNS);
    let n = table.rows.len();
    if ja {
        let mut columns = shown.join("、");
        if more > 0 {
            columns.push_str(&format!("ほか{more}列"));
        }
        let title = table.title.as_ref().map(|t| format!("「{t}」：")).unwrap_or_default();
        format!("{title}{n}行の表（列：{columns}）。")
    } else {
        let mut columns = shown.join(", ");
        if more > 0 {
            columns.push_str(&format!(" and {more} more"));
        }
        let rows = if n == 1 { "1 row".to_string() } else { format!("{n} rows") };
        let title = table.title.as_ref().map(|t| format!(" \"{t}\"")).unwrap_or_default();
        format!("Table{title} with {rows} and columns {columns}.")
    }
}

fn is_id_header(header: &str) -> bool {
    let lower = header.trim().to_lowercase();
    ID_HEADERS.contains(&lower.as_str())
        || lower.ends_with("番号")
        || lower.ends_with(" id")
        || lower.ends_with("コード")
}

/// The numbers of column `c`, when it is numeric: at least two numbers and four in five of the
/// non-empty cells.
fn numeric_column(table: &MdTable, c: usize) -> Option<Vec<(usize, f64)>> {
    let mut filled = 0;
    let mut numbers = Vec::new();
    for (r, row) in table.rows.iter().enumerate() {
        let text = cell(row, c);
        if text.is_empty() {
            continue;
        }
        filled += 1;
        if let Some(v) = parse_cell_number(text) {
            numbers.push((r, v));
        }
    }
    (numbers.len() >= 2 && numbers.len() * 5 >= filled * 4).then_some(numbers)
}

/// Facts about the first numeric columns: total (for money and counts), minimum and maximum with
/// the row label (the first column), average for other quantities.
pub(crate) fn facts(table: &MdTable, ja: bool) -> Vec<String> {
    let label_column = numeric_column(table, 0).is_none();
    let mut out = Vec::new();
    for (c, header) in table.header.iter().enumerate() {
        if out.len() == MAX_FACT_COLUMNS {
            break;
        }
        let header = header.trim();
        if header.is_empty() || is_id_header(header) {
            continue;
        }
        let Some(numbers) = numeric_column(table, c) else { continue };
        let label = |r: usize| -> String {
            if label_column && c != 0 {
                let l = table.rows.get(r).map(|row| cell(row, 0)).unwrap_or("");
                if !l.is_empty() {
                    return if ja { format!("（{l}）") } else { format!(" ({l})") };
                }
            }
            String::new()
        };
        let mut min = numbers[0];
        let mut max = numbers[0];
        let mut sum = 0.0;
        for &(r, v) in &numbers {
            if v < min.1 {
                min = (r, v);
            }
            if v > max.1 {
                max = (r, v);
            }
            sum += v;
        }
        let lower = header.to_lowercase();
        // Totals of money and counts mean something; totals of unit prices do not.
        let unit_price = UNIT_PRICE_HEADERS.iter().any(|w| lower.contains(w));
        let summable = (money_unit(header).is_some() && !unit_price) || COUNT_HEADERS.iter().any(|w| lower.contains(w));
        let (min_s, max_s) = (format_number(min.1), format_number(max.1));
        let fact = match (ja, summable) {
            (true, true) => format!(
                "{header}：合計 {}、最小 {min_s}{}、最大 {max_s}{}。",
                format_number(sum),
                label(min.0),
                label(max.0)
            ),
            (true, false) => format!(
                "{header}：最小 {min_s}{}、最大 {max_s}{}、平均 {}。",
                label(min.0),
                label(max.0),
                format_number(sum / numbers.len() as f64)
            ),
            (false, true) => format!(
                "{header}: total {}, min {min_s}{}, max {max_s}{}.",
                format_number(sum),
                label(min.0),
                label(max.0)
            ),
            (false, false) => format!(
                "{header}: min {min_s}{}, max {max_s}{}, average {}.",
                label(min.0),
                label(max.0),
                format_number(sum / numbers.len() as f64)
            ),
        };
        out.push(fact);
    }
    out
}

/// Amounts in money columns (`売上高(千円)`, `Amount (USD)`, `請求金額`): each plain number, as
/// `"<header>: <cell>"`, with the header's multiplier applied. Cells that write their own
/// currency are left to the text scanner. `row_offset` gives each row's byte offset for ordering.
pub(crate) fn column_amounts(table: &MdTable, row_offset: impl Fn(usize) -> usize) -> Vec<AmountHit> {
    let mut out = Vec::new();
    for (c, header) in table.header.iter().enumerate() {
        let header = header.trim();
        let Some(unit) = money_unit(header) else { continue };
        for (r, row) in table.rows.iter().enumerate() {
            let text = cell(row, c);
            if text.is_empty() || has_written_amount(text) {
                continue;
            }
            let Some(v) = parse_cell_number(text) else { continue };
            out.push(AmountHit {
                text: format!("{header}: {text}"),
                value: Some(tidy(v * unit.multiplier)),
                currency: unit.currency.clone(),
                start: row_offset(r),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offline::layout::Layout;

    const SALES: &str = "| 月 | 売上高(千円) | 前年比(%) | 計上日 |\n|---|---|---|---|\n\
        | 4月 | 12850 | 103.2 | 2026-04-30 |\n| 5月 | 11920 | 98.7 | 2026-05-31 |\n| 6月 | 13410 | 105.9 | 2026-06-30 |";

    #[test]
    fn describes_tables_in_both_languages() {
        let layout = Layout::parse(SALES);
        let t = &layout.tables[0];
        assert_eq!(description(t, true), "3行の表（列：月、売上高(千円)、前年比(%)、計上日）。");
        assert_eq!(description(t, false), "Table with 3 rows and columns 月, 売上高(千円), 前年比(%), 計上日.");
        assert_eq!(
            facts(t, true),
            vec![
                "売上高(千円)：合計 38,180、最小 11,920（5月）、最大 13,410（6月）。",
                "前年比(%)：最小 98.7（5月）、最大 105.9（6月）、平均 102.6。"
            ]
        );
    }

    #[test]
    fn money_columns_become_amounts() {
        let layout = Layout::parse(SALES);
        let amounts = column_amounts(&layout.tables[0], |r| r);
        assert_eq!(amounts.len(), 3);
        assert_eq!(amounts[0].text, "売上高(千円): 12850");
        assert_eq!(amounts[0].value, Some(12_850_000.0));
        assert_eq!(amounts[0].currency.as_deref(), Some("JPY"));
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(format_number(1234567.0), "1,234,567");
        assert_eq!(format_number(-1000.0), "-1,000");
        assert_eq!(format_number(102.6), "102.6");
        assert_eq!(format_number(0.5), "0.5");
        assert_eq!(format_number(999.0), "999");
        assert_eq!(format_number(1500.5), "1,500.5");
        assert_eq!(format_number(-0.001), "0");
    }
}
