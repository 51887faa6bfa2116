//! One page of a PDF as a PDF of its own (what a model that reads PDF documents is sent).

use beacon_ingest::{IngestError, Limits, ingest, single_page_pdf};

fn sample() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/operations-review.pdf")).unwrap()
}

#[test]
fn each_page_becomes_a_one_page_pdf_with_the_same_text() {
    let bytes = sample();
    let limits = Limits::default();
    let document = ingest(&bytes, &limits).unwrap();
    assert!(document.units.len() > 3);
    for index in [0, 2, document.units.len() - 1] {
        let page = single_page_pdf(&bytes, index, &limits, None).unwrap();
        assert!(page.starts_with(b"%PDF-"));
        assert!(page.len() < bytes.len(), "page {index}: {} bytes of {}", page.len(), bytes.len());
        let alone = ingest(&page, &limits).unwrap();
        assert_eq!(alone.units.len(), 1, "page {index}");
        assert_eq!(alone.units[0].text, document.units[index].text, "page {index}");
    }
}

#[test]
fn a_page_that_does_not_exist_is_a_clear_error() {
    let error = single_page_pdf(&sample(), 999, &Limits::default(), None).unwrap_err();
    assert!(matches!(error, IngestError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("no page 1000"), "{error}");
    let error = single_page_pdf(b"%PDF-1.4 nothing else", 0, &Limits::default(), None).unwrap_err();
    assert!(matches!(error, IngestError::Corrupt { .. }), "{error}");
}
