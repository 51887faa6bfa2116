//! The simulated model: a deterministic, extractive "analysis" of the prompt's content.
//!
//! BEACON asks the model for a JSON object following the unit schema
//! (`crates/pipeline/schemas/unit-result.schema.json`, where only `summary` is required). The
//! simulator answers every request with such an object, built from the text of the last user
//! message, so that pipelines run end to end against it and produce plausible reports:
//!
//! - the content is whatever follows a line `--- CONTENT ---`, or the whole message without one;
//! - `title` is the first non-empty line of the content (at most 80 characters);
//! - `summary` is the first sentence(s) of the remaining lines, up to about 200 characters;
//! - `key_points` are up to 3 further non-empty lines;
//! - `language` is `ja` when the content contains kana, `en` otherwise.

use serde::Serialize;

/// The line that separates the instruction from the content in BEACON's prompts.
pub const CONTENT_MARKER: &str = "--- CONTENT ---";

const TITLE_MAX_CHARS: usize = 80;
const SUMMARY_MAX_CHARS: usize = 200;
const KEY_POINT_MAX_CHARS: usize = 200;
const MAX_KEY_POINTS: usize = 3;

/// The answer's JSON object (a subset of the unit-result schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitAnswer {
    pub title: String,
    pub summary: String,
    pub key_points: Vec<String>,
    pub language: String,
}

impl UnitAnswer {
    /// Analyses the text of a prompt (the last user message).
    pub fn from_prompt(prompt: &str) -> UnitAnswer {
        let content = content_of(prompt);
        let lines: Vec<&str> = content.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
        let title = lines
            .first()
            .map(|line| truncate_chars(line.trim_start_matches('#').trim(), TITLE_MAX_CHARS))
            .unwrap_or_default();
        // A one-line content is its own summary; otherwise the title line is not repeated.
        let body = if lines.len() > 1 { &lines[1..] } else { &lines[..] };
        let (summary, lines_used) = summarize(body);
        let key_points = body[lines_used..]
            .iter()
            .take(MAX_KEY_POINTS)
            .map(|line| truncate_chars(line, KEY_POINT_MAX_CHARS))
            .collect();
        let language = if content.chars().any(is_kana) { "ja" } else { "en" };
        UnitAnswer { title, summary, key_points, language: language.to_string() }
    }

    /// The answer as compact JSON, as a model would write it.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings cannot fail; the fallback keeps this total anyway.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"summary\":\"\"}"))
    }
}

/// The part of a prompt after the content marker line, or the whole prompt without one.
pub fn content_of(prompt: &str) -> &str {
    let mut offset = 0;
    for line in prompt.split_inclusive('\n') {
        offset += line.len();
        if line.trim() == CONTENT_MARKER {
            return &prompt[offset..];
        }
    }
    prompt
}

/// Joins the first sentences of `lines` up to [`SUMMARY_MAX_CHARS`]; also returns how many lines
/// the summary drew from (so that key points start after them).
fn summarize(lines: &[&str]) -> (String, usize) {
    let mut summary = String::new();
    let mut summary_chars = 0;
    let mut lines_used = 0;
    'lines: for (index, line) in lines.iter().enumerate() {
        for sentence in sentences(line) {
            let sentence_chars = sentence.chars().count();
            if summary.is_empty() {
                summary = truncate_chars(sentence, SUMMARY_MAX_CHARS);
                summary_chars = summary.chars().count();
            } else {
                let separator = if summary.ends_with('。') { "" } else { " " };
                if summary_chars + separator.len() + sentence_chars > SUMMARY_MAX_CHARS {
                    break 'lines;
                }
                summary.push_str(separator);
                summary.push_str(sentence);
                summary_chars += separator.len() + sentence_chars;
            }
            lines_used = index + 1;
        }
    }
    (summary, lines_used)
}

/// Splits one line into sentences, keeping the terminators. A `.` ends a sentence only before
/// whitespace or the end of the line, so that `3.5` and `example.com` stay whole.
fn sentences(line: &str) -> Vec<&str> {
    let mut result = Vec::new();
    let mut start = 0;
    let mut chars = line.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        let ends_sentence = match c {
            '。' | '！' | '？' | '!' | '?' => true,
            '.' => chars.peek().is_none_or(|(_, next)| next.is_whitespace()),
            _ => false,
        };
        if ends_sentence {
            let end = index + c.len_utf8();
            let sentence = line[start..end].trim();
            if !sentence.is_empty() {
                result.push(sentence);
            }
            start = end;
        }
    }
    let rest = line[start..].trim();
    if !rest.is_empty() {
        result.push(rest);
    }
    result
}

fn truncate_chars(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((byte_index, _)) => format!("{}…", &text[..byte_index]),
        None => text.to_string(),
    }
}

fn is_kana(c: char) -> bool {
    matches!(c, '\u{3040}'..='\u{30FF}' | '\u{31F0}'..='\u{31FF}' | '\u{FF66}'..='\u{FF9F}')
}

/// Whether a character counts as one token on its own in [`estimate_tokens`]: kana, CJK
/// ideographs, Hangul, CJK punctuation and full-width forms.
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3000}'..='\u{303F}'     // CJK symbols and punctuation
        | '\u{3040}'..='\u{30FF}'   // hiragana, katakana
        | '\u{31F0}'..='\u{31FF}'   // katakana phonetic extensions
        | '\u{3400}'..='\u{4DBF}'   // CJK extension A
        | '\u{4E00}'..='\u{9FFF}'   // CJK unified ideographs
        | '\u{AC00}'..='\u{D7AF}'   // Hangul syllables
        | '\u{F900}'..='\u{FAFF}'   // CJK compatibility ideographs
        | '\u{FF00}'..='\u{FFEF}'   // half-width and full-width forms
        | '\u{20000}'..='\u{2FFFF}' // CJK extensions B and later
    )
}

/// A rough token count, good enough for a simulator's `usage`: one token per CJK character
/// (kana, ideographs, Hangul, full-width forms) plus one per four other characters, rounded up.
///
/// Real tokenizers differ by model; this only has to be deterministic and of the right order of
/// magnitude so that token-per-minute arithmetic and reports look realistic.
///
/// ```
/// assert_eq!(beacon_sim::estimate_tokens("hello world!"), 3);
/// assert_eq!(beacon_sim::estimate_tokens("売上"), 2);
/// ```
pub fn estimate_tokens(text: &str) -> u64 {
    let (cjk, other) =
        text.chars().fold((0u64, 0u64), |(cjk, other), c| if is_cjk(c) { (cjk + 1, other) } else { (cjk, other + 1) });
    cjk + other.div_ceil(4)
}

/// How the simulator counts tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokenizer {
    /// [`estimate_tokens`]: one token per CJK character plus one per four other characters.
    /// Cheap, and what the quota benchmarks were calibrated with.
    #[default]
    Approx,
    /// OpenAI's open `o200k_base` BPE encoding (tiktoken), standing in for a provider's real
    /// tokenizer (Claude's is not public): for checking BEACON's own estimates against one.
    O200k,
}

impl Tokenizer {
    /// The longest prefix of `text` of at most `max_tokens` tokens: what a model that ran out of
    /// tokens would have written.
    pub fn truncate(self, text: &str, max_tokens: u64) -> &str {
        if self == Tokenizer::Approx {
            return truncate_to_tokens(text, max_tokens);
        }
        // Counts grow with the prefix: search the character boundaries.
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        let (mut fits, mut too_long) = (0, boundaries.len());
        while fits + 1 < too_long {
            let middle = (fits + too_long) / 2;
            if self.count(&text[..boundaries[middle]]) <= max_tokens {
                fits = middle;
            } else {
                too_long = middle;
            }
        }
        &text[..boundaries[fits]]
    }

    /// The number of tokens in `text`.
    pub fn count(self, text: &str) -> u64 {
        match self {
            Tokenizer::Approx => estimate_tokens(text),
            Tokenizer::O200k => match o200k() {
                Some(bpe) => bpe.encode_ordinary(text).len() as u64,
                None => estimate_tokens(text),
            },
        }
    }
}

/// The o200k_base vocabulary, loaded once (it ships inside tiktoken-rs).
fn o200k() -> Option<&'static tiktoken_rs::CoreBPE> {
    static BPE: std::sync::OnceLock<Option<tiktoken_rs::CoreBPE>> = std::sync::OnceLock::new();
    BPE.get_or_init(|| match tiktoken_rs::o200k_base() {
        Ok(bpe) => Some(bpe),
        Err(error) => {
            tracing::warn!(%error, "cannot load the o200k_base vocabulary; counting tokens approximately");
            None
        }
    })
    .as_ref()
}

/// The longest prefix of `text` whose [`estimate_tokens`] is at most `max_tokens`; what a model
/// that ran out of tokens would have written.
pub fn truncate_to_tokens(text: &str, max_tokens: u64) -> &str {
    let (mut cjk, mut other) = (0u64, 0u64);
    for (index, c) in text.char_indices() {
        if is_cjk(c) {
            cjk += 1;
        } else {
            other += 1;
        }
        if cjk + other.div_ceil(4) > max_tokens {
            return &text[..index];
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_the_text_after_the_content_marker() {
        let prompt = "Summarise this page as JSON.\nFollow the schema.\n--- CONTENT ---\npage 3\nQuarterly report\nSales grew by 12%. Costs fell. Margins improved.\nNorth region led.\nSouth region lagged.\nWest was flat.\nEast is new.\n";
        let answer = UnitAnswer::from_prompt(prompt);
        assert_eq!(answer.title, "page 3");
        assert_eq!(
            answer.summary,
            "Quarterly report Sales grew by 12%. Costs fell. Margins improved. North region led. South region lagged. West was flat. East is new."
        );
        assert!(answer.key_points.is_empty());
        assert_eq!(answer.language, "en");
    }

    #[test]
    fn long_content_leaves_key_points() {
        let filler = "This sentence is long enough to fill a good part of the summary budget alone";
        let prompt =
            format!("Title line\n{filler}.\n{filler}.\n{filler}.\nPoint one\nPoint two\nPoint three\nPoint four\n");
        let answer = UnitAnswer::from_prompt(&prompt);
        assert_eq!(answer.title, "Title line");
        assert_eq!(answer.summary, format!("{filler}. {filler}."));
        assert_eq!(answer.key_points, vec![format!("{filler}."), "Point one".into(), "Point two".into()]);
    }

    #[test]
    fn japanese_content_is_detected_and_split_on_maru() {
        let prompt = "指示\n--- CONTENT ---\n売上報告\n今期の売上は増加しました。利益も改善しました。\n";
        let answer = UnitAnswer::from_prompt(prompt);
        assert_eq!(answer.title, "売上報告");
        assert_eq!(answer.summary, "今期の売上は増加しました。利益も改善しました。");
        assert_eq!(answer.language, "ja");
    }

    #[test]
    fn kanji_alone_is_not_japanese() {
        assert_eq!(UnitAnswer::from_prompt("売上\n增长").language, "en");
    }

    #[test]
    fn one_line_content_is_title_and_summary() {
        let answer = UnitAnswer::from_prompt("Just one line. With two sentences.");
        assert_eq!(answer.title, "Just one line. With two sentences.");
        assert_eq!(answer.summary, "Just one line. With two sentences.");
    }

    #[test]
    fn empty_content_still_answers_valid_json() {
        let answer = UnitAnswer::from_prompt("instruction\n--- CONTENT ---\n\n");
        let json: serde_json::Value = serde_json::from_str(&answer.to_json()).unwrap();
        assert_eq!(json["summary"], "");
        assert_eq!(json["title"], "");
    }

    #[test]
    fn long_lines_are_truncated_on_char_boundaries() {
        let line = "あ".repeat(300);
        let answer = UnitAnswer::from_prompt(&line);
        assert_eq!(answer.title.chars().count(), TITLE_MAX_CHARS + 1);
        assert!(answer.title.ends_with('…'));
        assert_eq!(answer.summary.chars().count(), SUMMARY_MAX_CHARS + 1);
    }

    #[test]
    fn decimals_and_domains_do_not_end_sentences() {
        assert_eq!(
            sentences("Version 3.5 is at example.com now. Next"),
            vec!["Version 3.5 is at example.com now.", "Next"]
        );
    }

    #[test]
    fn markdown_heading_marks_are_dropped_from_the_title() {
        assert_eq!(UnitAnswer::from_prompt("## Overview\ntext").title, "Overview");
    }

    #[test]
    fn token_estimate() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("日本語のテキスト"), 8);
        assert_eq!(estimate_tokens("売上 sales"), 2 + 2);
        assert_eq!(estimate_tokens("ＡＢＣ"), 3);
    }

    #[test]
    fn o200k_counts_like_the_bpe() {
        assert_eq!(Tokenizer::O200k.count(""), 0);
        assert_eq!(Tokenizer::O200k.count("hello world"), 2);
        assert_eq!(Tokenizer::Approx.count("hello world"), 3);
        assert!(Tokenizer::O200k.count("{\"summary\": \"売上は増加した。\"}") > 5);
    }

    #[test]
    fn o200k_truncation_keeps_within_the_limit() {
        let text = "{\"summary\": \"The quarterly revenue grew by twelve percent.\"}";
        for max in [0, 1, 5, 9, 100] {
            let cut = Tokenizer::O200k.truncate(text, max);
            assert!(Tokenizer::O200k.count(cut) <= max, "{max}: {cut:?}");
            assert!(text.starts_with(cut));
        }
        assert_eq!(Tokenizer::O200k.truncate(text, 100), text);
        assert_eq!(Tokenizer::O200k.truncate("日本語のテキスト", 100), "日本語のテキスト");
    }

    #[test]
    fn truncation_to_tokens() {
        assert_eq!(truncate_to_tokens("abcdefghij", 2), "abcdefgh");
        assert_eq!(truncate_to_tokens("日本語", 2), "日本");
        assert_eq!(truncate_to_tokens("short", 100), "short");
        assert_eq!(truncate_to_tokens("abc", 0), "");
    }
}
