//! Cells as the spreadsheet application displays them: each value through its cell's number
//! format code (`#,##0.00`, `0%`, `[Red](#,##0)`, `# ?/?`, `d-mmm-yy`, ...), rendered by `ssfmt`
//! (SheetJS SSF-compatible), so `$1,500.00`, `12.5%` and `(300)` reach the model as the author
//! saw them. The typed value (number, ISO date) stays in the table's cells.

use std::borrow::Cow;
use std::collections::HashMap;

use calamine::{Data, ExcelDateTime, ExcelDateTimeType};
use chrono::{Datelike, NaiveDate};
use ssfmt::{DateSystem, FormatOptions, NumberFormat};

use super::cell_text;

/// Built-in format ids whose appearance follows the reader's locale ("short date", "short date
/// and time"): `4/1/24` in the US, `2024/4/1` in Japan, `01/04/2024` in the UK. Rendered as ISO
/// 8601 instead, which reads the same everywhere.
const LOCALE_DATE_IDS: [(u32, &str); 2] = [(14, "yyyy-mm-dd"), (22, "yyyy-mm-dd hh:mm")];

/// What Excel shows for a date it cannot display (negative, or after 9999-12-31).
const UNDISPLAYABLE_DATE: &str = "########";

/// The largest serial Excel displays as a date (9999-12-31 23:59:59).
const MAX_DATE_SERIAL: f64 = 2_958_466.0;

/// The format code of a built-in format id (ids below 164 that a workbook may use without
/// writing their code down).
pub(crate) fn builtin_code(id: u32) -> Option<&'static str> {
    LOCALE_DATE_IDS.iter().find(|(i, _)| *i == id).map(|(_, code)| *code).or_else(|| ssfmt::format_code_from_id(id))
}

/// Formats cells through their number format codes, parsing each distinct code once.
pub(crate) struct DisplayFormatter {
    parsed: HashMap<String, Option<NumberFormat>>,
    options: FormatOptions,
    date1904: bool,
}

impl DisplayFormatter {
    pub(crate) fn new(date1904: bool) -> Self {
        let date_system = if date1904 { DateSystem::Date1904 } else { DateSystem::Date1900 };
        let options = FormatOptions { date_system, ..FormatOptions::default() };
        DisplayFormatter { parsed: HashMap::new(), options, date1904 }
    }

    /// The cell's text under `code` (none, General, or a code that does not parse: the plain
    /// value, dates in ISO 8601).
    pub(crate) fn display(&mut self, cell: &Data, code: Option<&str>) -> String {
        let Some(code) = code.filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("general")) else {
            return cell_text(cell);
        };
        let code = system_format(code);
        let code = code.as_ref();
        let value = match cell {
            Data::Float(f) => *f,
            Data::Int(i) => *i as f64,
            Data::DateTime(dt) => dt.as_f64(),
            Data::String(s) if code.contains('@') => {
                let text = self.with_format(code, |format, options| format.format_text(s, options));
                return text.unwrap_or_else(|| s.clone());
            }
            _ => return cell_text(cell),
        };
        if !value.is_finite() {
            return cell_text(cell);
        }
        let date1904 = self.date1904;
        let rendered = self.with_format(code, |format, options| {
            if !format.is_date_format() {
                return format.format(value, options);
            }
            if !(0.0..MAX_DATE_SERIAL).contains(&value) {
                return UNDISPLAYABLE_DATE.to_string();
            }
            match japanese_era_code(code, value, date1904) {
                Some(era_code) => NumberFormat::parse(&era_code).map(|f| f.format(value, options)).unwrap_or_default(),
                None => format.format(value, options),
            }
        });
        rendered.unwrap_or_else(|| cell_text(cell))
    }

    /// Runs `render` with the parsed format; `None` when the code does not parse or the renderer
    /// fails (a panic in the formatter costs one cell its formatting, not the workbook).
    fn with_format(
        &mut self,
        code: &str,
        render: impl FnOnce(&NumberFormat, &FormatOptions) -> String,
    ) -> Option<String> {
        if !self.parsed.contains_key(code) {
            let parsed = crate::catch_panic(|| NumberFormat::parse(code).ok()).ok().flatten();
            if parsed.is_none() {
                tracing::debug!(code, "number format does not parse; showing the plain value");
            }
            self.parsed.insert(code.to_string(), parsed);
        }
        let format = self.parsed.get(code)?.as_ref()?;
        let options = &self.options;
        crate::catch_panic(|| render(format, options)).ok()
    }
}

/// The system date and time formats (`[$-F800]`: the reader's long date, `[$-F400]`: the
/// reader's time) as fixed, unambiguous codes.
fn system_format(code: &str) -> Cow<'_, str> {
    let upper = code.to_ascii_uppercase();
    if upper.starts_with("[$-F800]") {
        Cow::Borrowed("dddd, mmmm d, yyyy")
    } else if upper.starts_with("[$-F400]") {
        Cow::Borrowed("hh:mm:ss")
    } else {
        Cow::Borrowed(code)
    }
}

/// A Japanese era: name, one-character name, letter, first day (year, month, day).
type Era = (&'static str, &'static str, &'static str, (i32, u32, u32));

/// The modern Japanese eras, newest first.
const ERAS: [Era; 5] = [
    ("令和", "令", "R", (2019, 5, 1)),
    ("平成", "平", "H", (1989, 1, 8)),
    ("昭和", "昭", "S", (1926, 12, 25)),
    ("大正", "大", "T", (1912, 7, 30)),
    ("明治", "明", "M", (1868, 10, 23)),
];

/// A Japanese-calendar date format (`[$-411]ggge"年"m"月"d"日"`, the era tokens `g`/`gg`/`ggg`
/// and the era year `e`/`ee`) with the era tokens replaced by the era of `serial` as literals,
/// for the formatter to render the rest. `None` when the code has no era tokens.
fn japanese_era_code(code: &str, serial: f64, date1904: bool) -> Option<String> {
    let lower = code.to_ascii_lowercase();
    let japanese = lower.contains("[$-411]") || lower.contains("[$-0411]") || lower.contains("[$-ja");
    if !japanese && !unquoted_tokens(code).any(|(c, _)| c == 'g') {
        return None;
    }
    let date = ExcelDateTime::new(serial, ExcelDateTimeType::DateTime, date1904).as_datetime()?.date();
    let (name, short, letter, start) =
        ERAS.iter().find(|(.., (y, m, d))| NaiveDate::from_ymd_opt(*y, *m, *d).is_some_and(|first| date >= first))?;
    let year = date.year() - start.0 + 1;
    let gannen = lower.contains("gannen") && year == 1;
    let mut out = String::with_capacity(code.len() + 8);
    let mut replaced = false;
    for (c, token) in unquoted_tokens_with_text(code) {
        let literal = match (c, token.chars().count()) {
            ('g', 1) => Some(letter.to_string()),
            ('g', 2) => Some(short.to_string()),
            ('g', _) => Some(name.to_string()),
            ('e', _) if gannen => Some("元".to_string()),
            ('e', 1) => Some(year.to_string()),
            ('e', _) => Some(format!("{year:02}")),
            _ => None,
        };
        match literal {
            Some(text) => {
                replaced = true;
                out.push('"');
                out.push_str(&text);
                out.push('"');
            }
            None => out.push_str(token),
        }
    }
    replaced.then_some(out)
}

/// The code split into pieces: runs of one unquoted letter (`'g'`, `'e'`, lower-cased) and
/// everything else (quoted text, escapes, bracketed tags, other characters) as `'\0'` pieces.
fn unquoted_tokens_with_text(code: &str) -> impl Iterator<Item = (char, &str)> {
    let mut rest = code;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let end = match first {
            '"' => rest[1..].find('"').map_or(rest.len(), |i| i + 2),
            '[' => rest.find(']').map_or(rest.len(), |i| i + 1),
            '\\' | '_' | '*' => rest.char_indices().nth(2).map_or(rest.len(), |(i, _)| i),
            c if matches!(c.to_ascii_lowercase(), 'g' | 'e') => {
                rest.find(|x: char| !x.eq_ignore_ascii_case(&c)).unwrap_or(rest.len())
            }
            c => c.len_utf8(),
        };
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        let kind = first.to_ascii_lowercase();
        Some((if matches!(kind, 'g' | 'e') { kind } else { '\0' }, piece))
    })
}

fn unquoted_tokens(code: &str) -> impl Iterator<Item = (char, &str)> {
    unquoted_tokens_with_text(code).filter(|(c, _)| *c != '\0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{ExcelDateTime, ExcelDateTimeType};

    fn show(cell: Data, code: &str) -> String {
        DisplayFormatter::new(false).display(&cell, Some(code))
    }

    #[test]
    fn numbers_through_their_codes() {
        assert_eq!(show(Data::Float(1500.0), "\"$\"#,##0.00"), "$1,500.00");
        assert_eq!(show(Data::Float(0.125), "0.0%"), "12.5%");
        assert_eq!(show(Data::Float(-300.0), "#,##0;(#,##0)"), "(300)");
        assert_eq!(show(Data::Int(1234567), "#,##0"), "1,234,567");
        assert_eq!(show(Data::Float(1.5), "# ?/?"), "1 1/2");
        assert_eq!(show(Data::Float(1_250_000.0), "#,##0\"円\""), "1,250,000円");
    }

    #[test]
    fn general_and_missing_codes_keep_the_plain_value() {
        let mut f = DisplayFormatter::new(false);
        assert_eq!(f.display(&Data::Float(0.1 + 0.2), None), "0.3");
        assert_eq!(f.display(&Data::Float(12.0), Some("General")), "12");
        assert_eq!(f.display(&Data::String("x".into()), Some("0.00")), "x");
    }

    #[test]
    fn dates_through_their_codes_and_locale_dates_as_iso() {
        let date = || Data::DateTime(ExcelDateTime::new(46142.0, ExcelDateTimeType::DateTime, false));
        assert_eq!(show(date(), "yyyy\"年\"m\"月\"d\"日\""), "2026年4月30日");
        assert_eq!(show(date(), "d-mmm-yy"), "30-Apr-26");
        assert_eq!(show(date(), builtin_code(14).unwrap()), "2026-04-30");
        assert_eq!(builtin_code(10), Some("0.00%"));
    }

    #[test]
    fn japanese_era_dates() {
        // 2023-03-15, 2019-05-01 (first day of Reiwa), 1989-01-07 (last day of Showa).
        let day = |y, m, d| {
            let serial = (NaiveDate::from_ymd_opt(y, m, d).unwrap() - NaiveDate::from_ymd_opt(1899, 12, 30).unwrap())
                .num_days() as f64;
            Data::DateTime(ExcelDateTime::new(serial, ExcelDateTimeType::DateTime, false))
        };
        let code = "[$-411]ggge\"年\"m\"月\"d\"日\"";
        assert_eq!(show(day(2023, 3, 15), code), "令和5年3月15日");
        assert_eq!(show(day(2019, 5, 1), code), "令和1年5月1日");
        assert_eq!(show(day(1989, 1, 7), code), "昭和64年1月7日");
        assert_eq!(show(day(2023, 3, 15), "[$-411]ge.m.d"), "R5.3.15");
        assert_eq!(show(day(1990, 3, 15), "[$-411]gge\"年\""), "平2年");
        assert_eq!(show(day(2019, 5, 1), "[$-ja-JP-x-gannen]ggge\"年\"m\"月\"d\"日\""), "令和元年5月1日");
        assert_eq!(show(day(2023, 3, 15), "[$-411]yyyy/m/d"), "2023/3/15", "no era tokens: unchanged");
    }

    #[test]
    fn undisplayable_dates_and_system_formats() {
        let serial = |v| Data::DateTime(ExcelDateTime::new(v, ExcelDateTimeType::DateTime, false));
        assert_eq!(show(Data::Float(-1.5), "yyyy-mm-dd"), UNDISPLAYABLE_DATE);
        assert_eq!(show(serial(1.0), "[$-F800]dddd, mmmm dd, yyyy"), "Sunday, January 1, 1900");
        assert_eq!(show(serial(0.3), "[$-F400]h:mm:ss AM/PM"), "07:12:00");
    }

    #[test]
    fn text_sections_apply_to_text() {
        assert_eq!(show(Data::String("abc".into()), "0;-0;0;\"[\"@\"]\""), "[abc]");
    }
}
