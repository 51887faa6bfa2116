//! PDF: one unit per page, text in reading order.
//!
//! lopdf parses the file (with its cross-reference recovery and decryption with the empty user
//! password); the text extraction on top of it is ours, because lopdf's and pdf-extract's do not
//! decode the predefined CJK CMaps of non-embedded Japanese fonts and concatenate text in stream
//! order. See docs/pdf-library-comparison.md for the measurements behind this choice.

mod cmap;
mod content;
mod font;
mod layout;
mod navigation;
mod render;

use std::collections::HashMap;

use lopdf::{LoadOptions, Object};

use crate::{
    Document, FLAG_NEEDS_OCR, FLAG_TRUNCATED, FLAG_UNREADABLE, Format, IngestError, Limits, Unit, UnitKind,
    guard_panic, truncate_chars,
};
use content::{Budget, Interpreter, PageGlyphs};
pub use render::{MAX_RENDER_SIDE, render_page_png};

/// Page `index` (0-based, the unit index of [`ingest_pdf`]) of a PDF as a PDF of its own: the
/// other pages removed, objects no page uses dropped, decrypted, compressed. For models that
/// read PDF documents (Bedrock Converse document blocks).
pub fn single_page_pdf(
    bytes: &[u8],
    index: usize,
    limits: &Limits,
    password: Option<&str>,
) -> Result<Vec<u8>, IngestError> {
    let mut doc = load(bytes, limits, password)?;
    guard_panic(Format::Pdf, move || {
        let numbers: Vec<u32> = doc.get_pages().into_keys().collect();
        let Some(&keep) = numbers.get(index) else {
            return Err(corrupt(&format!("it has no page {} ({} pages)", index + 1, numbers.len())));
        };
        let others: Vec<u32> = numbers.into_iter().filter(|n| *n != keep).collect();
        doc.delete_pages(&others);
        // The outline and named destinations point into the deleted pages; the copy is decrypted.
        if let Ok(catalog) = doc.catalog_mut() {
            catalog.remove(b"Outlines");
            catalog.remove(b"Names");
            catalog.remove(b"PageLabels");
        }
        doc.trailer.remove(b"Encrypt");
        doc.prune_objects();
        doc.compress();
        let mut out = Vec::new();
        doc.save_to(&mut out).map_err(|err| corrupt(&format!("the page could not be written: {err}")))?;
        Ok(out)
    })?
}

/// Parses the file, decrypting it with `password` or, without one, the empty user password
/// (which opens the many PDFs that are encrypted only to restrict printing or copying).
fn load(bytes: &[u8], limits: &Limits, password: Option<&str>) -> Result<lopdf::Document, IngestError> {
    let max_decompressed = usize::try_from(limits.max_decompressed_bytes).unwrap_or(usize::MAX);
    let options = LoadOptions {
        max_decompressed_size: Some(max_decompressed),
        password: password.map(str::to_string),
        ..LoadOptions::default()
    };
    let mut doc = guard_panic(Format::Pdf, || lopdf::Document::load_mem_with_options(bytes, options.clone()))?
        .map_err(|err| load_error(err, limits, password))?;
    if guard_panic(Format::Pdf, || doc.get_pages().is_empty())? {
        // The trailer read does not lead to the pages (a linearized file's last trailer without
        // /Root, a damaged xref): rebuild the cross-reference table by scanning the objects.
        let rebuilt = guard_panic(Format::Pdf, || {
            lopdf::Document::load_mem_with_options(bytes, LoadOptions { force_reconstruct: true, ..options })
        })?;
        if let Ok(rebuilt) = rebuilt {
            doc = rebuilt;
        }
    }
    if doc.trailer.has(b"Encrypt") && !doc.was_encrypted() {
        // The password (or the empty user password) did not open the document.
        return Err(encrypted_error(password));
    }
    Ok(doc)
}

fn encrypted_error(password: Option<&str>) -> IngestError {
    match password {
        Some(_) => IngestError::WrongPassword { format: Format::Pdf },
        None => IngestError::Encrypted { format: Format::Pdf },
    }
}

/// Reads a PDF into one [`UnitKind::Page`] unit per page, titled with its page label and the
/// outline section it belongs to.
pub(crate) fn ingest_pdf(bytes: &[u8], limits: &Limits, password: Option<&str>) -> Result<Document, IngestError> {
    let max_decompressed = usize::try_from(limits.max_decompressed_bytes).unwrap_or(usize::MAX);
    let doc = load(bytes, limits, password)?;

    let mut pages: Vec<(u32, Option<lopdf::ObjectId>)> =
        guard_panic(Format::Pdf, || doc.get_pages().into_iter().map(|(n, id)| (n, Some(id))).collect())?;
    if pages.is_empty() {
        pages = guard_panic(Format::Pdf, || orphan_pages(&doc, limits.max_units))?;
    }
    if pages.is_empty() {
        return Err(corrupt("no pages could be found (the page tree is missing or damaged)"));
    }
    if pages.len() > limits.max_units {
        return Err(IngestError::TooManyUnits { count: pages.len(), limit: limits.max_units });
    }

    let page_index: HashMap<lopdf::ObjectId, usize> =
        pages.iter().enumerate().filter_map(|(i, (_, id))| id.map(|id| (id, i))).collect();
    let labels = guard_panic(Format::Pdf, || navigation::page_labels(&doc, pages.len()))?;
    let outline = guard_panic(Format::Pdf, || navigation::outline(&doc, &page_index))?;
    let mut titles = page_titles(&pages, &labels, &outline).into_iter();

    let budget = Budget::new(max_decompressed);
    let reads = read_pages(&doc, &pages, &budget)?;
    let mut units = Vec::with_capacity(pages.len());
    let mut unreadable_pages = 0usize;
    for ((number, _), page) in pages.iter().zip(reads) {
        if page.over_budget {
            return Err(IngestError::DecompressionLimit { limit: limits.max_decompressed_bytes });
        }
        let streams_unreadable = page.streams_unreadable;
        let mut text = page.text;
        // Text drawn with fonts that are missing is unreadable text, not a scan.
        let unreadable = streams_unreadable || (text.trim().is_empty() && page.shows_without_font > 0);
        let mut flags = Vec::new();
        if streams_unreadable {
            unreadable_pages += 1;
        }
        if unreadable {
            flags.push(FLAG_UNREADABLE.to_string());
        }
        if text.trim().is_empty() {
            text.clear();
            if !unreadable {
                flags.push(FLAG_NEEDS_OCR.to_string());
            }
        }
        if truncate_chars(&mut text, limits.max_unit_chars) {
            flags.push(FLAG_TRUNCATED.to_string());
        }
        units.push(Unit {
            index: units.len(),
            kind: UnitKind::Page,
            title: titles.next().unwrap_or_else(|| format!("Page {number}")),
            text,
            table: None,
            flags,
        });
    }
    if unreadable_pages == units.len() {
        return Err(corrupt("no page could be read (the file is probably truncated or damaged)"));
    }
    if !ends_with_eof_marker(bytes) {
        // A file cut short (an interrupted download or copy) loses the objects at its end; its
        // pages without text are missing content, not scans. Analysing the rest would give a
        // report that silently lacks those pages.
        let missing = units.iter().filter(|u| u.text.is_empty()).count();
        if missing > 0 {
            return Err(corrupt(&format!(
                "the file is truncated (it ends without the %%EOF marker) and {missing} of {} pages cannot be read",
                units.len()
            )));
        }
    }
    Ok(Document { format: Format::Pdf, units, title: title(&doc), language: None, encoding: None })
}

/// What reading one page gave.
struct PageRead {
    text: String,
    streams_unreadable: bool,
    shows_without_font: usize,
    over_budget: bool,
}

/// Fewest pages worth a thread of their own: below this, starting threads costs more than it
/// saves.
const PAGES_PER_THREAD: usize = 4;

/// Reads every page's text, on as many threads as there are cores (pages are independent once
/// the file is parsed; a thread takes the next unread page, so uneven pages balance out). The
/// result is in page order; a parser panic on any page is that file's error.
fn read_pages(
    doc: &lopdf::Document,
    pages: &[(u32, Option<lopdf::ObjectId>)],
    budget: &Budget,
) -> Result<Vec<PageRead>, IngestError> {
    let read_one = |page_id: Option<lopdf::ObjectId>| -> Result<PageRead, IngestError> {
        let glyphs = match page_id {
            Some(page_id) => guard_panic(Format::Pdf, || Interpreter::new(doc, budget).page(page_id))?,
            None => PageGlyphs { streams: 1, unreadable_streams: 1, ..PageGlyphs::default() },
        };
        let streams_unreadable = glyphs.streams > 0 && glyphs.unreadable_streams == glyphs.streams;
        let (shows_without_font, over_budget) = (glyphs.shows_without_font, glyphs.over_budget);
        let text = guard_panic(Format::Pdf, || layout::page_text(glyphs.glyphs))?;
        Ok(PageRead { text, streams_unreadable, shows_without_font, over_budget })
    };
    let threads =
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(pages.len() / PAGES_PER_THREAD).max(1);
    if threads == 1 {
        return pages.iter().map(|(_, id)| read_one(*id)).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let parent = tracing::Span::current();
    let mut reads: Vec<(usize, Result<PageRead, IngestError>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let _span = parent.enter();
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((number, id)) = pages.get(i) else { break };
                        let _page = tracing::debug_span!("pdf_page", page = number).entered();
                        done.push((i, read_one(*id)));
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    if reads.len() != pages.len() {
        return Err(corrupt("a page reader stopped unexpectedly"));
    }
    reads.sort_by_key(|(i, _)| *i);
    reads.into_iter().map(|(_, read)| read).collect()
}

/// Each page's title: `Page 7`, with its label when the document numbers pages differently
/// (`Page 7 (v)`), and the outline section it is in (`Page 9 (1): Introduction`): the first
/// bookmark on the page, else the last one before it.
fn page_titles(
    pages: &[(u32, Option<lopdf::ObjectId>)],
    labels: &[Option<String>],
    outline: &[(usize, String)],
) -> Vec<String> {
    let mut by_page: Vec<Vec<&str>> = vec![Vec::new(); pages.len()];
    for (page, title) in outline {
        if let Some(list) = by_page.get_mut(*page) {
            list.push(title);
        }
    }
    let mut current: Option<&str> = None;
    pages
        .iter()
        .enumerate()
        .map(|(i, (number, _))| {
            let mut title = format!("Page {number}");
            if let Some(label) = labels.get(i).cloned().flatten().filter(|l| !l.is_empty() && *l != number.to_string())
            {
                title.push_str(&format!(" ({label})"));
            }
            let section = by_page[i].first().copied().or(current);
            if let Some(last) = by_page[i].last() {
                current = Some(last);
            }
            if let Some(section) = section {
                title.push_str(": ");
                title.push_str(section);
            }
            title
        })
        .collect()
}

/// Whether `%%EOF` appears near the end, where every complete PDF has it (some writers append
/// a little junk after it, hence the window).
fn ends_with_eof_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(1024)..];
    tail.windows(5).any(|w| w == b"%%EOF")
}

/// Pages when the page tree is lost: the page objects that survive, the first page of a
/// linearized file first, and as many unreadable pages after them as the linearization
/// dictionary says the document had (so page numbers and counts stay honest).
fn orphan_pages(doc: &lopdf::Document, max_units: usize) -> Vec<(u32, Option<lopdf::ObjectId>)> {
    let mut ids: Vec<lopdf::ObjectId> = doc
        .objects
        .iter()
        .filter(|(_, o)| o.as_dict().is_ok_and(|d| d.get(b"Type").and_then(Object::as_name).ok() == Some(b"Page")))
        .map(|(id, _)| *id)
        .collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let mut expected = ids.len();
    if let Some(lin) = &doc.linearization {
        if let Some(pos) = ids.iter().position(|id| id.0 == lin.first_page_object) {
            let first = ids.remove(pos);
            ids.insert(0, first);
        }
        expected = expected.max(lin.page_count as usize).min(max_units.saturating_add(1));
    }
    tracing::warn!(found = ids.len(), expected, "page tree lost; using the page objects found");
    let mut pages: Vec<Option<lopdf::ObjectId>> = ids.into_iter().map(Some).collect();
    pages.resize(expected, None);
    pages.into_iter().enumerate().map(|(i, id)| (i as u32 + 1, id)).collect()
}

fn corrupt(reason: &str) -> IngestError {
    IngestError::Corrupt { format: Format::Pdf, reason: reason.to_string() }
}

fn load_error(err: lopdf::Error, limits: &Limits, password: Option<&str>) -> IngestError {
    match err {
        lopdf::Error::InvalidPassword | lopdf::Error::Decryption(_) => encrypted_error(password),
        lopdf::Error::UnsupportedSecurityHandler(_) => IngestError::Encrypted { format: Format::Pdf },
        lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. }) => {
            IngestError::DecompressionLimit { limit: limits.max_decompressed_bytes }
        }
        other => IngestError::Corrupt {
            format: Format::Pdf,
            reason: format!("{other} (the file is probably truncated or damaged)"),
        },
    }
}

fn title(doc: &lopdf::Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let info = match info {
        Object::Reference(id) => doc.get_dictionary(*id).ok()?,
        Object::Dictionary(d) => d,
        _ => return None,
    };
    let title = info.get(b"Title").ok()?;
    let title = match title {
        Object::Reference(id) => doc.get_object(*id).ok()?,
        other => other,
    };
    let text = lopdf::decode_text_string(title).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest;
    use lopdf::{Stream, dictionary};

    /// A PDF whose pages have the given content streams, with a Helvetica font `F1`, a Japanese
    /// non-embedded CID font `F2` (UniJIS-UCS2-H, no ToUnicode, as ReportLab writes) and an
    /// Identity-H font `F3` with a ToUnicode map.
    fn build_pdf(pages: &[&[u8]]) -> lopdf::Document {
        let mut doc = lopdf::Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let helvetica = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
            "Encoding" => "WinAnsiEncoding",
        });
        let cid_font = dictionary! {
            "Type" => "Font", "Subtype" => "CIDFontType0", "BaseFont" => "HeiseiMin-W3",
            "CIDSystemInfo" => dictionary! {
                "Registry" => Object::string_literal("Adobe"),
                "Ordering" => Object::string_literal("Japan1"),
                "Supplement" => 2,
            },
            "DW" => 1000,
        };
        let japanese = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type0", "BaseFont" => "HeiseiMin-W3",
            "Encoding" => "UniJIS-UCS2-H",
            "DescendantFonts" => vec![Object::Dictionary(cid_font.clone())],
        });
        let cmap = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap
1 begincodespacerange <0000> <FFFF> endcodespacerange
2 beginbfchar <0001> <30D9> <0002> <30FC> endbfchar
1 beginbfrange <0003> <0004> <30B3> endbfrange
endcmap end end";
        let to_unicode = doc.add_object(Stream::new(dictionary! {}, cmap.to_vec()));
        let identity = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type0", "BaseFont" => "Embedded",
            "Encoding" => "Identity-H", "ToUnicode" => to_unicode,
            "DescendantFonts" => vec![Object::Dictionary(cid_font)],
        });
        let resources = doc.add_object(dictionary! {
            "Font" => dictionary! { "F1" => helvetica, "F2" => japanese, "F3" => identity },
        });
        let mut kids = Vec::new();
        for content in pages {
            let content_id = doc.add_object(Stream::new(dictionary! {}, content.to_vec()));
            let page = doc.add_object(dictionary! {
                "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
                "Resources" => resources, "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            });
            kids.push(Object::Reference(page));
        }
        let count = kids.len() as i64;
        doc.objects
            .insert(pages_id, Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }));
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog);
        doc
    }

    fn save(doc: &mut lopdf::Document) -> Vec<u8> {
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    const HELLO: &[u8] = b"BT /F1 12 Tf 72 700 Td (Hello) Tj 40 0 Td (world) Tj ET
BT /F1 12 Tf 72 680 Td [(Second)-300(line)] TJ ET";

    #[test]
    fn pages_in_reading_order() {
        // The second line is drawn first; reading order puts it second.
        let page1: &[u8] = b"BT /F1 12 Tf 72 680 Td (below) Tj ET BT /F1 12 Tf 72 700 Td (Above) Tj ET";
        let bytes = save(&mut build_pdf(&[HELLO, page1, b""]));
        let doc = ingest(&bytes, &Limits::default()).unwrap();
        assert_eq!(doc.format, Format::Pdf);
        assert_eq!(doc.units.len(), 3);
        assert_eq!(doc.units[0].title, "Page 1");
        assert_eq!(doc.units[0].text, "Hello world\nSecond line");
        assert_eq!(doc.units[1].text, "Above\nbelow");
        assert_eq!(doc.units[2].flags, ["needs_ocr"]);
        assert_eq!(doc.language.as_deref(), Some("en"));
    }

    #[test]
    fn non_embedded_japanese_font_with_ucs2_cmap() {
        // UCS-2 codes: 日本語のテキスト, then an Identity-H string mapped by ToUnicode: ベーココ.
        let content = b"BT /F2 12 Tf 72 700 Td <65E5672C8A9E306E30C630AD30B930C8> Tj ET
BT /F3 12 Tf 72 680 Td <0001000200030004> Tj ET";
        let bytes = save(&mut build_pdf(&[content]));
        let doc = ingest(&bytes, &Limits::default()).unwrap();
        assert_eq!(doc.units[0].text, "日本語のテキスト\nベーコゴ");
        assert_eq!(doc.language.as_deref(), Some("ja"));
    }

    #[test]
    fn only_images_is_still_a_document() {
        let bytes = save(&mut build_pdf(&[b"q 100 0 0 100 0 0 cm Q", b""]));
        let doc = ingest(&bytes, &Limits::default()).unwrap();
        assert_eq!(doc.units.len(), 2);
        assert!(doc.units.iter().all(|u| u.flags == ["needs_ocr"]));
    }

    fn encrypted(user_password: &str) -> Vec<u8> {
        let mut doc = build_pdf(&[HELLO]);
        let id = Object::String(b"0123456789abcdef".to_vec(), lopdf::StringFormat::Hexadecimal);
        doc.trailer.set("ID", vec![id.clone(), id]);
        let version = lopdf::EncryptionVersion::V2 {
            document: &doc,
            owner_password: "owner",
            user_password,
            key_length: 128,
            permissions: lopdf::Permissions::all(),
        };
        let state = lopdf::EncryptionState::try_from(version).unwrap();
        doc.encrypt(&state).unwrap();
        save(&mut doc)
    }

    #[test]
    fn encrypted_with_a_user_password_is_refused() {
        assert!(matches!(
            ingest(&encrypted("secret"), &Limits::default()),
            Err(IngestError::Encrypted { format: Format::Pdf })
        ));
    }

    #[test]
    fn the_right_password_opens_it_a_wrong_one_is_named() {
        let bytes = encrypted("secret");
        let doc = crate::ingest_with_password(&bytes, &Limits::default(), Some("secret")).unwrap();
        assert_eq!(doc.units[0].text, "Hello world\nSecond line");
        let wrong = crate::ingest_with_password(&bytes, &Limits::default(), Some("guess"));
        assert!(matches!(wrong, Err(IngestError::WrongPassword { format: Format::Pdf })), "{wrong:?}");
        let message = ingest(&bytes, &Limits::default()).unwrap_err().to_string();
        assert!(message.contains("--password"), "{message}");
        // The one-page copy for the model opens with the same password and is not encrypted.
        let page = single_page_pdf(&bytes, 0, &Limits::default(), Some("secret")).unwrap();
        assert_eq!(ingest(&page, &Limits::default()).unwrap().units[0].text, "Hello world\nSecond line");
    }

    #[test]
    fn text_outside_the_page_is_not_read() {
        // The page is 595 x 842; the second string sits above its top edge.
        let content = b"BT /F1 12 Tf 72 700 Td (Visible) Tj ET BT /F1 12 Tf 72 900 Td (Offpage) Tj ET";
        let bytes = save(&mut build_pdf(&[content, b"BT /F1 12 Tf 72 1000 Td (Offpage) Tj ET"]));
        let doc = ingest(&bytes, &Limits::default()).unwrap();
        assert_eq!(doc.units[0].text, "Visible");
        assert_eq!(doc.units[1].flags, ["needs_ocr"]);
    }

    #[test]
    fn page_labels_and_outline_sections_title_the_pages() {
        let mut doc = build_pdf(&[HELLO, HELLO, HELLO, HELLO, HELLO]);
        let pages: Vec<lopdf::ObjectId> = doc.get_pages().into_values().collect();
        // Pages 1-2 numbered i, ii; from page 3 on "A-1", "A-2", ...
        let labels = dictionary! { "Nums" => vec![
            0.into(), dictionary! { "S" => "r" }.into(),
            2.into(), dictionary! { "S" => "D", "P" => Object::string_literal("A-") }.into(),
        ]};
        // Outline: "Preface" -> page 1, "Chapter 1" -> page 3 (with a child "1.1" -> page 4),
        // a named destination "ch2" -> page 5; the last item's Next points back at the first.
        let dests = doc.add_object(dictionary! {
            "Names" => vec![Object::string_literal("ch2"), vec![pages[4].into(), "Fit".into()].into()],
        });
        let outlines_id = doc.new_object_id();
        let (preface, chapter, section, chapter2) =
            (doc.new_object_id(), doc.new_object_id(), doc.new_object_id(), doc.new_object_id());
        let item = |title: &str, dest: Object, next: Option<lopdf::ObjectId>| {
            let mut d =
                dictionary! { "Title" => Object::string_literal(title), "Parent" => outlines_id, "Dest" => dest };
            if let Some(next) = next {
                d.set("Next", next);
            }
            d
        };
        doc.objects.insert(preface, item("Preface", vec![pages[0].into(), "Fit".into()].into(), Some(chapter)).into());
        let mut chapter_item = item("Chapter 1", vec![pages[2].into(), "Fit".into()].into(), Some(chapter2));
        chapter_item.set("First", section);
        doc.objects.insert(chapter, chapter_item.into());
        doc.objects.insert(section, item("1.1 Scope", vec![pages[3].into(), "Fit".into()].into(), None).into());
        doc.objects.insert(chapter2, item("Chapter 2", Object::string_literal("ch2"), Some(preface)).into());
        doc.objects.insert(outlines_id, dictionary! { "Type" => "Outlines", "First" => preface, "Count" => 4 }.into());
        let catalog = doc.catalog_mut().unwrap();
        catalog.set("PageLabels", labels);
        catalog.set("Outlines", outlines_id);
        catalog.set("Names", dictionary! { "Dests" => dests });
        let parsed = ingest(&save(&mut doc), &Limits::default()).unwrap();
        let titles: Vec<&str> = parsed.units.iter().map(|u| u.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "Page 1 (i): Preface",
                "Page 2 (ii): Preface",
                "Page 3 (A-1): Chapter 1",
                "Page 4 (A-2): 1.1 Scope",
                "Page 5 (A-3): Chapter 2"
            ]
        );
    }

    #[test]
    fn encrypted_with_an_empty_user_password_is_read() {
        let doc = ingest(&encrypted(""), &Limits::default()).unwrap();
        assert_eq!(doc.units[0].text, "Hello world\nSecond line");
    }

    #[test]
    fn a_cut_file_whose_pages_lost_their_content_is_corrupt() {
        // Content streams are written after the pages they belong to: cutting the file before
        // the last stream leaves the last page empty. Without %%EOF that is truncation.
        let bytes = save(&mut build_pdf(&[HELLO, b"BT /F1 12 Tf 72 700 Td (Lastpage) Tj ET"]));
        let last_content = bytes.windows(8).position(|w| w == b"Lastpage").unwrap();
        let before_stream = bytes[..last_content].windows(6).rposition(|w| w == b"stream").unwrap();
        match ingest(&bytes[..before_stream], &Limits::default()) {
            Err(IngestError::Corrupt { reason, .. }) => assert!(reason.contains("truncated"), "{reason}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(ends_with_eof_marker(&bytes), "a complete file has the marker");
    }

    #[test]
    fn truncated_pdf_is_corrupt_or_partial_never_a_panic() {
        let mut doc = build_pdf(&[HELLO, HELLO, HELLO]);
        let bytes = save(&mut doc);
        for percent in [5, 40, 60, 90] {
            let cut = &bytes[..bytes.len() * percent / 100];
            match ingest(cut, &Limits::default()) {
                Err(IngestError::Corrupt { format: Format::Pdf, reason }) => {
                    assert!(!reason.is_empty());
                }
                Ok(doc) => assert!(
                    doc.units.iter().any(|u| !u.text.is_empty()),
                    "{percent}%: a partial document has some text"
                ),
                Err(other) => panic!("{percent}%: {other}"),
            }
        }
    }

    #[test]
    fn garbage_after_the_header_is_corrupt() {
        let mut bytes = b"%PDF-1.7\n".to_vec();
        bytes.extend(std::iter::repeat_n(b"<< /Type /Catalog ] ) >> endobj 9 0 R\n", 50).flatten());
        assert!(matches!(ingest(&bytes, &Limits::default()), Err(IngestError::Corrupt { format: Format::Pdf, .. })));
    }

    #[test]
    fn decompression_limit_applies_to_content_streams() {
        let big = vec![b' '; 200_000];
        let mut doc = build_pdf(&[&big, HELLO]);
        doc.compress();
        let bytes = save(&mut doc);
        let limits = Limits { max_decompressed_bytes: 100_000, ..Limits::default() };
        assert!(matches!(ingest(&bytes, &limits), Err(IngestError::DecompressionLimit { .. })));
    }
}
