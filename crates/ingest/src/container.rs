//! Peeking into containers without trusting them: ZIP (OOXML, OpenDocument) and OLE/CFB (XLS,
//! password-protected OOXML).

use std::io::{Cursor, Read};

use crate::{Format, IngestError, guard_panic};

/// What a ZIP container holds, as far as detection cares.
fn open_zip(bytes: &[u8]) -> Result<zip::ZipArchive<Cursor<&[u8]>>, String> {
    match crate::catch_panic(|| zip::ZipArchive::new(Cursor::new(bytes))) {
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
    let opened = crate::catch_panic(|| cfb::CompoundFile::open(Cursor::new(bytes)));
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

/// Checks that every sector a compound file's allocation table uses is in the file: a file cut
/// short (an interrupted download) still opens, but its last sectors are gone, and calamine's
/// reader panics on the first stream that reaches them.
pub(crate) fn check_cfb_complete(bytes: &[u8], format: Format) -> Result<(), IngestError> {
    const FREE: u32 = 0xFFFF_FFFF;
    let truncated = |detail: String| IngestError::Corrupt {
        format,
        reason: format!("the file is truncated: {detail} (it was probably cut short in a download or copy)"),
    };
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let sector_size = match bytes.get(30..32).map(|b| u16::from_le_bytes([b[0], b[1]])) {
        Some(9) => 512usize,
        Some(12) => 4096,
        // Not a header we know; calamine reports it.
        _ => return Ok(()),
    };
    // Sectors start after the header block; a short last sector still counts as present.
    let present = bytes.len().div_ceil(sector_size).saturating_sub(1);
    let sector = |id: u32| -> Result<&[u8], IngestError> {
        let start = (id as usize + 1).saturating_mul(sector_size);
        bytes.get(start..start.saturating_add(sector_size).min(bytes.len())).filter(|s| !s.is_empty()).ok_or_else(
            || truncated(format!("sector {id} of its allocation table is past the end ({present} sectors)")),
        )
    };
    let entries_per_sector = sector_size / 4;
    let fat_sectors = u32_at(44).unwrap_or(0) as usize;
    // Where the allocation table's sectors are: 109 in the header, the rest in a DIFAT chain.
    let mut fat_ids: Vec<u32> = (0..fat_sectors.min(109)).filter_map(|i| u32_at(76 + 4 * i)).collect();
    let mut difat = u32_at(68).unwrap_or(FREE);
    let mut guard = 0;
    while fat_ids.len() < fat_sectors && difat < 0xFFFF_FFFA && guard < present {
        let data = sector(difat)?;
        let ids = data.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        fat_ids.extend(ids.take(entries_per_sector - 1).take(fat_sectors - fat_ids.len()));
        difat = data.get(sector_size - 4..).and_then(|b| b.try_into().ok()).map_or(FREE, u32::from_le_bytes);
        guard += 1;
    }
    for (index, id) in fat_ids.into_iter().enumerate() {
        let data = sector(id)?;
        for (k, entry) in data.chunks_exact(4).enumerate() {
            let used = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]) != FREE;
            let sector_id = index * entries_per_sector + k;
            if used && sector_id >= present {
                return Err(truncated(format!("sector {sector_id} is in use but the file ends after {present}")));
            }
        }
    }
    Ok(())
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

    #[test]
    fn a_compound_file_cut_short_is_named_truncated() {
        let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        // Large enough for regular sectors (streams under 4 KiB live in the mini stream).
        cf.create_stream("/Workbook").unwrap().write_all(&vec![7u8; 20_000]).unwrap();
        let bytes = cf.into_inner().into_inner();
        assert!(check_cfb_complete(&bytes, Format::Xls).is_ok());
        let cut = &bytes[..bytes.len() - 4096];
        match check_cfb_complete(cut, Format::Xls) {
            Err(IngestError::Corrupt { reason, .. }) => assert!(reason.contains("truncated"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Through the front door: a clear error, no panic in calamine.
        let error = crate::ingest(cut, &crate::Limits::default()).unwrap_err();
        assert!(error.to_string().contains("truncated"), "{error}");
    }
}
