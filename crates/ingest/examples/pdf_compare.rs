//! Compares PDF text extraction options on the shared corpus, for
//! docs/pdf-library-comparison.md:
//!
//! - `beacon`: this crate (`beacon_ingest::ingest`: lopdf's parser, our content-stream text
//!   extraction and reading order),
//! - `lopdf`: lopdf 0.47's own `Document::extract_text`, page by page,
//! - `pdf-extract`: pdf-extract 0.12 (built on lopdf 0.42), `extract_text_from_mem_by_pages`.
//!
//! ```text
//! cargo run -p beacon-ingest --example pdf_compare --release [-- --dump DIR]
//! ```
//!
//! For every PDF in ../shared/corpus/pdf/files.json and ../shared/corpus/ja/: pages found against
//! `pages` (an encrypted file counts as matched when the tool refuses it), the share of tokens
//! that are real words (2-20 letters, no mojibake), the run-together tokens (over 25
//! characters, outside CJK text), the Japanese `must_contain` strings found, and milliseconds per file (best of 3).

use std::path::{Path, PathBuf};
use std::time::Instant;

use beacon_ingest::{IngestError, Limits, ingest};

struct Case {
    path: PathBuf,
    name: String,
    pages: usize,
    encrypted: bool,
    must_contain: Vec<String>,
}

#[derive(Default, Clone)]
struct Score {
    files: usize,
    pages_matched: usize,
    tokens: usize,
    words: usize,
    long_tokens: usize,
    must: usize,
    must_total: usize,
    ja_chars: usize,
    ms: f64,
    errors: usize,
    panics: usize,
}

type Extract = fn(&[u8]) -> Result<Vec<String>, String>;

fn beacon(bytes: &[u8]) -> Result<Vec<String>, String> {
    match ingest(bytes, &Limits::default()) {
        Ok(doc) => Ok(doc.units.into_iter().map(|u| u.text).collect()),
        Err(IngestError::Encrypted { .. }) => Err("encrypted".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn lopdf_text(bytes: &[u8]) -> Result<Vec<String>, String> {
    let doc = lopdf::Document::load_mem(bytes).map_err(|e| e.to_string())?;
    if doc.trailer.has(b"Encrypt") && !doc.was_encrypted() {
        return Err("encrypted".into());
    }
    let pages = doc.get_pages();
    Ok(pages.keys().map(|n| doc.extract_text(&[*n]).unwrap_or_default()).collect())
}

fn pdf_extract_text(bytes: &[u8]) -> Result<Vec<String>, String> {
    pdf_extract::extract_text_from_mem_by_pages(bytes).map_err(|e| e.to_string())
}

fn is_word(token: &str) -> bool {
    let t = token.trim_matches(|c: char| !c.is_alphanumeric());
    let n = t.chars().count();
    (2..=20).contains(&n) && t.chars().all(|c| c.is_alphabetic() && c != '\u{FFFD}')
}

fn score_text(pages: &[String], case: &Case, score: &mut Score) {
    let all = pages.join("\n");
    if !case.must_contain.is_empty() {
        // The Japanese file is judged by its must_contain strings and characters extracted;
        // word statistics are for the alphabetic corpus.
        score.ja_chars += all.chars().filter(|c| !c.is_whitespace()).count();
    }
    let tokens = if case.must_contain.is_empty() { all.as_str() } else { "" };
    for token in tokens.split_whitespace() {
        score.tokens += 1;
        if is_word(token) {
            score.words += 1;
        }
        // Japanese and Chinese have no spaces between words: only alphabetic scripts count.
        let cjk = token.chars().any(|c| ('\u{3000}'..='\u{9FFF}').contains(&c));
        if token.chars().count() > 25 && !cjk {
            score.long_tokens += 1;
        }
    }
    let compact: String = all.chars().filter(|c| !c.is_whitespace()).collect();
    for m in &case.must_contain {
        let m: String = m.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.contains(&m) {
            score.must += 1;
        }
    }
}

fn cases(corpus: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    for dir in ["pdf", "ja"] {
        let files = corpus.join(dir).join("files.json");
        let Ok(text) = std::fs::read_to_string(&files) else {
            continue;
        };
        let json: serde_json::Value = serde_json::from_str(&text).expect("files.json parses");
        for entry in json["data"].as_array().into_iter().flatten() {
            let path = entry["path"].as_str().unwrap_or_default();
            if !path.ends_with(".pdf") {
                continue;
            }
            out.push(Case {
                path: corpus.join(dir).join(path),
                name: path.rsplit('/').next().unwrap_or(path).to_string(),
                pages: entry["pages"].as_u64().unwrap_or(0) as usize,
                encrypted: entry["encrypted"].as_bool().unwrap_or(false),
                must_contain: entry["must_contain"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            });
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dump = args.iter().position(|a| a == "--dump").and_then(|i| args.get(i + 1)).map(PathBuf::from);
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    if !corpus.exists() {
        eprintln!("skipping: ../shared/corpus not found at {}", corpus.display());
        return;
    }
    // Panics in the libraries are counted, not printed.
    std::panic::set_hook(Box::new(|_| {}));
    let tools: [(&str, Extract); 3] = [("beacon", beacon), ("lopdf", lopdf_text), ("pdf-extract", pdf_extract_text)];
    let cases = cases(&corpus);
    let mut totals: Vec<Score> = vec![Score::default(); tools.len()];
    println!("| file | expected pages | {} |", tools.map(|t| t.0).join(" | "));
    println!("|---|---|{}", "---|".repeat(tools.len()));
    for case in &cases {
        let bytes = std::fs::read(&case.path).expect("corpus file reads");
        let mut cells = Vec::new();
        for (t, (tool, extract)) in tools.iter().enumerate() {
            let mut best = f64::INFINITY;
            let mut result = None;
            for _ in 0..3 {
                let start = Instant::now();
                let r = std::panic::catch_unwind(|| extract(&bytes));
                best = best.min(start.elapsed().as_secs_f64() * 1000.0);
                result = Some(r);
            }
            let score = &mut totals[t];
            score.files += 1;
            score.ms += best;
            score.must_total += case.must_contain.len();
            let cell = match result {
                Some(Ok(Ok(pages))) => {
                    let matched = !case.encrypted && pages.len() == case.pages;
                    if matched {
                        score.pages_matched += 1;
                    }
                    score_text(&pages, case, score);
                    if let Some(dir) = &dump {
                        let _ = std::fs::create_dir_all(dir);
                        let _ = std::fs::write(dir.join(format!("{}.{tool}.txt", case.name)), pages.join("\n\x0c\n"));
                    }
                    let chars: usize = pages.iter().map(|p| p.chars().count()).sum();
                    format!("{} pages, {chars} chars, {best:.1} ms", pages.len())
                }
                Some(Ok(Err(e))) => {
                    // "encrypted", "decryption error", ...: a refusal that names the cause.
                    if case.encrypted && e.to_lowercase().contains("crypt") {
                        score.pages_matched += 1;
                        format!("refused: encrypted, {best:.1} ms")
                    } else {
                        score.errors += 1;
                        format!("error: {}", e.chars().take(60).collect::<String>())
                    }
                }
                _ => {
                    score.panics += 1;
                    "panic".to_string()
                }
            };
            cells.push(cell);
        }
        println!("| {} | {} | {} |", case.name, case.pages, cells.join(" | "));
    }
    println!();
    println!(
        "| tool | files with pages matched | real-word tokens (pdf/) | run-together tokens (pdf/, >25 chars) | ja: non-space chars | ja: must_contain found | errors | panics | total ms | ms per file |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for ((tool, _), s) in tools.iter().zip(&totals) {
        println!(
            "| {tool} | {}/{} | {:.1}% ({}/{}) | {} | {} | {}/{} | {} | {} | {:.0} | {:.1} |",
            s.pages_matched,
            s.files,
            100.0 * s.words as f64 / s.tokens.max(1) as f64,
            s.words,
            s.tokens,
            s.long_tokens,
            s.ja_chars,
            s.must,
            s.must_total,
            s.errors,
            s.panics,
            s.ms,
            s.ms / s.files.max(1) as f64
        );
    }
}
