//! Cell number formats of an XLSB workbook ([MS-XLSB] 2.1.4 records): BrtFmt and the cell XFs
//! (BrtXF inside BrtBeginCellXFs) from `styles.bin`, BrtWbProp's 1904 flag and BrtBundleSh's
//! sheet parts from `workbook.bin`, and each cell record's style index in the sheet parts. Best
//! effort, like the XLS reader: what does not parse is left at the plain value.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use super::formats::{Bytes, SheetFormats, WorkbookFormats, XfTable, utf16le};

const ROW_HEADER: u32 = 0;
/// BrtCellRk, BrtCellReal, BrtCellSt, BrtCellIsst, BrtFmlaString, BrtFmlaNum: the value cells a
/// number (or text) format applies to.
const VALUE_CELLS: [u32; 6] = [2, 5, 6, 7, 8, 9];
const FMT: u32 = 44;
const XF: u32 = 47;
const BEGIN_CELL_XFS: u32 = 617;
const END_CELL_XFS: u32 = 618;
const WB_PROP: u32 = 153;
const BUNDLE_SH: u32 = 156;

/// The workbook's cell formats, or `None` when its parts cannot be read. Reads at most
/// `max_part_bytes` of any part (the ZIP budget has been checked before).
pub(crate) fn read(bytes: &[u8], max_part_bytes: u64) -> Option<WorkbookFormats> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).ok()?;
    let mut part = |name: &str| -> Option<Vec<u8>> {
        let mut data = Vec::new();
        archive.by_name(name).ok()?.take(max_part_bytes).read_to_end(&mut data).ok()?;
        Some(data)
    };
    let workbook_bin = part("xl/workbook.bin")?;
    let rels = String::from_utf8(part("xl/_rels/workbook.bin.rels")?).ok()?;
    let styles = part("xl/styles.bin").unwrap_or_default();
    let targets = relationship_targets(&rels);
    let xfs = cell_xfs(&styles);

    let mut workbook = WorkbookFormats::default();
    for (kind, body) in records(&workbook_bin) {
        let mut r = Bytes::new(body);
        match kind {
            WB_PROP => workbook.date1904 = r.u32().is_some_and(|flags| flags & 1 != 0),
            BUNDLE_SH => {
                let (_state, _tab) = (r.u32(), r.u32());
                let (Some(rel), Some(name)) = (wide_string(&mut r), wide_string(&mut r)) else { continue };
                let formats = targets
                    .get(&rel)
                    .and_then(|target| part(&part_path(target)))
                    .map(|sheet| sheet_formats(&sheet, &xfs))
                    .unwrap_or_default();
                workbook.sheets.push((name, formats));
            }
            _ => {}
        }
    }
    Some(workbook)
}

/// `xl/`-relative or absolute relationship target to a ZIP entry name.
fn part_path(target: &str) -> String {
    match target.strip_prefix('/') {
        Some(absolute) => absolute.to_string(),
        None => format!("xl/{target}"),
    }
}

/// Relationship id → target.
fn relationship_targets(rels: &str) -> HashMap<String, String> {
    let ids = crate::ooxml::attribute_values(rels, "Relationship", "Id");
    let targets = crate::ooxml::attribute_values(rels, "Relationship", "Target");
    ids.into_iter().zip(targets).collect()
}

/// The records of a binary part: (type, body); ends at the first malformed header.
fn records(data: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let (kind, used) = varint(data.get(pos..)?, 2)?;
        pos += used;
        let (len, used) = varint(data.get(pos..)?, 4)?;
        pos += used;
        let body = data.get(pos..pos.checked_add(len as usize)?)?;
        pos += len as usize;
        Some((kind, body))
    })
}

/// A record header number: 7 bits per byte, high bit = more bytes follow, at most `max` bytes.
fn varint(data: &[u8], max: usize) -> Option<(u32, usize)> {
    let mut value = 0u32;
    for (i, &byte) in data.iter().take(max).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// XLWideString / XLNullableWideString: 32-bit character count (0xFFFFFFFF: null), UTF-16LE.
fn wide_string(r: &mut Bytes<'_>) -> Option<String> {
    let count = r.u32()?;
    if count == u32::MAX {
        return Some(String::new());
    }
    Some(utf16le(r.take((count as usize).checked_mul(2)?)?))
}

/// The cell XF table of `styles.bin`.
fn cell_xfs(styles: &[u8]) -> XfTable {
    let mut custom = HashMap::new();
    let mut xf_formats = Vec::new();
    let mut in_cell_xfs = false;
    for (kind, body) in records(styles) {
        let mut r = Bytes::new(body);
        match kind {
            FMT => {
                if let (Some(id), Some(code)) = (r.u16(), wide_string(&mut r)) {
                    custom.insert(u32::from(id), code);
                }
            }
            BEGIN_CELL_XFS => in_cell_xfs = true,
            END_CELL_XFS => in_cell_xfs = false,
            XF if in_cell_xfs => {
                let _parent = r.u16();
                xf_formats.push(u32::from(r.u16().unwrap_or(0)));
            }
            _ => {}
        }
    }
    XfTable::new(&custom, &xf_formats)
}

fn sheet_formats(sheet: &[u8], xfs: &XfTable) -> SheetFormats {
    let mut formats = SheetFormats::default();
    let mut row = 0u32;
    for (kind, body) in records(sheet) {
        let mut r = Bytes::new(body);
        if kind == ROW_HEADER {
            row = r.u32().unwrap_or(row);
        } else if VALUE_CELLS.contains(&kind)
            && let (Some(column), Some(style)) = (r.u32(), r.u32())
            && let Some(code) = xfs.code((style & 0x00FF_FFFF) as usize)
        {
            formats.insert(row, column, code);
        }
    }
    formats
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record header number as written: 7 bits per byte, high bit set when more follow.
    fn push_varint(out: &mut Vec<u8>, mut value: u32) {
        loop {
            let byte = (value & 0x7F) as u8;
            value >>= 7;
            out.push(if value > 0 { byte | 0x80 } else { byte });
            if value == 0 {
                break;
            }
        }
    }

    fn record(kind: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_varint(&mut out, kind);
        push_varint(&mut out, body.len() as u32);
        out.extend(body);
        out
    }

    fn wide(s: &str) -> Vec<u8> {
        let units: Vec<u16> = s.encode_utf16().collect();
        let mut out = (units.len() as u32).to_le_bytes().to_vec();
        out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
        out
    }

    #[test]
    fn varints_and_records() {
        assert_eq!(varint(&[0x05], 2), Some((5, 1)));
        assert_eq!(varint(&[0xE9, 0x04], 2), Some((617, 2)));
        assert_eq!(varint(&[0xFF, 0xFF, 0xFF], 2), None);
        let data = [record(BEGIN_CELL_XFS, &[]), record(FMT, &[1, 2, 3])].concat();
        let kinds: Vec<u32> = records(&data).map(|(k, _)| k).collect();
        assert_eq!(kinds, [BEGIN_CELL_XFS, FMT]);
        // A truncated body ends the walk.
        assert_eq!(records(&data[..data.len() - 1]).count(), 1);
    }

    #[test]
    fn style_xfs_only_from_the_cell_xf_table() {
        let mut fmt = 170u16.to_le_bytes().to_vec();
        fmt.extend(wide("0.0\"%\""));
        let xf = |id: u16| {
            let mut b = 0u16.to_le_bytes().to_vec();
            b.extend(id.to_le_bytes());
            b.extend([0; 12]);
            b
        };
        let styles = [
            record(FMT, &fmt),
            // Cell *style* XFs come first and must not count.
            record(626, &[]),
            record(XF, &xf(9)),
            record(627, &[]),
            record(BEGIN_CELL_XFS, &[]),
            record(XF, &xf(0)),
            record(XF, &xf(170)),
            record(XF, &xf(3)),
            record(END_CELL_XFS, &[]),
        ]
        .concat();
        let xfs = cell_xfs(&styles);
        assert_eq!(xfs.code(0), None);
        assert_eq!(xfs.code(1).as_deref(), Some("0.0\"%\""));
        assert_eq!(xfs.code(2).as_deref(), Some("#,##0"));

        let cell = |column: u32, style: u32| {
            let mut b = column.to_le_bytes().to_vec();
            b.extend(style.to_le_bytes());
            b.extend(2.5f64.to_le_bytes());
            record(5, &b)
        };
        let sheet =
            [record(ROW_HEADER, &7u32.to_le_bytes()), cell(0, 0), cell(1, 1), cell(2, 2 | 0x0100_0000)].concat();
        let formats = sheet_formats(&sheet, &xfs);
        assert_eq!(formats.code(7, 0), None);
        assert_eq!(formats.code(7, 1), Some("0.0\"%\""));
        assert_eq!(formats.code(7, 2), Some("#,##0"), "flag bits above the 24-bit style index are ignored");
    }
}
