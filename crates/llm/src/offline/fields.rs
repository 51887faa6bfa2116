//! Key-value fields: `Key: Value`, `Key：Value`, `Key = Value`, `【Key】Value`, several per line
//! when separated by tabs or wide gaps, and the rows of two-column tables.

use super::headings::ends_sentence;
use super::layout::{Layout, LineKind, MdTable};
use super::script::is_cjk_line;

/// A field and the line it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldHit {
    pub name: String,
    pub value: String,
    /// Line index, or `None` for fields from tables.
    pub line: Option<usize>,
    /// Whether the line also reads as prose (a long sentence after `Note:`), so it stays in the
    /// sentences the summary is drawn from.
    pub prose: bool,
}

const MAX_KEY_CHARS: usize = 40;
const MAX_VALUE_CHARS: usize = 200;
const MAX_KEY_WORDS: usize = 5;

/// Words that make a "key" a clause: `The deadline is: Friday`.
const CLAUSE_WORDS: &[&str] =
    &["is", "are", "was", "were", "will", "be", "has", "have", "that", "which", "we", "you", "i"];

fn strip_list_mark(text: &str) -> &str {
    let t = text.trim();
    for mark in ["- ", "* ", "+ ", "• ", "・", "● "] {
        if let Some(rest) = t.strip_prefix(mark) {
            return rest.trim_start();
        }
    }
    t
}

fn clean(text: &str) -> String {
    text.replace("**", "").replace("__", "").trim().to_string()
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn valid_key(key: &str) -> bool {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_KEY_CHARS || !key.chars().any(char::is_alphabetic) {
        return false;
    }
    if key.contains(['。', '!', '?', '！', '？', ',', '、', '，', '|', '`', '"', '「', '」', '<', '>', '{', '}'])
        || key.contains("://")
    {
        return false;
    }
    if key.starts_with(['(', '[', '#', '/', '-', '=']) {
        return false;
    }
    let words: Vec<String> = key.split_whitespace().map(str::to_lowercase).collect();
    words.len() <= MAX_KEY_WORDS && !words.iter().any(|w| CLAUSE_WORDS.contains(&w.as_str()))
}

/// Parse one segment as a field.
fn parse_segment(segment: &str) -> Option<(String, String)> {
    let s = strip_list_mark(segment);
    if let Some(rest) = s.strip_prefix('【') {
        let (key, value) = rest.split_once('】')?;
        let value = value.trim().trim_start_matches([':', '：']).trim();
        let key = clean(key);
        return (valid_key(&key) && !value.is_empty()).then(|| (key, truncate(&clean(value), MAX_VALUE_CHARS)));
    }
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut separator = None;
    for (k, &(at, c)) in chars.iter().enumerate().take(MAX_KEY_CHARS + 8) {
        let next = chars.get(k + 1).map(|x| x.1);
        match c {
            '：' => {
                separator = Some((at, c.len_utf8()));
                break;
            }
            ':' => {
                // `https://...`: a URL, not a separator. `10:30`: a time.
                let url = next == Some('/') && chars.get(k + 2).map(|x| x.1) == Some('/');
                let time = k > 0 && chars[k - 1].1.is_ascii_digit() && next.is_some_and(|n| n.is_ascii_digit());
                if !url && !time {
                    separator = Some((at, 1));
                    break;
                }
            }
            '=' => {
                let previous = k.checked_sub(1).map(|p| chars[p].1);
                let comparison = matches!(next, Some('=' | '>')) || matches!(previous, Some('!' | '<' | '>' | '='));
                if !comparison {
                    separator = Some((at, 1));
                }
                break;
            }
            _ => {}
        }
    }
    let (at, len) = separator?;
    let key = clean(s.get(..at)?);
    let value = clean(s.get(at + len..)?);
    if value.is_empty() || !valid_key(&key) {
        return None;
    }
    Some((key, truncate(&value, MAX_VALUE_CHARS)))
}

/// Split a line at tabs and runs of two or more spaces (form layouts put several fields on one
/// line).
fn segments(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let gap = if bytes[i] == b'\t' {
            1
        } else if bytes[i] == b' ' && bytes.get(i + 1) == Some(&b' ') {
            bytes[i..].iter().take_while(|&&b| b == b' ').count()
        } else {
            0
        };
        if gap > 0 {
            if let Some(piece) = line.get(start..i).filter(|p| !p.trim().is_empty()) {
                out.push(piece);
            }
            i += gap;
            start = i;
        } else {
            i += 1;
        }
    }
    if let Some(piece) = line.get(start..).filter(|p| !p.trim().is_empty()) {
        out.push(piece);
    }
    out
}

/// The fields of one line.
fn parse_line(line: &str) -> Vec<(String, String)> {
    let parts = segments(line);
    if parts.len() > 1 {
        let parsed: Vec<Option<(String, String)>> = parts.iter().map(|p| parse_segment(p)).collect();
        if parsed.iter().filter(|p| p.is_some()).count() >= 2 {
            let mut out: Vec<(String, String)> = Vec::new();
            for (part, field) in parts.iter().zip(parsed) {
                match (field, out.last_mut()) {
                    (Some(f), _) => out.push(f),
                    // A piece of the previous value that had a wide gap in it.
                    (None, Some(last)) => {
                        last.1.push(' ');
                        last.1.push_str(part.trim());
                    }
                    (None, None) => {}
                }
            }
            return out;
        }
    }
    parse_segment(line).into_iter().collect()
}

fn is_prose(value: &str) -> bool {
    ends_sentence(value)
        && if is_cjk_line(value) { value.chars().count() >= 30 } else { value.split_whitespace().count() >= 8 }
}

/// Fields from the text lines that are not headings (`skip`).
pub(crate) fn from_lines(layout: &Layout, skip: &[bool]) -> Vec<FieldHit> {
    let mut out = Vec::new();
    for (i, line) in layout.lines.iter().enumerate() {
        if line.kind != LineKind::Text || skip.get(i).copied().unwrap_or(false) {
            continue;
        }
        for (name, value) in parse_line(line.text) {
            let prose = is_prose(&value);
            out.push(FieldHit { name, value, line: Some(i), prose });
        }
    }
    out
}

/// Fields from tables: each row of a two-column table, and header → value for a table with a
/// single data row.
pub(crate) fn from_table(table: &MdTable) -> Vec<FieldHit> {
    let cell = |row: &[String], c: usize| row.get(c).map(|s| clean(s)).unwrap_or_default();
    let mut out = Vec::new();
    let mut push = |name: String, value: String| {
        if valid_key(&name) && !value.is_empty() {
            out.push(FieldHit { name, value: truncate(&value, MAX_VALUE_CHARS), line: None, prose: false });
        }
    };
    if table.header.len() == 2 {
        for row in &table.rows {
            push(cell(row, 0), cell(row, 1));
        }
    } else if table.rows.len() == 1 {
        for (c, name) in table.header.iter().enumerate() {
            push(clean(name), cell(&table.rows[0], c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        let layout = Layout::parse(text);
        from_lines(&layout, &[]).into_iter().map(|f| (f.name, f.value)).collect()
    }

    fn p(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn english_and_japanese_separators() {
        assert_eq!(
            pairs(
                "Invoice No: INV-2026-001\nTotal: $1,234.56\n請求日：2026年4月30日\n【支払期限】2026年5月31日\nmode = fast"
            ),
            vec![
                p("Invoice No", "INV-2026-001"),
                p("Total", "$1,234.56"),
                p("請求日", "2026年4月30日"),
                p("支払期限", "2026年5月31日"),
                p("mode", "fast"),
            ]
        );
    }

    #[test]
    fn several_fields_on_one_line_and_markup() {
        assert_eq!(
            pairs("Date: 2026-04-30    Invoice No: 123\n- **Owner**: Alice"),
            vec![p("Date", "2026-04-30"), p("Invoice No", "123"), p("Owner", "Alice")]
        );
    }

    #[test]
    fn rejects_urls_times_sentences_and_empty_values() {
        assert!(pairs("https://example.com/a:b").is_empty());
        assert!(pairs("The meeting starts at 10:30 in room 4").is_empty());
        assert!(pairs("We decided the following, after a long discussion: nothing").is_empty());
        assert!(pairs("The deadline is: Friday").is_empty());
        assert!(pairs("Notes:").is_empty());
        assert!(pairs("if a == b").is_empty());
        assert_eq!(pairs("See: https://example.com/x"), vec![p("See", "https://example.com/x")]);
    }

    #[test]
    fn two_column_and_single_row_tables() {
        let layout = Layout::parse("| 項目 | 内容 |\n|---|---|\n| 請求番号 | INV-1 |\n| 金額 | ¥12,850 |");
        let f: Vec<_> = from_table(&layout.tables[0]).into_iter().map(|f| (f.name, f.value)).collect();
        assert_eq!(f, vec![p("請求番号", "INV-1"), p("金額", "¥12,850")]);
        let layout = Layout::parse("| No | Name | Total |\n|---|---|---|\n| 1 | Acme | $5 |");
        let f: Vec<_> = from_table(&layout.tables[0]).into_iter().map(|f| (f.name, f.value)).collect();
        assert_eq!(f, vec![p("No", "1"), p("Name", "Acme"), p("Total", "$5")]);
    }
}
