//! CSV/TSV: delimiter detection and row-range units with the header repeated in each.

use crate::{Document, FLAG_TRUNCATED, Format, IngestError, Limits, Table, Unit, UnitKind, markdown};

const DELIMITERS: [u8; 3] = [b',', b'\t', b';'];
/// Detection looks at the start of the text only.
const SNIFF_BYTES: usize = 64 * 1024;
const SNIFF_RECORDS: usize = 200;

fn records(text: &str, delimiter: u8) -> csv::StringRecordsIntoIter<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes())
        .into_records()
}

/// The delimiter, when the text parses as delimited records with a consistent field count:
/// at least 2 columns and 2 rows, the first row and at least 90% of rows having the same count.
pub(crate) fn sniff(text: &str) -> Option<u8> {
    let truncated = text.len() > SNIFF_BYTES;
    let sample = &text[..crate::floor_char_boundary(text, SNIFF_BYTES)];
    let mut best: Option<(u8, f64, usize)> = None;
    for delimiter in DELIMITERS {
        let mut rows: Vec<csv::StringRecord> = Vec::new();
        for record in records(sample, delimiter).take(SNIFF_RECORDS + 1) {
            match record {
                Ok(r) => rows.push(r),
                Err(_) => break,
            }
        }
        if truncated || rows.len() > SNIFF_RECORDS {
            // The last record may be cut short.
            rows.pop();
        }
        if rows.len() < 2 {
            continue;
        }
        let columns = rows[0].len();
        if columns < 2 {
            continue;
        }
        let matching = rows.iter().filter(|r| r.len() == columns).count();
        let fraction = matching as f64 / rows.len() as f64;
        if matching < 2 || fraction < 0.9 {
            continue;
        }
        // Prose with one comma per line ("Hello, world.") is not a two-column table: there the
        // second field nearly always starts with a space.
        if columns == 2 && delimiter != b'\t' {
            let spaced = rows.iter().filter(|r| r.get(1).is_some_and(|f| f.starts_with(' '))).count();
            if spaced * 2 > rows.len() {
                continue;
            }
        }
        if best.is_none_or(|(_, f, c)| (fraction, columns) > (f, c)) {
            best = Some((delimiter, fraction, columns));
        }
    }
    best.map(|(d, _, _)| d)
}

/// Splits delimited text into [`UnitKind::Rows`] units of at most `max_rows_per_unit` data rows
/// (and `max_unit_chars` characters), the header repeated in each.
pub(crate) fn ingest_delimited(text: &str, limits: &Limits) -> Result<Document, IngestError> {
    let delimiter = sniff(text).unwrap_or(b',');
    let mut rows: Vec<Vec<String>> = Vec::new();
    for record in records(text, delimiter) {
        let record = record.map_err(|err| IngestError::Corrupt { format: Format::Csv, reason: err.to_string() })?;
        rows.push(record.iter().map(str::to_string).collect());
    }
    if rows.iter().flatten().all(|cell| cell.trim().is_empty()) {
        return Err(IngestError::NoContent("the CSV has no values".into()));
    }
    let width = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    for row in &mut rows {
        row.resize(width, String::new());
    }
    let mut rows = rows.into_iter();
    let header: Vec<String> = rows.next().unwrap_or_default();
    let data: Vec<Vec<String>> = rows.collect();
    let ranges =
        markdown::row_ranges(&header, &data, width, limits.max_rows_per_unit, limits.max_unit_chars, limits.max_units)?;
    let mut units = Vec::with_capacity(ranges.len());
    for range in ranges {
        let (start, end) = (range.start, range.end);
        let flags = if range.truncated { vec![FLAG_TRUNCATED.to_string()] } else { Vec::new() };
        let title = if end - start == 1 { format!("Row {}", start + 1) } else { format!("Rows {}-{}", start + 1, end) };
        let mut table_rows = Vec::with_capacity(end - start + 1);
        table_rows.push(header.clone());
        table_rows.extend_from_slice(&data[start..end]);
        units.push(Unit {
            index: units.len(),
            kind: UnitKind::Rows,
            title,
            text: range.text,
            table: Some(Table { rows: table_rows, has_header: true, values: Vec::new() }),
            flags,
        });
    }
    if units.is_empty() {
        units.push(Unit {
            index: 0,
            kind: UnitKind::Rows,
            title: "Header".into(),
            text: markdown::header(&header, width),
            table: Some(Table { rows: vec![header], has_header: true, values: Vec::new() }),
            flags: Vec::new(),
        });
    }
    Ok(Document { format: Format::Csv, units, title: None, language: None, encoding: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest;

    #[test]
    fn sniffs_delimiters() {
        assert_eq!(sniff("a,b,c\n1,2,3\n4,5,6\n"), Some(b','));
        assert_eq!(sniff("a\tb\n1\t2\n"), Some(b'\t'));
        assert_eq!(sniff("a;b;c\n1;2,5;3\n"), Some(b';'));
        assert_eq!(sniff("\"x, y\",z\n\"1\n2\",3\n"), Some(b','));
        assert_eq!(sniff("single column\nvalues\n"), None);
        assert_eq!(sniff("Hello, world.\nGood, morning.\n"), None);
        assert_eq!(sniff("a,b\n"), None);
    }

    #[test]
    fn splits_rows_and_repeats_the_header() {
        let mut csv = String::from("id,name\n");
        for i in 1..=7 {
            csv.push_str(&format!("{i},item {i}\n"));
        }
        let limits = Limits { max_rows_per_unit: 3, ..Limits::default() };
        let doc = ingest(csv.as_bytes(), &limits).unwrap();
        assert_eq!(doc.format, Format::Csv);
        let titles: Vec<_> = doc.units.iter().map(|u| u.title.as_str()).collect();
        assert_eq!(titles, ["Rows 1-3", "Rows 4-6", "Row 7"]);
        for unit in &doc.units {
            assert!(unit.text.starts_with("| id | name |\n| --- | --- |\n"));
            let table = unit.table.as_ref().unwrap();
            assert!(table.has_header);
            assert_eq!(table.rows[0], ["id", "name"]);
        }
        assert_eq!(doc.units[2].table.as_ref().unwrap().rows[1], ["7", "item 7"]);
        assert_eq!(doc.encoding.as_deref(), Some("UTF-8"));
    }

    #[test]
    fn shift_jis_csv() {
        let source = "請求先,金額,支払期日,備考\r\n株式会社山田商事,\"1,250,000\",2026/12/25,前払い済 ①\r\n有限会社佐藤,\"380,000\",2026/12/31,\r\n";
        let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(source);
        assert!(!unmappable);
        let doc = ingest(&bytes, &Limits::default()).unwrap();
        assert_eq!(doc.format, Format::Csv);
        assert_eq!(doc.encoding.as_deref(), Some("Shift_JIS"));
        assert_eq!(doc.language.as_deref(), Some("ja"));
        let unit = &doc.units[0];
        assert_eq!(unit.title, "Rows 1-2");
        assert!(unit.text.contains("株式会社山田商事"));
        assert!(unit.text.contains("前払い済 ①"));
        assert_eq!(unit.table.as_ref().unwrap().rows[1][1], "1,250,000");
    }

    #[test]
    fn long_rows_split_by_size() {
        let mut csv = String::from("k,v\n");
        for i in 0..10 {
            csv.push_str(&format!("{i},{}\n", "x".repeat(50)));
        }
        let limits = Limits { max_unit_chars: 200, ..Limits::default() };
        let doc = ingest(csv.as_bytes(), &limits).unwrap();
        assert!(doc.units.len() > 1);
        assert!(doc.units.iter().all(|u| u.text.chars().count() <= 200));
        let rows: usize = doc.units.iter().map(|u| u.table.as_ref().unwrap().rows.len() - 1).sum();
        assert_eq!(rows, 10);
    }
}
