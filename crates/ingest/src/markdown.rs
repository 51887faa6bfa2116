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
