//! Hostile and degenerate files: a clear error or a correct result, never a panic or a hang.

use beacon_ingest::{IngestError, Limits, ingest};
use lopdf::{Document, Object, dictionary};

mod support;

use support::{billion_laughs, docx_with, empty_pages_pdf, xlsx_with_shared_strings};

#[test]
fn ten_thousand_empty_pages_are_read_quickly_and_flagged() {
    let bytes = empty_pages_pdf(10_000);
    let limits = Limits { max_units: 20_000, ..Limits::default() };
    let doc = ingest(&bytes, &limits).unwrap();
    assert_eq!(doc.units.len(), 10_000);
    assert!(doc.units.iter().all(|u| u.text.is_empty() && u.flags.iter().any(|f| f == "needs_ocr")));
    // Over the unit limit: refused, saying which limit.
    let error = ingest(&bytes, &Limits::default()).unwrap_err();
    assert!(matches!(error, IngestError::TooManyUnits { count: 10_000, limit: 5_000 }), "{error}");
}

#[test]
fn a_page_tree_that_loops_is_an_error_not_a_crash() {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let page = doc.add_object(dictionary! { "Type" => "Page", "Parent" => pages_id });
    // The tree lists itself among its kids.
    doc.objects.insert(
        pages_id,
        Object::Dictionary(
            dictionary! { "Type" => "Pages", "Kids" => vec![page.into(), pages_id.into()], "Count" => 2 },
        ),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    match ingest(&bytes, &Limits::default()) {
        Ok(doc) => assert!(doc.units.len() <= 2, "{} units", doc.units.len()),
        Err(error) => assert!(matches!(error, IngestError::Corrupt { .. }), "{error}"),
    }
}

#[test]
fn truncated_pdfs_are_read_or_clear_errors() {
    let sample = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/operations-review.pdf")).unwrap();
    // Too short to hold anything: a clear error.
    let error = ingest(&sample[..10], &Limits::default()).unwrap_err();
    assert!(matches!(error, IngestError::Corrupt { .. }), "{error}");
    // Cut later: what can be read is read (the xref is rebuilt) or a clear error; never a panic.
    for cut in [sample.len() / 3, sample.len() - 50] {
        match ingest(&sample[..cut], &Limits::default()) {
            Ok(doc) => assert!(!doc.units.is_empty()),
            Err(error) => assert!(matches!(error, IngestError::Corrupt { .. }), "{error}"),
        }
    }
}

#[test]
fn a_zip_bomb_in_a_word_document_is_refused_before_it_is_inflated() {
    // 64 MiB of zeros deflate to about 64 KiB.
    let zeros = vec![b' '; 64 << 20];
    let bomb = docx_with(&[("[Content_Types].xml", b"<Types/>"), ("word/document.xml", &zeros)]);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let limits = Limits { max_decompressed_bytes: 16 << 20, ..Limits::default() };
    let error = ingest(&bomb, &limits).unwrap_err();
    assert!(matches!(error, IngestError::DecompressionLimit { .. }), "{error}");
    assert!(error.to_string().contains("limits.max_decompressed_bytes"), "{error}");
}

#[test]
fn entity_definitions_are_never_expanded() {
    let doctype = billion_laughs("w:document");
    let body = format!(
        "<?xml version=\"1.0\"?>{doctype}<w:document><w:body><w:p><w:r><w:t>Before &l9; after</w:t></w:r></w:p></w:body></w:document>"
    );
    let docx = docx_with(&[("[Content_Types].xml", b"<Types/>"), ("word/document.xml", body.as_bytes())]);
    let doc = ingest(&docx, &Limits::default()).unwrap();
    assert_eq!(doc.units.len(), 1);
    assert_eq!(doc.units[0].text, "Before  after");
}

#[test]
fn entity_definitions_in_a_workbook_are_never_expanded() {
    let plain = r#"<?xml version="1.0"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1"><si><t>Revenue</t></si></sst>"#;
    let doc = ingest(&xlsx_with_shared_strings(plain), &Limits::default()).unwrap();
    assert_eq!(doc.units[0].table.as_ref().unwrap().rows, [["Revenue", "42"]]);

    let bomb = format!(
        r#"<?xml version="1.0"?>{}<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1"><si><t>Before &l9; after</t></si></sst>"#,
        billion_laughs("sst")
    );
    let started = std::time::Instant::now();
    // A clear error or the text without the expansion; never a gigabyte of "ha".
    match ingest(&xlsx_with_shared_strings(&bomb), &Limits::default()) {
        Ok(doc) => {
            let text = &doc.units[0].text;
            assert!(text.len() < 10_000, "{} characters", text.len());
            assert!(!text.contains("hahaha"), "{text}");
        }
        Err(error) => assert!(matches!(error, IngestError::Corrupt { .. }), "{error}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "took {:?}", started.elapsed());
}

/// Every corpus file cut at seven points and read: a clear error or a (partial) document, and no
/// panic inside a parser (the guard would turn one into an error; none is expected: truncated
/// compound files are refused before calamine's reader, which panics on them, runs).
#[test]
fn truncated_files_of_every_format_are_clear_errors() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    if !corpus.is_dir() {
        println!("skipping: ../shared/corpus not found");
        return;
    }
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    let mut dirs = vec![corpus];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "expected") {
                    dirs.push(path);
                }
            } else if !matches!(path.extension().and_then(|e| e.to_str()), Some("json" | "md") | None) {
                files.push(path);
            }
        }
    }
    files.sort();
    let (mut reads, mut errors, mut guarded) = (0, 0, Vec::new());
    let mut formats = std::collections::BTreeSet::new();
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        if let Ok(format) = beacon_ingest::detect_format(&bytes) {
            formats.insert(format.to_string());
        }
        for eighth in 1..8 {
            let cut = &bytes[..bytes.len() * eighth / 8];
            match ingest(cut, &Limits::default()) {
                Ok(_) => reads += 1,
                Err(IngestError::Corrupt { reason, .. }) if reason.contains("parser failed") => {
                    guarded.push(format!("{} at {eighth}/8: {reason}", path.display()))
                }
                Err(_) => errors += 1,
            }
        }
    }
    println!(
        "{} files ({}) cut 7 ways: {reads} read, {errors} clear errors, {} parser panics caught",
        files.len(),
        formats.into_iter().collect::<Vec<_>>().join(", "),
        guarded.len()
    );
    for g in &guarded {
        println!("  caught: {g}");
    }
    assert!(files.len() > 50, "the corpus has its files");
    assert!(guarded.is_empty(), "parsers panicked on {} cut files", guarded.len());
    // The hand-built workbook too, cut anywhere.
    let xlsx = xlsx_with_shared_strings(r#"<?xml version="1.0"?><sst><si><t>x</t></si></sst>"#);
    for cut in (1..xlsx.len()).step_by(97) {
        if let Err(IngestError::Corrupt { reason, .. }) = ingest(&xlsx[..cut], &Limits::default()) {
            assert!(!reason.contains("parser failed"), "cut at {cut}: {reason}");
        }
    }
}
