//! Runs the ingester over the shared corpus (../shared/corpus, see its README): page and sheet
//! counts, encrypted files, Japanese must-contain strings, and spreadsheet cells against the
//! CSVs the producing applications exported.
//!
//! Run with `cargo test -p beacon-ingest --test corpus -- --nocapture` to see the per-file cell
//! match rates.

use std::path::{Path, PathBuf};

use beacon_ingest::{Document, Format, IngestError, Limits, UnitKind, ingest};
use serde_json::Value;

fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipping: ../shared/corpus not found ({})", dir.display());
        None
    }
}

fn entries(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("files.json")).expect("files.json reads");
    let json: Value = serde_json::from_str(&text).expect("files.json parses");
    json["data"].as_array().cloned().unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

fn ingest_file(path: &Path) -> Result<Document, IngestError> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ingest(&bytes, &Limits::default())
}

fn check_pages(name: &str, doc: &Document, pages: usize) {
    assert_eq!(doc.format, Format::Pdf, "{name}");
    assert_eq!(doc.units.len(), pages, "{name}: page count");
    for (i, unit) in doc.units.iter().enumerate() {
        assert_eq!(unit.kind, UnitKind::Page, "{name}");
        assert_eq!(unit.title, format!("Page {}", i + 1), "{name}");
    }
}

#[test]
fn pdf_page_counts_and_encryption() {
    let Some(corpus) = corpus() else { return };
    let dir = corpus.join("pdf");
    let mut matched = 0;
    let all = entries(&dir);
    for entry in &all {
        let path = entry["path"].as_str().expect("path");
        let result = ingest_file(&dir.join(path));
        if entry["encrypted"].as_bool() == Some(true) {
            assert!(matches!(result, Err(IngestError::Encrypted { format: Format::Pdf })), "{path}: {result:?}");
        } else {
            let doc = result.unwrap_or_else(|e| panic!("{path}: {e}"));
            check_pages(path, &doc, entry["pages"].as_u64().expect("pages") as usize);
            let chars: usize = doc.units.iter().map(|u| u.text.chars().count()).sum();
            let ocr = doc.units.iter().filter(|u| u.flags.iter().any(|f| f == "needs_ocr")).count();
            println!(
                "{path}: {} pages, {chars} chars, {ocr} needing OCR, language {:?}",
                doc.units.len(),
                doc.language
            );
        }
        matched += 1;
    }
    println!("PDF: {matched}/{} files as expected", all.len());
}

#[test]
fn japanese_corpus() {
    let Some(corpus) = corpus() else { return };
    let dir = corpus.join("ja");
    for entry in entries(&dir) {
        let path = entry["path"].as_str().expect("path");
        let doc = ingest_file(&dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        match entry["kind"].as_str() {
            Some("pdf") => check_pages(path, &doc, entry["pages"].as_u64().expect("pages") as usize),
            Some("csv") => {
                assert_eq!(doc.format, Format::Csv, "{path}");
                assert_eq!(doc.encoding.as_deref(), Some("Shift_JIS"), "{path}");
                let table = doc.units[0].table.as_ref().expect("table");
                let rows: usize =
                    1 + doc.units.iter().map(|u| u.table.as_ref().map_or(0, |t| t.rows.len() - 1)).sum::<usize>();
                assert_eq!(rows, entry["rows"].as_u64().expect("rows") as usize, "{path}");
                assert_eq!(table.rows[0].len(), entry["columns"].as_u64().expect("columns") as usize);
            }
            _ => {}
        }
        if let Some(lang) = entry["language"].as_str() {
            assert_eq!(doc.language.as_deref(), Some(lang), "{path}");
        }
        let text: String = doc.units.iter().map(|u| u.text.as_str()).collect::<Vec<_>>().join("\n");
        for needle in strings(&entry["must_contain"]) {
            assert!(text.contains(&needle), "{path}: missing {needle:?}");
        }
    }
}

/// Whether two cell texts say the same: equal after trimming, or equal as numbers.
fn same_cell(ours: &str, expected: &str) -> bool {
    let (a, b) = (ours.trim(), expected.trim());
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// Cells matching over the cells that are non-empty on either side.
fn cell_match(ours: &[Vec<String>], expected: &[Vec<String>]) -> (usize, usize) {
    let rows = ours.len().max(expected.len());
    let (mut matched, mut total) = (0, 0);
    for r in 0..rows {
        let a = ours.get(r).map(Vec::as_slice).unwrap_or(&[]);
        let b = expected.get(r).map(Vec::as_slice).unwrap_or(&[]);
        for c in 0..a.len().max(b.len()) {
            let x = a.get(c).map(String::as_str).unwrap_or("");
            let y = b.get(c).map(String::as_str).unwrap_or("");
            if x.trim().is_empty() && y.trim().is_empty() {
                continue;
            }
            total += 1;
            if same_cell(x, y) {
                matched += 1;
            }
        }
    }
    (matched, total)
}

fn read_expected_csv(path: &Path) -> Vec<Vec<String>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = String::from_utf8_lossy(&bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .records()
        .filter_map(Result::ok)
        .map(|r| r.iter().map(str::to_string).collect())
        .collect()
}

/// The sheet index an expected CSV belongs to: `expected/<file>.<index>.csv`.
fn sheet_index(expected: &str) -> Option<usize> {
    expected.strip_suffix(".csv")?.rsplit('.').next()?.parse().ok()
}

fn check_workbooks(dir: &Path, totals: &mut (usize, usize)) -> Vec<(String, f64)> {
    let mut rates = Vec::new();
    for entry in entries(dir) {
        let path = entry["path"].as_str().expect("path");
        if entry.get("sheet_names").is_none() {
            continue;
        }
        let result = ingest_file(&dir.join(path));
        if entry["encrypted"].as_bool() == Some(true) {
            assert!(matches!(result, Err(IngestError::Encrypted { .. })), "{path}: {result:?}");
            println!("{path}: encrypted, refused as expected");
            continue;
        }
        let doc = result.unwrap_or_else(|e| panic!("{path}: {e}"));
        let titles: Vec<&str> = doc.units.iter().map(|u| u.title.as_str()).collect();
        assert_eq!(titles, strings(&entry["sheet_names"]), "{path}: sheet names");
        assert!(doc.units.iter().all(|u| u.kind == UnitKind::Sheet), "{path}");
        let (mut matched, mut total) = (0, 0);
        for expected in strings(&entry["expected_csv"]) {
            let Some(index) = sheet_index(&expected) else {
                continue;
            };
            let want = read_expected_csv(&dir.join(&expected));
            let got = doc.units.get(index).and_then(|u| u.table.as_ref()).map(|t| t.rows.clone()).unwrap_or_default();
            let (m, t) = cell_match(&got, &want);
            matched += m;
            total += t;
        }
        totals.0 += matched;
        totals.1 += total;
        let rate = if total == 0 { 1.0 } else { matched as f64 / total as f64 };
        println!("{path}: {} sheets, cells {matched}/{total} ({:.1}%)", doc.units.len(), rate * 100.0);
        rates.push((path.to_string(), rate));
    }
    rates
}

#[test]
fn spreadsheets_sheets_encryption_and_cells() {
    let Some(corpus) = corpus() else { return };
    let mut totals = (0, 0);
    let mut rates = check_workbooks(&corpus.join("spreadsheets"), &mut totals);
    rates.extend(check_workbooks(&corpus.join("ja"), &mut totals));
    println!(
        "overall cell match: {}/{} ({:.1}%)",
        totals.0,
        totals.1,
        100.0 * totals.0 as f64 / totals.1.max(1) as f64
    );
    let sales = rates.iter().find(|(p, _)| p == "sales-ja.xlsx").expect("sales-ja.xlsx is in the corpus");
    assert_eq!(sales.1, 1.0, "sales-ja.xlsx must match its expected CSVs exactly");
}

#[test]
fn truncated_corpus_pdfs_fail_cleanly() {
    let Some(corpus) = corpus() else { return };
    let dir = corpus.join("pdf");
    for entry in entries(&dir) {
        let path = entry["path"].as_str().expect("path");
        let bytes = std::fs::read(dir.join(path)).expect("reads");
        for percent in [10, 40, 75] {
            let cut = &bytes[..bytes.len() * percent / 100];
            match ingest(cut, &Limits::default()) {
                Ok(doc) => assert!(!doc.units.is_empty(), "{path} at {percent}%"),
                Err(IngestError::Corrupt { .. } | IngestError::Encrypted { .. } | IngestError::NoContent(_)) => {}
                Err(other) => panic!("{path} at {percent}%: unexpected {other}"),
            }
        }
    }
}

/// Collapses whitespace, so a must-contain phrase matches across line breaks and runs.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn presentation_slide_counts_notes_and_text() {
    let Some(corpus) = corpus() else { return };
    let dir = corpus.join("office");
    let mut checked = 0;
    for entry in entries(&dir).iter().filter(|e| e["kind"] == "pptx" || e["kind"] == "odp") {
        let path = entry["path"].as_str().expect("path");
        let doc = ingest_file(&dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let format = if entry["kind"] == "odp" { Format::Odp } else { Format::Pptx };
        assert_eq!(doc.format, format, "{path}");
        assert_eq!(doc.units.len(), entry["slides"].as_u64().expect("slides") as usize, "{path}: slide count");
        assert!(doc.units.iter().all(|u| u.kind == UnitKind::Slide), "{path}");
        if let Some(with_notes) = entry["slides_with_notes"].as_u64() {
            let found = doc.units.iter().filter(|u| u.text.contains("Speaker notes:")).count();
            assert_eq!(found as u64, with_notes, "{path}: slides with speaker notes");
        }
        let all_text = squeeze(&doc.units.iter().map(|u| u.text.as_str()).collect::<Vec<_>>().join("\n"));
        for needle in strings(&entry["must_contain"]) {
            assert!(all_text.contains(&squeeze(&needle)), "{path}: missing {needle:?}");
        }
        checked += 1;
    }
    assert!(checked >= 10, "{checked} presentations checked");
}

#[test]
fn truncated_or_bombed_presentations_are_clear_errors() {
    let Some(corpus) = corpus() else { return };
    let bytes = std::fs::read(corpus.join("office/SampleShow.pptx")).expect("sample");
    for cut in [bytes.len() / 2, bytes.len() - 10, 200] {
        match ingest(&bytes[..cut], &Limits::default()) {
            Err(IngestError::Corrupt { format: Format::Pptx, .. }) => {}
            // Cut before any ppt/ entry name: nothing says it was a presentation.
            Err(IngestError::Unsupported(message)) if cut == 200 && message.contains("damaged ZIP") => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    let tiny = Limits { max_decompressed_bytes: 1_000, ..Limits::default() };
    assert!(matches!(ingest(&bytes, &tiny), Err(IngestError::DecompressionLimit { limit: 1_000 })));
    let few = Limits { max_units: 1, ..Limits::default() };
    assert!(matches!(ingest(&bytes, &few), Err(IngestError::TooManyUnits { count: 2, limit: 1 })));
}

#[test]
fn word_processing_text_tables_and_accepted_changes() {
    let Some(corpus) = corpus() else { return };
    let dir = corpus.join("office");
    let limits = Limits::default();
    let mut checked = 0;
    for entry in entries(&dir).iter().filter(|e| e["kind"] == "docx" || e["kind"] == "odt") {
        let path = entry["path"].as_str().expect("path");
        let doc = ingest_file(&dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let format = if entry["kind"] == "odt" { Format::Odt } else { Format::Docx };
        assert_eq!(doc.format, format, "{path}");
        assert!(!doc.units.is_empty(), "{path}");
        for unit in &doc.units {
            assert_eq!(unit.kind, UnitKind::Section, "{path}");
            assert!(unit.text.chars().count() <= limits.max_unit_chars, "{path}: unit {} too long", unit.index);
        }
        // Split at page breaks: at least as many units as the document's explicit page breaks
        // allow, minus breaks that start an empty page.
        let breaks = entry["page_breaks"].as_u64().unwrap_or(0) as usize;
        assert!(doc.units.len() * 2 >= breaks, "{path}: {} units for {breaks} page breaks", doc.units.len());
        if entry["tables"].as_u64().unwrap_or(0) > 0 {
            assert!(doc.units.iter().any(|u| u.text.contains("| --- ") || u.text.contains("|---")), "{path}: no table");
        }
        let all_text = squeeze(&doc.units.iter().map(|u| u.text.as_str()).collect::<Vec<_>>().join("\n"));
        for needle in strings(&entry["must_contain"]) {
            assert!(all_text.contains(&squeeze(&needle)), "{path}: missing {needle:?}");
        }
        checked += 1;
    }
    assert!(checked >= 16, "{checked} documents checked");
}
