//! The line structure of a unit: blank lines, code blocks, rules, Markdown tables, text.

/// What a line is, before headings and fields are looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineKind {
    Blank,
    Text,
    /// Inside (or a fence of) a fenced code block.
    Code,
    /// A thematic break (`---`, `***`, `___`).
    Rule,
    /// The `===` / `---` line under a setext heading.
    Underline,
    /// Part of the Markdown table with this index in [`Layout::tables`].
    Table(usize),
}

#[derive(Debug)]
pub(crate) struct Line<'a> {
    /// The line without its line break and trailing whitespace.
    pub text: &'a str,
    /// Byte offset of the line in the unit's content.
    pub offset: usize,
    pub kind: LineKind,
}

/// A Markdown table found in the content.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MdTable {
    /// The short line just before the table, when there is one.
    pub title: Option<String>,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Index in [`Layout::lines`] of each row.
    pub row_lines: Vec<usize>,
    /// Index of the header line in [`Layout::lines`].
    pub line: usize,
}

#[derive(Debug)]
pub(crate) struct Layout<'a> {
    pub lines: Vec<Line<'a>>,
    pub tables: Vec<MdTable>,
}

/// Longest line (in characters) taken as a table's title.
const MAX_TABLE_TITLE_CHARS: usize = 100;

impl<'a> Layout<'a> {
    pub(crate) fn parse(content: &'a str) -> Self {
        let mut lines = Vec::new();
        let mut offset = 0;
        for piece in content.split_inclusive('\n') {
            let text = piece.trim_end();
            let kind = if text.trim().is_empty() { LineKind::Blank } else { LineKind::Text };
            lines.push(Line { text, offset, kind });
            offset += piece.len();
        }
        let mut layout = Layout { lines, tables: Vec::new() };
        layout.classify();
        layout
    }

    fn classify(&mut self) {
        let n = self.lines.len();
        let mut in_code = false;
        let mut i = 0;
        while i < n {
            let t = self.lines[i].text.trim();
            if t.starts_with("```") || t.starts_with("~~~") {
                self.lines[i].kind = LineKind::Code;
                in_code = !in_code;
                i += 1;
                continue;
            }
            if in_code {
                self.lines[i].kind = LineKind::Code;
                i += 1;
                continue;
            }
            if self.lines[i].kind == LineKind::Blank {
                i += 1;
                continue;
            }
            if let Some(next) = self.table_at(i) {
                i = next;
                continue;
            }
            let previous_is_text = i > 0 && self.lines[i - 1].kind == LineKind::Text;
            let underline = previous_is_text && (is_underline(t, '=') || (is_underline(t, '-') && t.len() >= 3));
            if underline {
                self.lines[i].kind = LineKind::Underline;
            } else if is_rule(t) {
                self.lines[i].kind = LineKind::Rule;
            }
            i += 1;
        }
    }

    /// If a table starts at line `i`, record it and return the index of the line after it.
    fn table_at(&mut self, i: usize) -> Option<usize> {
        let head = self.lines[i].text.trim();
        if !head.contains('|') {
            return None;
        }
        let next = self.lines.get(i + 1).map(|l| l.text.trim()).unwrap_or("");
        let framed = |t: &str| t.len() >= 2 && t.starts_with('|') && t.ends_with('|');
        let (body_start, has_separator) = if is_separator(next) && (next.contains('|') || head.starts_with('|')) {
            (i + 2, true)
        } else if framed(head) && framed(next) {
            (i + 1, false)
        } else {
            return None;
        };
        let header = split_cells(head);
        let mut end = body_start;
        let mut rows = Vec::new();
        let mut row_lines = Vec::new();
        while let Some(line) = self.lines.get(end) {
            let t = line.text.trim();
            if t.is_empty() || !t.contains('|') || (!has_separator && !framed(t)) {
                break;
            }
            if !is_separator(t) {
                rows.push(split_cells(t));
                row_lines.push(end);
            }
            end += 1;
        }
        let index = self.tables.len();
        let title = self.title_before(i);
        for line in &mut self.lines[i..end] {
            line.kind = LineKind::Table(index);
        }
        self.tables.push(MdTable { title, header, rows, row_lines, line: i });
        Some(end)
    }

    /// The text line just before line `i` (one blank line allowed in between), when short.
    fn title_before(&self, i: usize) -> Option<String> {
        let mut k = i.checked_sub(1)?;
        if self.lines[k].kind == LineKind::Blank {
            k = k.checked_sub(1)?;
        }
        let line = &self.lines[k];
        if line.kind != LineKind::Text || line.text.chars().count() > MAX_TABLE_TITLE_CHARS {
            return None;
        }
        let title = strip_markup(line.text).trim_end_matches([':', '：']).trim().to_string();
        // A field (`期限：5月31日`) or a sentence before a table is not its title.
        let field_like = title.contains('：') || title.contains(": ") || title.starts_with('【');
        let sentence = title.ends_with(['.', '。', '!', '?', '！', '？']);
        (!title.is_empty() && !field_like && !sentence).then_some(title)
    }

    /// Indices of the lines around `i` that are not blank: the previous and the next one.
    pub(crate) fn previous_non_blank(&self, i: usize) -> Option<usize> {
        (0..i).rev().find(|&k| self.lines[k].kind != LineKind::Blank)
    }

    pub(crate) fn next_non_blank(&self, i: usize) -> Option<usize> {
        (i + 1..self.lines.len()).find(|&k| self.lines[k].kind != LineKind::Blank)
    }
}

fn is_underline(t: &str, c: char) -> bool {
    t.len() >= 2 && t.chars().all(|x| x == c)
}

fn is_rule(t: &str) -> bool {
    let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    compact.len() >= 3 && ['-', '*', '_'].iter().any(|&m| compact.chars().all(|c| c == m))
}

/// `|---|:---:|` and `---|---`.
fn is_separator(t: &str) -> bool {
    !t.is_empty() && t.contains('-') && t.chars().all(|c| matches!(c, '|' | ':' | '-' | ' ' | '\t'))
}

/// The cells of a table row, without the outer pipes; `\|` is a literal pipe, `<br>` a space.
pub(crate) fn split_cells(row: &str) -> Vec<String> {
    let t = row.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = if t.ends_with("\\|") { t } else { t.strip_suffix('|').unwrap_or(t) };
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cell)),
            _ => cell.push(c),
        }
    }
    cells.push(cell);
    cells
        .into_iter()
        .map(|c| c.replace("<br>", " ").replace("<br/>", " ").replace("<br />", " ").trim().to_string())
        .collect()
}

/// A line without Markdown heading marks, emphasis and inline code marks.
pub(crate) fn strip_markup(line: &str) -> String {
    let t = line.trim();
    let t = t.trim_start_matches('#').trim();
    let t = t.trim_end_matches('#').trim();
    t.replace("**", "").replace("__", "").replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tables_with_titles() {
        let text = "売上\n\n| 月 | 売上高(千円) |\n|---|---:|\n| 4月 | 12850 |\n| 5月 | 11920 |\n\nafter";
        let layout = Layout::parse(text);
        assert_eq!(layout.tables.len(), 1);
        let t = &layout.tables[0];
        assert_eq!(t.title.as_deref(), Some("売上"));
        assert_eq!(t.header, vec!["月", "売上高(千円)"]);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[1], vec!["5月", "11920"]);
        assert_eq!(layout.lines[7].kind, LineKind::Text);
    }

    #[test]
    fn tables_without_separator_and_escaped_pipes() {
        let layout = Layout::parse("| a | b \\| c |\n| 1 | 2 |");
        assert_eq!(layout.tables.len(), 1);
        assert_eq!(layout.tables[0].header, vec!["a", "b | c"]);
        assert_eq!(layout.tables[0].title, None);
        let layout = Layout::parse("期限：2026年5月31日\n\n| a | b |\n|---|---|\n| 1 | 2 |");
        assert_eq!(layout.tables[0].title, None);
        let layout = Layout::parse("The table shows sales:\n| a | b |\n|---|---|\n| 1 | 2 |");
        assert_eq!(layout.tables[0].title.as_deref(), Some("The table shows sales"));
    }

    #[test]
    fn code_rules_and_underlines() {
        let layout = Layout::parse("Title\n=====\ntext\n\n---\n```\n# not a heading\n```\n");
        let kinds: Vec<LineKind> = layout.lines.iter().map(|l| l.kind).collect();
        assert_eq!(
            kinds,
            vec![
                LineKind::Text,
                LineKind::Underline,
                LineKind::Text,
                LineKind::Blank,
                LineKind::Rule,
                LineKind::Code,
                LineKind::Code,
                LineKind::Code
            ]
        );
    }
}
