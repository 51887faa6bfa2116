//! Which number format code each cell has. calamine resolves formats only far enough to tell
//! dates from numbers (and exposes per-cell styles for XLSX alone), so the XLS and XLSB readers
//! here walk the same records calamine reads for the rest: the format table, the cell XF table,
//! and each cell record's XF index. Only cells whose format is not General are kept.

use std::collections::HashMap;
use std::sync::Arc;

use super::numfmt::builtin_code;

/// Format codes by absolute (row, column) for one sheet.
#[derive(Debug, Default)]
pub(crate) struct SheetFormats {
    cells: HashMap<(u32, u32), Arc<str>>,
}

impl SheetFormats {
    pub(crate) fn code(&self, row: u32, column: u32) -> Option<&str> {
        self.cells.get(&(row, column)).map(|c| &**c)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cells.len()
    }

    pub(crate) fn insert(&mut self, row: u32, column: u32, code: Arc<str>) {
        self.cells.insert((row, column), code);
    }
}

/// The formats of a whole workbook (XLS, XLSB): sheets in workbook order, by name.
#[derive(Debug, Default)]
pub(crate) struct WorkbookFormats {
    pub(crate) date1904: bool,
    pub(crate) sheets: Vec<(String, SheetFormats)>,
}

impl WorkbookFormats {
    /// The sheet's formats: by name, or by position when the names were decoded differently.
    pub(crate) fn sheet(&self, index: usize, name: &str) -> Option<&SheetFormats> {
        self.sheets.iter().find(|(n, _)| n == name).or_else(|| self.sheets.get(index)).map(|(_, formats)| formats)
    }
}

/// Resolves cell XF indexes to format codes: the workbook's own formats by id, then the
/// built-in ones. `None` for General (nothing to store).
pub(crate) struct XfTable {
    /// Per XF index, the code of its format (`None`: General or unknown).
    codes: Vec<Option<Arc<str>>>,
}

impl XfTable {
    /// `custom`: format id → code as written in the workbook; `xf_formats`: per cell XF, its
    /// format id.
    pub(crate) fn new(custom: &HashMap<u32, String>, xf_formats: &[u32]) -> Self {
        let mut shared: HashMap<u32, Option<Arc<str>>> = HashMap::new();
        let codes = xf_formats
            .iter()
            .map(|id| {
                shared
                    .entry(*id)
                    .or_insert_with(|| {
                        let code = custom.get(id).map(String::as_str).or_else(|| builtin_code(*id))?;
                        (!code.eq_ignore_ascii_case("general")).then(|| Arc::from(code))
                    })
                    .clone()
            })
            .collect();
        XfTable { codes }
    }

    pub(crate) fn code(&self, xf: usize) -> Option<Arc<str>> {
        self.codes.get(xf).cloned().flatten()
    }
}

/// A little-endian reader over a record body that never reads past its end.
pub(crate) struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(slice)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
}

/// UTF-16LE code units to a string (unpaired surrogates replaced).
pub(crate) fn utf16le(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16_lossy(&units)
}
