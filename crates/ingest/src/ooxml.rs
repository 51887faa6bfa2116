//! What the ZIP + XML readers (PPTX, DOCX) share: reading a part, attribute lookups, entities.
//! quick-xml never expands custom entities (a `GeneralRef` event is all an entity bomb becomes),
//! and the ZIP's decompressed size is checked before any part is read.

use std::io::{Cursor, Read};

use quick_xml::Reader;
use quick_xml::events::{BytesRef, Event};

use crate::{Format, IngestError};

pub(crate) type Archive<'a> = zip::ZipArchive<Cursor<&'a [u8]>>;

/// The text of part `name`; a missing or unreadable part makes the file corrupt.
pub(crate) fn read_entry(archive: &mut Archive<'_>, format: Format, name: &str) -> Result<String, IngestError> {
    let corrupt = |reason: String| IngestError::Corrupt { format, reason };
    let mut entry = archive.by_name(name).map_err(|e| corrupt(format!("{name} is missing ({e})")))?;
    let mut text = String::new();
    entry.read_to_string(&mut text).map_err(|e| corrupt(format!("{name} cannot be read ({e})")))?;
    Ok(text)
}

/// The values of attribute `attribute` (qualified name) on every element whose local name is
/// `element`, in document order.
pub(crate) fn attribute_values(xml: &str, element: &str, attribute: &str) -> Vec<String> {
    let mut reader = Reader::from_str(xml);
    let mut values = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) if e.local_name().as_ref() == element => {
                if let Some(value) = e.attributes().flatten().find(|a| a.key.as_ref() == attribute) {
                    values.push(value.value.to_string());
                }
            }
            Ok(Event::Eof) | Err(_) => return values,
            Ok(_) => {}
        }
    }
}

/// The character an entity reference in text stands for: numeric references and XML's five
/// predefined entities; anything else (a custom entity) is dropped, never expanded.
pub(crate) fn entity_char(reference: &BytesRef<'_>) -> Option<char> {
    if let Ok(Some(c)) = reference.resolve_char_ref() {
        return Some(c);
    }
    Some(match reference.borrow().into_inner().as_ref() {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}
