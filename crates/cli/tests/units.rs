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
