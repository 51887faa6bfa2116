//! Plain text and Markdown: split at form feeds (page breaks, as pdftotext writes them), then at
//! Markdown headings, then by size at paragraph boundaries.

use crate::{Document, Format, IngestError, Limits, Unit, UnitKind, detect};

/// Longest title taken from a first line.
const MAX_TITLE_CHARS: usize = 80;

/// The heading text of an ATX heading line (`## Title ##` -> `Title`).
pub(crate) fn atx_heading(line: &str) -> Option<&str> {
    // Up to three spaces of indentation; four make it a code block.
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let level = rest.len() - rest.trim_start_matches('#').len();
    if !(1..=6).contains(&level) {
        return None;
    }
    let after = &rest[level..];
    if !after.starts_with([' ', '\t']) {
        return None;
    }
    let title = after.trim().trim_end_matches('#').trim_end();
    (!title.is_empty()).then_some(title)
}

struct Part {
    kind: UnitKind,
    title: String,
    text: String,
}

/// Splits text into units. Markdown is split at headings; both at form feeds and by size.
pub(crate) fn ingest_text(text: &str, format: Format, limits: &Limits) -> Result<Document, IngestError> {
    if text.trim().is_empty() {
        return Err(IngestError::NoContent("the text is empty or only whitespace".into()));
    }
    let markdown = format == Format::Markdown || detect::has_atx_heading(text);
    let mut parts: Vec<Part> = Vec::new();
    if text.contains('\x0c') {
        for (i, page) in text.split('\x0c').enumerate() {
            if page.trim().is_empty() {
                continue;
            }
            let page_title = format!("Page {}", i + 1);
            if markdown {
                parts.extend(split_headings(page, UnitKind::Page, &page_title));
            } else {
                parts.push(Part { kind: UnitKind::Page, title: page_title, text: page.trim_matches('\n').to_string() });
            }
        }
    } else if markdown {
        let first = first_line_title(text);
        parts.extend(split_headings(text, UnitKind::Section, &first));
    } else {
        parts.push(Part {
            kind: UnitKind::Section,
            title: first_line_title(text),
            text: text.trim_matches('\n').to_string(),
        });
    }

    let mut units = Vec::new();
    for part in parts {
        let pieces = split_by_size(&part.text, limits.max_unit_chars.max(1));
        let count = pieces.len();
        for (k, piece) in pieces.into_iter().enumerate() {
            if units.len() >= limits.max_units {
                return Err(IngestError::TooManyUnits { count: units.len() + 1, limit: limits.max_units });
            }
            let title =
                if count > 1 { format!("{} (part {}/{})", part.title, k + 1, count) } else { part.title.clone() };
            units.push(Unit {
                index: units.len(),
                kind: part.kind,
                title,
                text: piece,
                table: None,
                flags: Vec::new(),
            });
        }
    }
    Ok(Document { format, units, title: None, language: None, encoding: None })
}

/// A title from the first non-empty line, shortened to a readable length.
fn first_line_title(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let line = atx_heading(line).unwrap_or(line);
    let mut title: String = line.chars().take(MAX_TITLE_CHARS).collect();
    if line.chars().count() > MAX_TITLE_CHARS {
        title.push('…');
    }
    title
}

/// Splits at ATX headings outside code fences. Text before the first heading becomes a part of
/// `lead_kind` titled `lead_title`.
fn split_headings(text: &str, lead_kind: UnitKind, lead_title: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut current = Part { kind: lead_kind, title: lead_title.to_string(), text: String::new() };
    let mut in_fence = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        }
        let heading = if in_fence { None } else { atx_heading(line.trim_end_matches(['\n', '\r'])) };
        if let Some(title) = heading {
            let finished = std::mem::replace(
                &mut current,
                Part { kind: UnitKind::Section, title: title.to_string(), text: String::new() },
            );
            if !finished.text.trim().is_empty() {
                parts.push(finished);
            }
        }
        current.text.push_str(line);
    }
    if !current.text.trim().is_empty() {
        parts.push(current);
    }
    for part in &mut parts {
        part.text = part.text.trim_matches(['\n', '\r']).to_string();
    }
    parts
}

/// Splits text into pieces of at most `max_chars` characters, at paragraph boundaries where
/// possible, else at line ends, else anywhere (on a char boundary).
fn split_by_size(text: &str, max_chars: usize) -> Vec<String> {
    if text.chars().count() <= max_chars {
        return vec![text.to_string()];
    }
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut current_chars = 0usize;
    for para in text.split_inclusive("\n\n") {
        for chunk in split_oversized(para, max_chars) {
            let n = chunk.chars().count();
            if current_chars + n > max_chars && !current.is_empty() {
                pieces.push(std::mem::take(&mut current));
                current_chars = 0;
            }
            current.push_str(&chunk);
            current_chars += n;
        }
    }
    if !current.trim().is_empty() {
        pieces.push(current);
    }
    pieces.into_iter().map(|p| p.trim_matches('\n').to_string()).filter(|p| !p.trim().is_empty()).collect()
}

/// A paragraph longer than `max_chars` split at line ends, then hard.
fn split_oversized(para: &str, max_chars: usize) -> Vec<String> {
    if para.chars().count() <= max_chars {
        return vec![para.to_string()];
    }
    let mut out = Vec::new();
    for line in para.split_inclusive('\n') {
        if line.chars().count() <= max_chars {
            out.push(line.to_string());
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        for chunk in chars.chunks(max_chars) {
            out.push(chunk.iter().collect());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest;

    #[test]
    fn headings() {
        assert_eq!(atx_heading("# Title"), Some("Title"));
        assert_eq!(atx_heading("### 概要 ###"), Some("概要"));
        assert_eq!(atx_heading("#hashtag"), None);
        assert_eq!(atx_heading("####### seven"), None);
        assert_eq!(atx_heading("    # code"), None);
    }

    #[test]
    fn form_feeds_make_pages() {
        let doc = ingest(b"first page\nmore\x0csecond page\x0c\x0cfourth\x0c", &Limits::default()).unwrap();
        assert_eq!(doc.format, Format::Text);
        let titles: Vec<_> = doc.units.iter().map(|u| u.title.as_str()).collect();
        assert_eq!(titles, ["Page 1", "Page 2", "Page 4"]);
        assert!(doc.units.iter().all(|u| u.kind == UnitKind::Page));
        assert_eq!(doc.units[0].text, "first page\nmore");
    }

    #[test]
    fn markdown_sections() {
        let md =
            "Preface line\n\n# 概要\n\nBEACON は文書を分割します。\n\n## Details\n\ntext\n```\n# not a heading\n```\n";
        let doc = ingest(md.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(doc.format, Format::Markdown);
        let titles: Vec<_> = doc.units.iter().map(|u| u.title.as_str()).collect();
        assert_eq!(titles, ["Preface line", "概要", "Details"]);
        assert!(doc.units.iter().all(|u| u.kind == UnitKind::Section));
        assert!(doc.units[1].text.starts_with("# 概要"));
        assert!(doc.units[2].text.contains("# not a heading"));
    }

    #[test]
    fn markdown_pages_with_headings() {
        let md = "# One\n\na\x0cintro\n# Two\n\nb\n";
        let doc = ingest(md.as_bytes(), &Limits::default()).unwrap();
        let got: Vec<_> = doc.units.iter().map(|u| (u.kind, u.title.as_str())).collect();
        assert_eq!(got, [(UnitKind::Section, "One"), (UnitKind::Page, "Page 2"), (UnitKind::Section, "Two")]);
    }

    #[test]
    fn plain_text_is_one_section_titled_by_its_first_line() {
        let long = format!("{}\n\nbody", "t".repeat(200));
        let doc = ingest(long.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(doc.units.len(), 1);
        assert_eq!(doc.units[0].kind, UnitKind::Section);
        assert_eq!(doc.units[0].title.chars().count(), MAX_TITLE_CHARS + 1);
    }

    #[test]
    fn large_text_splits_at_paragraphs() {
        let para = "word ".repeat(30);
        let text = [para.trim(); 10].join("\n\n");
        let limits = Limits { max_unit_chars: 400, ..Limits::default() };
        let doc = ingest(text.as_bytes(), &limits).unwrap();
        assert!(doc.units.len() >= 4);
        for unit in &doc.units {
            assert!(unit.text.chars().count() <= 400);
            assert!(unit.text.starts_with("word") && unit.text.ends_with("word"));
        }
        assert!(doc.units[1].title.contains("(part 2/"));
    }

    #[test]
    fn hard_split_of_one_huge_line() {
        let text = "あ".repeat(1000);
        let limits = Limits { max_unit_chars: 300, ..Limits::default() };
        let doc = ingest(text.as_bytes(), &limits).unwrap();
        assert_eq!(doc.units.len(), 4);
        let total: usize = doc.units.iter().map(|u| u.text.chars().count()).sum();
        assert_eq!(total, 1000);
    }
}
