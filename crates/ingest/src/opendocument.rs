//! OpenDocument text (ODT) and presentations (ODP), from `content.xml`: ODT becomes sections as
//! DOCX does (page breaks from paragraph styles with `fo:break-before="page"`, top-level
//! headings `text:h` with outline level 1, tables); ODP one unit per `draw:page` as PPTX does
//! (the `presentation:class="title"` frame is the title, `presentation:notes` the speaker notes).
//!
//! ODF whitespace rules apply: runs of whitespace in text collapse to one space, `text:s` is
//! spaces, `text:tab` a tab, `text:line-break` a line break.

use std::collections::HashSet;
use std::io::Cursor;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::docx::{Block, sections};
use crate::ooxml::{entity_char, read_entry};
use crate::pptx::{Shapes, slide_unit};
use crate::{Document, Format, IngestError, Limits};

fn attribute(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes().flatten().find(|a| a.key.as_ref() == name).map(|a| a.value.to_string())
}

/// Appends ODF text, collapsing whitespace runs (also across events) to one space.
fn push_text(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_whitespace() {
            if !out.ends_with([' ', '\n', '\t']) && !out.is_empty() {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
}

fn content(bytes: &[u8], format: Format, limits: &Limits) -> Result<String, IngestError> {
    crate::container::check_zip_budget(bytes, format, limits.max_decompressed_bytes)?;
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| IngestError::Corrupt { format, reason: e.to_string() })?;
    read_entry(&mut archive, format, "content.xml")
}

/// Paragraph style names that start a new page.
fn page_break_styles(xml: &str) -> HashSet<String> {
    let mut reader = Reader::from_str(xml);
    let mut styles = HashSet::new();
    let mut current: Option<String> = None;
    while let Ok(event) = reader.read_event() {
        match event {
            Event::Start(e) if e.local_name().as_ref() == "style" => current = attribute(&e, "style:name"),
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "paragraph-properties" => {
                if attribute(&e, "fo:break-before").as_deref() == Some("page")
                    && let Some(name) = &current
                {
                    styles.insert(name.clone());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    styles
}

/// Reads an ODT into sections.
pub(crate) fn ingest_odt(bytes: &[u8], limits: &Limits) -> Result<Document, IngestError> {
    let xml = content(bytes, Format::Odt, limits)?;
    let breaks = page_break_styles(&xml);
    let mut reader = Reader::from_str(&xml);
    let mut blocks = Vec::new();
    let mut paragraph = String::new();
    let mut heading = false;
    let mut depth = 0usize; // text:p / text:h nesting
    let mut table_depth = 0usize;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut cell: Vec<String> = Vec::new();
    let mut in_body = false;
    while let Ok(event) = reader.read_event() {
        let opens = matches!(event, Event::Start(_));
        match event {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                "text" if e.name().as_ref() == "office:text" => in_body = opens,
                "p" | "h" if in_body => {
                    if table_depth == 0 && attribute(&e, "text:style-name").is_some_and(|s| breaks.contains(&s)) {
                        blocks.push(Block::PageBreak);
                    }
                    if opens {
                        depth += 1;
                        heading = e.local_name().as_ref() == "h"
                            && attribute(&e, "text:outline-level").is_none_or(|level| level == "1");
                    }
                }
                "s" if depth > 0 => {
                    let count = attribute(&e, "text:c").and_then(|c| c.parse().ok()).unwrap_or(1usize).min(64);
                    paragraph.extend(std::iter::repeat_n(' ', count));
                }
                "tab" if depth > 0 => paragraph.push('\t'),
                "line-break" if depth > 0 => paragraph.push('\n'),
                "table" if in_body && e.name().as_ref() == "table:table" && opens => {
                    table_depth += 1;
                    if table_depth == 1 {
                        rows.clear();
                    }
                }
                "table-row" if table_depth == 1 && opens => rows.push(Vec::new()),
                "table-cell" if table_depth == 1 => {
                    cell.clear();
                    if !opens && let Some(row) = rows.last_mut() {
                        row.push(String::new());
                    }
                }
                _ => {}
            },
            Event::Text(text) if depth > 0 => {
                push_text(&mut paragraph, &text.xml_content(quick_xml::XmlVersion::Implicit1_0));
            }
            Event::GeneralRef(reference) if depth > 0 => paragraph.extend(entity_char(&reference)),
            Event::End(e) => match e.local_name().as_ref() {
                "p" | "h" if depth > 0 => {
                    depth -= 1;
                    if depth == 0 {
                        let text = std::mem::take(&mut paragraph).trim().to_string();
                        if !text.is_empty() {
                            if table_depth > 0 {
                                cell.push(text);
                            } else {
                                blocks.push(Block::Paragraph { text, heading });
                            }
                        }
                        heading = false;
                    }
                }
                "table-cell" if table_depth == 1 => {
                    if let Some(row) = rows.last_mut() {
                        row.push(std::mem::take(&mut cell).join(" "));
                    }
                }
                "table" if e.name().as_ref() == "table:table" && table_depth > 0 => {
                    table_depth -= 1;
                    if table_depth == 0 && !rows.is_empty() {
                        blocks.push(Block::Table(std::mem::take(&mut rows)));
                    }
                }
                "text" if e.name().as_ref() == "office:text" => in_body = false,
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    let units = sections(blocks, limits)?;
    Ok(Document { format: Format::Odt, units, title: None, language: None, encoding: None })
}

/// Reads an ODP into one unit per slide.
pub(crate) fn ingest_odp(bytes: &[u8], limits: &Limits) -> Result<Document, IngestError> {
    let xml = content(bytes, Format::Odp, limits)?;
    let mut reader = Reader::from_str(&xml);
    let mut units = Vec::new();
    let mut slide: Option<Shapes> = None;
    let mut notes: Vec<String> = Vec::new();
    let mut in_notes = false;
    let mut frame_class: Option<String> = None;
    let mut paragraph = String::new();
    let mut depth = 0usize;
    let mut table: Option<Vec<Vec<String>>> = None;
    let mut cell: Vec<String> = Vec::new();
    while let Ok(event) = reader.read_event() {
        let opens = matches!(event, Event::Start(_));
        match event {
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                "draw:page" if opens => {
                    slide = Some(Shapes::default());
                    notes.clear();
                }
                "presentation:notes" if opens => in_notes = true,
                "draw:frame" if opens => frame_class = attribute(&e, "presentation:class"),
                "table:table" if opens => table = Some(Vec::new()),
                "table:table-row" if opens => {
                    if let Some(rows) = table.as_mut() {
                        rows.push(Vec::new());
                    }
                }
                "table:table-cell" if opens => cell.clear(),
                "text:p" | "text:h" if opens => depth += 1,
                "text:s" if depth > 0 => {
                    let count = attribute(&e, "text:c").and_then(|c| c.parse().ok()).unwrap_or(1usize).min(64);
                    paragraph.extend(std::iter::repeat_n(' ', count));
                }
                "text:tab" if depth > 0 => paragraph.push('\t'),
                "text:line-break" if depth > 0 => paragraph.push('\n'),
                _ => {}
            },
            Event::Text(text) if depth > 0 => {
                push_text(&mut paragraph, &text.xml_content(quick_xml::XmlVersion::Implicit1_0));
            }
            Event::GeneralRef(reference) if depth > 0 => paragraph.extend(entity_char(&reference)),
            Event::End(e) => match e.name().as_ref() {
                "text:p" | "text:h" if depth > 0 => {
                    depth -= 1;
                    let text = std::mem::take(&mut paragraph).trim().to_string();
                    if depth == 0 && !text.is_empty() {
                        if in_notes {
                            notes.push(text);
                        } else if table.is_some() {
                            cell.push(text);
                        } else if let Some(slide) = slide.as_mut() {
                            match frame_class.as_deref() {
                                Some("title") => slide.title.push(text),
                                Some("page-number" | "date-time" | "footer" | "header") => {}
                                _ => slide.body.push(text),
                            }
                        }
                    }
                }
                "table:table-cell" => {
                    if let Some(row) = table.as_mut().and_then(|rows| rows.last_mut()) {
                        row.push(std::mem::take(&mut cell).join(" "));
                    }
                }
                "table:table" => {
                    if let (Some(rows), Some(slide)) = (table.take(), slide.as_mut())
                        && !rows.is_empty()
                    {
                        slide.tables.push(rows);
                    }
                }
                "draw:frame" => frame_class = None,
                "presentation:notes" => in_notes = false,
                "draw:page" => {
                    if let Some(shapes) = slide.take() {
                        if units.len() == limits.max_units {
                            return Err(IngestError::TooManyUnits { count: units.len() + 1, limit: limits.max_units });
                        }
                        units.push(slide_unit(units.len(), shapes, &notes.join("\n"), limits));
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(Document { format: Format::Odp, units, title: None, language: None, encoding: None })
}
