//! Format detection from the bytes alone.

use crate::{Format, IngestError, charset, container, delimited};

const CFB_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Detects the format of a document from its content, never from a file name.
///
/// - `%PDF-` within the first 1024 bytes: [`Format::Pdf`].
/// - ZIP containers by their entries: XLSX/XLSM/XLSB/ODS; other Office and OpenDocument files
///   and plain ZIPs are [`IngestError::Unsupported`].
/// - OLE/CFB: [`Format::Xls`], or [`IngestError::Encrypted`] for a password-protected OOXML file.
/// - Text (UTF-8, UTF-16 with BOM, or a legacy encoding such as Shift_JIS): [`Format::Csv`] when
///   it parses as delimited records with a consistent field count, [`Format::Markdown`] when it
///   has ATX headings, else [`Format::Text`].
/// - Images and other binary data: [`IngestError::Unsupported`].
///
/// ```
/// use beacon_ingest::{detect_format, Format};
/// assert_eq!(detect_format(b"%PDF-1.7\n...").unwrap(), Format::Pdf);
/// assert_eq!(detect_format(b"a,b\n1,2\n3,4\n").unwrap(), Format::Csv);
/// assert_eq!(detect_format(b"# Notes\n\ntext").unwrap(), Format::Markdown);
/// assert_eq!(detect_format(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap(), Format::Png);
/// ```
pub fn detect_format(bytes: &[u8]) -> Result<Format, IngestError> {
    if bytes.is_empty() {
        return Err(IngestError::Empty);
    }
    let head = &bytes[..bytes.len().min(1024)];
    if head.windows(5).any(|w| w == b"%PDF-") {
        return Ok(Format::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return container::zip_format(bytes);
    }
    if bytes.starts_with(CFB_MAGIC) {
        return container::cfb_format(bytes);
    }
    if let Some(format) = crate::image::image_format(bytes) {
        return Ok(format);
    }
    if let Some(kind) = known_binary(bytes) {
        return Err(IngestError::Unsupported(kind));
    }
    let Some(decoded) = charset::decode(bytes) else {
        return Err(IngestError::Unsupported(format!(
            "binary data of unknown format (starts with {})",
            hex_prefix(bytes)
        )));
    };
    Ok(classify_text(&decoded.text))
}

/// Text is HTML (a doctype or `<html>` at the start), CSV, Markdown or plain text. Form feeds mark pages (as pdftotext writes them), which
/// a CSV export never has, so paginated text is never taken for a table.
pub(crate) fn classify_text(text: &str) -> Format {
    if crate::html::looks_like_html(text) {
        Format::Html
    } else if !text.contains('\x0c') && delimited::sniff(text).is_some() {
        Format::Csv
    } else if has_atx_heading(text) {
        Format::Markdown
    } else {
        Format::Text
    }
}

/// Whether some line outside a code fence is an ATX heading (`# Title` .. `###### Title`).
pub(crate) fn has_atx_heading(text: &str) -> bool {
    let mut in_fence = false;
    text.lines().any(|line| {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            return false;
        }
        !in_fence && crate::text::atx_heading(line).is_some()
    })
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ")
}

/// Common binary formats that are not documents, named (the images models read were
/// recognised before this).
fn known_binary(bytes: &[u8]) -> Option<String> {
    if bytes.starts_with(b"BM") && bytes.len() > 14 && charset::looks_binary(bytes) {
        return Some("a BMP image (models take PNG, JPEG, GIF, WebP or TIFF; convert it to PNG)".into());
    }
    let other = |name: &str| Some(format!("binary data of unknown format ({name}, which is not a document format)"));
    if bytes.starts_with(&[0x1F, 0x8B]) {
        return other("a gzip archive");
    }
    if bytes.starts_with(b"7z\xBC\xAF\x27\x1C") {
        return other("a 7-Zip archive");
    }
    if bytes.starts_with(b"Rar!\x1A\x07") {
        return other("a RAR archive");
    }
    if bytes.starts_with(b"\x7FELF") {
        return other("an ELF executable");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_header_may_follow_junk() {
        let mut bytes = vec![b' '; 500];
        bytes.extend_from_slice(b"%PDF-1.4\n");
        assert_eq!(detect_format(&bytes).unwrap(), Format::Pdf);
    }

    #[test]
    fn images_by_signature() {
        for (bytes, format) in [
            (&b"\x89PNG\r\n\x1a\n\0\0"[..], Format::Png),
            (&b"\xFF\xD8\xFF\xE0\0\x10JFIF"[..], Format::Jpeg),
            (&b"GIF89a\x01\0"[..], Format::Gif),
            (&b"RIFF\0\0\0\0WEBPVP8 "[..], Format::Webp),
        ] {
            assert_eq!(detect_format(bytes).unwrap(), format);
        }
        assert_eq!(detect_format(b"II*\0\x08\0\0\0").unwrap(), Format::Tiff);
        assert_eq!(detect_format(b"MM\0*\0\0\0\x08").unwrap(), Format::Tiff);
    }

    #[test]
    fn random_bytes_are_binary() {
        // A fixed pseudo-random sequence (xorshift), so the test is deterministic.
        let mut x: u32 = 0x1234_5678;
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        match detect_format(&bytes) {
            Err(IngestError::Unsupported(m)) => assert!(m.starts_with("binary data of unknown format")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn text_kinds() {
        assert_eq!(detect_format(b"name\tqty\napple\t3\npear\t5\n").unwrap(), Format::Csv);
        assert_eq!(detect_format(b"a;b;c\n1;2;3\n").unwrap(), Format::Csv);
        // Numbers with thousands separators on every page of a paginated text are not columns.
        let pages = b"Page 1 costs $1,000 in total.\n\x0cPage 2 costs $2,000 in total.\n\x0cPage 3 costs $3,000.\n";
        assert_eq!(detect_format(pages).unwrap(), Format::Text);
        assert_eq!(detect_format(b"Intro\n\n## Part\n\nbody").unwrap(), Format::Markdown);
        assert_eq!(detect_format(b"Just a note.\nIt has, well, some commas, here and there.\n").unwrap(), Format::Text);
        assert_eq!(detect_format(b"one line").unwrap(), Format::Text);
        assert_eq!(detect_format(b"```\n# not a heading\n```\n").unwrap(), Format::Text);
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("品名,数量\nりんご,3\nみかん,5\n");
        assert_eq!(detect_format(&sjis).unwrap(), Format::Csv);
    }

    #[test]
    fn empty_is_an_error() {
        assert!(matches!(detect_format(b""), Err(IngestError::Empty)));
    }
}
