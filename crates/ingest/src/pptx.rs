//! PowerPoint (PPTX): one [`UnitKind::Slide`] unit per slide, in the presentation's order, with
//! the slide's title, body text, tables (as Markdown) and speaker notes.
//!
//! The order comes from `ppt/presentation.xml` (`p:sldIdLst`) through its relationships, not
//! from file names (`slide10.xml` may come before `slide2.xml`). XML is read with quick-xml,
//! which never expands custom entities, so an entity bomb is inert; the ZIP's decompressed size is
//! checked against the limit before anything is read.

use std::collections::HashMap;
use std::io::Cursor;

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::ooxml::{Archive, attribute_values, entity_char, read_entry};
use crate::{Document, Format, IngestError, Limits, Table, Unit, UnitKind, markdown};

fn corrupt(reason: impl Into<String>) -> IngestError {
    IngestError::Corrupt { format: Format::Pptx, reason: reason.into() }
}

/// Reads a PPTX into one unit per slide.
pub(crate) fn ingest_pptx(bytes: &[u8], limits: &Limits) -> Result<Document, IngestError> {
    crate::container::check_zip_budget(bytes, Format::Pptx, limits.max_decompressed_bytes)?;
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| corrupt(e.to_string()))?;
    let presentation = read_entry(&mut archive, Format::Pptx, "ppt/presentation.xml")?;
    let relations = relationships(&read_entry(&mut archive, Format::Pptx, "ppt/_rels/presentation.xml.rels")?);
    let slide_ids = attribute_values(&presentation, "sldId", "r:id");
    if slide_ids.len() > limits.max_units {
        return Err(IngestError::TooManyUnits { count: slide_ids.len(), limit: limits.max_units });
    }
    let mut units = Vec::with_capacity(slide_ids.len());
    for (index, id) in slide_ids.iter().enumerate() {
        let target = relations
            .get(id)
            .ok_or_else(|| corrupt(format!("slide {} points to a missing relationship {id}", index + 1)))?;
        let path = resolve("ppt", target);
        let slide = read_shapes(&read_entry(&mut archive, Format::Pptx, &path)?);
        let notes = notes_path(&mut archive, &path)
            .and_then(|notes| read_entry(&mut archive, Format::Pptx, &notes).ok())
            .map(|xml| read_shapes(&xml).body.join("\n"))
            .unwrap_or_default();
        units.push(slide_unit(index, slide, &notes, limits));
    }
    Ok(Document { format: Format::Pptx, units, title: None, language: None, encoding: None })
}

/// `base`-relative target of a relationship ("slides/slide1.xml", "../notesSlides/x.xml").
fn resolve(base: &str, target: &str) -> String {
    if let Some(absolute) = target.strip_prefix('/') {
        return absolute.to_string();
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// The notes slide of the slide at `slide_path`, from the slide's relationships.
fn notes_path(archive: &mut Archive<'_>, slide_path: &str) -> Option<String> {
    let (dir, file) = slide_path.rsplit_once('/')?;
    let rels = read_entry(archive, Format::Pptx, &format!("{dir}/_rels/{file}.rels")).ok()?;
    let target = relationship_targets(&rels).into_iter().find(|(kind, _)| kind.ends_with("/notesSlide"))?.1;
    Some(resolve(dir, &target))
}

/// `Id → Target` of a relationships part.
fn relationships(xml: &str) -> HashMap<String, String> {
    let ids = attribute_values(xml, "Relationship", "Id");
    let targets = attribute_values(xml, "Relationship", "Target");
    ids.into_iter().zip(targets).collect()
}

/// `(Type, Target)` of a relationships part.
fn relationship_targets(xml: &str) -> Vec<(String, String)> {
    let kinds = attribute_values(xml, "Relationship", "Type");
    let targets = attribute_values(xml, "Relationship", "Target");
    kinds.into_iter().zip(targets).collect()
}

/// What a slide (or notes slide) says.
#[derive(Debug, Default)]
pub(crate) struct Shapes {
    pub title: Vec<String>,
    pub body: Vec<String>,
    pub tables: Vec<Vec<Vec<String>>>,
}

/// Reads the paragraphs of every shape (title placeholders apart; slide numbers, dates and
/// footers left out) and the tables of a slide's XML.
fn read_shapes(xml: &str) -> Shapes {
    let mut reader = Reader::from_str(xml);
    let mut shapes = Shapes::default();
    let mut placeholder: Option<String> = None;
    let mut paragraph = String::new();
    let mut shape_paragraphs: Vec<String> = Vec::new();
    let mut table: Option<Vec<Vec<String>>> = None;
    let mut cell: Option<Vec<String>> = None;
    let mut in_text = false;
    // A malformed part ends the reading there: what was read so far is kept.
    while let Ok(event) = reader.read_event() {
        match event {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "ph" => {
                let kind = e.attributes().flatten().find(|a| a.key.as_ref() == "type");
                placeholder = Some(kind.map_or("body".into(), |a| a.value.to_string()));
            }
            Event::Start(e) => match e.local_name().as_ref() {
                "sp" => {
                    placeholder = None;
                    shape_paragraphs.clear();
                }
                "tbl" => table = Some(Vec::new()),
                "tr" => {
                    if let Some(rows) = table.as_mut() {
                        rows.push(Vec::new());
                    }
                }
                "tc" => cell = Some(Vec::new()),
                "t" => in_text = true,
                _ => {}
            },
            Event::Empty(e) if e.local_name().as_ref() == "br" => paragraph.push('\n'),
            Event::Text(text) if in_text => paragraph.push_str(&text.xml_content(quick_xml::XmlVersion::Implicit1_0)),
            Event::GeneralRef(reference) if in_text => paragraph.extend(entity_char(&reference)),
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_text = false,
                "p" => {
                    let text = std::mem::take(&mut paragraph).trim().to_string();
                    if !text.is_empty() {
                        match cell.as_mut() {
                            Some(cell) => cell.push(text),
                            None => shape_paragraphs.push(text),
                        }
                    }
                }
                "tc" => {
                    if let (Some(rows), Some(cell)) = (table.as_mut(), cell.take())
                        && let Some(row) = rows.last_mut()
                    {
                        row.push(cell.join(" "));
                    }
                }
                "tbl" => {
                    if let Some(rows) = table.take()
                        && !rows.is_empty()
                    {
                        shapes.tables.push(rows);
                    }
                }
                "sp" => {
                    let paragraphs = std::mem::take(&mut shape_paragraphs);
                    match placeholder.as_deref() {
                        Some("title" | "ctrTitle") => shapes.title.extend(paragraphs),
                        Some("sldNum" | "dt" | "ftr" | "hdr" | "sldImg") => {}
                        _ => shapes.body.extend(paragraphs),
                    }
                    placeholder = None;
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    shapes
}

pub(crate) fn slide_unit(index: usize, slide: Shapes, notes: &str, limits: &Limits) -> Unit {
    // One line: a title's own line breaks say nothing in a unit title.
    let title = slide.title.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
    let mut text = String::new();
    if !title.is_empty() {
        text.push_str(&format!("# {title}\n\n"));
    }
    if !slide.body.is_empty() {
        text.push_str(&slide.body.join("\n"));
        text.push_str("\n\n");
    }
    for rows in &slide.tables {
        text.push_str(&markdown::table(rows));
        text.push_str("\n\n");
    }
    if !notes.trim().is_empty() {
        text.push_str(&format!("Speaker notes:\n{}\n", notes.trim()));
    }
    let mut flags = Vec::new();
    let mut text = text.trim_end().to_string();
    if crate::truncate_chars(&mut text, limits.max_unit_chars) {
        flags.push(crate::FLAG_TRUNCATED.to_string());
    }
    if text.is_empty() {
        flags.push(crate::FLAG_EMPTY.to_string());
    }
    let table = slide.tables.into_iter().next().map(|rows| Table { rows, has_header: true, values: Vec::new() });
    Unit {
        index,
        kind: UnitKind::Slide,
        title: if title.is_empty() { format!("Slide {}", index + 1) } else { title },
        text,
        table,
        flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relationship_targets_resolve_against_their_part() {
        assert_eq!(resolve("ppt", "slides/slide3.xml"), "ppt/slides/slide3.xml");
        assert_eq!(resolve("ppt/slides", "../notesSlides/notesSlide1.xml"), "ppt/notesSlides/notesSlide1.xml");
        assert_eq!(resolve("ppt/slides", "/ppt/x.xml"), "ppt/x.xml");
    }

    #[test]
    fn shapes_split_into_title_body_and_tables() {
        let xml = r#"<p:sld xmlns:p="p" xmlns:a="a"><p:cSld><p:spTree>
            <p:sp><p:nvSpPr><p:nvPr><p:ph type="title"/></p:nvPr></p:nvSpPr><p:txBody><a:p><a:r><a:t>Q3 &amp; Q4</a:t></a:r></a:p></p:txBody></p:sp>
            <p:sp><p:txBody><a:p><a:r><a:t>First</a:t></a:r><a:r><a:t> point</a:t></a:r></a:p><a:p><a:r><a:t>Second &#x2713;</a:t></a:r></a:p></p:txBody></p:sp>
            <p:sp><p:nvSpPr><p:nvPr><p:ph type="sldNum"/></p:nvPr></p:nvSpPr><p:txBody><a:p><a:fld><a:t>7</a:t></a:fld></a:p></p:txBody></p:sp>
            <p:graphicFrame><a:graphic><a:graphicData><a:tbl>
              <a:tr><a:tc><a:txBody><a:p><a:r><a:t>売上</a:t></a:r></a:p></a:txBody></a:tc><a:tc><a:txBody><a:p><a:r><a:t>100</a:t></a:r></a:p></a:txBody></a:tc></a:tr>
            </a:tbl></a:graphicData></a:graphic></p:graphicFrame>
        </p:spTree></p:cSld></p:sld>"#;
        let shapes = read_shapes(xml);
        assert_eq!(shapes.title, ["Q3 & Q4"]);
        assert_eq!(shapes.body, ["First point", "Second ✓"]);
        assert_eq!(shapes.tables, [vec![vec!["売上".to_string(), "100".to_string()]]]);
    }
}
