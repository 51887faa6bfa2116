//! Document ingestion: bytes in, [`Document`] with its [`Unit`]s out.
//!
//! The format is detected from the content (magic bytes), never from the file name. Each format
//! has its own splitter module; all of them enforce [`Limits`] and return [`IngestError`] for bad
//! input instead of panicking.
//!
//! ```
//! use beacon_ingest::{ingest, Limits};
//! let doc = ingest(b"# Title\n\nSome text.", &Limits::default()).unwrap();
//! assert_eq!(doc.units.len(), 1);
//! ```
//!
//! Code map:
//! - `detect`: [`detect_format`], by magic bytes and container entries.
//! - `container`: peeks into ZIP and OLE/CFB containers (entry names, sizes, encryption streams).
//! - `charset`: decodes text input (UTF-8/16 with BOM, or a guessed legacy encoding).
//! - `pdf`: PDF pages, with our own content-stream text extraction on top of lopdf's parser.
//! - `spreadsheet`: XLSX/XLSM/XLSB/XLS/ODS sheets through calamine.
//! - `delimited`: CSV/TSV row ranges.
//! - `text`: plain text and Markdown, split at form feeds, headings and by size.
//! - `markdown`: renders tables as Markdown.
//! - `language`: [`detect_language`], by Unicode script.

mod charset;
mod container;
mod delimited;
mod detect;
mod docx;
mod html;
mod image;
mod language;
mod markdown;
mod model;
mod ooxml;
mod opendocument;
mod pdf;
mod pptx;
mod spreadsheet;
mod text;
mod tiff;

pub use detect::detect_format;
pub use language::detect_language;
pub use model::*;
pub use pdf::{MAX_RENDER_SIDE, render_page_png, single_page_pdf};
pub use tiff::tiff_page_png;

/// Flag on a unit whose page has no extractable text (a scan or an image): OCR would be needed.
pub const FLAG_NEEDS_OCR: &str = "needs_ocr";
/// Flag on a unit for a hidden (or very hidden) sheet.
pub const FLAG_HIDDEN: &str = "hidden";
/// Flag on a unit whose text was cut to [`Limits::max_unit_chars`].
pub const FLAG_TRUNCATED: &str = "truncated";
/// Flag on a unit with no content (an empty sheet, a chart sheet).
pub const FLAG_EMPTY: &str = "empty";
/// Flag on a PDF page whose content could not be read (missing or undecodable content stream).
pub const FLAG_UNREADABLE: &str = "unreadable";

/// Splits a document into units of analysis.
///
/// Checks the size first ([`IngestError::Empty`], [`IngestError::TooLarge`]), detects the format
/// from the content, runs the format's splitter, then enforces [`Limits::max_units`] and fills
/// [`Document::language`] from the units' text.
///
/// ```
/// use beacon_ingest::{ingest, Format, Limits, UnitKind};
/// let doc = ingest("name,qty\nりんご,3\nみかん,5\n".as_bytes(), &Limits::default()).unwrap();
/// assert_eq!(doc.format, Format::Csv);
/// assert_eq!(doc.units[0].kind, UnitKind::Rows);
/// assert_eq!(doc.language.as_deref(), Some("ja"));
/// ```
pub fn ingest(bytes: &[u8], limits: &Limits) -> Result<Document, IngestError> {
    ingest_with_password(bytes, limits, None)
}

/// [`ingest`] for a password-protected document: `password` opens an encrypted PDF (a wrong one
/// is [`IngestError::WrongPassword`]); other formats ignore it.
pub fn ingest_with_password(bytes: &[u8], limits: &Limits, password: Option<&str>) -> Result<Document, IngestError> {
    check_size(bytes, limits)?;
    let format = detect_format(bytes)?;
    let span = tracing::debug_span!("ingest", %format, bytes = bytes.len());
    let _guard = span.enter();
    let mut doc = match format {
        Format::Pdf => pdf::ingest_pdf(bytes, limits, password)?,
        Format::Pptx => pptx::ingest_pptx(bytes, limits)?,
        Format::Docx => docx::ingest_docx(bytes, limits)?,
        Format::Odt => opendocument::ingest_odt(bytes, limits)?,
        Format::Odp => opendocument::ingest_odp(bytes, limits)?,
        Format::Png | Format::Jpeg | Format::Gif | Format::Webp => image::ingest_image(bytes, format, limits)?,
        Format::Tiff => tiff::ingest_tiff(bytes, limits)?,
        Format::Xlsx | Format::Xlsm | Format::Xlsb | Format::Xls | Format::Ods => {
            spreadsheet::ingest_workbook(bytes, format, limits)?
        }
        Format::Csv | Format::Text | Format::Markdown | Format::Html => {
            let decoded = charset::decode(bytes)
                .ok_or_else(|| IngestError::Unsupported("text in an encoding that could not be decoded".into()))?;
            let mut doc = match format {
                Format::Csv => delimited::ingest_delimited(&decoded.text, limits)?,
                Format::Html => html::ingest_html(&decoded.text, limits)?,
                _ => text::ingest_text(&decoded.text, format, limits)?,
            };
            doc.encoding = Some(decoded.encoding.to_string());
            doc
        }
    };
    if doc.units.len() > limits.max_units {
        return Err(IngestError::TooManyUnits { count: doc.units.len(), limit: limits.max_units });
    }
    for (i, unit) in doc.units.iter_mut().enumerate() {
        unit.index = i;
    }
    if doc.language.is_none() {
        doc.language = document_language(&doc.units);
    }
    tracing::debug!(units = doc.units.len(), language = ?doc.language, "ingested");
    Ok(doc)
}

fn check_size(bytes: &[u8], limits: &Limits) -> Result<(), IngestError> {
    if bytes.is_empty() {
        return Err(IngestError::Empty);
    }
    let size = bytes.len() as u64;
    if size > limits.max_file_bytes {
        return Err(IngestError::TooLarge { size, limit: limits.max_file_bytes });
    }
    Ok(())
}

/// The language of a sample of the units' text (enough to tell scripts apart, bounded so a large
/// document costs no more than a small one).
fn document_language(units: &[Unit]) -> Option<String> {
    const SAMPLE_CHARS: usize = 20_000;
    let mut sample = String::new();
    for unit in units {
        let room = SAMPLE_CHARS.saturating_sub(sample.len());
        if room == 0 {
            break;
        }
        let end = floor_char_boundary(&unit.text, room);
        sample.push_str(&unit.text[..end]);
        sample.push('\n');
    }
    detect_language(&sample)
}

/// The largest char boundary of `s` at or below `index`.
pub(crate) fn floor_char_boundary(s: &str, index: usize) -> usize {
    if index >= s.len() {
        return s.len();
    }
    let mut i = index;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Cuts `text` to at most `max_chars` characters; true when it had to.
pub(crate) fn truncate_chars(text: &mut String, max_chars: usize) -> bool {
    match text.char_indices().nth(max_chars) {
        Some((byte_index, _)) => {
            text.truncate(byte_index);
            true
        }
        None => false,
    }
}

thread_local! {
    /// How many [`catch_panic`] calls this thread is inside.
    static GUARD_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `f`, catching a panic, with the thread marked as inside a guard while it runs (see
/// [`panic_is_guarded`]).
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    GUARD_DEPTH.with(|d| d.set(d.get() + 1));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARD_DEPTH.with(|d| d.set(d.get() - 1));
    result
}

/// Whether a panic raised on this thread now will be caught and turned into an
/// [`IngestError`] (a parser failing on a hostile file). A panic hook can use it to stay quiet
/// about handled panics (`beacon` logs them at debug level) and still report real ones.
pub fn panic_is_guarded() -> bool {
    GUARD_DEPTH.with(|d| d.get() > 0)
}

/// Runs a third-party parser, turning a panic inside it into [`IngestError::Corrupt`]: parsers of
/// hostile files do panic, and one bad upload must not take the worker down.
pub(crate) fn guard_panic<T>(format: Format, f: impl FnOnce() -> T) -> Result<T, IngestError> {
    catch_panic(f).map_err(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        tracing::debug!(%format, %detail, "parser panicked");
        IngestError::Corrupt { format, reason: format!("the parser failed on this file ({detail})") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_is_an_error() {
        assert!(matches!(ingest(b"", &Limits::default()), Err(IngestError::Empty)));
    }

    #[test]
    fn size_limit_is_checked_first() {
        let limits = Limits { max_file_bytes: 4, ..Limits::default() };
        assert!(matches!(ingest(b"hello world", &limits), Err(IngestError::TooLarge { size: 11, limit: 4 })));
    }

    #[test]
    fn whitespace_only_has_no_content() {
        assert!(matches!(ingest(b"  \n\t\n  ", &Limits::default()), Err(IngestError::NoContent(_))));
    }

    #[test]
    fn too_many_units() {
        let text = "# a\n\nx\n\n# b\n\ny\n\n# c\n\nz\n";
        let limits = Limits { max_units: 2, ..Limits::default() };
        assert!(matches!(ingest(text.as_bytes(), &limits), Err(IngestError::TooManyUnits { count: 3, limit: 2 })));
    }

    #[test]
    fn truncate_counts_chars_not_bytes() {
        let mut s = "日本語テキスト".to_string();
        assert!(truncate_chars(&mut s, 3));
        assert_eq!(s, "日本語");
        assert!(!truncate_chars(&mut s, 3));
    }

    #[test]
    fn panics_become_corrupt() {
        assert!(!panic_is_guarded());
        let r: Result<(), _> = guard_panic(Format::Pdf, || {
            assert!(panic_is_guarded(), "a hook can tell the panic will be handled");
            panic!("boom")
        });
        assert!(!panic_is_guarded());
        match r {
            Err(IngestError::Corrupt { reason, .. }) => assert!(reason.contains("boom")),
            other => panic!("unexpected {other:?}"),
        }
    }
}
