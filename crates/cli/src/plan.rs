//! `beacon plan FILE...`: units, strategy, tokens, cost (on demand and batch) and time under the
//! quota for each document, before any model call.

use std::io::Write;
use std::path::{Path, PathBuf};

use beacon_ingest::ingest_with_password;
use beacon_pipeline::flow::read_document_file;
use beacon_pipeline::plan::{DocumentPlan, Strategy, plan_document};
use beacon_pipeline::pricing::PRICES_AS_OF;
use beacon_pipeline::schema::unit_schema;
use clap::Args;
use serde_json::json;

use crate::exit;
use crate::session::{FlowArgs, load_config};

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The documents (PDF, workbooks, Word, PowerPoint, CSV, text, HTML, images).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// inline, distributed, batch, or auto (by the `[strategy]` thresholds).
    #[arg(long, default_value = "auto")]
    pub strategy: String,
    /// One JSON object per document, then one for the total, instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub flow: FlowArgs,
}

pub async fn plan(config_path: Option<&Path>, args: &PlanArgs) -> u8 {
    let config = match load_config(config_path, &args.flow) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let forced = match Strategy::parse_choice(&args.strategy) {
        Ok(forced) => forced,
        Err(e) => {
            eprintln!("error: --strategy: {e}");
            return exit::USAGE;
        }
    };
    let schema = match unit_schema(&config) {
        Ok(schema) => schema,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let password = config.document_password.as_ref().map(|p| p.expose().to_string());
    let mut plans = Vec::new();
    let mut code = exit::SUCCESS;
    for file in &args.files {
        let shown = file.display().to_string();
        let document = read_document_file(file, config.limits.max_file_bytes).and_then(|bytes| {
            ingest_with_password(&bytes, &config.limits, password.as_deref()).map_err(|e| e.to_string())
        });
        match document {
            Ok(document) => plans.push(plan_document(&shown, &document, &config, &schema, forced).await),
            Err(message) => {
                eprintln!("error: {shown}: {message}");
                code = exit::INPUT;
            }
        }
    }
    let model = config.model_name();
    let priced = config.price_of(&model).is_some();
    let mut out = std::io::stdout().lock();
    let written = if args.json { write_json(&mut out, &plans) } else { write_table(&mut out, &plans) }.and_then(|()| {
        if args.json {
            return Ok(());
        }
        let price = if priced {
            format!("priced at {model}'s rate (built-in table of {PRICES_AS_OF}, or [pricing] in beacon.toml)")
        } else {
            format!("no price known for {model:?}: add it under [pricing] in beacon.toml")
        };
        let quota = match (config.quota.rpm, config.quota.tpm) {
            (None, None) => "no quota configured: time found at run time (adaptive)".to_string(),
            (rpm, tpm) => format!(
                "time under {}{}",
                rpm.map(|r| format!("{r} requests/min ")).unwrap_or_default(),
                tpm.map(|t| format!("{t} tokens/min")).unwrap_or_default()
            ),
        };
        writeln!(out, "{price}; {quota}; output estimated from the extractive analyzer's answers; batch runs asynchronously (typically within 24 h)")
    });
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot write the plan: {e}");
        return exit::INTERNAL;
    }
    code
}

fn money(usd: Option<f64>) -> String {
    usd.map_or("-".to_string(), |v| format!("${v:.4}"))
}

fn write_table(out: &mut impl Write, plans: &[DocumentPlan]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<32} {:<6} {:>6}  {:<11} {:>12} {:>11} {:>12} {:>11} {:>9}",
        "file", "format", "units", "strategy", "input tok", "output tok", "on demand", "batch", "minutes"
    )?;
    for p in plans {
        let name = Path::new(&p.file).file_name().map_or(p.file.clone(), |n| n.to_string_lossy().into_owned());
        writeln!(
            out,
            "{:<32} {:<6} {:>6}  {:<11} {:>12} {:>11} {:>12} {:>11} {:>9}",
            name,
            p.format,
            p.units,
            p.strategy.to_string(),
            p.input_tokens,
            p.output_tokens,
            money(p.cost_on_demand_usd),
            money(p.cost_batch_usd),
            p.minutes.map_or("-".to_string(), |m| format!("{m:.1}")),
        )?;
    }
    let total = total(plans);
    writeln!(
        out,
        "{:<32} {:<6} {:>6}  {:<11} {:>12} {:>11} {:>12} {:>11} {:>9}",
        "total",
        "",
        total.units,
        "",
        total.input_tokens,
        total.output_tokens,
        money(total.on_demand),
        money(total.batch),
        ""
    )?;
    writeln!(out, "cost at the chosen strategies: {}", money(total.chosen))
}

struct Total {
    units: usize,
    input_tokens: u64,
    output_tokens: u64,
    on_demand: Option<f64>,
    batch: Option<f64>,
    chosen: Option<f64>,
}

fn total(plans: &[DocumentPlan]) -> Total {
    let sum = |f: fn(&DocumentPlan) -> Option<f64>| plans.iter().map(f).sum::<Option<f64>>();
    Total {
        units: plans.iter().map(|p| p.units).sum(),
        input_tokens: plans.iter().map(|p| p.input_tokens).sum(),
        output_tokens: plans.iter().map(|p| p.output_tokens).sum(),
        on_demand: sum(|p| p.cost_on_demand_usd),
        batch: sum(|p| p.cost_batch_usd),
        chosen: sum(|p| p.cost_usd),
    }
}

fn write_json(out: &mut impl Write, plans: &[DocumentPlan]) -> std::io::Result<()> {
    for plan in plans {
        writeln!(out, "{}", serde_json::to_string(plan).unwrap_or_default())?;
    }
    let t = total(plans);
    let line = json!({
        "total": true,
        "units": t.units,
        "input_tokens": t.input_tokens,
        "output_tokens": t.output_tokens,
        "cost_on_demand_usd": t.on_demand,
        "cost_batch_usd": t.batch,
        "cost_usd": t.chosen,
        "prices_as_of": PRICES_AS_OF,
    });
    writeln!(out, "{line}")
}
