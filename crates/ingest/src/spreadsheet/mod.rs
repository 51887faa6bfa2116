//! Workbooks (XLSX, XLSM, XLSB, XLS, ODS) through calamine: one unit per sheet, in workbook
//! order, so unit counts match sheet counts even for chart and empty sheets.

mod formats;
mod numfmt;
mod xls_formats;
mod xlsb_formats;

use std::io::Cursor;

use calamine::{Data, Reader, SheetType, SheetVisible, Sheets, StyleRange};

use crate::{
    CellValue, Document, FLAG_EMPTY, FLAG_HIDDEN, FLAG_TRUNCATED, FLAG_UNREADABLE, Format, IngestError, Limits, Table,
    Unit, UnitKind, container, guard_panic, markdown,
};
use formats::SheetFormats;
use numfmt::DisplayFormatter;

/// Reads a workbook into one [`UnitKind::Sheet`] unit per sheet.
pub(crate) fn ingest_workbook(bytes: &[u8], format: Format, limits: &Limits) -> Result<Document, IngestError> {
    if format != Format::Xls {
        container::check_zip_budget(bytes, format, limits.max_decompressed_bytes)?;
    }
    // XLS: check the compound file is whole and read the workbook stream before calamine does.
    let xls_formats = match format {
        Format::Xls => {
            container::check_cfb_complete(bytes, format)?;
            xls_formats::read(bytes, limits.max_decompressed_bytes)?
        }
        _ => None,
    };
    let mut patched: Option<Vec<u8>> = None;
    let mut opened = guard_panic(format, || open(bytes, format))?;
    if matches!(format, Format::Xlsb | Format::Xlsx | Format::Xlsm)
        && matches!(&opened, Err(IngestError::Corrupt { reason, .. }) if reason.contains("macrosheets/"))
    {
        patched = with_macro_sheets_renamed(bytes);
        if let Some(data) = patched.as_deref() {
            opened = guard_panic(format, || open(data, format))?;
        }
    }
    let mut workbook = opened?;
    let sheets = workbook.sheets_metadata().to_vec();
    if sheets.len() > limits.max_units {
        return Err(IngestError::TooManyUnits { count: sheets.len(), limit: limits.max_units });
    }
    let title = guard_panic(format, || workbook.workbook_properties())?
        .ok()
        .and_then(|p| p.title)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());

    let source = patched.as_deref().unwrap_or(bytes);
    let book_formats = match format {
        Format::Xls => xls_formats,
        Format::Xlsb => xlsb_formats::read(source, limits.max_decompressed_bytes),
        _ => None,
    };
    let date1904 = match &book_formats {
        Some(book) => book.date1904,
        None => matches!(format, Format::Xlsx | Format::Xlsm) && xlsx_date1904(source),
    };
    let mut display = DisplayFormatter::new(date1904);

    let mut units = Vec::with_capacity(sheets.len());
    for (sheet_index, sheet) in sheets.into_iter().enumerate() {
        let span = tracing::debug_span!("sheet", name = %sheet.name);
        let _guard = span.enter();
        let mut flags = Vec::new();
        if sheet.visible != SheetVisible::Visible {
            flags.push(FLAG_HIDDEN.to_string());
        }
        let range = match sheet.typ {
            SheetType::WorkSheet => match guard_panic(format, || workbook.worksheet_range(&sheet.name))? {
                Ok(range) => Some(range),
                Err(err) => {
                    if is_password_error(&err) {
                        return Err(IngestError::Encrypted { format });
                    }
                    tracing::warn!(%err, "sheet does not read");
                    flags.push(FLAG_UNREADABLE.to_string());
                    None
                }
            },
            _ => None,
        };
        let styles = match (format, &range) {
            (Format::Xlsx | Format::Xlsm, Some(_)) => guard_panic(format, || workbook.worksheet_style(&sheet.name))?
                .ok()
                .map(|styles| formats_from_styles(&styles)),
            _ => None,
        };
        let cell_formats =
            styles.as_ref().or_else(|| book_formats.as_ref().and_then(|b| b.sheet(sheet_index, &sheet.name)));
        let budget = limits.max_units.saturating_sub(units.len());
        let parts = match &range {
            Some(range) => sheet_units(&sheet.name, range, cell_formats, &mut display, &flags, limits, budget)?,
            None => Vec::new(),
        };
        if parts.is_empty() {
            flags.push(FLAG_EMPTY.to_string());
            let text = match sheet.typ {
                SheetType::ChartSheet => "(chart sheet)",
                SheetType::MacroSheet => "(macro sheet)",
                // See with_macro_sheets_renamed.
                SheetType::DialogSheet if patched.is_some() => "(macro or dialog sheet)",
                SheetType::DialogSheet => "(dialog sheet)",
                SheetType::Vba => "(VBA module)",
                SheetType::WorkSheet if flags.iter().any(|f| f == FLAG_UNREADABLE) => "(sheet could not be read)",
                SheetType::WorkSheet => "(empty sheet)",
            };
            units.push(Unit {
                index: units.len(),
                kind: UnitKind::Sheet,
                title: sheet.name.clone(),
                text: text.to_string(),
                table: None,
                flags,
            });
            continue;
        }
        units.extend(parts);
    }
    Ok(Document { format, units, title, language: None, encoding: None })
}

fn open(bytes: &[u8], format: Format) -> Result<Sheets<Cursor<&[u8]>>, IngestError> {
    let cursor = Cursor::new(bytes);
    let result = match format {
        Format::Xls => calamine::open_workbook_from_rs(cursor).map(Sheets::Xls).map_err(calamine::Error::Xls),
        Format::Xlsb => calamine::open_workbook_from_rs(cursor).map(Sheets::Xlsb).map_err(calamine::Error::Xlsb),
        Format::Ods => calamine::open_workbook_from_rs(cursor).map(Sheets::Ods).map_err(calamine::Error::Ods),
        _ => calamine::open_workbook_from_rs(cursor).map(Sheets::Xlsx).map_err(calamine::Error::Xlsx),
    };
    result.map_err(|err| {
        if is_password_error(&err) {
            IngestError::Encrypted { format }
        } else {
            IngestError::Corrupt { format, reason: err.to_string() }
        }
    })
}

/// calamine's XLSX and XLSB readers refuse a workbook that has an Excel 4 macro sheet (they know only
/// worksheets, chart sheets and dialog sheets by their part path), although such sheets have
/// nothing to read. This copies the package with the macro sheets' relationships pointing at
/// `dialogsheets/` instead, so the workbook opens and the macro sheets count as (empty) sheets.
/// Entries other than the relationships are copied raw, without recompressing.
fn with_macro_sheets_renamed(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    const RELS: [&str; 2] = ["xl/_rels/workbook.bin.rels", "xl/_rels/workbook.xml.rels"];
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).ok()?;
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for i in 0..archive.len() {
        let name = archive.by_index_raw(i).ok()?.name().ok()?.into_owned();
        if RELS.contains(&name.as_str()) {
            let mut rels = String::new();
            archive.by_index(i).ok()?.take(16 * 1024 * 1024).read_to_string(&mut rels).ok()?;
            // XLSB tells the sheet type by the part's folder, XLSX by the relationship type.
            let rels = rels
                .replace("macrosheets/", "dialogsheets/")
                .replace("/xlMacrosheet\"", "/dialogsheet\"")
                .replace("/xlIntlMacrosheet\"", "/dialogsheet\"");
            out.start_file(name, zip::write::SimpleFileOptions::default()).ok()?;
            out.write_all(rels.as_bytes()).ok()?;
        } else {
            out.raw_copy_file(archive.by_index_raw(i).ok()?).ok()?;
        }
    }
    Some(out.finish().ok()?.into_inner())
}

fn is_password_error(err: &calamine::Error) -> bool {
    matches!(
        err,
        calamine::Error::Xls(calamine::XlsError::Password) | calamine::Error::Ods(calamine::OdsError::Password)
    ) || {
        let text = err.to_string().to_lowercase();
        text.contains("password") || text.contains("encrypt")
    }
}

/// A sheet's units: one, with the whole sheet as a table; or, when its Markdown is over
/// `limits.max_unit_chars`, row ranges with the header row repeated in each, titled with the
/// sheet's own row numbers (`Data (rows 2-181)`). None for a sheet without values. `max_units`:
/// how many units the workbook may still have. Units are numbered by the caller.
fn sheet_units(
    name: &str,
    range: &calamine::Range<Data>,
    formats: Option<&SheetFormats>,
    display: &mut DisplayFormatter,
    flags: &[String],
    limits: &Limits,
    max_units: usize,
) -> Result<Vec<Unit>, IngestError> {
    let (rows, values) = sheet_cells(range, formats, display);
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let header_row = rows.iter().position(|r| r.iter().any(|c| !c.is_empty())).unwrap_or(0);
    let text = markdown::table(&rows[header_row..]);
    if text.chars().count() <= limits.max_unit_chars {
        let table = Table { rows, has_header: true, values };
        let unit = Unit {
            index: 0,
            kind: UnitKind::Sheet,
            title: name.to_string(),
            text,
            table: Some(table),
            flags: flags.to_vec(),
        };
        return Ok(vec![unit]);
    }
    let width = rows.iter().map(Vec::len).max().unwrap_or(1);
    let data = &rows[header_row + 1..];
    let ranges = markdown::row_ranges(&rows[header_row], data, width, usize::MAX, limits.max_unit_chars, max_units)?;
    // Spreadsheet row numbers (1-based) of the first data row.
    let first_data_row = range.start().map_or(0, |(row, _)| row as usize) + header_row + 2;
    /// The header row and data rows `from..to` (counted after the header).
    fn part<T: Clone>(all: &[Vec<T>], header_row: usize, from: usize, to: usize) -> Vec<Vec<T>> {
        let mut part = vec![all[header_row].clone()];
        part.extend_from_slice(&all[header_row + 1 + from..header_row + 1 + to]);
        part
    }
    Ok(ranges
        .into_iter()
        .map(|r| {
            let mut flags = flags.to_vec();
            if r.truncated {
                flags.push(FLAG_TRUNCATED.to_string());
            }
            let rows = part(&rows, header_row, r.start, r.end);
            let table = Table { rows, has_header: true, values: part(&values, header_row, r.start, r.end) };
            Unit {
                index: 0,
                kind: UnitKind::Sheet,
                title: format!("{name} (rows {}-{})", first_data_row + r.start, first_data_row + r.end - 1),
                text: r.text,
                table: Some(table),
                flags,
            }
        })
        .collect())
}

/// The sheet's cells, from the first used row and column (as spreadsheet applications export a
/// sheet to CSV), with empty trailing rows and columns trimmed: as displayed (`rows`) and typed
/// (`values`).
fn sheet_cells(
    range: &calamine::Range<Data>,
    formats: Option<&SheetFormats>,
    display: &mut DisplayFormatter,
) -> (Vec<Vec<String>>, Vec<Vec<Option<CellValue>>>) {
    let (height, width) = range.get_size();
    let (top, left) = range.start().unwrap_or((0, 0));
    let mut values: Vec<Vec<Option<CellValue>>> =
        range.rows().take(height).map(|r| r.iter().take(width).map(cell_value).collect()).collect();
    while values.last().is_some_and(|r| r.iter().all(Option::is_none)) {
        values.pop();
    }
    let used = values.iter().map(|r| r.iter().rposition(Option::is_some).map_or(0, |i| i + 1)).max().unwrap_or(0);
    if used == 0 {
        return (Vec::new(), Vec::new());
    }
    let rows = range
        .rows()
        .take(values.len())
        .zip(top..)
        .map(|(cells, row)| {
            (0..used)
                .map(|c| {
                    let cell = cells.get(c).unwrap_or(&Data::Empty);
                    let code = formats.and_then(|f| f.code(row, left + c as u32));
                    display.display(cell, code)
                })
                .collect()
        })
        .collect();
    for r in &mut values {
        r.resize(used, None);
    }
    (rows, values)
}

/// The number format codes of an XLSX sheet's styled cells.
fn formats_from_styles(styles: &StyleRange) -> SheetFormats {
    let mut formats = SheetFormats::default();
    for (row, column, style) in styles.cells() {
        let Some(format) = &style.number_format else { continue };
        // Built-in ids by our table (locale-dependent dates as ISO), custom ones as written.
        let code = format.format_id.and_then(numfmt::builtin_code).unwrap_or(&format.format_code);
        if !code.is_empty() && !code.eq_ignore_ascii_case("general") {
            formats.insert(row, column, code.into());
        }
    }
    formats
}

/// Whether an XLSX workbook counts dates from 1904 (`<workbookPr date1904="1"/>`).
fn xlsx_date1904(bytes: &[u8]) -> bool {
    let Ok(mut archive) = zip::ZipArchive::new(Cursor::new(bytes)) else { return false };
    let Ok(xml) = crate::ooxml::read_entry(&mut archive, Format::Xlsx, "xl/workbook.xml") else { return false };
    crate::ooxml::attribute_values(&xml, "workbookPr", "date1904").first().is_some_and(|v| v == "1" || v == "true")
}

/// A cell's typed value; `None` for an empty cell.
fn cell_value(cell: &Data) -> Option<CellValue> {
    Some(match cell {
        Data::Empty => return None,
        Data::String(s) if s.is_empty() => return None,
        Data::String(s) => CellValue::Text(s.clone()),
        Data::Int(i) => CellValue::Number(*i as f64),
        Data::Float(f) => CellValue::Number(*f),
        Data::Bool(b) => CellValue::Bool(*b),
        Data::Error(e) => CellValue::Error(e.to_string()),
        Data::DateTimeIso(s) => CellValue::Date(s.clone()),
        Data::DurationIso(s) => CellValue::Duration(s.clone()),
        Data::DateTime(dt) if dt.is_duration() => CellValue::Duration(cell_text(cell)),
        Data::DateTime(dt) => match dt.as_datetime() {
            Some(_) => CellValue::Date(cell_text(cell)),
            None => CellValue::Number(dt.as_f64()),
        },
    })
}

/// A cell as text: numbers without a spurious `.0`, dates in ISO 8601, booleans as TRUE/FALSE,
/// errors as Excel shows them.
pub(crate) fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => number_text(*f),
        Data::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        Data::Error(e) => e.to_string(),
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::DateTime(dt) => {
            if dt.is_duration() {
                return duration_text(dt.as_f64());
            }
            let serial = dt.as_f64();
            match dt.as_datetime() {
                // A time of day without a date (serial below 1).
                Some(t) if (0.0..1.0).contains(&serial) => t.format("%H:%M:%S").to_string(),
                Some(t) if t.time() == chrono::NaiveTime::MIN => t.format("%Y-%m-%d").to_string(),
                Some(t) => t.format("%Y-%m-%dT%H:%M:%S").to_string(),
                None => number_text(serial),
            }
        }
    }
}

/// A number the way a spreadsheet shows it in General format: integers without a fraction,
/// others rounded to 15 significant digits (so binary artifacts like 0.30000000000000004 go).
pub(crate) fn number_text(f: f64) -> String {
    if !f.is_finite() {
        return f.to_string();
    }
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return format!("{}", f as i64);
    }
    let rounded: f64 = format!("{f:.14e}").parse().unwrap_or(f);
    let text = format!("{rounded}");
    if text.len() > 20 {
        // Very large or small magnitudes read better in scientific notation.
        format!("{rounded:e}")
    } else {
        text
    }
}

fn duration_text(days: f64) -> String {
    let total = (days * 86_400.0).round() as i64;
    let sign = if total < 0 { "-" } else { "" };
    let total = total.abs();
    format!("{sign}{}:{:02}:{:02}", total / 3600, (total % 3600) / 60, total % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{ExcelDateTime, ExcelDateTimeType};

    #[test]
    fn numbers() {
        assert_eq!(number_text(12850.0), "12850");
        assert_eq!(number_text(103.2), "103.2");
        assert_eq!(number_text(0.1 + 0.2), "0.3");
        assert_eq!(number_text(-3.0), "-3");
        assert_eq!(number_text(1.5), "1.5");
    }

    #[test]
    fn dates_and_others() {
        let date = Data::DateTime(ExcelDateTime::new(46142.0, ExcelDateTimeType::DateTime, false));
        assert_eq!(cell_text(&date), "2026-04-30");
        let dt = Data::DateTime(ExcelDateTime::new(46142.5, ExcelDateTimeType::DateTime, false));
        assert_eq!(cell_text(&dt), "2026-04-30T12:00:00");
        let time = Data::DateTime(ExcelDateTime::new(0.75, ExcelDateTimeType::DateTime, false));
        assert_eq!(cell_text(&time), "18:00:00");
        let dur = Data::DateTime(ExcelDateTime::new(1.5, ExcelDateTimeType::TimeDelta, false));
        assert_eq!(cell_text(&dur), "36:00:00");
        assert_eq!(cell_text(&Data::Bool(true)), "TRUE");
        assert_eq!(cell_text(&Data::Error(calamine::CellErrorType::Div0)), "#DIV/0!");
    }

    #[test]
    fn bad_workbooks_are_errors_not_panics() {
        let limits = Limits::default();
        for format in [Format::Xlsx, Format::Xlsb, Format::Xls, Format::Ods] {
            let r = ingest_workbook(b"PK\x03\x04garbage", format, &limits);
            assert!(r.is_err(), "{format}");
        }
    }

    #[test]
    fn a_sheet_too_large_for_one_unit_becomes_row_ranges_with_the_header_repeated() {
        let mut rows = vec![vec!["id".to_string(), "name".to_string()]];
        rows.extend((1..=300).map(|i| vec![i.to_string(), format!("item number {i}")]));
        let range = calamine::Range::from_sparse(
            rows.iter()
                .enumerate()
                .flat_map(|(r, row)| {
                    row.iter().enumerate().map(move |(c, v)| {
                        let value = v.parse::<f64>().map_or_else(|_| Data::String(v.clone()), Data::Float);
                        calamine::Cell::new((r as u32 + 4, c as u32), value)
                    })
                })
                .collect(),
        );
        let limits = Limits { max_unit_chars: 2_000, ..Limits::default() };
        let flags = vec![FLAG_HIDDEN.to_string()];
        let units = sheet_units("Data", &range, None, &mut DisplayFormatter::new(false), &flags, &limits, 100).unwrap();
        assert!(units.len() > 3, "{} units", units.len());
        // The header sits in spreadsheet row 5, the data from row 6 to 305.
        assert!(units[0].title.starts_with("Data (rows 6-"), "{}", units[0].title);
        assert!(units.last().unwrap().title.ends_with("-305)"), "{}", units.last().unwrap().title);
        let mut next = 6;
        for unit in &units {
            assert!(unit.text.starts_with("| id | name |\n| --- | --- |"), "header repeated: {}", unit.title);
            assert!(unit.text.chars().count() <= 2_000);
            assert_eq!(unit.flags, ["hidden"]);
            let table = unit.table.as_ref().unwrap();
            assert_eq!(table.rows[0], ["id", "name"]);
            assert_eq!(table.values.len(), table.rows.len());
            // Consecutive ranges: none lost, none repeated.
            assert_eq!(table.rows[1][0], (next - 5).to_string());
            next += table.rows.len() - 1;
        }
        assert_eq!(next, 306);
        // Over the unit budget: refused, naming the limit.
        let error =
            sheet_units("Data", &range, None, &mut DisplayFormatter::new(false), &flags, &limits, 2).unwrap_err();
        assert!(matches!(error, IngestError::TooManyUnits { limit: 2, .. }), "{error}");
    }

    #[test]
    fn zip_bomb_guard_runs_before_calamine() {
        let zeros = vec![0u8; 2 * 1024 * 1024];
        let bomb =
            container::tests::zip_with(&[("xl/workbook.xml", b"<workbook/>"), ("xl/worksheets/sheet1.xml", &zeros)]);
        let limits = Limits { max_decompressed_bytes: 1024 * 1024, ..Limits::default() };
        assert!(matches!(crate::ingest(&bomb, &limits), Err(IngestError::DecompressionLimit { .. })));
    }
}
