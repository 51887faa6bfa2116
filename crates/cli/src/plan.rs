//! `beacon plan FILE...`: units, strategy, tokens, cost (on demand and batch) and time under the
//! quota for each document, before any model call.

use std::io::Write;
use std::path::{Path, PathBuf};

use beacon_deploy::quota::{Kind, ModelQuotas};
use beacon_ingest::ingest_with_password;
use beacon_pipeline::config::QuotaConfig;
use beacon_pipeline::deadline::{DeadlineAdvice, Dimension, Submission, advise, parse_deadline};
use beacon_pipeline::flow::read_document_file;
use beacon_pipeline::plan::{DocumentPlan, Strategy, plan_document};
use beacon_pipeline::pricing::PRICES_AS_OF;
use beacon_pipeline::schema::unit_schema;
use clap::Args;
use serde_json::json;

use crate::exit;
use crate::quota::apply_quota_source;
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
    /// Say which quota finishes every document on demand within this time (90m, 2h, 1h30m, 1d),
    /// the increase to request, or the cheaper way (batch inference, Provisioned Throughput).
    #[arg(long, value_name = "DURATION")]
    pub deadline: Option<String>,
    #[command(flatten)]
    pub flow: FlowArgs,
}

pub async fn plan(config_path: Option<&Path>, args: &PlanArgs) -> u8 {
    let deadline = match args.deadline.as_deref().map(parse_deadline).transpose() {
        Ok(deadline) => deadline,
        Err(e) => {
            eprintln!("error: --deadline: {e}");
            return exit::USAGE;
        }
    };
    let mut config = match load_config(config_path, &args.flow) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // The quota's names and codes, for the increase to request.
    let applied = if args.flow.quota_from.is_some() {
        let told = (args.flow.rpm.is_some(), args.flow.tpm.is_some(), args.flow.tpd.is_some());
        match apply_quota_source(&mut config, told).await {
            Ok(quotas) => Some(quotas),
            Err(code) => return code,
        }
    } else {
        None
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
    let total = total(&plans);
    let submission = Submission {
        requests: total.requests,
        tokens: total.input_tokens + total.output_tokens,
        cost_on_demand_usd: total.on_demand,
        cost_batch_usd: total.batch,
    };
    let advice = deadline.map(|minutes| advise(&submission, &config.quota, minutes));
    let notes = notes(&submission, &config.quota, advice.as_ref(), applied.as_ref(), &model);
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        write_json(&mut out, &plans, advice.as_ref(), &notes)
    } else {
        write_table(&mut out, &plans)
    }
    .and_then(|()| {
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
        writeln!(out, "{price}; {quota}; output estimated from the extractive analyzer's answers; batch runs asynchronously (typically within 24 h)")?;
        notes.iter().try_for_each(|note| writeln!(out, "{note}"))
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
    requests: u64,
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
        requests: plans.iter().map(|p| p.requests as u64).sum(),
        input_tokens: plans.iter().map(|p| p.input_tokens).sum(),
        output_tokens: plans.iter().map(|p| p.output_tokens).sum(),
        on_demand: sum(|p| p.cost_on_demand_usd),
        batch: sum(|p| p.cost_batch_usd),
        chosen: sum(|p| p.cost_usd),
    }
}

fn write_json(
    out: &mut impl Write,
    plans: &[DocumentPlan],
    advice: Option<&DeadlineAdvice>,
    notes: &[String],
) -> std::io::Result<()> {
    for plan in plans {
        writeln!(out, "{}", serde_json::to_string(plan).unwrap_or_default())?;
    }
    let t = total(plans);
    let line = json!({
        "total": true,
        "units": t.units,
        "requests": t.requests,
        "deadline": advice,
        "notes": notes,
        "input_tokens": t.input_tokens,
        "output_tokens": t.output_tokens,
        "cost_on_demand_usd": t.on_demand,
        "cost_batch_usd": t.batch,
        "cost_usd": t.chosen,
        "prices_as_of": PRICES_AS_OF,
    });
    writeln!(out, "{line}")
}

/// The documented name of a Bedrock quota of `kind`, for when Service Quotas was not read.
fn documented_name(kind: Kind, model: &str) -> String {
    match kind {
        Kind::RequestsPerMinute => format!("Cross-Region InvokeModel requests per minute for <{model}'s display name>"),
        Kind::TokensPerMinute => format!("Cross-Region InvokeModel tokens per minute for <{model}'s display name>"),
        Kind::TokensPerDay => format!("Model invocation max tokens per day for <{model}'s display name>"),
    }
}

fn kind_of(dimension: Dimension) -> Kind {
    match dimension {
        Dimension::RequestsPerMinute => Kind::RequestsPerMinute,
        Dimension::TokensPerMinute => Kind::TokensPerMinute,
        Dimension::TokensPerDay => Kind::TokensPerDay,
    }
}

fn unit_of(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::RequestsPerMinute => "requests/min",
        Dimension::TokensPerMinute => "tokens/min",
        Dimension::TokensPerDay => "tokens/day",
    }
}

/// What the plan adds in words: the day's quota, and the deadline's answer.
fn notes(
    submission: &Submission,
    quota: &QuotaConfig,
    advice: Option<&DeadlineAdvice>,
    applied: Option<&ModelQuotas>,
    model: &str,
) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(tpd) = quota.tpd.filter(|&tpd| submission.tokens > tpd) {
        #[allow(clippy::cast_precision_loss)]
        let days = (submission.tokens as f64 / tpd as f64).ceil();
        notes.push(format!(
            "warning: the {} tokens exceed the daily token quota of {tpd}: on demand the run waits for it to refill and takes {days:.0} days; batch inference or a higher \"Model invocation max tokens per day\" quota avoids that",
            submission.tokens
        ));
    }
    let Some(advice) = advice else { return notes };
    let deadline = human_minutes(advice.deadline_minutes);
    match (advice.fits, advice.minutes_now) {
        (Some(true), Some(minutes)) => {
            notes.push(format!(
                "deadline {deadline}: the current quota finishes on demand in {} — in time",
                human_minutes(minutes)
            ));
        }
        (Some(false), Some(minutes)) => {
            notes.push(format!(
                "deadline {deadline}: the current quota takes {} on demand — too slow",
                human_minutes(minutes)
            ));
        }
        _ => notes.push(format!(
            "deadline {deadline}: no quota known (pass --rpm/--tpm/--tpd or --quota-from aws); on demand it needs:"
        )),
    }
    for need in &advice.needs {
        let current = need.current.map_or("unknown".to_string(), |c| c.to_string());
        if !need.short() {
            notes.push(format!("  {}: {} needed, {current} in force", unit_of(need.dimension), need.needed));
            continue;
        }
        let kind = kind_of(need.dimension);
        let quota = applied.and_then(|q| {
            // The applied quota when it is adjustable; else an adjustable one of its kind; else,
            // for a per-minute quota, the adjustable cross-Region tokens-per-minute one: Bedrock's
            // guide takes increases of all four per-minute quotas through it.
            let found = q.applied(kind)?;
            let adjustable = |kind: Kind| q.quotas.iter().find(|c| c.kind == kind && c.adjustable);
            let through = if found.adjustable {
                Some(found)
            } else if let Some(same) = adjustable(kind) {
                Some(same)
            } else if kind != Kind::TokensPerDay {
                adjustable(Kind::TokensPerMinute)
            } else {
                None
            };
            Some(through.unwrap_or(found).clone())
        });
        let ask = match &quota {
            Some(q) => format!(
                "request {:?} ({}) at {}{}: aws service-quotas request-service-quota-increase --service-code bedrock --quota-code {} --desired-value {}",
                q.name,
                q.code,
                need.request,
                if q.adjustable { "" } else { " (not adjustable in Service Quotas: use AWS's limit increase form)" },
                q.code,
                need.request
            ),
            None => format!(
                "request {:?} at {} (its code: beacon quota --model {model})",
                documented_name(kind, model),
                need.request
            ),
        };
        notes.push(format!("  {}: {} needed, {current} in force — {ask}", unit_of(need.dimension), need.needed));
    }
    if advice.fits != Some(true) {
        match advice.batch_saving_usd {
            Some(saving) if advice.batch_within_deadline => notes.push(format!(
                "  or batch inference (--strategy batch): typically done within 24 h, inside the deadline, and ${saving:.4} cheaper"
            )),
            Some(saving) => notes.push(format!(
                "  batch inference would be ${saving:.4} cheaper but typically takes up to 24 h, past the deadline"
            )),
            None => {}
        }
        if let Some(price) = advice.provisioned_break_even_usd_per_hour {
            notes.push(format!(
                "  or Provisioned Throughput (beacon deploy --provisioned-units N): cheaper than on demand only if its model units cost under ${price:.2} an hour in all"
            ));
        }
    }
    notes
}

fn human_minutes(minutes: f64) -> String {
    if minutes < 120.0 {
        format!("{minutes:.0} min")
    } else if minutes < 2.0 * 1440.0 {
        format!("{:.1} h", minutes / 60.0)
    } else {
        format!("{:.1} days", minutes / 1440.0)
    }
}
