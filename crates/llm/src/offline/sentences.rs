//! Paragraphs and sentences of a unit's prose.
//!
//! PDF text comes with hard line breaks inside paragraphs. Lines are joined back into paragraphs
//! before splitting: a line that does not end a sentence is continued by the next one when the
//! next starts in lowercase, when the line is nearly as long as the longest line (a wrapped line),
//! or, in CJK text, always (Japanese paragraphs end with 。).

use std::sync::LazyLock;

use regex::Regex;

use super::headings::ends_sentence;
use super::layout::{Layout, LineKind};
use super::script::{is_hiragana, is_wide, normalize_char};

/// One sentence of prose and where it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sentence {
    pub text: String,
    /// Index of its paragraph among the unit's paragraphs.
    pub paragraph: usize,
    /// Whether it opens its paragraph.
    pub first_in_paragraph: bool,
}

/// Sentences longer than this are cut (at a space when there is one) so that a text without
/// punctuation does not become one giant "sentence".
const MAX_SENTENCE_CHARS: usize = 600;

/// Abbreviations after which a period never ends a sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "gen", "rep", "sen", "gov", "capt", "lt", "col", "mt", "fig",
    "figs", "no", "nos", "vol", "vols", "p", "pp", "ch", "sec", "eq", "ref", "approx", "dept", "est", "vs", "cf", "al",
    "e.g", "i.e", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "a.m",
    "p.m", "op", "cit", "ibid", "viz", "min", "max", "tel", "ext", "art", "para",
];

/// Abbreviations that may also end a sentence: a split happens when a capital letter follows.
const SOFT_ABBREVIATIONS: &[&str] = &["etc", "inc", "ltd", "co", "corp", "llc", "plc", "gmbh"];

static MD_LINK: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"!?\[([^\]]*)\]\([^)]*\)").expect("valid link pattern"));

/// Bullet marks that start a list item.
fn strip_bullet(line: &str) -> Option<&str> {
    let t = line.trim_start();
    for mark in ["- ", "* ", "+ ", "• ", "● ", "○ ", "◦ ", "‣ ", "– "] {
        if let Some(rest) = t.strip_prefix(mark) {
            return Some(rest);
        }
    }
    for mark in ['・', '●', '○', '•'] {
        if let Some(rest) = t.strip_prefix(mark) {
            return Some(rest.trim_start());
        }
    }
    // `1. item` / `2) item`
    let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
    if (1..=2).contains(&digits) {
        let rest = &t[digits..];
        if let Some(r) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return Some(r);
        }
    }
    None
}

/// Inline Markdown removed from prose: links become their text, emphasis and code marks go.
fn clean_inline(text: &str) -> String {
    let text = MD_LINK.replace_all(text, "$1");
    text.replace("**", "").replace("__", "").replace('`', "")
}

/// Join two pieces of a paragraph: no space between East Asian characters.
fn join(paragraph: &mut String, next: &str) {
    let next = next.trim();
    if paragraph.is_empty() {
        paragraph.push_str(next);
        return;
    }
    let last = paragraph.chars().last();
    let first = next.chars().next();
    // A word hyphenated across lines: "infor-" + "mation".
    if last == Some('-')
        && first.is_some_and(|c| c.is_lowercase())
        && paragraph.chars().rev().nth(1).is_some_and(|c| c.is_alphabetic())
    {
        paragraph.pop();
        paragraph.push_str(next);
        return;
    }
    if !(last.is_some_and(is_wide) || first.is_some_and(is_wide)) {
        paragraph.push(' ');
    }
    paragraph.push_str(next);
}

/// The unit's paragraphs, from its text lines minus the lines in `skip` (headings, fields).
pub(crate) fn paragraphs(layout: &Layout, skip: &[bool]) -> Vec<String> {
    let lines = &layout.lines;
    let longest =
        lines.iter().filter(|l| l.kind == LineKind::Text).map(|l| l.text.trim().chars().count()).max().unwrap_or(0);
    let mut paragraphs = Vec::new();
    let mut current = String::new();
    let mut previous_line: Option<&str> = None;
    let flush = |current: &mut String, paragraphs: &mut Vec<String>| {
        let p = clean_inline(current.trim());
        if p.chars().any(char::is_alphanumeric) {
            paragraphs.push(p);
        }
        current.clear();
    };
    for (i, line) in lines.iter().enumerate() {
        if line.kind != LineKind::Text || skip.get(i).copied().unwrap_or(false) {
            flush(&mut current, &mut paragraphs);
            previous_line = None;
            continue;
        }
        let text = line.text.trim();
        let (text, is_item) = match strip_bullet(text) {
            Some(rest) => (rest.trim(), true),
            None => (text.trim_start_matches('>').trim(), false),
        };
        let continues = !is_item && previous_line.is_some_and(|prev| continues_paragraph(prev, text, longest));
        if !continues {
            flush(&mut current, &mut paragraphs);
        }
        join(&mut current, text);
        previous_line = Some(text);
    }
    flush(&mut current, &mut paragraphs);
    paragraphs
}

fn continues_paragraph(previous: &str, next: &str, longest: usize) -> bool {
    let (Some(last), Some(first)) = (previous.chars().last(), next.chars().next()) else {
        return false;
    };
    let length = previous.chars().count();
    // A line as long as the longest ones was wrapped by the layout, even when it happens to end
    // at the end of a sentence.
    let wrapped = longest >= 40 && length * 10 >= longest * 7;
    if ends_sentence(previous) {
        return wrapped && !is_wide(last);
    }
    if first.is_lowercase() || matches!(first, ',' | ';' | ')' | '、' | '，' | '）') {
        return true;
    }
    if is_wide(last) || is_wide(first) {
        // Japanese: a line not ending in 。 goes on when it stops mid-clause (、) or was
        // wrapped; short lines (form rows like `小計 ¥115,000`) stand alone.
        let cjk_wrapped = longest >= 20 && length * 10 >= longest * 6;
        return matches!(last, '、' | '，' | ',') || cjk_wrapped;
    }
    wrapped
}

/// Split a paragraph into sentences.
pub(crate) fn split(paragraph: &str) -> Vec<String> {
    let chars: Vec<char> = paragraph.chars().collect();
    let n = chars.len();
    let mut sentences = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < n {
        let c = normalize_char(chars[i]);
        let boundary = match c {
            '。' | '！' | '？' => true,
            '!' | '?' => chars[i] != c || next_is_break(&chars, i + 1),
            // `．` in Japanese text is a full stop unless it sits between digits.
            '.' if chars[i] == '．' => {
                !chars.get(i + 1).is_some_and(|d| d.is_ascii_digit() || ('０'..='９').contains(d))
            }
            '.' => period_ends_sentence(&chars, i),
            _ => false,
        };
        if boundary {
            let mut end = i + 1;
            while end < n && is_closer_or_terminator(chars[end]) {
                end += 1;
            }
            // 「はい。」と答えた。: a quotation closed and followed by a particle goes on.
            if end > i + 1 && matches!(chars[end - 1], '」' | '』') && chars.get(end).copied().is_some_and(is_hiragana)
            {
                i = end;
                continue;
            }
            push_sentence(&chars[start..end], &mut sentences);
            start = end;
            i = end;
        } else {
            i += 1;
        }
    }
    if start < n {
        push_sentence(&chars[start..], &mut sentences);
    }
    sentences
}

fn is_closer_or_terminator(c: char) -> bool {
    matches!(c, '"' | '\'' | '”' | '’' | ')' | '）' | '」' | '』' | ']' | '】' | '。' | '！' | '？' | '!' | '?' | '.')
}

/// Whether position `i` (after any closers) is followed by whitespace, the end, or wide text.
fn next_is_break(chars: &[char], i: usize) -> bool {
    let mut k = i;
    while k < chars.len() && is_closer_or_terminator(chars[k]) {
        k += 1;
    }
    k >= chars.len() || chars[k].is_whitespace() || is_wide(chars[k])
}

fn period_ends_sentence(chars: &[char], i: usize) -> bool {
    if !next_is_break(chars, i + 1) {
        // `3.5`, `e.g.x`, `file.txt`
        return false;
    }
    // The token before the period, e.g. `Dr`, `e.g`, `(approx`.
    let mut k = i;
    while k > 0 && i - k < 20 && !chars[k - 1].is_whitespace() {
        k -= 1;
    }
    let token: String = chars[k..i].iter().skip_while(|c| !c.is_alphanumeric()).collect::<String>().to_lowercase();
    let next_word = chars[i + 1..].iter().find(|c| !c.is_whitespace() && !is_closer_or_terminator(**c)).copied();
    if next_word.is_some_and(|c| c.is_lowercase()) {
        return false;
    }
    if ABBREVIATIONS.contains(&token.as_str()) {
        return false;
    }
    // A single initial: `J. Smith`.
    let token_chars: Vec<char> = chars[k..i].iter().copied().filter(|c| c.is_alphabetic()).collect();
    if token_chars.len() == 1 && token_chars[0].is_uppercase() && i - k == 1 {
        return false;
    }
    if SOFT_ABBREVIATIONS.contains(&token.as_str()) {
        return next_word.is_none_or(|c| c.is_uppercase() || is_wide(c));
    }
    true
}

fn push_sentence(chars: &[char], out: &mut Vec<String>) {
    let text: String = chars.iter().collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = match text.char_indices().nth(MAX_SENTENCE_CHARS) {
        Some((cut, _)) => {
            let head = &text[..cut];
            let at = head.rfind(' ').filter(|&p| p > cut / 2).unwrap_or(cut);
            format!("{}…", &text[..at])
        }
        None => text,
    };
    // Page numbers (`- 8 -`) and stray figures are not sentences.
    if text.chars().any(char::is_alphabetic) {
        out.push(text);
    }
}

/// The sentences of all paragraphs, with their positions.
pub(crate) fn sentences(paragraphs: &[String]) -> Vec<Sentence> {
    let mut out = Vec::new();
    for (p, paragraph) in paragraphs.iter().enumerate() {
        for (k, text) in split(paragraph).into_iter().enumerate() {
            out.push(Sentence { text, paragraph: p, first_in_paragraph: k == 0 });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_abbreviations_and_decimals() {
        let s = split("Dr. Smith paid $3.50 for e.g. apples. Growth was 3.5 percent! Was it? Yes.");
        assert_eq!(s, vec!["Dr. Smith paid $3.50 for e.g. apples.", "Growth was 3.5 percent!", "Was it?", "Yes."]);
        let s = split("We met J. Smith at Acme Inc. The meeting went well, etc. and more. Fig. 3 shows it.");
        assert_eq!(
            s,
            vec!["We met J. Smith at Acme Inc.", "The meeting went well, etc. and more.", "Fig. 3 shows it."]
        );
    }

    #[test]
    fn japanese_sentences() {
        let s = split("請求書を発行した。支払期日は4月30日です！確認しましたか？「はい。」と答えた。");
        assert_eq!(
            s,
            vec!["請求書を発行した。", "支払期日は4月30日です！", "確認しましたか？", "「はい。」と答えた。"]
        );
        assert_eq!(split("金額は１２．５万円です．以上"), vec!["金額は１２．５万円です．", "以上"]);
    }

    #[test]
    fn joins_lines_broken_inside_paragraphs() {
        let text = "The system processes documents in\nparallel and writes a report.\nIt is fast.\n\n\
                    本システムは文書を並列に処理し、\n結果を統合する。\n次の段落。\n\n\
                    BEACONはアップロードされた文書を単位に分割して各単位を解析し\n結果を統合する。\n\n\
                    小計 ¥115,000\n合計 ¥126,500";
        let layout = Layout::parse(text);
        let ps = paragraphs(&layout, &[]);
        assert_eq!(
            ps,
            vec![
                "The system processes documents in parallel and writes a report.",
                "It is fast.",
                "本システムは文書を並列に処理し、結果を統合する。",
                "次の段落。",
                "BEACONはアップロードされた文書を単位に分割して各単位を解析し結果を統合する。",
                "小計 ¥115,000",
                "合計 ¥126,500"
            ]
        );
    }

    #[test]
    fn wrapped_pdf_lines_with_capitals_and_hyphens() {
        let text = "The quarterly report was prepared by the finance team with help from\n\
                    Acme Corporation and describes the infor-\nmation systems in use today.\nShort line\nAnother";
        let ps = paragraphs(&Layout::parse(text), &[]);
        assert_eq!(
            ps[0],
            "The quarterly report was prepared by the finance team with help from Acme Corporation and describes the information systems in use today."
        );
        assert_eq!(ps.len(), 3);
    }

    #[test]
    fn bullets_are_paragraphs_and_long_text_is_cut() {
        let ps = paragraphs(&Layout::parse("- first item\n- second item\n・三番目"), &[]);
        assert_eq!(ps, vec!["first item", "second item", "三番目"]);
        let long = "word ".repeat(1000);
        let s = split(&long);
        assert_eq!(s.len(), 1);
        assert!(s[0].chars().count() <= MAX_SENTENCE_CHARS + 1);
    }
}
