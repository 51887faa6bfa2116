//! Section headings: Markdown headings, numbered headings (`2.3 Results`, `第2章 概要`, `（１）`,
//! `１．概要`), bracketed or marked headings (`【概要】`, `■ 目的`), and short stand-alone lines
//! followed by body text. Conservative: a line is a heading only when its form says so.

use std::sync::LazyLock;

use regex::Regex;

use super::layout::{Layout, LineKind, strip_markup};
use super::script::{is_cjk_line, is_latin_letter, normalize};

/// A heading and the line it is on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Heading {
    pub line: usize,
    pub text: String,
}

fn re(pattern: &str) -> Regex {
    // The patterns are constants covered by tests; a failure here is a programming error.
    Regex::new(pattern).expect("valid heading pattern")
}

static ATX: LazyLock<Regex> = LazyLock::new(|| re(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$"));
/// `2.3 Results`, `1.2.1. Scope`, `１．２ 概要` (after normalisation).
static MULTI_LEVEL: LazyLock<Regex> = LazyLock::new(|| re(r"^(\d{1,2}(?:\.\d{1,2}){1,3})\.?\s*(\S.*)$"));
/// `1. Introduction`, `1) Scope`, `１．概要`, `1 Introduction`.
static SINGLE_LEVEL: LazyLock<Regex> = LazyLock::new(|| re(r"^(\d{1,2})(?:[.)]\s*|\s+)(\S.*)$"));
/// `II. Methods`.
static ROMAN: LazyLock<Regex> = LazyLock::new(|| re(r"^[IVX]{1,5}\.\s+(\S.*)$"));
/// `第2章 結果`, `第３節`, `第十条（目的）`.
static CHAPTER: LazyLock<Regex> = LazyLock::new(|| re(r"^第\s*[0-9一二三四五六七八九十百〇零]+\s*[章節部編条項款回]"));
/// `（１）目的`, `(2) 範囲`, `（三）`, `① 概要`, `一、概要`.
static ENUMERATED: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:\(\s*(?:\d{1,2}|[一二三四五六七八九十]{1,3})\s*\)|[\x{2460}-\x{2473}]|[一二三四五六七八九十]{1,3}、)\s*(\S.*)$",
    )
});
/// `【概要】` alone on its line.
static BRACKETED: LazyLock<Regex> = LazyLock::new(|| re(r"^【[^】]{1,30}】$"));
/// `■ 目的`, `◆概要`.
static MARKED: LazyLock<Regex> = LazyLock::new(|| re(r"^[■□◆◇▼▶]\s*(\S.*)$"));
/// `**Overview**` alone on its line.
static BOLD: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:\*\*([^*]{1,80})\*\*|__([^_]{1,80})__)\s*:?$"));

/// Words that stay lowercase in Title Case.
const SMALL_WORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "nor", "but", "of", "in", "on", "for", "to", "with", "at", "by", "from", "vs",
    "via", "per", "as", "into", "over",
];

/// Final characters that mark a line as prose rather than a heading.
const FINAL_PUNCTUATION: &[char] = &['.', ',', ';', ':', '!', '?', '。', '、', '，', '：', '；', '！', '？', '…'];

pub(crate) fn ends_with_punctuation(text: &str) -> bool {
    text.trim_end().chars().last().is_some_and(|c| FINAL_PUNCTUATION.contains(&c))
}

/// Sentence-final punctuation, looking through closing quotes and brackets.
pub(crate) fn ends_sentence(text: &str) -> bool {
    let last = text
        .trim_end()
        .chars()
        .rev()
        .find(|c| !matches!(c, '"' | '\'' | '”' | '’' | ')' | '）' | '」' | '』' | ']' | '】'));
    matches!(last, Some('.' | '!' | '?' | '。' | '！' | '？' | '…' | '．'))
}

/// Title Case (`Results and Discussion`) or ALL CAPS (`INVOICE`), at most `max_words` words.
pub(crate) fn is_title_case(text: &str, max_words: usize) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || words.len() > max_words {
        return false;
    }
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.len() >= 2 && letters.iter().all(|c| !c.is_lowercase()) {
        return true;
    }
    let first = words[0].chars().find(|c| c.is_alphabetic());
    if !first.is_some_and(|c| c.is_uppercase()) {
        return false;
    }
    let significant: Vec<&&str> = words
        .iter()
        .filter(|w| {
            w.chars().next().is_some_and(|c| c.is_alphabetic()) && !SMALL_WORDS.contains(&w.to_lowercase().as_str())
        })
        .collect();
    let capitalised = significant.iter().filter(|w| w.chars().next().is_some_and(|c| c.is_uppercase())).count();
    !significant.is_empty() && capitalised * 10 >= significant.len() * 7
}

fn has_letter(text: &str) -> bool {
    text.chars().any(char::is_alphabetic)
}

/// Whether the rest of a numbered or marked heading looks like a heading title.
fn heading_rest_ok(rest: &str, title_case_required: bool) -> bool {
    let rest = rest.trim();
    if rest.is_empty() || !has_letter(rest) || ends_with_punctuation(rest) {
        return false;
    }
    if is_cjk_line(rest) {
        rest.chars().count() <= 30 && !rest.contains('。')
    } else {
        let first_upper =
            rest.chars().find(|c| c.is_alphabetic()).is_some_and(|c| c.is_uppercase() || !is_latin_letter(c));
        rest.chars().count() <= 80
            && first_upper
            && (!title_case_required || is_title_case(rest, 6))
            && rest.split_whitespace().count() <= 10
    }
}

/// How sure a form is: `Strong` forms are headings wherever they are; `Listy` ones (`1. Install`)
/// only when they are not one item of a list.
#[derive(PartialEq)]
enum Form {
    Strong(String),
    Listy(String),
}

fn form(line: &str) -> Option<Form> {
    let trimmed = line.trim();
    if let Some(c) = ATX.captures(trimmed) {
        let text = strip_markup(c.get(1).map_or("", |m| m.as_str()));
        return (!text.is_empty()).then_some(Form::Strong(text));
    }
    if let Some(c) = BOLD.captures(trimmed) {
        let inner = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str()).trim();
        return (has_letter(inner)).then(|| Form::Strong(inner.to_string()));
    }
    let norm = normalize(trimmed);
    let as_written = collapse_spaces(trimmed);
    if BRACKETED.is_match(&norm) {
        return Some(Form::Strong(as_written));
    }
    if let Some(m) = CHAPTER.find(&norm) {
        let ok = norm.chars().count() <= 40 && !ends_with_punctuation(&norm) && m.end() > 0;
        return ok.then_some(Form::Strong(as_written));
    }
    if let Some(c) = MULTI_LEVEL.captures(&norm) {
        let top: u32 = c[1].split('.').next().and_then(|d| d.parse().ok()).unwrap_or(100);
        if top <= 50 && heading_rest_ok(&c[2], false) {
            return Some(Form::Strong(as_written));
        }
        return None;
    }
    if let Some(c) = MARKED.captures(&norm) {
        return (norm.chars().count() <= 40 && heading_rest_ok(&c[1], false)).then_some(Form::Strong(as_written));
    }
    if let Some(c) = ENUMERATED.captures(&norm) {
        return (norm.chars().count() <= 40 && heading_rest_ok(&c[1], true)).then_some(Form::Listy(as_written));
    }
    if let Some(c) = SINGLE_LEVEL.captures(&norm) {
        return heading_rest_ok(&c[2], true).then_some(Form::Listy(as_written));
    }
    if let Some(c) = ROMAN.captures(&norm) {
        return heading_rest_ok(&c[1], true).then_some(Form::Listy(as_written));
    }
    None
}

fn collapse_spaces(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a line starts like a list item (so a numbered line next to it is a list, not a heading).
fn is_list_item(line: &str) -> bool {
    let norm = normalize(line.trim());
    SINGLE_LEVEL.is_match(&norm)
        || ENUMERATED.is_match(&norm)
        || ROMAN.is_match(&norm)
        || norm.starts_with(['-', '*', '+', '•', '・', '●', '○'])
}

/// Whether a line reads as body text: a sentence, or long.
fn is_body(line: &str) -> bool {
    let chars = line.trim().chars().count();
    ends_sentence(line) || chars >= if is_cjk_line(line) { 25 } else { 40 }
}

/// A short stand-alone line: `Background`, `Payment Terms`, `INVOICE`, `スロットリング対策`.
fn is_standalone_title(line: &str) -> bool {
    let t = line.trim();
    let chars = t.chars().count();
    if chars < 2 || !has_letter(t) || ends_with_punctuation(t) || t.contains(['|', '：']) {
        return false;
    }
    if t.contains(": ") || t.starts_with(['-', '*', '+', '•', '・', '●', '(', '[', '>', '!']) {
        return false;
    }
    if is_cjk_line(t) { chars <= 25 && !t.contains(['。', '、']) } else { chars <= 60 && is_title_case(t, 8) }
}

/// The headings of a unit, in reading order, each once per line.
pub(crate) fn detect(layout: &Layout) -> Vec<Heading> {
    let mut headings = Vec::new();
    let lines = &layout.lines;
    for (i, line) in lines.iter().enumerate() {
        if line.kind != LineKind::Text {
            continue;
        }
        let next = lines.get(i + 1);
        if next.is_some_and(|l| l.kind == LineKind::Underline) {
            let text = strip_markup(line.text);
            if has_letter(&text) && text.chars().count() <= 100 && !ends_with_punctuation(&text) {
                headings.push(Heading { line: i, text });
            }
            continue;
        }
        let previous = layout.previous_non_blank(i).map(|k| &lines[k]);
        let following = layout.next_non_blank(i).map(|k| &lines[k]);
        match form(line.text) {
            Some(Form::Strong(text)) => headings.push(Heading { line: i, text }),
            Some(Form::Listy(text)) => {
                let in_list =
                    [previous, following].iter().flatten().any(|l| l.kind == LineKind::Text && is_list_item(l.text));
                let body_follows = following.is_some_and(|l| {
                    matches!(l.kind, LineKind::Table(_)) || (l.kind == LineKind::Text && form(l.text).is_none())
                });
                if !in_list && body_follows {
                    headings.push(Heading { line: i, text });
                }
            }
            None => {
                if !is_standalone_title(line.text) {
                    continue;
                }
                // Stand-alone: starts a block (after a blank line, a sentence or a heading) and
                // is followed by body text or a table.
                let starts_block = i == 0
                    || lines[i - 1].kind != LineKind::Text
                    || ends_sentence(lines[i - 1].text)
                    || headings.last().is_some_and(|h: &Heading| h.line + 1 == i);
                // Body text, a table, or (for a block-opening line) a numbered or marked heading:
                // a document title above `1. Introduction`.
                let body_follows = following.is_some_and(|l| match l.kind {
                    LineKind::Table(_) => true,
                    LineKind::Text => match form(l.text) {
                        Some(_) => lines[i + 1..].first().is_some_and(|n| n.kind == LineKind::Blank) || i == 0,
                        None => is_body(l.text) && l.text.trim().chars().count() > line.text.trim().chars().count(),
                    },
                    _ => false,
                });
                if starts_block && body_follows {
                    headings.push(Heading { line: i, text: collapse_spaces(line.text) });
                }
            }
        }
    }
    headings
}

/// The unit's title: the first line when it is a heading or a short line without final
/// punctuation, else the first heading, else `None`. Returns the title's line too.
pub(crate) fn title(layout: &Layout, headings: &[Heading]) -> Option<(String, usize)> {
    let first = layout.lines.iter().position(|l| l.kind == LineKind::Text && has_letter(l.text));
    if let Some(i) = first {
        if let Some(h) = headings.iter().find(|h| h.line == i) {
            return Some((h.text.clone(), i));
        }
        let t = strip_markup(layout.lines[i].text);
        let short = if is_cjk_line(&t) {
            t.chars().count() <= 40
        } else {
            t.chars().count() <= 80 && t.split_whitespace().count() <= 12
        };
        let field_like = t.contains(": ") || t.contains('：') || t.starts_with('【');
        if short && !ends_with_punctuation(&t) && !field_like && !is_list_item(&t) {
            return Some((collapse_spaces(&t), i));
        }
    }
    headings.first().map(|h| (h.text.clone(), h.line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(content: &str) -> Vec<String> {
        detect(&Layout::parse(content)).into_iter().map(|h| h.text).collect()
    }

    #[test]
    fn markdown_and_setext_headings() {
        assert_eq!(
            texts("# Report\n\nSome text.\n\n## Results ##\nMore.\n\nSummary\n-------\nEnd."),
            vec!["Report", "Results", "Summary"]
        );
        assert_eq!(texts("#hashtag is not a heading"), Vec::<String>::new());
    }

    #[test]
    fn numbered_headings_english_and_japanese() {
        let en = "1. Introduction\nThis report covers the year.\n\n2.3 Results\nRevenue grew by 3.5 percent.";
        assert_eq!(texts(en), vec!["1. Introduction", "2.3 Results"]);
        let ja = "第1章 概要\n本書はBEACONの設計を説明する。\n\n１．目的\n処理を自動化する。\n（１）範囲\n対象は請求書である。";
        assert_eq!(texts(ja), vec!["第1章 概要", "１．目的", "（１）範囲"]);
    }

    #[test]
    fn lists_and_sentences_are_not_headings() {
        assert!(texts("1. Install\n2. Configure\n3. Run").is_empty());
        assert!(texts("1. Open the file and check it.\nThen close it.").is_empty());
        assert!(texts("3.5 million users joined.\nThat is a lot.").is_empty());
        assert!(texts("The year 2026 was good\nfor everyone involved in the project.").is_empty());
    }

    #[test]
    fn standalone_and_marked_headings() {
        let text = "Payment Terms\nThe invoice is payable within thirty days of receipt.\n\n【概要】\n■ 目的\nスロットリング対策\n指数バックオフリトライで再試行する仕組みを説明する。";
        assert_eq!(texts(text), vec!["Payment Terms", "【概要】", "■ 目的", "スロットリング対策"]);
    }

    #[test]
    fn title_prefers_first_line() {
        let layout = Layout::parse("INVOICE\nInvoice No: INV-2026-001\n\n## Items\ntext.");
        let hs = detect(&layout);
        assert_eq!(title(&layout, &hs), Some(("INVOICE".to_string(), 0)));
        let layout = Layout::parse("This is a sentence.\n\n## Items\ntext.");
        let hs = detect(&layout);
        assert_eq!(title(&layout, &hs), Some(("Items".to_string(), 2)));
        let layout = Layout::parse("| a | b |\n|---|---|\n| 1 | 2 |");
        assert_eq!(title(&layout, &detect(&layout)), None);
    }
}
