//! The token estimator against real BPE tokenizers, on the shared corpus.
//!
//! Every file under `../shared/corpus` that BEACON ingests is split into units; each unit's text
//! is counted by `beacon_llm::offline::estimate_tokens` and by OpenAI's `o200k_base` and
//! `cl100k_base` encodings (tiktoken-rs, which ships the vocabularies). Claude's and Nova's
//! tokenizers are not public, so these two open encodings stand in for "a real tokenizer"; they
//! differ from each other by more than the estimator's target error on Japanese, which is the
//! scale of uncertainty any client-side estimate has. Units are grouped by detected language;
//! units under 20 tokens are left out of the per-unit errors (a unit of one word says nothing).

use std::path::{Path, PathBuf};

use beacon_ingest::{Limits, detect_language, ingest};
use beacon_llm::offline::estimate_tokens;
use clap::Args;

#[derive(Args)]
pub struct TokensArgs {
    /// The corpus directory.
    #[arg(long, default_value = "../shared/corpus")]
    corpus: PathBuf,
}

#[derive(Default)]
struct Group {
    units: usize,
    estimated: u64,
    o200k: u64,
    cl100k: u64,
    /// Per-unit relative errors (estimate / actual − 1) against o200k and cl100k.
    errors_o200k: Vec<f64>,
    errors_cl100k: Vec<f64>,
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        // `expected/` holds the answers (cell values as CSV), not documents; JSON, Markdown and
        // extension-less files are the corpus's metadata and licences.
        if path.is_dir() {
            if !path.ends_with("expected") {
                files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e != "json" && e != "md") {
            out.push(path);
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

fn summary(errors: &mut [f64]) -> String {
    errors.sort_by(f64::total_cmp);
    let within = errors.iter().filter(|e| e.abs() <= 0.25).count();
    format!(
        "{:+.0}% | {:+.0}% … {:+.0}% | {:.0}%",
        100.0 * percentile(errors, 0.5),
        100.0 * percentile(errors, 0.1),
        100.0 * percentile(errors, 0.9),
        100.0 * within as f64 / errors.len().max(1) as f64
    )
}

pub fn run(args: &TokensArgs) -> i32 {
    let o200k = match tiktoken_rs::o200k_base() {
        Ok(bpe) => bpe,
        Err(e) => {
            eprintln!("error: o200k_base: {e}");
            return 1;
        }
    };
    let cl100k = match tiktoken_rs::cl100k_base() {
        Ok(bpe) => bpe,
        Err(e) => {
            eprintln!("error: cl100k_base: {e}");
            return 1;
        }
    };
    let mut paths = Vec::new();
    files(&args.corpus, &mut paths);
    if paths.is_empty() {
        eprintln!("error: no files under {}", args.corpus.display());
        return 1;
    }
    let mut groups: std::collections::BTreeMap<String, Group> = Default::default();
    let mut documents = 0;
    for path in &paths {
        let Ok(bytes) = std::fs::read(path) else { continue };
        let Ok(document) = ingest(&bytes, &Limits::default()) else { continue };
        documents += 1;
        for unit in &document.units {
            if unit.text.trim().is_empty() {
                continue;
            }
            let language = match detect_language(&unit.text).as_deref() {
                Some("ja") => "Japanese",
                Some("en") => "English",
                _ => "other",
            };
            let group = groups.entry(language.to_string()).or_default();
            let estimated = estimate_tokens(&unit.text);
            let by_o200k = o200k.encode_with_special_tokens(&unit.text).len() as u64;
            let by_cl100k = cl100k.encode_with_special_tokens(&unit.text).len() as u64;
            group.units += 1;
            group.estimated += estimated;
            group.o200k += by_o200k;
            group.cl100k += by_cl100k;
            if by_o200k >= 20 {
                group.errors_o200k.push(estimated as f64 / by_o200k as f64 - 1.0);
            }
            if by_cl100k >= 20 {
                group.errors_cl100k.push(estimated as f64 / by_cl100k as f64 - 1.0);
            }
        }
    }
    println!("{documents} documents read under {}\n", args.corpus.display());
    println!(
        "| language | units | estimated tokens | o200k | cl100k | total error vs o200k | vs cl100k \
         | median unit error vs o200k | p10 … p90 | units within ±25% | median vs cl100k | p10 … p90 | within ±25% |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (language, group) in &mut groups {
        println!(
            "| {language} | {} | {} | {} | {} | {:+.1}% | {:+.1}% | {} | {} |",
            group.units,
            group.estimated,
            group.o200k,
            group.cl100k,
            100.0 * (group.estimated as f64 / group.o200k.max(1) as f64 - 1.0),
            100.0 * (group.estimated as f64 / group.cl100k.max(1) as f64 - 1.0),
            summary(&mut group.errors_o200k),
            summary(&mut group.errors_cl100k),
        );
    }
    0
}
