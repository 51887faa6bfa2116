//! Peeking into containers without trusting them: ZIP (OOXML, OpenDocument) and OLE/CFB (XLS,
//! password-protected OOXML).

use std::io::{Cursor, Read};

use crate::{Format, IngestError, guard_panic};

/// What a ZIP container holds, as far as detection cares.
fn open_zip(bytes: &[u8]) -> Result<zip::ZipArchive<Cursor<&[u8]>>, String> {
    match std::panic::catch_unwind(|| zip::ZipArchive::new(Cursor::new(bytes))) {
        Ok(Ok(archive)) => Ok(archive),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("the ZIP reader failed on it".to_string()),
    }
}

/// Reads at most `max` bytes of a (small) entry, e.g. `mimetype` or `[Content_Types].xml`.
fn read_entry(archive: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str, max: u64) -> Option<String> {
    let entry = archive.by_name(name).ok()?;
    let mut buf = Vec::new();
    entry.take(max).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn unsupported_yet(what: &str) -> IngestError {
    IngestError::Unsupported(format!(
        "{what} is not supported yet (only PDF, spreadsheets, Word, PowerPoint, OpenDocument, CSV and text are)"
    ))
}

/// The format of a ZIP container, by its entries.
pub(crate) fn zip_format(bytes: &[u8]) -> Result<Format, IngestError> {
    let mut archive = match open_zip(bytes) {
        Ok(a) => a,
        Err(reason) => return Err(damaged_zip(bytes, &reason)),
    };
    let names: Vec<String> = archive.file_names().filter_map(Result::ok).map(|n| n.into_owned()).collect();
    let has = |name: &str| names.iter().any(|n| n == name);
    if has("xl/workbook.xml") {
        let macro_enabled = has("xl/vbaProject.bin")
            || read_entry(&mut archive, "[Content_Types].xml", 1 << 20).is_some_and(|ct| ct.contains("macroEnabled"));
        return Ok(if macro_enabled { Format::Xlsm } else { Format::Xlsx });
    }
    if has("xl/workbook.bin") {
        return Ok(Format::Xlsb);
    }
    if has("mimetype") {
        let mime = read_entry(&mut archive, "mimetype", 256).unwrap_or_default();
        let mime = mime.trim();
        return match mime {
            "application/vnd.oasis.opendocument.spreadsheet" => Ok(Format::Ods),
            "application/vnd.oasis.opendocument.text" => Ok(Format::Odt),
            "application/vnd.oasis.opendocument.presentation" => Ok(Format::Odp),
            "application/epub+zip" => Err(unsupported_yet("an EPUB e-book")),
            m if m.starts_with("application/vnd.oasis.opendocument") => {
                Err(unsupported_yet(&format!("an OpenDocument file ({m})")))
            }
            _ => Err(unsupported_yet("a ZIP archive")),
        };
    }
    if has("word/document.xml") {
        return Ok(Format::Docx);
    }
    if has("ppt/presentation.xml") {
        return Ok(Format::Pptx);
    }
    if has("[Content_Types].xml") {
        return Err(unsupported_yet("an Office Open XML package"));
    }
    Err(unsupported_yet("a ZIP archive"))
}

/// A ZIP that does not open: say which kind of file it was meant to be, when the local file
/// headers (which carry the names in clear) tell.
fn damaged_zip(bytes: &[u8], reason: &str) -> IngestError {
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    let format = if contains(b"xl/workbook.bin") {
        Some(Format::Xlsb)
    } else if contains(b"xl/") {
        Some(Format::Xlsx)
    } else if contains(b"ppt/") {
        Some(Format::Pptx)
    } else if contains(b"word/") {
        Some(Format::Docx)
    } else if contains(b"application/vnd.oasis.opendocument.spreadsheet") {
        Some(Format::Ods)
    } else {
        None
    };
    match format {
        Some(format) => IngestError::Corrupt { format, reason: format!("its ZIP container does not open ({reason})") },
        None => IngestError::Unsupported(format!("a damaged ZIP archive ({reason})")),
    }
}

/// Refuses a ZIP whose entries decompress to more than `limit` bytes in total (a zip bomb),
/// checking both the declared sizes and, since those can lie, the bytes actually inflated.
pub(crate) fn check_zip_budget(bytes: &[u8], format: Format, limit: u64) -> Result<(), IngestError> {
    let over = || IngestError::DecompressionLimit { limit };
    let mut archive = open_zip(bytes).map_err(|reason| IngestError::Corrupt {
        format,
        reason: format!("its ZIP container does not open ({reason})"),
    })?;
    let mut declared: u64 = 0;
    for i in 0..archive.len() {
        let size = archive.by_index_raw(i).map(|e| e.size()).unwrap_or(0);
        declared = declared.saturating_add(size);
        if declared > limit {
            return Err(over());
        }
    }
    let mut inflated: u64 = 0;
    for i in 0..archive.len() {
        let result = guard_panic(format, || -> Result<u64, ()> {
            let Ok(entry) = archive.by_index(i) else {
                // Unreadable entries (unsupported compression, encrypted) are calamine's to
                // report; they cost no memory here.
                return Ok(0);
            };
            let remaining = limit - inflated;
            let mut sink = std::io::sink();
            let n = std::io::copy(&mut entry.take(remaining + 1), &mut sink).map_err(|_| ())?;
            Ok(n)
        })?;
        match result {
            Ok(n) => {
                inflated = inflated.saturating_add(n);
                if inflated > limit {
                    return Err(over());
                }
            }
            Err(()) => {
                return Err(IngestError::Corrupt { format, reason: format!("ZIP entry {i} does not decompress") });
            }
        }
    }
    Ok(())
}

/// The format of an OLE/CFB compound file.
pub(crate) fn cfb_format(bytes: &[u8]) -> Result<Format, IngestError> {
    let opened = std::panic::catch_unwind(|| cfb::CompoundFile::open(Cursor::new(bytes)));
    let Ok(Ok(file)) = opened else {
        // A damaged directory: calamine has its own reader and may still manage; it reports
        // the error otherwise.
        return Ok(Format::Xls);
    };
    let streams: Vec<String> = file.walk().filter(|e| e.is_stream()).map(|e| e.name().to_string()).collect();
    let has = |name: &str| streams.iter().any(|s| s.eq_ignore_ascii_case(name));
    if has("EncryptionInfo") || has("EncryptedPackage") {
        // An OOXML package encrypted with a password (Excel, Word and PowerPoint all use this
        // container); workbooks are what we would read, so name that.
        return Err(IngestError::Encrypted { format: Format::Xlsx });
    }
    if has("Workbook") || has("Book") {
        return Ok(Format::Xls);
    }
    if has("WordDocument") {
        return Err(unsupported_yet("a Word 97-2003 document (DOC)"));
    }
    if has("PowerPoint Document") {
        return Err(unsupported_yet("a PowerPoint 97-2003 presentation (PPT)"));
    }
    if has("__substg1.0_0037001F") || has("__substg1.0_0037001E") {
        return Err(unsupported_yet("an Outlook message (MSG)"));
    }
    Err(unsupported_yet("an OLE compound file that is not an Excel workbook"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Builds a ZIP with the given (name, content) entries, deflated.
    pub(crate) fn zip_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
            for (name, data) in entries {
                w.start_file(*name, options).unwrap();
                w.write_all(data).unwrap();
            }
            w.finish().unwrap();
        }
        buf.into_inner()
    }

    #[test]
    fn ooxml_kinds() {
        let xlsx = zip_with(&[("[Content_Types].xml", b"<Types/>"), ("xl/workbook.xml", b"<x/>")]);
        assert_eq!(zip_format(&xlsx).unwrap(), Format::Xlsx);
        let xlsm = zip_with(&[
            ("[Content_Types].xml", b"application/vnd.ms-excel.sheet.macroEnabled.main+xml"),
            ("xl/workbook.xml", b"<x/>"),
        ]);
        assert_eq!(zip_format(&xlsm).unwrap(), Format::Xlsm);
        let xlsb = zip_with(&[("xl/workbook.bin", b"\0")]);
        assert_eq!(zip_format(&xlsb).unwrap(), Format::Xlsb);
        let ods = zip_with(&[("mimetype", b"application/vnd.oasis.opendocument.spreadsheet")]);
        assert_eq!(zip_format(&ods).unwrap(), Format::Ods);
    }

    #[test]
    fn word_and_powerpoint_by_their_main_part() {
        let docx = zip_with(&[("[Content_Types].xml", b"<Types/>"), ("word/document.xml", b"<w/>")]);
        assert_eq!(zip_format(&docx).unwrap(), Format::Docx);
        let pptx = zip_with(&[("[Content_Types].xml", b"<Types/>"), ("ppt/presentation.xml", b"<p/>")]);
        assert_eq!(zip_format(&pptx).unwrap(), Format::Pptx);
    }

    #[test]
    fn odt_by_its_mimetype_and_other_zips_unsupported_with_a_name() {
        let odt = zip_with(&[("mimetype", b"application/vnd.oasis.opendocument.text")]);
        assert_eq!(zip_format(&odt).unwrap(), Format::Odt);
        let odg = zip_with(&[("mimetype", b"application/vnd.oasis.opendocument.graphics")]);
        assert!(matches!(zip_format(&odg), Err(IngestError::Unsupported(m)) if m.contains("opendocument.graphics")));
        let plain = zip_with(&[("notes.txt", b"hello")]);
        assert!(matches!(zip_format(&plain), Err(IngestError::Unsupported(m)) if m.contains("ZIP")));
    }

    #[test]
    fn zip_bomb_is_refused() {
        let zeros = vec![0u8; 4 * 1024 * 1024];
        let bomb = zip_with(&[("xl/workbook.xml", b"<x/>"), ("xl/worksheets/sheet1.xml", &zeros)]);
        assert!(bomb.len() < 64 * 1024, "compresses well: {}", bomb.len());
        assert!(matches!(
            check_zip_budget(&bomb, Format::Xlsx, 1024 * 1024),
            Err(IngestError::DecompressionLimit { .. })
        ));
        assert!(check_zip_budget(&bomb, Format::Xlsx, 8 * 1024 * 1024).is_ok());
    }

    #[test]
    fn damaged_zip_names_the_format() {
        let xlsx = zip_with(&[("xl/workbook.xml", b"<x/>")]);
        let cut = &xlsx[..xlsx.len() - 30];
        assert!(matches!(zip_format(cut), Err(IngestError::Corrupt { format: Format::Xlsx, .. })));
    }

    #[test]
    fn encrypted_ooxml_in_cfb() {
        let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        cf.create_stream("/EncryptionInfo").unwrap().write_all(b"x").unwrap();
        cf.create_stream("/EncryptedPackage").unwrap().write_all(b"y").unwrap();
        let bytes = cf.into_inner().into_inner();
        assert!(matches!(cfb_format(&bytes), Err(IngestError::Encrypted { .. })));
    }
}
