//! Behaviour of the whole analysis on typical units.

use super::*;

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn field(result: &Value, name: &str) -> Option<String> {
    result["fields"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == name)
        .and_then(|f| f["value"].as_str().map(str::to_string))
}

const ENGLISH_PAGE: &str = "Quarterly Operations Report

1. Introduction
This report describes how the document pipeline handled the load in the first quarter. The
pipeline processed 12,400 documents and kept the model quota within its limits.

2. Throttling
Throttling happened when the request rate exceeded the model quota. Retries with exponential
backoff absorbed most throttling events, e.g. during the month-end peak. Dr. Tanaka reviewed the
retry settings on April 30, 2026.

Invoice No: INV-2026-001
Total: $1,234.56
";

#[test]
fn english_page() {
    let r = analyze(ENGLISH_PAGE, "page 1", None);
    assert_eq!(r["language"], "en");
    assert_eq!(r["title"], "Quarterly Operations Report");
    assert_eq!(strings(&r["headings"]), vec!["Quarterly Operations Report", "1. Introduction", "2. Throttling"]);
    assert_eq!(field(&r, "Invoice No").as_deref(), Some("INV-2026-001"));
    assert_eq!(field(&r, "Total").as_deref(), Some("$1,234.56"));
    assert_eq!(r["dates"][0]["text"], "April 30, 2026");
    assert_eq!(r["dates"][0]["iso"], "2026-04-30");
    assert_eq!(r["amounts"][0]["text"], "$1,234.56");
    assert_eq!(r["amounts"][0]["value"], 1234.56);
    assert_eq!(r["amounts"][0]["currency"], "USD");
    let points = strings(&r["key_points"]);
    assert!(!points.is_empty() && points.len() <= MAX_KEY_POINTS);
    assert!(points.iter().any(|p| p.contains("Throttling happened")), "{points:?}");
    // Lines broken inside a paragraph are joined; abbreviations do not split sentences.
    assert!(points.iter().all(|p| !p.ends_with("The")));
    assert!(points.iter().any(|p| p.contains("e.g. during the month-end peak.")), "{points:?}");
    let summary = r["summary"].as_str().unwrap_or("");
    assert!(!summary.is_empty() && summary.chars().count() <= SUMMARY_CHARS + 1, "{summary}");
    assert!(summary.contains("quota") || summary.contains("hrottling"), "{summary}");
}

const JAPANESE_PAGE: &str = "第1章 概要

本書は文書処理基盤BEACONの設計を説明する。BEACONは大量の文書をページ単位に分割し、
モデルへの要求を並列に送信して結果を統合する。

１．スロットリング対策
モデルの呼び出し上限を超えるとスロットリングが発生する。指数バックオフリトライにより、
スロットリングの影響を抑える。

請求日：2026年4月30日
【支払期限】令和8年5月31日
合計金額 ¥12,850（税込）
";

#[test]
fn japanese_page() {
    let r = analyze(JAPANESE_PAGE, "ページ 1", Some("ja"));
    assert_eq!(r["language"], "ja");
    assert_eq!(r["title"], "第1章 概要");
    assert_eq!(strings(&r["headings"]), vec!["第1章 概要", "１．スロットリング対策"]);
    assert_eq!(field(&r, "請求日").as_deref(), Some("2026年4月30日"));
    assert_eq!(field(&r, "支払期限").as_deref(), Some("令和8年5月31日"));
    let dates: Vec<(String, String)> = r["dates"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| (d["text"].as_str().unwrap_or("").into(), d["iso"].as_str().unwrap_or("").into()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        dates,
        vec![
            ("2026年4月30日".to_string(), "2026-04-30".to_string()),
            ("令和8年5月31日".to_string(), "2026-05-31".to_string())
        ]
    );
    assert_eq!(r["amounts"][0]["text"], "¥12,850");
    assert_eq!(r["amounts"][0]["value"], 12850);
    assert_eq!(r["amounts"][0]["currency"], "JPY");
    let points = strings(&r["key_points"]);
    assert!(points.iter().any(|p| p.contains("スロットリングが発生する。")), "{points:?}");
    // The line broken after 、 is joined back into one sentence.
    assert!(points.iter().any(|p| p == "指数バックオフリトライにより、スロットリングの影響を抑える。"), "{points:?}");
    let summary = r["summary"].as_str().unwrap_or("");
    assert!(summary.chars().count() <= SUMMARY_CHARS + 1);
    assert!(summary.ends_with('。'), "{summary}");
    assert!(!summary.contains(' '), "{summary}");
}

const SALES_SHEET: &str = "## 売上

| 月 | 売上高(千円) | 前年比(%) | 計上日 |
|---|---|---|---|
| 4月 | 12850 | 103.2 | 2026-04-30 |
| 5月 | 11920 | 98.7 | 2026-05-31 |
| 6月 | 13410 | 105.9 | 2026-06-30 |
";

#[test]
fn japanese_sheet_as_table() {
    let r = analyze(SALES_SHEET, "売上", None);
    assert_eq!(r["language"], "ja");
    assert_eq!(r["title"], "売上");
    assert_eq!(r["tables"][0]["title"], "売上");
    assert_eq!(strings(&r["tables"][0]["columns"]), vec!["月", "売上高(千円)", "前年比(%)", "計上日"]);
    assert_eq!(r["tables"][0]["row_count"], 3);
    let summary = r["summary"].as_str().unwrap_or("");
    assert!(summary.starts_with("「売上」：3行の表（列：月、売上高(千円)、前年比(%)、計上日）。"), "{summary}");
    assert!(summary.contains("合計 38,180"), "{summary}");
    assert_eq!(r["amounts"][0]["text"], "売上高(千円): 12850");
    assert_eq!(r["amounts"][0]["value"], 12_850_000);
    assert_eq!(r["amounts"][0]["currency"], "JPY");
    assert_eq!(r["amounts"].as_array().map(Vec::len), Some(3));
    assert_eq!(r["dates"].as_array().map(Vec::len), Some(3));
    assert_eq!(r["dates"][2]["iso"], "2026-06-30");
    assert!(strings(&r["key_points"]).iter().any(|p| p.starts_with("売上高(千円)：合計")));
}

#[test]
fn english_table_summary_and_label_title() {
    let text = "| Item | Amount (USD) |\n|---|---|\n| Hosting | 1,200 |\n| Support | 300.50 |";
    let r = analyze(text, "Rows 2-3", None);
    assert_eq!(r["title"], "Rows 2-3");
    assert_eq!(r["language"], "en");
    let summary = r["summary"].as_str().unwrap_or("");
    assert!(summary.starts_with("Table with 2 rows and columns Item, Amount (USD)."), "{summary}");
    assert!(summary.contains("Amount (USD): total 1,500.5, min 300.5 (Support), max 1,200 (Hosting)."), "{summary}");
    // A two-column table: rows are fields too.
    assert_eq!(field(&r, "Hosting").as_deref(), Some("1,200"));
    assert_eq!(r["amounts"][1]["value"], 300.5);
    assert_eq!(r["amounts"][1]["currency"], "USD");
}

#[test]
fn fields_only_unit_gets_a_summary() {
    let r = analyze("INVOICE\nInvoice No: INV-2026-001\nDate: 2026-04-30\nTotal: $1,234.56", "page 1", None);
    assert_eq!(r["title"], "INVOICE");
    assert_eq!(r["summary"], "INVOICE: Invoice No: INV-2026-001; Date: 2026-04-30; Total: $1,234.56.");
    assert_eq!(strings(&r["key_points"]).len(), 3);
}

#[test]
fn lone_words_stay_out_of_summary_and_key_points() {
    let text = "ACME Corporation\nINVOICE\n\nInvoice No: INV-2026-001\n\nPayment is due within 30 days. \
                Please include the invoice number with your payment.\n";
    let r = analyze(text, "page 1", None);
    assert_eq!(r["title"], "ACME Corporation");
    assert_eq!(r["summary"], "Payment is due within 30 days. Please include the invoice number with your payment.");
    assert!(!strings(&r["key_points"]).contains(&"INVOICE".to_string()));
}

#[test]
fn empty_and_whitespace_units() {
    for (text, summary) in [("", "No text content."), ("  \n\n \t", "No text content.")] {
        let r = analyze(text, "page 9", None);
        assert_eq!(r["summary"], summary);
        assert_eq!(r["title"], "page 9");
        assert_eq!(r["language"], "und");
    }
    let r = analyze("", "ページ 2", Some("ja"));
    assert_eq!(r["summary"], "テキストはありません。");
    assert_eq!(r["language"], "ja");
}

#[test]
fn output_is_deterministic() {
    for text in [ENGLISH_PAGE, JAPANESE_PAGE, SALES_SHEET] {
        let a = serde_json::to_string(&analyze(text, "u", None)).unwrap_or_default();
        let b = serde_json::to_string(&analyze(text, "u", None)).unwrap_or_default();
        assert_eq!(a, b);
        assert!(!a.is_empty());
    }
}

#[test]
fn output_follows_the_unit_schema_shape() {
    let r = analyze(JAPANESE_PAGE, "p", None);
    let object = r.as_object().expect("an object");
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec!["title", "summary", "language", "headings", "key_points", "fields", "dates", "amounts", "tables"]
    );
    for d in r["dates"].as_array().into_iter().flatten() {
        assert!(d["text"].is_string() && (d["iso"].is_string() || d["iso"].is_null()));
    }
    for a in r["amounts"].as_array().into_iter().flatten() {
        assert!(a["text"].is_string() && (a["value"].is_number() || a["value"].is_null()));
    }
}

#[test]
fn lists_are_capped() {
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!("## Section {i}\nKey {i}: value {i}\nPaid $ {i}.00 on 2026-01-{:02}.\n", i % 28 + 1));
    }
    let r = analyze(&text, "big", None);
    for (key, cap) in [
        ("headings", MAX_HEADINGS),
        ("fields", MAX_FIELDS),
        ("dates", MAX_DATES),
        ("amounts", MAX_AMOUNTS),
        ("key_points", MAX_KEY_POINTS),
    ] {
        let n = r[key].as_array().map_or(0, Vec::len);
        assert!(n > 0 && n <= cap, "{key}: {n}");
    }
}

#[test]
fn odd_inputs_do_not_panic() {
    let long_line = "a".repeat(200_000);
    let long_cjk = "あ".repeat(50_000);
    let mixed = "English 日本語 中文 한국어 Русский العربية עברית ไทย हिन्दी 🎉🎉 ".repeat(500);
    let odd = [
        "",
        ".",
        "。。。！！？？",
        "...!!!???:::===|||---",
        "|",
        "||\n|-|\n||",
        "| a |\n|---|\n| |",
        ":",
        "：",
        "【】",
        "【",
        "】value",
        "=value",
        "key=",
        "$",
        "$$$ ¥¥ €€ 円円",
        "1万千百円 億円 兆",
        "令和元年",
        "令和0年0月0日",
        "9999-99-99 0000/00/00 99/99/9999",
        "Jan 0 0000, Feb 31 2026, Dec 99",
        "99999999999999999999999999999999999円",
        "$1e308 $999,999,999,999,999,999,999,999.99 billion",
        "\u{0}\u{1}\u{7f}\u{feff}\u{200b}",
        "\r\n\r\n\r",
        "\x0c\x0c page \x0c",
        "# \n## \n###",
        "1.\n2.\n（）\n第章",
        "```\nunterminated code",
        "ｅ．ｇ．　Ｄｒ．　３．５",
        "\u{FF10}\u{FF11}\u{FF12}\u{FF13}年\u{FF11}月",
        "e.g. e.g. e.g. Dr. Dr. Mr. J. K.",
        &long_line,
        &long_cjk,
        &mixed,
    ];
    for text in odd {
        let r = analyze(text, "odd", None);
        assert!(r["summary"].is_string(), "{text:?}");
        let _ = estimate_tokens(text);
    }
}

#[test]
fn completes_as_an_llm_client() {
    let request = CompletionRequest {
        system: "You analyse documents.".into(),
        instruction: "Return JSON.".into(),
        content: JAPANESE_PAGE.into(),
        content_label: "page 1".into(),
        language: Some("ja".into()),
        max_tokens: 1000,
        temperature: 0.0,
        attachments: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let completion = runtime.block_on(OfflineAnalyzer.complete(&request)).expect("offline never fails");
    assert_eq!(OfflineAnalyzer.name(), "offline");
    assert_eq!(completion.model, "offline");
    assert_eq!(completion.stop_reason, "end_turn");
    assert_eq!((completion.attempts, completion.throttles), (1, 0));
    let parsed: Value = serde_json::from_str(&completion.text).expect("JSON");
    assert_eq!(parsed, analyze(JAPANESE_PAGE, "page 1", Some("ja")));
    assert_eq!(
        completion.usage.input_tokens,
        estimate_tokens(&request.system) + estimate_tokens(&request.instruction) + estimate_tokens(&request.content)
    );
    assert_eq!(completion.usage.output_tokens, estimate_tokens(&completion.text));
}
