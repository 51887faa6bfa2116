//! Hostile and degenerate files: a clear error or a correct result, never a panic or a hang.

use beacon_ingest::{IngestError, Limits, ingest};
use lopdf::{Document, Object, dictionary};

mod support;

/// A PDF with `pages` empty pages.
fn empty_pages_pdf(pages: usize) -> Vec<u8> {
    support::pdf_with_pages(&vec![&b""[..]; pages], |_| dictionary! {})
}

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

/// A DOCX whose parts are `parts` (name, content), deflated.
fn docx_with(parts: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in parts {
        writer.start_file(*name, options).unwrap();
        writer.write_all(content).unwrap();
    }
    writer.finish().unwrap().into_inner()
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
    // "Billion laughs": ten levels of ten references each, a gigabyte if expanded.
    let mut doctype = String::from("<!DOCTYPE w:document [<!ENTITY l0 \"ha\">");
    for level in 1..10 {
        let refs = format!("&l{};", level - 1).repeat(10);
        doctype.push_str(&format!("<!ENTITY l{level} \"{refs}\">"));
    }
    doctype.push(']');
    doctype.push('>');
    let body = format!(
        "<?xml version=\"1.0\"?>{doctype}<w:document><w:body><w:p><w:r><w:t>Before &l9; after</w:t></w:r></w:p></w:body></w:document>"
    );
    let docx = docx_with(&[("[Content_Types].xml", b"<Types/>"), ("word/document.xml", body.as_bytes())]);
    let doc = ingest(&docx, &Limits::default()).unwrap();
    assert_eq!(doc.units.len(), 1);
    assert_eq!(doc.units[0].text, "Before  after");
}
