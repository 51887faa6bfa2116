//! `beacon units FILE [--json]`: the units a document splits into, as the LLM will see them,
//! without calling any model.

use std::io::Write;
use std::path::{Path, PathBuf};

use beacon_ingest::{Unit, ingest_with_password};
use beacon_llm::offline::estimate_tokens;
use beacon_pipeline::Config;
use beacon_pipeline::flow::read_document_file;
use clap::Args;
use serde_json::json;

use crate::exit;

#[derive(Args, Debug)]
pub struct UnitsArgs {
    /// The document (PDF, XLSX/XLSM/XLSB/XLS/ODS, DOCX/ODT, PPTX/ODP, CSV/TSV, text/Markdown).
    pub file: PathBuf,
    /// One JSON object per unit and line, with the full text and table, instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Largest input file accepted, in bytes.
    #[arg(long)]
    pub max_file_bytes: Option<u64>,
    /// The password of an encrypted PDF (or BEACON_DOCUMENT_PASSWORD). Never stored.
    #[arg(long, env = "BEACON_DOCUMENT_PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    pub password: Option<String>,
}

pub fn units(config_path: Option<&Path>, args: &UnitsArgs) -> u8 {
    let mut config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    if let Some(max) = args.max_file_bytes {
        config.limits.max_file_bytes = max;
    }
    let shown = args.file.display();
    let bytes = match read_document_file(&args.file, config.limits.max_file_bytes) {
        Ok(bytes) => bytes,
        Err(message) => {
            eprintln!("error: {shown}: {message}");
            return exit::INPUT;
        }
    };
    let document = match ingest_with_password(&bytes, &config.limits, args.password.as_deref()) {
        Ok(document) => document,
        Err(e) => {
            eprintln!("error: {shown}: {e}");
            return exit::INPUT;
        }
    };
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        document.units.iter().try_for_each(|unit| {
            let line = json!({
                "index": unit.index,
                "kind": unit.kind,
                "title": unit.title,
                "chars": unit.text.chars().count(),
                "estimated_tokens": estimate_tokens(&unit.text),
                "flags": unit.flags,
                "text": unit.text,
                "table": unit.table,
            });
            writeln!(out, "{line}")
        })
    } else {
        write_table(&mut out, &document.units).and_then(|()| {
            let tokens: u64 = document.units.iter().map(|u| estimate_tokens(&u.text)).sum();
            let language = document.language.as_deref().unwrap_or("unknown");
            writeln!(
                out,
                "{} units, about {tokens} tokens ({}, language {language})",
                document.units.len(),
                label(&document.format)
            )
        })
    };
    match written {
        Ok(()) => exit::SUCCESS,
        // A closed pipe (`beacon units big.pdf | head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the list: {e}");
            exit::INTERNAL
        }
    }
}

/// A serialized enum's name ("page", "xlsx").
fn label(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn write_table(out: &mut impl Write, units: &[Unit]) -> std::io::Result<()> {
    writeln!(out, "{:>5}  {:<8} {:>8} {:>8}  {:<24} title", "index", "kind", "chars", "tokens", "flags")?;
    for unit in units {
        let kind = label(&unit.kind);
        writeln!(
            out,
            "{:>5}  {:<8} {:>8} {:>8}  {:<24} {}",
            unit.index,
            kind,
            unit.text.chars().count(),
            estimate_tokens(&unit.text),
            unit.flags.join(","),
            unit.title
        )?;
    }
    Ok(())
}
