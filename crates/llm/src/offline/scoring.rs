//! Extractive ranking of sentences: a centroid score over content terms.
//!
//! Terms are lowercase words minus English stopwords (with plurals folded), and for CJK text the
//! character bigrams of Han/Katakana runs (hiragana is mostly grammar and is skipped). A sentence
//! scores by how many of the unit's frequent terms it contains, normalised by the square root of
//! its number of distinct terms so that long sentences do not win by length alone; then a
//! position bonus (first sentence, paragraph openings), a small bonus for figures, and a penalty
//! for very short or very long sentences. Everything is ordered (BTreeMap, vectors), so the same
//! input gives the same ranking.

use std::collections::{BTreeMap, BTreeSet};

use super::headings::ends_sentence;
use super::script::{is_cjk_line, is_han, is_hiragana, is_katakana};
use super::sentences::Sentence;

const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "him",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "may",
    "me",
    "might",
    "more",
    "most",
    "must",
    "my",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "out",
    "over",
    "own",
    "same",
    "shall",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "upon",
    "us",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yes",
    "via",
    "per",
    "etc",
    "e.g",
    "i.e",
    "however",
    "thus",
    "therefore",
    "within",
    "without",
    "across",
    "among",
    "whether",
];

/// Fold simple English plurals: `invoices` → `invoice`, `policies` → `policy`.
fn fold_plural(word: &str) -> String {
    if word.len() > 4 && word.ends_with("ies") {
        format!("{}y", &word[..word.len() - 3])
    } else if word.len() > 3
        && word.ends_with('s')
        && !word.ends_with("ss")
        && !word.ends_with("us")
        && !word.ends_with("is")
    {
        word[..word.len() - 1].to_string()
    } else {
        word.to_string()
    }
}

/// The content terms of a text, in order of appearance (with repeats).
pub(crate) fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut run: Vec<char> = Vec::new();
    let flush_word = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            let lower = word.trim_matches('\'').to_lowercase();
            let lower = lower.strip_suffix("'s").unwrap_or(&lower).to_string();
            let is_number = lower.chars().all(|c| c.is_ascii_digit() || c == '.');
            if lower.chars().count() >= 2 && !is_number && !STOPWORDS.contains(&lower.as_str()) {
                out.push(if lower.is_ascii() { fold_plural(&lower) } else { lower });
            }
            word.clear();
        }
    };
    let flush_run = |run: &mut Vec<char>, out: &mut Vec<String>| {
        match run.len() {
            0 => {}
            1 => {
                if is_han(run[0]) {
                    out.push(run[0].to_string());
                }
            }
            _ => out.extend(run.windows(2).map(|w| w.iter().collect::<String>())),
        }
        run.clear();
    };
    for c in text.chars() {
        if is_han(c) || (is_katakana(c) && c != '・') {
            flush_word(&mut word, &mut out);
            run.push(c);
        } else if c.is_alphanumeric() && !is_hiragana(c) {
            // Latin, Cyrillic, Hangul words, digits.
            flush_run(&mut run, &mut out);
            word.push(c);
        } else if c == '\'' && !word.is_empty() {
            word.push(c);
        } else {
            flush_word(&mut word, &mut out);
            flush_run(&mut run, &mut out);
        }
    }
    flush_word(&mut word, &mut out);
    flush_run(&mut run, &mut out);
    out
}

/// A score per sentence (same order as `sentences`).
pub(crate) fn score(sentences: &[Sentence]) -> Vec<f64> {
    let sentence_terms: Vec<Vec<String>> = sentences.iter().map(|s| terms(&s.text)).collect();
    let mut frequency: BTreeMap<&str, f64> = BTreeMap::new();
    for ts in &sentence_terms {
        for t in ts {
            *frequency.entry(t.as_str()).or_insert(0.0) += 1.0;
        }
    }
    sentences
        .iter()
        .zip(&sentence_terms)
        .enumerate()
        .map(|(index, (sentence, ts))| {
            let mut seen = BTreeSet::new();
            let mut sum = 0.0;
            for t in ts {
                if seen.insert(t.as_str()) {
                    // Terms that recur in the unit carry its topic; a term seen once adds little.
                    sum += frequency.get(t.as_str()).copied().unwrap_or(1.0).ln_1p();
                }
            }
            let distinct = seen.len().max(1) as f64;
            let mut s = sum / distinct.sqrt();
            if index == 0 {
                s *= 1.3;
            } else if sentence.first_in_paragraph {
                s *= 1.1;
            }
            s *= length_factor(&sentence.text);
            if sentence.text.chars().any(|c| c.is_ascii_digit()) {
                s *= 1.05;
            }
            // Fragments (list items, form rows, captions) are weaker than full sentences.
            if !ends_sentence(&sentence.text) {
                s *= 0.6;
            }
            s
        })
        .collect()
}

fn length_factor(text: &str) -> f64 {
    let (short, long, size) =
        if is_cjk_line(text) { (10, 150, text.chars().count()) } else { (5, 45, text.split_whitespace().count()) };
    if size < short {
        0.5
    } else if size > long {
        0.7
    } else {
        1.0
    }
}

/// Indices of the `k` best sentences (ties go to the earlier one), in document order. Sentences
/// whose text repeats an earlier one are skipped.
pub(crate) fn best(sentences: &[Sentence], scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sentences.len()).collect();
    order.sort_by(|&a, &b| {
        let (sa, sb) = (scores.get(a).copied().unwrap_or(0.0), scores.get(b).copied().unwrap_or(0.0));
        sb.total_cmp(&sa).then(a.cmp(&b))
    });
    let mut chosen: Vec<usize> = Vec::new();
    for i in order {
        if chosen.len() == k {
            break;
        }
        if chosen.iter().any(|&c| sentences[c].text == sentences[i].text) {
            continue;
        }
        chosen.push(i);
    }
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offline::sentences::{paragraphs, sentences};

    #[test]
    fn terms_for_english_and_japanese() {
        assert_eq!(terms("The invoices are due; Policies apply."), vec!["invoice", "due", "policy", "apply"]);
        assert_eq!(terms("請求書を発行する"), vec!["請求", "求書", "発行"]);
        assert_eq!(terms("スロットリング対策"), vec!["スロ", "ロッ", "ット", "トリ", "リン", "ング", "グ対", "対策"]);
        assert_eq!(terms("Tom's 2026 report"), vec!["tom", "report"]);
    }

    #[test]
    fn ranks_topic_sentences_first() {
        let text = "Throttling limits how many requests reach the model. The weather was nice. \
                    Retries with backoff absorb throttling from the model. Lunch was served at noon. \
                    The model quota and throttling decide the throughput of requests.";
        let layout = crate::offline::layout::Layout::parse(text);
        let ss = sentences(&paragraphs(&layout, &[]));
        let scores = score(&ss);
        let top = best(&ss, &scores, 2);
        assert!(top.iter().all(|&i| ss[i].text.contains("hrottling") || ss[i].text.contains("model")), "{top:?}");
        assert_eq!(top, best(&ss, &scores, 2));
    }
}
