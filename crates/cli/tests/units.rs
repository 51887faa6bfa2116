//! `beacon units`: what a document splits into, without any model call.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn the_sample_pdf_lists_one_unit_per_page() {
    let s = Scratch::new();
    let doc = repo_root().join("samples/operations-review.pdf");
    let out = s.beacon().arg("units").arg(&doc).output().unwrap();
    assert_exit(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("index") && lines[0].contains("tokens"), "{text}");
    assert!(lines.last().unwrap().starts_with("12 units, about "), "{text}");
    assert_eq!(lines.len(), 1 + 12 + 1, "{text}");
    assert!(lines[1].contains("page"), "{text}");

    let out = s.beacon().args(["units", "--json"]).arg(&doc).output().unwrap();
    assert_exit(&out, 0);
    let units: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(units.len(), 12);
    for (i, unit) in units.iter().enumerate() {
        assert_eq!(unit["index"], i);
        assert_eq!(unit["kind"], "page");
        let chars = unit["chars"].as_u64().unwrap();
        assert_eq!(chars as usize, unit["text"].as_str().unwrap().chars().count());
        assert!(unit["estimated_tokens"].as_u64().unwrap() > 0);
    }
}

#[test]
fn a_japanese_csv_lists_its_rows_with_the_table() {
    let Some(csv) = corpus("ja/invoices-sjis.csv") else { return };
    let s = Scratch::new();
    let out = s.beacon().args(["units", "--json"]).arg(&csv).output().unwrap();
    assert_exit(&out, 0);
    let first: Value = serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(first["kind"], "rows");
    // Shift_JIS decoded: Japanese characters, no replacement characters.
    let text = first["text"].as_str().unwrap();
    assert!(text.chars().any(|c| ('\u{3040}'..='\u{9fff}').contains(&c)), "{text}");
    assert!(!text.contains('\u{fffd}'), "{text}");
    assert!(first["table"]["rows"].as_array().unwrap().len() > 1);
}

#[test]
fn an_html_page_in_shift_jis_splits_at_its_headings_and_runs_offline() {
    let s = Scratch::new();
    let page = "<!DOCTYPE html><html><head><meta charset=\"shift_jis\"><title>報告</title>\
        <script>alert('x')</script></head><body><h1>売上</h1><p>四月の売上は前年比103%。</p>\
        <table><tr><th>月</th><th>売上高</th></tr><tr><td>4月</td><td>12,850</td></tr></table>\
        <h2>課題</h2><ul><li>供給</li><li>金利</li></ul></body></html>";
    let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode(page);
    let file = s.path("report.html");
    std::fs::write(&file, &bytes).unwrap();
    let out = s.beacon().args(["units", "--json"]).arg(&file).output().unwrap();
    assert_exit(&out, 0);
    let units: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let titles: Vec<&str> = units.iter().map(|u| u["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["売上", "課題"]);
    let first = units[0]["text"].as_str().unwrap();
    assert!(first.contains("| 4月 | 12,850 |") && !first.contains("alert"), "{first}");
    // And through the whole flow, offline: a report in Japanese.
    let out = s.run(&file, &[]);
    assert_exit(&out, 0);
    let report = s.report();
    assert_eq!(report["document"]["format"], "html");
    assert_eq!(report["document"]["unit_count"], 2);
}

#[test]
fn bad_input_is_a_clear_error() {
    let s = Scratch::new();
    let out = s.beacon().arg("units").arg(s.path("missing.pdf")).output().unwrap();
    assert_exit(&out, 3);
    assert!(stderr(&out).contains("missing.pdf"), "{}", stderr(&out));
    let big = s.path("big.txt");
    std::fs::write(&big, "x".repeat(2_000)).unwrap();
    let out = s.beacon().args(["units", "--max-file-bytes", "1000"]).arg(&big).output().unwrap();
    assert_exit(&out, 3);
    assert!(stderr(&out).contains("limits.max_file_bytes"), "{}", stderr(&out));
}
