//! The offline analyzer on real corpus files (`../shared/corpus`, beside the repository). Skips
//! with a message when the corpus is not there.

use std::path::{Path, PathBuf};

use beacon_llm::offline::analyze;
use serde_json::Value;

fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: no corpus at {}", dir.display());
        None
    }
}

/// Split CSV text into rows of fields (quoted fields may hold commas and doubled quotes).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = !quoted,
                ',' if !quoted => fields.push(std::mem::take(&mut field)),
                _ => field.push(c),
            }
        }
        fields.push(field);
        rows.push(fields);
    }
    rows
}

/// Rows as a Markdown table, the way sheets and CSV units reach the analyzer.
fn markdown_table(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
        if i == 0 {
            out.push_str(&format!("|{}\n", "---|".repeat(row.len())));
        }
    }
    out
}

fn read_sjis(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("corpus file is readable");
    let (text, _, had_errors) = encoding_rs::SHIFT_JIS.decode(&bytes);
    assert!(!had_errors, "{} decodes as Shift_JIS", path.display());
    text.into_owned()
}

fn amounts(result: &Value) -> Vec<(String, f64, String)> {
    result["amounts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["text"].as_str().unwrap_or("").to_string(),
                        x["value"].as_f64().unwrap_or(f64::NAN),
                        x["currency"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn isos(result: &Value) -> Vec<String> {
    result["dates"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["iso"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[test]
fn shift_jis_invoices_as_a_table() {
    let Some(corpus) = corpus() else { return };
    let text = read_sjis(&corpus.join("ja/invoices-sjis.csv"));
    assert!(text.contains("前払い済 ①"));
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), 4);
    let result = analyze(&markdown_table(&rows), "invoices-sjis.csv", None);

    assert_eq!(result["language"], "ja");
    assert_eq!(result["title"], "invoices-sjis.csv");
    let table = &result["tables"][0];
    assert_eq!(table["columns"], serde_json::json!(["取引先", "請求金額", "支払期日", "備考"]));
    assert_eq!(table["row_count"], 3);
    // 請求金額 is an amount column: yen in a Japanese document.
    assert_eq!(
        amounts(&result),
        vec![
            ("請求金額: 1,250,000".to_string(), 1_250_000.0, "JPY".to_string()),
            ("請求金額: 380,000".to_string(), 380_000.0, "JPY".to_string()),
            ("請求金額: 2,040,500".to_string(), 2_040_500.0, "JPY".to_string()),
        ]
    );
    assert_eq!(isos(&result), vec!["2026-12-25", "2026-12-31", "2027-01-15"]);
    let summary = result["summary"].as_str().unwrap_or("");
    assert!(summary.starts_with("3行の表（列：取引先、請求金額、支払期日、備考）。"), "{summary}");
    assert!(
        summary.contains(
            "請求金額：合計 3,670,500、最小 380,000（有限会社鈴木工業）、最大 2,040,500（合同会社高橋設計）。"
        ),
        "{summary}"
    );
}

#[test]
fn shift_jis_invoices_as_records() {
    let Some(corpus) = corpus() else { return };
    let rows = parse_csv(&read_sjis(&corpus.join("ja/invoices-sjis.csv")));
    let (header, records) = rows.split_first().expect("a header row");
    // One `列：値` line per cell, a blank line between records (a form-like page).
    let text: String = records
        .iter()
        .map(|r| header.iter().zip(r).map(|(h, v)| format!("{h}：{v}\n")).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n");
    let result = analyze(&text, "page 1", None);

    assert_eq!(result["language"], "ja");
    let fields: Vec<(String, String)> = result["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| (f["name"].as_str().unwrap_or("").into(), f["value"].as_str().unwrap_or("").into()))
                .collect()
        })
        .unwrap_or_default();
    let field = |name: &str, value: &str| (name.to_string(), value.to_string());
    assert_eq!(fields.len(), 11, "{fields:?}"); // 12 cells, one empty 備考
    assert_eq!(fields[0], field("取引先", "株式会社山田商事"));
    assert_eq!(fields[1], field("請求金額", "1,250,000"));
    assert_eq!(fields[2], field("支払期日", "2026/12/25"));
    assert_eq!(fields[3], field("備考", "分割払い"));
    assert!(fields.contains(&field("備考", "前払い済 ①")));
    assert_eq!(
        amounts(&result).iter().map(|a| (a.1, a.2.as_str())).collect::<Vec<_>>(),
        vec![(1_250_000.0, "JPY"), (380_000.0, "JPY"), (2_040_500.0, "JPY")]
    );
    assert_eq!(isos(&result), vec!["2026-12-25", "2026-12-31", "2027-01-15"]);
    let summary = result["summary"].as_str().unwrap_or("");
    assert!(summary.contains("取引先：株式会社山田商事"), "{summary}");
}

#[test]
fn sales_sheet_amounts_in_thousands_of_yen() {
    let Some(corpus) = corpus() else { return };
    let path = corpus.join("ja/expected/sales-ja.xlsx.0.csv");
    let text = std::fs::read_to_string(&path).expect("expected CSV is UTF-8");
    let content = format!("## 売上\n\n{}", markdown_table(&parse_csv(&text)));
    let result = analyze(&content, "売上", Some("ja"));

    assert_eq!(result["title"], "売上");
    assert_eq!(result["tables"][0]["row_count"], 6);
    let found = amounts(&result);
    assert_eq!(found.len(), 6);
    assert_eq!(found[0], ("売上高(千円): 12850".to_string(), 12_850_000.0, "JPY".to_string()));
    assert_eq!(isos(&result).len(), 6);
    let summary = result["summary"].as_str().unwrap_or("");
    assert!(summary.contains("売上高(千円)：合計 78,945、最小 11,920（5月）、最大 14,025（7月）。"), "{summary}");
}
