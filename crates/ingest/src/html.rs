//! HTML (saved web pages, exported reports, e-mail bodies): parsed as a browser would (html5ever
//! through `scraper`), read into paragraphs, headings and tables, and split like a Word
//! document: at top-level headings (`h1`, `h2`), then by size. Scripts, styles and other
//! non-content elements are dropped. The tree is walked with an explicit stack, so deep nesting
//! cannot exhaust the call stack.

use ego_tree::iter::Edge;
use scraper::{Html, Node};

use crate::docx::{Block, sections};
use crate::{Document, Format, IngestError, Limits};

/// Elements whose content is not text a reader sees.
const SKIPPED: [&str; 9] = ["script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object"];

/// Elements that end a paragraph where they open and close.
const BLOCKS: [&str; 33] = [
    "p",
    "div",
    "section",
    "article",
    "header",
    "footer",
    "main",
    "nav",
    "aside",
    "blockquote",
    "pre",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "tbody",
    "figure",
    "figcaption",
    "address",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "tr",
    "caption",
    "form",
    "fieldset",
    "details",
];

pub(crate) fn ingest_html(text: &str, limits: &Limits) -> Result<Document, IngestError> {
    // The parser's work grows with the square of the nesting depth: refuse absurd nesting first.
    let depth = nesting_depth(text);
    if depth > limits.max_nesting_depth {
        return Err(IngestError::TooDeep { depth, limit: limits.max_nesting_depth });
    }
    let html = Html::parse_document(text);
    let title = html
        .root_element()
        .descendants()
        .find_map(|n| n.value().as_element().filter(|e| e.name() == "title").and(Some(n)))
        .map(|n| {
            collapse(&n.descendants().filter_map(|d| d.value().as_text().map(|t| t.to_string())).collect::<String>())
        })
        .filter(|t| !t.is_empty());
    let blocks = read_blocks(&html);
    if blocks.iter().all(|b| matches!(b, Block::Paragraph { text, .. } if text.trim().is_empty())) {
        return Err(IngestError::NoContent("the HTML page has no visible text".into()));
    }
    let units = sections(blocks, limits)?;
    Ok(Document { format: Format::Html, units, title, language: None, encoding: None })
}

/// Elements without content, and elements the parser closes when a sibling starts (a page of
/// unclosed `<p>` or `<li>` is flat, not deep): neither adds depth.
const FLAT: [&str; 31] = [
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr", "p",
    "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "rb", "rt", "rp", "tbody", "thead", "tfoot", "colgroup",
    "caption",
];

/// The deepest element nesting in the markup, by a scan of its tags (comments, doctypes and the
/// raw text of scripts and styles skipped). It overestimates pages that leave elements open
/// (which the parser closes), never underestimates deep ones.
fn nesting_depth(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while let Some(offset) = memchr_lt(&bytes[i..]) {
        i += offset + 1;
        if bytes[i..].starts_with(b"!--") {
            i = find(bytes, i, b"-->").map_or(bytes.len(), |end| end + 3);
            continue;
        }
        let closing = bytes.get(i) == Some(&b'/');
        let start = if closing { i + 1 } else { i };
        let name_end =
            bytes[start..].iter().position(|b| !b.is_ascii_alphanumeric()).map_or(bytes.len(), |p| start + p);
        if name_end == start {
            continue;
        }
        let name = text[start..name_end].to_ascii_lowercase();
        let tag_end = find(bytes, name_end, b">").unwrap_or(bytes.len());
        if closing {
            if !FLAT.contains(&name.as_str()) {
                depth = depth.saturating_sub(1);
            }
        } else if !FLAT.contains(&name.as_str()) && !bytes[..tag_end].ends_with(b"/") {
            depth += 1;
            deepest = deepest.max(depth);
            if name == "script" || name == "style" {
                // Their content is raw text, tags and all, up to the end tag.
                let end_tag = format!("</{name}");
                i = find_ignore_case(bytes, tag_end, end_tag.as_bytes()).unwrap_or(bytes.len());
                continue;
            }
        }
        i = tag_end.min(bytes.len());
    }
    deepest
}

fn memchr_lt(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'<')
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| from + p)
}

fn find_ignore_case(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes.get(from..)?.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle)).map(|p| from + p)
}

/// Whitespace runs as one space, trimmed (how a browser lays out text outside `pre`).
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Default)]
struct Walker {
    blocks: Vec<Block>,
    paragraph: String,
    heading: bool,
    skip_depth: usize,
    pre_depth: usize,
    table_depth: usize,
    rows: Vec<Vec<String>>,
    cell: String,
    span: usize,
}

impl Walker {
    fn flush(&mut self) {
        let text = std::mem::take(&mut self.paragraph);
        let text = text.trim_matches(|c: char| c == ' ' || c == '\n').to_string();
        if self.table_depth > 0 {
            if !text.is_empty() {
                if !self.cell.is_empty() {
                    self.cell.push(' ');
                }
                self.cell.push_str(&text);
            }
        } else if !text.is_empty() {
            self.blocks.push(Block::Paragraph { text, heading: self.heading });
        }
        self.heading = false;
    }

    fn text(&mut self, text: &str) {
        if self.pre_depth > 0 {
            self.paragraph.push_str(text);
            return;
        }
        // Collapse whitespace across text nodes, as layout does.
        let starts_space = text.starts_with(char::is_whitespace);
        let ends_space = text.ends_with(char::is_whitespace);
        let words = collapse(text);
        if starts_space && !self.paragraph.is_empty() && !self.paragraph.ends_with([' ', '\n']) {
            self.paragraph.push(' ');
        }
        self.paragraph.push_str(&words);
        if ends_space && !words.is_empty() {
            self.paragraph.push(' ');
        }
    }

    fn open(&mut self, name: &str, element: &scraper::node::Element) {
        if SKIPPED.contains(&name) {
            self.skip_depth += 1;
            return;
        }
        if self.skip_depth > 0 {
            return;
        }
        if BLOCKS.contains(&name) {
            self.flush();
        }
        match name {
            "br" => self.paragraph.push('\n'),
            "pre" => self.pre_depth += 1,
            // List items stay in one paragraph, one per line.
            "li" => {
                if !self.paragraph.trim().is_empty() {
                    self.paragraph.push('\n');
                }
                self.paragraph.push_str("- ");
            }
            // Top-level headings start sections; lower ones are paragraphs of their section.
            "h1" | "h2" => self.heading = self.table_depth == 0,
            "table" => {
                self.table_depth += 1;
                if self.table_depth == 1 {
                    self.rows.clear();
                }
            }
            "tr" if self.table_depth == 1 => self.rows.push(Vec::new()),
            "td" | "th" if self.table_depth == 1 => {
                self.flush();
                self.cell.clear();
                self.span = element.attr("colspan").and_then(|v| v.trim().parse().ok()).unwrap_or(1).clamp(1, 64);
            }
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        if SKIPPED.contains(&name) {
            self.skip_depth = self.skip_depth.saturating_sub(1);
            return;
        }
        if self.skip_depth > 0 {
            return;
        }
        match name {
            "pre" => self.pre_depth = self.pre_depth.saturating_sub(1),
            "td" | "th" if self.table_depth == 1 => {
                self.flush();
                let cell = std::mem::take(&mut self.cell);
                if self.rows.is_empty() {
                    // A cell outside any row (a lenient table): it starts one.
                    self.rows.push(Vec::new());
                }
                if let Some(row) = self.rows.last_mut() {
                    row.push(cell);
                    row.extend(std::iter::repeat_n(String::new(), self.span - 1));
                }
            }
            "table" => {
                self.flush();
                self.table_depth = self.table_depth.saturating_sub(1);
                if self.table_depth == 0 {
                    let rows: Vec<Vec<String>> =
                        std::mem::take(&mut self.rows).into_iter().filter(|r| !r.is_empty()).collect();
                    if !rows.is_empty() {
                        self.blocks.push(Block::Table(rows));
                    }
                }
                return;
            }
            _ => {}
        }
        if BLOCKS.contains(&name) {
            self.flush();
        }
    }
}

fn read_blocks(html: &Html) -> Vec<Block> {
    let mut walker = Walker::default();
    for edge in html.tree.root().traverse() {
        match edge {
            Edge::Open(node) => match node.value() {
                Node::Element(element) => walker.open(element.name(), element),
                Node::Text(text) if walker.skip_depth == 0 => walker.text(text),
                _ => {}
            },
            Edge::Close(node) => {
                if let Node::Element(element) = node.value() {
                    walker.close(element.name());
                }
            }
        }
    }
    walker.flush();
    walker.blocks
}

/// Whether decoded text is an HTML document: a doctype or an `<html>`/`<head>`/`<body>` tag at
/// the start (after whitespace and comments).
pub(crate) fn looks_like_html(text: &str) -> bool {
    let head: String =
        text.trim_start_matches('\u{feff}').trim_start().chars().take(1024).collect::<String>().to_lowercase();
    head.starts_with("<!doctype html")
        || head.starts_with("<html")
        || (head.starts_with("<!--") || head.starts_with("<?xml")) && head.contains("<html")
        || head.starts_with("<head") && head.contains("<body")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UnitKind;

    const PAGE: &str = r#"<!DOCTYPE html>
<html lang="ja"><head><title> 月次 報告 </title><style>p { color: red }</style>
<script>var hidden = "not text";</script></head>
<body>
  <h1>売上の概要</h1>
  <p>四月の売上は   前年比 <b>103%</b>でした。<br>詳細は下表。</p>
  <table>
    <tr><th>月</th><th colspan="2">売上高</th></tr>
    <tr><td>4月</td><td>12,850</td><td>千円</td></tr>
  </table>
  <h2>Risks</h2>
  <ul><li>Supply</li><li>Rates</li></ul>
  <pre>  keep   spacing</pre>
</body></html>"#;

    #[test]
    fn headings_paragraphs_tables_and_lists() {
        let doc = ingest_html(PAGE, &Limits::default()).unwrap();
        assert_eq!(doc.format, Format::Html);
        assert_eq!(doc.title.as_deref(), Some("月次 報告"));
        let titles: Vec<&str> = doc.units.iter().map(|u| u.title.as_str()).collect();
        assert_eq!(titles, ["売上の概要", "Risks"]);
        assert!(doc.units.iter().all(|u| u.kind == UnitKind::Section));
        let first = &doc.units[0].text;
        assert!(first.contains("四月の売上は 前年比 103%でした。\n詳細は下表。"), "{first}");
        assert!(first.contains("| 月 | 売上高 |  |\n| --- | --- | --- |\n| 4月 | 12,850 | 千円 |"), "{first}");
        assert!(!first.contains("not text") && !first.contains("color"), "{first}");
        let second = &doc.units[1].text;
        assert!(second.contains("- Supply\n- Rates"), "{second}");
        assert!(second.contains("keep   spacing"), "{second}");
    }

    #[test]
    fn detection_and_empty_pages() {
        assert!(looks_like_html(PAGE));
        assert!(looks_like_html("\u{feff}  <html><body>x</body></html>"));
        assert!(!looks_like_html("a,b\n1,2\n"));
        assert!(!looks_like_html("# Title\n\n<b>inline</b> markdown"));
        let empty = ingest_html("<html><head><script>x()</script></head><body> </body></html>", &Limits::default());
        assert!(matches!(empty, Err(IngestError::NoContent(_))), "{empty:?}");
    }

    #[test]
    fn nesting_is_measured_and_bounded() {
        assert_eq!(nesting_depth("<html><body><div><p>a<p>b<br><img src=x></div></body></html>"), 3);
        assert_eq!(nesting_depth("<ul><li>a<li>b</ul><script>if (a<b) { \"<div><div>\" }</script><!-- <div> -->"), 1);
        assert_eq!(nesting_depth("<div/><DIV></div>"), 1);
        // Deep but within the limit: read, without exhausting the stack (the walk is iterative).
        let depth = 2_000;
        let page = format!("<html><body>{}deep{}</body></html>", "<div>".repeat(depth), "</div>".repeat(depth));
        let doc = ingest_html(&page, &Limits::default()).unwrap();
        assert_eq!(doc.units[0].text, "deep");
        // Beyond it: refused before parsing (the parser's time grows with the square of depth).
        let page = format!("<html><body>{}deep</body></html>", "<div>".repeat(1_000_000));
        let error = ingest_html(&page, &Limits::default()).unwrap_err();
        assert!(matches!(error, IngestError::TooDeep { limit: 5_000, .. }), "{error}");
        assert!(error.to_string().contains("limits.max_nesting_depth"), "{error}");
    }
}
