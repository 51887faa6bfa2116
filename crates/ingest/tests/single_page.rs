//! One page of a PDF as a PDF of its own (what a model that reads PDF documents is sent).

mod support;

use beacon_ingest::{IngestError, Limits, MAX_RENDER_SIDE, ingest, render_page_png, single_page_pdf};

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

/// A PDF whose only page shows a 16 x 16 grey-gradient image over the whole page and no text:
/// what a scanner writes.
fn scanned_pdf() -> Vec<u8> {
    use lopdf::{Stream, dictionary};
    support::pdf_with_pages(&[b"q 595 0 0 842 0 0 cm /Im0 Do Q"], |doc| {
        let pixels: Vec<u8> = (0..256u32).map(|i| (i % 16 * 16) as u8).collect();
        let image = doc.add_object(Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image", "Width" => 16, "Height" => 16,
                "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8,
            },
            pixels,
        ));
        dictionary! { "XObject" => dictionary! { "Im0" => image } }
    })
}

#[test]
fn a_page_without_text_renders_to_a_png_of_bounded_size() {
    let bytes = scanned_pdf();
    let limits = Limits::default();
    let document = ingest(&bytes, &limits).unwrap();
    assert_eq!(document.units[0].flags, ["needs_ocr"]);
    let png = render_page_png(&bytes, 0, &limits, None).unwrap();
    let picture = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap().to_luma8();
    // A4 at the longest side's cap: 1568 pixels high, width in proportion.
    assert_eq!(picture.height() as f32, MAX_RENDER_SIDE);
    let expected_width = (595.0 * MAX_RENDER_SIDE / 842.0_f32) as u32;
    assert!(picture.width().abs_diff(expected_width) <= 1, "width {}", picture.width());
    // The gradient is there: dark on the left, light on the right.
    let y = picture.height() / 2;
    let (left, right) = (picture.get_pixel(5, y).0[0], picture.get_pixel(picture.width() - 5, y).0[0]);
    assert!(left < 40 && right > 200, "left {left}, right {right}");
}

#[test]
fn rendering_respects_the_pixel_limit_and_missing_pages() {
    let bytes = scanned_pdf();
    let tiny = Limits { max_image_pixels: 10_000, ..Limits::default() };
    let error = render_page_png(&bytes, 0, &tiny, None).unwrap_err();
    assert!(matches!(error, IngestError::TooManyPixels { .. }), "{error}");
    assert!(error.to_string().contains("limits.max_image_pixels"), "{error}");
    let error = render_page_png(&bytes, 3, &Limits::default(), None).unwrap_err();
    assert!(error.to_string().contains("no page 4"), "{error}");
}
