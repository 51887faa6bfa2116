//! Cell number formats of an XLS (BIFF5/BIFF8) workbook: FORMAT and XF records from the
//! workbook globals, DATEMODE, BOUNDSHEET for each sheet's substream, and the XF index of each
//! value cell ([MS-XLS] 2.4). Best effort: anything unexpected ends the walk with what was read,
//! and the cells keep their plain values.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use super::formats::{Bytes, SheetFormats, WorkbookFormats, XfTable, utf16le};
use crate::{Format, IngestError};

const BOF: u16 = 0x0809;
const EOF: u16 = 0x000A;
const DATEMODE: u16 = 0x0022;
const FORMAT: u16 = 0x041E;
const FORMAT_BIFF5: u16 = 0x001E;
const XF: u16 = 0x00E0;
const BOUNDSHEET: u16 = 0x0085;
const NUMBER: u16 = 0x0203;
const RK: u16 = 0x027E;
const MULRK: u16 = 0x00BD;
const FORMULA: u16 = 0x0006;
const LABELSST: u16 = 0x00FD;
const LABEL: u16 = 0x0204;
const DIMENSIONS: u16 = 0x0200;
const FILEPASS: u16 = 0x002F;

/// The workbook's cell formats, checking on the way what calamine would trust: a compound file
/// that does not open, or a workbook stream that cannot be read to its end (a truncated file), is
/// an error here, before calamine's reader (which panics or aborts on such files) runs.
/// `max_bytes` bounds the stream read and the memory a sheet's size record may claim.
pub(crate) fn read(bytes: &[u8], max_bytes: u64) -> Result<Option<WorkbookFormats>, IngestError> {
    let corrupt = |reason: String| IngestError::Corrupt { format: Format::Xls, reason };
    let opened = crate::catch_panic(|| cfb::CompoundFile::open(Cursor::new(bytes)))
        .unwrap_or_else(|_| Err(std::io::Error::other("the compound file reader failed")));
    let mut file = opened.map_err(|e| corrupt(format!("its compound-file structure is damaged ({e})")))?;
    let Some(name) = ["/Workbook", "/Book"].into_iter().find(|n| file.is_stream(n)) else { return Ok(None) };
    let mut stream = Vec::new();
    let read = file.open_stream(name).and_then(|s| s.take(max_bytes).read_to_end(&mut stream));
    if let Err(err) = read {
        return Err(corrupt(format!("its workbook stream cannot be read ({err}); the file is probably truncated")));
    }
    let max_cells = max_bytes / std::mem::size_of::<calamine::Cell<calamine::Data>>() as u64;
    read_stream(&stream, max_cells)
}

/// One record: type and body.
fn records(stream: &[u8], start: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut pos = start;
    std::iter::from_fn(move || {
        let header = stream.get(pos..pos.checked_add(4)?)?;
        let kind = u16::from_le_bytes([header[0], header[1]]);
        let len = u16::from_le_bytes([header[2], header[3]]) as usize;
        let body = stream.get(pos + 4..pos + 4 + len)?;
        pos += 4 + len;
        Some((kind, body))
    })
}

/// The formats of the workbook stream; `None` for an encrypted one (past FILEPASS the records
/// are ciphertext; calamine reports the password).
fn read_stream(stream: &[u8], max_cells: u64) -> Result<Option<WorkbookFormats>, IngestError> {
    let mut workbook = WorkbookFormats::default();
    let mut biff8 = true;
    let mut custom: HashMap<u32, String> = HashMap::new();
    let mut xf_formats: Vec<u32> = Vec::new();
    let mut sheets: Vec<(String, usize)> = Vec::new();
    for (index, (kind, body)) in records(stream, 0).enumerate() {
        let mut r = Bytes::new(body);
        match kind {
            BOF if index == 0 => biff8 = r.u16() == Some(0x0600),
            EOF => break,
            FILEPASS => return Ok(None),
            DATEMODE => workbook.date1904 = r.u16() == Some(1),
            FORMAT | FORMAT_BIFF5 => {
                let Some(id) = r.u16() else { continue };
                let code = if biff8 && kind == FORMAT { unicode_string(&mut r, true) } else { byte_string(&mut r) };
                if let Some(code) = code {
                    custom.insert(u32::from(id), code);
                }
            }
            XF => {
                let _font = r.u16();
                xf_formats.push(u32::from(r.u16().unwrap_or(0)));
            }
            BOUNDSHEET => {
                let Some(offset) = r.u32() else { continue };
                let (_state, _kind) = (r.u8(), r.u8());
                let name = if biff8 { short_unicode_string(&mut r) } else { byte_string(&mut r) };
                sheets.push((name.unwrap_or_default(), offset as usize));
            }
            _ => {}
        }
    }
    let xfs = XfTable::new(&custom, &xf_formats);
    for (name, offset) in sheets {
        let formats = sheet_formats(stream, offset, &xfs, max_cells).map_err(|error| match error {
            SheetError::TooLarge(cells) => IngestError::SheetTooLarge { sheet: name.clone(), cells },
            SheetError::Corrupt(reason) => {
                IngestError::Corrupt { format: Format::Xls, reason: format!("sheet {name:?}: {reason}") }
            }
        })?;
        workbook.sheets.push((name, formats));
    }
    Ok(Some(workbook))
}

/// The cell count a DIMENSIONS record makes calamine reserve room for, computed as calamine
/// does (first/last row and column, a bad first column read as 0); `None` when that arithmetic
/// underflows (calamine would panic, or wrap and reserve without bound).
fn dimensions_cells(body: &[u8]) -> Option<u64> {
    let mut r = Bytes::new(body);
    // By length, as calamine reads it: BIFF5 has 16-bit rows, BIFF8 32-bit (some writers add
    // two bytes); any other length calamine rejects without reserving.
    let (first_row, last_row) = match body.len() {
        10 => (u32::from(r.u16()?), u32::from(r.u16()?)),
        14 | 16 => (r.u32()?, r.u32()?),
        _ => return Some(0),
    };
    let (mut first_col, last_col) = (u32::from(r.u16()?), u32::from(r.u16()?));
    if first_col > 0xFF || last_col < first_col {
        first_col = 0;
    }
    if last_row == 0 || last_col == 0 {
        return Some(1);
    }
    let rows = (last_row - 1).checked_sub(first_row)? + 1;
    let cols = (last_col - 1).checked_sub(first_col)? + 1;
    Some(u64::from(rows) * u64::from(cols))
}

enum SheetError {
    /// The size record claims this many cells, over the memory limit.
    TooLarge(u64),
    Corrupt(String),
}

/// The XF-derived format of every value cell in the sheet substream starting at `offset`
/// (nested substreams, such as an embedded chart, skipped). Refuses a DIMENSIONS record that
/// claims more than `max_cells` cells: calamine reserves memory for the claim before it reads a
/// cell, and an allocation failure aborts the process (the fuzzer found a claim of 2^47 cells).
fn sheet_formats(stream: &[u8], offset: usize, xfs: &XfTable, max_cells: u64) -> Result<SheetFormats, SheetError> {
    let mut formats = SheetFormats::default();
    let mut put = |row: u16, column: u16, xf: u16| {
        if let Some(code) = xfs.code(usize::from(xf)) {
            formats.insert(u32::from(row), u32::from(column), code);
        }
    };
    let mut depth = 0usize;
    for (index, (kind, body)) in records(stream, offset).enumerate() {
        let mut r = Bytes::new(body);
        match kind {
            BOF if index == 0 => {}
            BOF => depth += 1,
            EOF if depth == 0 => break,
            EOF => depth -= 1,
            _ if depth > 0 => {}
            DIMENSIONS => match dimensions_cells(body) {
                Some(cells) if cells <= max_cells => {}
                Some(cells) => return Err(SheetError::TooLarge(cells)),
                None => {
                    return Err(SheetError::Corrupt(
                        "its size record gives a last row or column before the first".into(),
                    ));
                }
            },
            NUMBER | RK | FORMULA | LABELSST | LABEL => {
                if let (Some(row), Some(column), Some(xf)) = (r.u16(), r.u16(), r.u16()) {
                    put(row, column, xf);
                }
            }
            MULRK => {
                let (Some(row), Some(first)) = (r.u16(), r.u16()) else { continue };
                let mut column = first;
                while r.remaining() >= 8 {
                    let Some(xf) = r.u16() else { break };
                    let _rk = r.u32();
                    put(row, column, xf);
                    column = column.saturating_add(1);
                }
            }
            _ => {}
        }
    }
    Ok(formats)
}

/// XLUnicodeString: 16-bit count, flags, characters (one byte each unless the high-byte flag is
/// set), with the rich-text and extended-data headers skipped when flagged.
fn unicode_string(r: &mut Bytes<'_>, wide_count: bool) -> Option<String> {
    let count = if wide_count { usize::from(r.u16()?) } else { usize::from(r.u8()?) };
    let flags = r.u8()?;
    if flags & 0x08 != 0 {
        r.u16()?;
    }
    if flags & 0x04 != 0 {
        r.u32()?;
    }
    chars(r, count, flags & 0x01 != 0)
}

fn short_unicode_string(r: &mut Bytes<'_>) -> Option<String> {
    unicode_string(r, false)
}

fn chars(r: &mut Bytes<'_>, count: usize, high_byte: bool) -> Option<String> {
    if high_byte {
        Some(utf16le(r.take(count * 2)?))
    } else {
        // "Compressed" UTF-16: each byte is a code unit below 256, i.e. Latin-1.
        Some(r.take(count)?.iter().map(|&b| char::from(b)).collect())
    }
}

/// BIFF5 FORMAT string: 8-bit count, code page bytes (read as Latin-1: format codes are ASCII
/// apart from currency symbols).
fn byte_string(r: &mut Bytes<'_>) -> Option<String> {
    let count = usize::from(r.u8()?);
    chars(r, count, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut out = kind.to_le_bytes().to_vec();
        out.extend((body.len() as u16).to_le_bytes());
        out.extend(body);
        out
    }

    /// `globals` closed with one BOUNDSHEET ("S1") pointing just past them, where the caller
    /// appends the sheet substream.
    fn globals_with_one_sheet(mut globals: Vec<u8>) -> Vec<u8> {
        let sheet_offset_at = globals.len() + 4;
        let mut boundsheet = vec![0; 4];
        boundsheet.extend([0, 0, 2, 0]);
        boundsheet.extend(b"S1");
        globals.extend(record(BOUNDSHEET, &boundsheet));
        globals.extend(record(EOF, &[]));
        let offset = globals.len() as u32;
        globals[sheet_offset_at..sheet_offset_at + 4].copy_from_slice(&offset.to_le_bytes());
        globals
    }

    #[test]
    fn a_sheet_claiming_billions_of_cells_is_refused_before_calamine_reserves_them() {
        use std::io::Write;
        let mut stream = globals_with_one_sheet(record(BOF, &[0x00, 0x06, 0x05, 0x00]));
        stream.extend(record(BOF, &[0x00, 0x06, 0x10, 0x00]));
        let mut dims = 0u32.to_le_bytes().to_vec();
        dims.extend(u32::MAX.to_le_bytes());
        dims.extend([0, 0, 0xFF, 0xFF, 0, 0]);
        stream.extend(record(DIMENSIONS, &dims));
        stream.extend(record(EOF, &[]));
        let mut file = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        let mut workbook = file.create_stream("/Workbook").unwrap();
        workbook.write_all(&stream).unwrap();
        // Padding past 4 KiB keeps the stream out of the mini stream, as Excel's are.
        workbook.write_all(&[0; 5000]).unwrap();
        drop(workbook);
        let bytes = file.into_inner().into_inner();
        // Through the front door: calamine would reserve 2^48 cells and abort the process.
        match crate::ingest(&bytes, &crate::Limits::default()) {
            Err(IngestError::SheetTooLarge { sheet, cells }) => {
                assert_eq!(sheet, "S1");
                assert_eq!(cells, u64::from(u32::MAX) * 65_535);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn formats_of_number_cells_from_xf_and_format_records() {
        let mut globals = record(BOF, &[0x00, 0x06, 0x05, 0x00]);
        let mut format = 164u16.to_le_bytes().to_vec();
        format.extend(8u16.to_le_bytes());
        format.push(0);
        format.extend(b"0.0\"pts\"");
        globals.extend(record(FORMAT, &format));
        for id in [0u16, 10, 164] {
            let mut xf = 0u16.to_le_bytes().to_vec();
            xf.extend(id.to_le_bytes());
            xf.extend([0; 16]);
            globals.extend(record(XF, &xf));
        }
        let mut stream = globals_with_one_sheet(globals);
        stream.extend(record(BOF, &[0x00, 0x06, 0x10, 0x00]));
        let number = |row: u16, col: u16, xf: u16| {
            let mut b = row.to_le_bytes().to_vec();
            b.extend(col.to_le_bytes());
            b.extend(xf.to_le_bytes());
            b.extend(1.5f64.to_le_bytes());
            record(NUMBER, &b)
        };
        stream.extend(number(0, 0, 0));
        stream.extend(number(1, 0, 1));
        stream.extend(number(2, 3, 2));
        // MULRK: row 4, columns 1..=2 with XF 1 and 2.
        let mut mulrk = 4u16.to_le_bytes().to_vec();
        mulrk.extend(1u16.to_le_bytes());
        for xf in [1u16, 2] {
            mulrk.extend(xf.to_le_bytes());
            mulrk.extend(0u32.to_le_bytes());
        }
        mulrk.extend(2u16.to_le_bytes());
        stream.extend(record(MULRK, &mulrk));
        stream.extend(record(EOF, &[]));

        let workbook = read_stream(&stream, u64::MAX).unwrap().unwrap();
        let sheet = workbook.sheet(0, "S1").expect("sheet");
        assert_eq!(sheet.code(0, 0), None, "General is not stored");
        assert_eq!(sheet.code(1, 0), Some("0.00%"));
        assert_eq!(sheet.code(2, 3), Some("0.0\"pts\""));
        assert_eq!(sheet.code(4, 1), Some("0.00%"));
        assert_eq!(sheet.code(4, 2), Some("0.0\"pts\""));
        assert_eq!(sheet.len(), 4);
    }

    #[test]
    fn garbage_reads_as_no_formats() {
        assert!(matches!(read(b"not a compound file", 1 << 20), Err(IngestError::Corrupt { .. })));
        let workbook = read_stream(&[0x09, 0x08, 0xff, 0xff, 1, 2], u64::MAX).unwrap().unwrap();
        assert!(workbook.sheets.is_empty());
    }

    #[test]
    fn size_records_that_claim_the_impossible_are_refused() {
        let dims = |rf: u32, rl: u32, cf: u16, cl: u16| {
            let mut b = rf.to_le_bytes().to_vec();
            b.extend(rl.to_le_bytes());
            b.extend(cf.to_le_bytes());
            b.extend(cl.to_le_bytes());
            b.extend([0, 0]);
            b
        };
        assert_eq!(dimensions_cells(&dims(0, 10, 0, 4)), Some(40));
        assert_eq!(dimensions_cells(&dims(0, 0, 0, 0)), Some(1));
        // The fuzzer's find: two billion rows by 65,535 columns.
        assert_eq!(dimensions_cells(&dims(0, u32::MAX, 0, u16::MAX)), Some(u64::from(u32::MAX) * 65_535));
        // Last row before the first: calamine's subtraction would underflow.
        assert_eq!(dimensions_cells(&dims(50, 10, 0, 4)), None);
        assert_eq!(dimensions_cells(&dims(0, 10, 5, 5)), None);

        let mut sheet = record(BOF, &[0x00, 0x06, 0x10, 0x00]);
        sheet.extend(record(DIMENSIONS, &dims(0, 2_000_000, 0, 200)));
        sheet.extend(record(EOF, &[]));
        let xfs = XfTable::new(&HashMap::new(), &[]);
        assert!(matches!(sheet_formats(&sheet, 0, &xfs, 1_000_000), Err(SheetError::TooLarge(400_000_000))));
        // A plausible claim passes.
        let mut sheet = record(BOF, &[0x00, 0x06, 0x10, 0x00]);
        sheet.extend(record(DIMENSIONS, &dims(0, 1, 0, 1)));
        sheet.extend(record(EOF, &[]));
        assert!(sheet_formats(&sheet, 0, &xfs, 1_000_000).is_ok());
    }
}
