//! `beacon run` end to end with the built-in offline analyzer.

mod common;

use common::*;
use serde_json::Value;

fn unit_statuses(report: &Value) -> Vec<String> {
    report["units"]
        .as_array()
        .expect("units")
        .iter()
        .map(|u| u["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn corpus_pdf_gives_one_succeeded_unit_per_page() {
    let Some(pdf) = corpus("pdf/004-pdflatex-4-pages/pdflatex-4-pages.pdf") else { return };
    let s = Scratch::new();
    let out = s.run(&pdf, &[]);
    assert_exit(&out, 0);
    let report = s.report();
    assert_eq!(report["document"]["unit_count"], 4);
    assert_eq!(report["document"]["format"], "pdf");
    assert_eq!(report["document"]["name"], "pdflatex-4-pages.pdf");
    assert_eq!(report["document"]["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(report["strategy"], "inline");
    assert_eq!(unit_statuses(&report), vec!["succeeded"; 4]);
    for (i, unit) in report["units"].as_array().unwrap().iter().enumerate() {
        assert_eq!(unit["index"], i);
        assert!(unit["result"]["summary"].is_string());
        assert!(!unit["text"].as_str().unwrap_or_default().trim().is_empty(), "unit {i} has text");
    }
    assert_eq!(report["failed_units"], Value::Array(vec![]));
    let md = std::fs::read_to_string(s.out().join("report.md")).unwrap();
    assert!(md.starts_with("# Report"), "{md}");
    assert!(stdout(&out).contains("4 of 4 units succeeded"), "{}", stdout(&out));
}

#[test]
fn sample_pdf_in_the_repo_is_analysed_with_extracted_facts() {
    let s = Scratch::new();
    let out = s.run(&repo_root().join("samples/operations-review.pdf"), &[]);
    assert_exit(&out, 0);
    let report = s.report();
    assert_eq!(report["document"]["unit_count"], 12);
    assert_eq!(unit_statuses(&report), vec!["succeeded"; 12]);
    let text = report.to_string();
    assert!(text.contains("2026-04-30"), "dates extracted");
    assert!(text.contains("48250000") || text.contains("4.825e7"), "amounts extracted: {}", report["amounts"]);
    assert!(!report["summary"].as_str().unwrap_or_default().is_empty());
}

#[test]
fn default_output_directory_is_beacon_out_file_stem() {
    let s = Scratch::new();
    let sample = s.path("notes.md");
    std::fs::write(&sample, "# Notes\n\nThe meeting is on 2026-05-01. Budget: $1,200.\n\n# Actions\n\nShip it.\n")
        .unwrap();
    let out = s.beacon().arg("run").arg(&sample).output().unwrap();
    assert_exit(&out, 0);
    let dir = s.path("beacon-out/notes");
    assert!(dir.join("report.json").is_file() && dir.join("report.md").is_file(), "{}", stdout(&out));
}

#[test]
fn non_terminal_progress_is_plain_log_lines() {
    let s = Scratch::new();
    let out = s.run(&repo_root().join("samples/operations-review.pdf"), &[]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("12 units to analyse"), "{err}");
    assert!(err.contains("12/12 done"), "{err}");
    assert!(err.contains("throttles 0"), "{err}");
    assert!(!err.contains('\u{1b}'), "no terminal escapes when not a terminal");
}

#[test]
fn japanese_pdf_keeps_its_text_and_gets_a_japanese_report() {
    let Some(pdf) = corpus("ja/beacon-design-ja.pdf") else { return };
    let files: Value =
        serde_json::from_str(&std::fs::read_to_string(corpus("ja/files.json").unwrap()).unwrap()).unwrap();
    let expected = files["data"].as_array().unwrap().iter().find(|f| f["path"] == "beacon-design-ja.pdf").unwrap();
    let s = Scratch::new();
    let out = s.run(&pdf, &[]);
    assert_exit(&out, 0);
    let report = s.report();
    assert_eq!(report["document"]["unit_count"], expected["pages"]);
    assert_eq!(report["document"]["language"], "ja");
    let all_text: String =
        report["units"].as_array().unwrap().iter().map(|u| u["text"].as_str().unwrap_or_default()).collect();
    for needle in expected["must_contain"].as_array().unwrap() {
        let needle = needle.as_str().unwrap();
        assert!(all_text.contains(needle), "unit texts lack {needle:?}");
    }
    let md = std::fs::read_to_string(s.out().join("report.md")).unwrap();
    assert!(md.contains("## 要約"), "labels in Japanese: {md}");
}

#[test]
fn japanese_workbook_gives_one_unit_per_sheet_titled_in_japanese() {
    let Some(xlsx) = corpus("ja/sales-ja.xlsx") else { return };
    let s = Scratch::new();
    let out = s.run(&xlsx, &[]);
    assert_exit(&out, 0);
    let report = s.report();
    let titles: Vec<&str> = report["units"].as_array().unwrap().iter().map(|u| u["title"].as_str().unwrap()).collect();
    assert_eq!(titles, vec!["売上", "社員一覧"]);
    assert!(report["units"][0]["text"].as_str().unwrap().contains("12850"));
}

#[test]
fn shift_jis_csv_is_decoded() {
    let Some(csv) = corpus("ja/invoices-sjis.csv") else { return };
    let s = Scratch::new();
    let out = s.run(&csv, &[]);
    assert_exit(&out, 0);
    let report = s.report();
    assert_eq!(report["document"]["format"], "csv");
    let text = report["units"][0]["text"].as_str().unwrap();
    assert!(text.contains("株式会社山田商事") && text.contains("前払い済 ①"), "{text}");
}
