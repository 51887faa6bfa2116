//! Word (DOCX): the body split at page breaks and top-level headings into [`UnitKind::Section`]
//! units of bounded size; tables kept as Markdown tables; tracked changes read as accepted
//! (insertions kept, deletions — `w:delText` — left out); footnotes and endnotes in a last unit.
//!
//! Headings are paragraphs whose style is named "Title" or "heading 1" in `word/styles.xml` (style
//! ids are localised: a Japanese document's heading style may have the id `1`), or whose outline
//! level is 0.

use std::collections::HashMap;
use std::io::Cursor;

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::ooxml::{entity_char, read_entry};
use crate::{Document, FLAG_TRUNCATED, Format, IngestError, Limits, Table, Unit, UnitKind, markdown, truncate_chars};

/// One block of the body, in order.
#[derive(Debug, PartialEq)]
pub(crate) enum Block {
    Paragraph { text: String, heading: bool },
    Table(Vec<Vec<String>>),
    PageBreak,
}

/// Reads a DOCX into section units.
pub(crate) fn ingest_docx(bytes: &[u8], limits: &Limits) -> Result<Document, IngestError> {
    crate::container::check_zip_budget(bytes, Format::Docx, limits.max_decompressed_bytes)?;
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| IngestError::Corrupt { format: Format::Docx, reason: e.to_string() })?;
    let headings = read_entry(&mut archive, Format::Docx, "word/styles.xml")
        .map(|styles| heading_styles(&styles))
        .unwrap_or_default();
    let body = read_entry(&mut archive, Format::Docx, "word/document.xml")?;
    let mut blocks = read_blocks(&body, &headings);
    for (part, label) in [("word/footnotes.xml", "Footnotes"), ("word/endnotes.xml", "Endnotes")] {
        if let Ok(xml) = read_entry(&mut archive, Format::Docx, part) {
            let notes: Vec<Block> = read_blocks(&xml, &headings);
            if notes.iter().any(|b| matches!(b, Block::Paragraph { text, .. } if !text.is_empty())) {
                blocks.push(Block::PageBreak);
                blocks.push(Block::Paragraph { text: label.to_string(), heading: true });
                blocks.extend(notes);
            }
        }
    }
    let units = sections(blocks, limits)?;
    Ok(Document { format: Format::Docx, units, title: None, language: None, encoding: None })
}

/// Style ids whose style is a title or a first-level heading.
fn heading_styles(styles: &str) -> HashMap<String, bool> {
    let mut reader = Reader::from_str(styles);
    let mut map = HashMap::new();
    let mut current: Option<String> = None;
    while let Ok(event) = reader.read_event() {
        match event {
            Event::Start(e) if e.local_name().as_ref() == "style" => {
                current = e.attributes().flatten().find(|a| a.key.as_ref() == "w:styleId").map(|a| a.value.to_string());
            }
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "name" => {
                if let (Some(id), Some(name)) =
                    (current.as_ref(), e.attributes().flatten().find(|a| a.key.as_ref() == "w:val"))
                {
                    let name = name.value.to_lowercase();
                    map.insert(id.clone(), name == "title" || name == "heading 1");
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    map
}

/// Most grid columns one cell may span (Word allows 63); bounds what a hostile value adds.
const MAX_GRID_SPAN: usize = 64;

fn attribute(e: &quick_xml::events::BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes().flatten().find(|a| a.key.as_ref() == name).map(|a| a.value.to_string())
}

/// The body's paragraphs, tables and page breaks in order. Nested tables are flattened into
/// their cell's text.
fn read_blocks(xml: &str, headings: &HashMap<String, bool>) -> Vec<Block> {
    let mut reader = Reader::from_str(xml);
    let mut blocks = Vec::new();
    let mut paragraph = String::new();
    let mut heading = false;
    let mut in_text = false;
    let mut table_depth = 0usize;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut cell: Vec<String> = Vec::new();
    // The current cell's merges: grid columns it spans (`w:gridSpan`), and whether it continues
    // the cell above (`w:vMerge` without `restart`).
    let mut span = 1usize;
    let mut continues_above = false;
    while let Ok(event) = reader.read_event() {
        // `<w:t/>` holds no text and has no end tag.
        let opens = matches!(event, Event::Start(_));
        match event {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                "t" => in_text = opens,
                "tab" => paragraph.push('\t'),
                "br" => {
                    let page = e.attributes().flatten().any(|a| a.key.as_ref() == "w:type" && a.value == "page");
                    if page && table_depth == 0 {
                        flush_paragraph(&mut blocks, &mut paragraph, &mut heading);
                        blocks.push(Block::PageBreak);
                    } else {
                        paragraph.push('\n');
                    }
                }
                "pStyle" => {
                    if let Some(id) = e.attributes().flatten().find(|a| a.key.as_ref() == "w:val") {
                        heading |= headings.get(id.value.as_ref()).copied().unwrap_or(false);
                    }
                }
                "outlineLvl" => {
                    heading |= e.attributes().flatten().any(|a| a.key.as_ref() == "w:val" && a.value == "0");
                }
                "pageBreakBefore" if table_depth == 0 => {
                    let off = e
                        .attributes()
                        .flatten()
                        .any(|a| a.key.as_ref() == "w:val" && (a.value == "0" || a.value == "false"));
                    if !off {
                        blocks.push(Block::PageBreak);
                    }
                }
                "tbl" => {
                    table_depth += 1;
                    if table_depth == 1 {
                        flush_paragraph(&mut blocks, &mut paragraph, &mut heading);
                        rows.clear();
                    }
                }
                "tr" if table_depth == 1 => rows.push(Vec::new()),
                "tc" if table_depth == 1 => {
                    cell.clear();
                    (span, continues_above) = (1, false);
                }
                "gridSpan" if table_depth == 1 => {
                    span = attribute(&e, "w:val").and_then(|v| v.parse().ok()).unwrap_or(1).clamp(1, MAX_GRID_SPAN);
                }
                "vMerge" if table_depth == 1 => continues_above = attribute(&e, "w:val").is_none_or(|v| v != "restart"),
                _ => {}
            },
            Event::Text(text) if in_text => paragraph.push_str(&text.xml_content(quick_xml::XmlVersion::Implicit1_0)),
            Event::GeneralRef(reference) if in_text => paragraph.extend(entity_char(&reference)),
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_text = false,
                "p" => {
                    if table_depth > 0 {
                        let text = std::mem::take(&mut paragraph).trim().to_string();
                        heading = false;
                        if !text.is_empty() {
                            cell.push(text);
                        }
                    } else {
                        flush_paragraph(&mut blocks, &mut paragraph, &mut heading);
                    }
                }
                "tc" if table_depth == 1 => {
                    let mut text = std::mem::take(&mut cell).join(" ");
                    let column = rows.last().map_or(0, Vec::len);
                    if continues_above && text.is_empty() {
                        // A vertically merged cell: each row reads on its own with the value repeated.
                        let above = rows.iter().rev().nth(1).and_then(|r| r.get(column));
                        text = above.cloned().unwrap_or_default();
                    }
                    if let Some(row) = rows.last_mut() {
                        // A horizontally merged cell keeps the grid: its text, then empty columns.
                        row.push(text);
                        row.extend(std::iter::repeat_n(String::new(), span - 1));
                    }
                }
                "tbl" => {
                    table_depth = table_depth.saturating_sub(1);
                    if table_depth == 0 && !rows.is_empty() {
                        blocks.push(Block::Table(std::mem::take(&mut rows)));
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    flush_paragraph(&mut blocks, &mut paragraph, &mut heading);
    blocks
}

fn flush_paragraph(blocks: &mut Vec<Block>, paragraph: &mut String, heading: &mut bool) {
    let text = std::mem::take(paragraph).trim().to_string();
    if !text.is_empty() {
        blocks.push(Block::Paragraph { text, heading: *heading });
    }
    *heading = false;
}

/// Groups blocks into units: a new unit at every page break and top-level heading, and when a
/// unit would exceed the character limit.
pub(crate) fn sections(blocks: Vec<Block>, limits: &Limits) -> Result<Vec<Unit>, IngestError> {
    let mut units: Vec<Unit> = Vec::new();
    let mut title: Option<String> = None;
    let mut text = String::new();
    let mut first_table: Option<Vec<Vec<String>>> = None;
    let max = limits.max_unit_chars.max(1);
    let mut push = |title: &mut Option<String>, text: &mut String, table: &mut Option<Vec<Vec<String>>>| {
        let body = std::mem::take(text).trim().to_string();
        let table = table.take();
        if body.is_empty() {
            return;
        }
        let number = units.len() + 1;
        units.push(Unit {
            index: units.len(),
            kind: UnitKind::Section,
            title: title.take().unwrap_or_else(|| format!("Section {number}")),
            text: body,
            table: table.map(|rows| Table { rows, has_header: true, values: Vec::new() }),
            flags: Vec::new(),
        });
    };
    for block in blocks {
        let piece = match block {
            Block::PageBreak => {
                push(&mut title, &mut text, &mut first_table);
                continue;
            }
            Block::Paragraph { text: paragraph, heading: true } => {
                push(&mut title, &mut text, &mut first_table);
                title = Some(paragraph.chars().take(120).collect());
                format!("# {paragraph}")
            }
            Block::Paragraph { text: paragraph, heading: false } => paragraph,
            Block::Table(rows) => {
                let rendered = markdown::table(&rows);
                if first_table.is_none() {
                    first_table = Some(rows);
                }
                rendered
            }
        };
        if !text.is_empty() && text.chars().count() + piece.chars().count() > max {
            let carried = title.clone();
            push(&mut title, &mut text, &mut first_table);
            title = carried.map(|t| format!("{t} (continued)"));
        }
        text.push_str(&piece);
        text.push_str("\n\n");
    }
    push(&mut title, &mut text, &mut first_table);
    if units.len() > limits.max_units {
        return Err(IngestError::TooManyUnits { count: units.len(), limit: limits.max_units });
    }
    for unit in &mut units {
        if truncate_chars(&mut unit.text, max) {
            unit.flags.push(FLAG_TRUNCATED.to_string());
        }
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_order_tables_breaks_and_accepted_changes() {
        let styles = r#"<w:styles><w:style w:styleId="1"><w:name w:val="heading 1"/></w:style><w:style w:styleId="a"><w:name w:val="Normal"/></w:style></w:styles>"#;
        let headings = heading_styles(styles);
        let xml = r#"<w:document><w:body>
            <w:p><w:pPr><w:pStyle w:val="1"/></w:pPr><w:r><w:t>概要 &amp; 目的</w:t></w:r></w:p>
            <w:p><w:r><w:t>Kept</w:t></w:r><w:ins><w:r><w:t xml:space="preserve"> inserted</w:t></w:r></w:ins><w:del><w:r><w:delText> deleted</w:delText></w:r></w:del></w:p>
            <w:tbl><w:tr><w:tc><w:p><w:r><w:t>A</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>B</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
            <w:p><w:r><w:br w:type="page"/><w:t>Next page</w:t></w:r></w:p>
        </w:body></w:document>"#;
        let blocks = read_blocks(xml, &headings);
        assert_eq!(
            blocks,
            vec![
                Block::Paragraph { text: "概要 & 目的".into(), heading: true },
                Block::Paragraph { text: "Kept inserted".into(), heading: false },
                Block::Table(vec![vec!["A".into(), "B".into()]]),
                Block::PageBreak,
                Block::Paragraph { text: "Next page".into(), heading: false },
            ]
        );
        let units = sections(blocks, &Limits::default()).unwrap();
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].title, "概要 & 目的");
        assert!(units[0].text.contains("| A | B |"), "{}", units[0].text);
        assert_eq!(units[1].text, "Next page");
    }

    #[test]
    fn merged_cells_keep_the_grid_and_repeat_vertical_merges() {
        let cell = |props: &str, text: &str| {
            format!("<w:tc><w:tcPr>{props}</w:tcPr><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:tc>")
        };
        let empty = |props: &str| format!("<w:tc><w:tcPr>{props}</w:tcPr><w:p/></w:tc>");
        let xml = format!(
            "<w:document><w:body><w:tbl>\
             <w:tr>{}{}</w:tr>\
             <w:tr>{}{}{}</w:tr>\
             <w:tr>{}{}{}</w:tr>\
             </w:tbl></w:body></w:document>",
            cell(r#"<w:gridSpan w:val="2"/>"#, "Region"),
            cell("", "Total"),
            cell(r#"<w:vMerge w:val="restart"/>"#, "East"),
            cell("", "Q1"),
            cell("", "10"),
            empty("<w:vMerge/>"),
            cell("", "Q2"),
            cell("", "12"),
        );
        let blocks = read_blocks(&xml, &HashMap::new());
        let rows = |r: &[&[&str]]| r.iter().map(|row| row.iter().map(|c| c.to_string()).collect()).collect();
        assert_eq!(
            blocks,
            [Block::Table(rows(&[&["Region", "", "Total"], &["East", "Q1", "10"], &["East", "Q2", "12"]]))]
        );
    }

    #[test]
    fn long_sections_are_split_at_the_limit() {
        let blocks = (0..10).map(|i| Block::Paragraph { text: format!("{i}").repeat(40), heading: false }).collect();
        let units = sections(blocks, &Limits { max_unit_chars: 100, ..Limits::default() }).unwrap();
        assert_eq!(units.len(), 5);
        assert!(units.iter().all(|u| u.text.chars().count() <= 100));
    }
}
