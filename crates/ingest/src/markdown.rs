//! Tables rendered as Markdown (GitHub style), the form the model sees tabular units in.

/// One table row: `| a | b |`, with `|` escaped and line breaks flattened so a cell cannot break
/// the table.
pub(crate) fn row(cells: &[String], width: usize) -> String {
    let mut out = String::from("|");
    for i in 0..width {
        let cell = cells.get(i).map(String::as_str).unwrap_or("");
        out.push(' ');
        for c in cell.trim().chars() {
            match c {
                '|' => out.push_str("\\|"),
                '\n' => out.push_str("<br>"),
                '\r' => {}
                c => out.push(c),
            }
        }
        out.push_str(" |");
    }
    out
}

/// The header row and the separator line under it.
pub(crate) fn header(cells: &[String], width: usize) -> String {
    let mut out = row(cells, width);
    out.push('\n');
    out.push('|');
    for _ in 0..width {
        out.push_str(" --- |");
    }
    out
}

/// A whole table: the first row is the header.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let Some((first, rest)) = rows.split_first() else {
        return String::new();
    };
    let mut out = header(first, width);
    for r in rest {
        out.push('\n');
        out.push_str(&row(r, width));
    }
    out
}

/// A run of data rows `start..end` as one Markdown table with the header first.
pub(crate) struct RowRange {
    pub start: usize,
    pub end: usize,
    pub text: String,
    /// A single row longer than the character limit: its text was cut.
    pub truncated: bool,
}

/// Cuts `data` into consecutive ranges of at most `max_rows` rows whose Markdown, the header
/// repeated first in each, stays within `max_chars` (a row too long on its own is a range by
/// itself, cut). More than `max_units` ranges is [`IngestError::TooManyUnits`], found before the
/// rest is rendered.
pub(crate) fn row_ranges(
    header_row: &[String],
    data: &[Vec<String>],
    width: usize,
    max_rows: usize,
    max_chars: usize,
    max_units: usize,
) -> Result<Vec<RowRange>, crate::IngestError> {
    let header_text = header(header_row, width);
    let max_rows = max_rows.max(1);
    let mut ranges: Vec<RowRange> = Vec::new();
    let mut start = 0usize;
    while start < data.len() {
        if ranges.len() >= max_units {
            let remaining = (data.len() - start).div_ceil(max_rows);
            return Err(crate::IngestError::TooManyUnits { count: ranges.len() + remaining, limit: max_units });
        }
        let mut end = start;
        let mut text = header_text.clone();
        let mut chars = text.chars().count();
        while end < data.len() && end - start < max_rows {
            let line = row(&data[end], width);
            let line_chars = line.chars().count() + 1;
            if end > start && chars + line_chars > max_chars {
                break;
            }
            text.push('\n');
            text.push_str(&line);
            chars += line_chars;
            end += 1;
        }
        let truncated = crate::truncate_chars(&mut text, max_chars);
        ranges.push(RowRange { start, end, text, truncated });
        start = end;
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn renders_and_escapes() {
        let t = table(&[s(&["名前", "メモ"]), s(&["a|b", "line1\nline2"]), s(&["only"])]);
        assert_eq!(t, "| 名前 | メモ |\n| --- | --- |\n| a\\|b | line1<br>line2 |\n| only |  |");
    }
}
