//! `beacon quota --model ID`: the model's applied Bedrock quotas (Service Quotas) and recent
//! usage and throttles (CloudWatch), and `--quota-from aws` for `beacon run` and `beacon plan`,
//! which take the quota from there instead of `--rpm/--tpm/--tpd`.

use std::io::Write;

use beacon_deploy::quota::{Kind, ModelQuotas, Scope, Usage, list_bedrock_quotas, model_quotas, recent_usage};
use beacon_pipeline::Config;
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::exit;

#[derive(Args, Debug)]
pub struct QuotaArgs {
    /// The Bedrock model id (or inference profile id, e.g. us.anthropic...).
    #[arg(long)]
    pub model: String,
    /// The model's display name as the quota names spell it ("... tokens per minute for NAME"),
    /// when matching the id finds none.
    #[arg(long)]
    pub model_name: Option<String>,
    /// The AWS region (default: AWS_REGION or the profile's).
    #[arg(long)]
    pub region: Option<String>,
    /// An endpoint serving Service Quotas and CloudWatch (e.g. `beacon sim`); otherwise AWS's,
    /// or AWS_ENDPOINT_URL_SERVICE_QUOTAS / AWS_ENDPOINT_URL_CLOUDWATCH.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Hours of CloudWatch usage to look at.
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Where the quota comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuotaSource {
    /// The model's applied quotas in Service Quotas (Bedrock only).
    Aws,
}

pub async fn quota(args: &QuotaArgs) -> u8 {
    let sdk = beacon_aws::sdk_config(args.region.as_deref(), args.endpoint.as_deref()).await;
    let listed = match list_bedrock_quotas(&sdk).await {
        Ok(listed) => listed,
        Err(error) => {
            eprintln!("error: cannot read the Bedrock quotas from Service Quotas: {error}");
            return exit::INTERNAL;
        }
    };
    let quotas = match model_quotas(&args.model, args.model_name.as_deref(), &listed) {
        Ok(quotas) => quotas,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::USAGE;
        }
    };
    let usage = match recent_usage(&sdk, &args.model, args.hours).await {
        Ok(usage) => Some(usage),
        Err(error) => {
            // The quotas are the main answer; usage needs cloudwatch:GetMetricData as well.
            eprintln!("warning: no recent usage from CloudWatch: {error}");
            None
        }
    };
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        writeln!(out, "{}", json!({ "quotas": quotas, "usage": usage }))
    } else {
        write_table(&mut out, &quotas, usage.as_ref())
    };
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write the quotas: {e}");
            exit::INTERNAL
        }
        _ => exit::SUCCESS,
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::OnDemand => "on demand",
        Scope::CrossRegion => "cross-Region inference profile",
        Scope::Global => "global inference profile",
    }
}

fn write_table(out: &mut impl Write, quotas: &ModelQuotas, usage: Option<&Usage>) -> std::io::Result<()> {
    writeln!(
        out,
        "{} — Service Quotas name it {:?}; invoked {}",
        quotas.model_id,
        quotas.model_name,
        scope_name(quotas.scope)
    )?;
    writeln!(out, "{:<3} {:<78} {:<12} {:>14}  adjustable", "", "quota", "code", "value")?;
    for quota in &quotas.quotas {
        let applies = quota.scope.is_none_or(|scope| scope == quotas.scope);
        writeln!(
            out,
            "{:<3} {:<78} {:<12} {:>14}  {}",
            if applies { "*" } else { "" },
            quota.name,
            quota.code,
            format!("{:.0}", quota.value),
            if quota.adjustable { "yes" } else { "no" }
        )?;
    }
    writeln!(out, "* applies to invocations with this id")?;
    let (rpm, tpm, tpd) = quotas.as_quota();
    if let Some(usage) = usage {
        let requests = usage.invocations + usage.throttles;
        #[allow(clippy::cast_precision_loss)]
        let share = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 };
        writeln!(
            out,
            "last {} h (CloudWatch AWS/Bedrock): {} invocations, {} throttled ({:.1}%), {} input + {} output tokens",
            usage.hours,
            usage.invocations,
            usage.throttles,
            share(usage.throttles, requests),
            usage.input_tokens,
            usage.output_tokens
        )?;
        let mut busiest = format!(
            "busiest minute: {} invocations, {} tokens",
            usage.peak_minute_invocations, usage.peak_minute_tokens
        );
        if let Some(tpm) = tpm {
            busiest
                .push_str(&format!(" ({:.0}% of the tokens-per-minute quota)", share(usage.peak_minute_tokens, tpm)));
        }
        writeln!(out, "{busiest}")?;
        if let Some(tpd) = tpd {
            writeln!(
                out,
                "last 24 h: {} tokens, {:.1}% of the daily quota",
                usage.tokens_last_24h,
                share(usage.tokens_last_24h, tpd)
            )?;
        }
    }
    let mut flags = Vec::new();
    if let Some(rpm) = rpm {
        flags.push(format!("--rpm {rpm}"));
    }
    if let Some(tpm) = tpm {
        flags.push(format!("--tpm {tpm}"));
    }
    if let Some(tpd) = tpd {
        flags.push(format!("--tpd {tpd}"));
    }
    writeln!(out, "beacon run --quota-from aws takes these ({})", flags.join(" "))
}

/// `--quota-from aws`: sets the quota `config` paces to from the model's applied quotas, leaving
/// what the command line told explicitly. Bedrock only.
pub async fn apply_quota_source(config: &mut Config, told: (bool, bool, bool)) -> Result<ModelQuotas, u8> {
    if config.provider.kind != beacon_pipeline::ProviderKind::Bedrock {
        eprintln!("error: --quota-from aws reads Bedrock's quotas: use it with --provider bedrock");
        return Err(exit::USAGE);
    }
    let Some(model) = config.provider.model.clone() else {
        eprintln!("error: --quota-from aws needs --model");
        return Err(exit::USAGE);
    };
    let sdk = beacon_aws::sdk_config(config.provider.region.as_deref(), None).await;
    let listed = list_bedrock_quotas(&sdk).await.map_err(|error| {
        eprintln!("error: --quota-from aws: cannot read the Bedrock quotas from Service Quotas: {error}");
        exit::INTERNAL
    })?;
    let quotas = model_quotas(&model, None, &listed).map_err(|error| {
        eprintln!("error: --quota-from aws: {error}");
        exit::USAGE
    })?;
    let (rpm, tpm, tpd) = quotas.as_quota();
    if !told.0 && rpm.is_some() {
        config.quota.rpm = rpm;
    }
    if !told.1 && tpm.is_some() {
        config.quota.tpm = tpm;
    }
    if !told.2 && tpd.is_some() {
        config.quota.tpd = tpd;
    }
    if quotas.applied(Kind::TokensPerMinute).is_none() && quotas.applied(Kind::RequestsPerMinute).is_none() {
        eprintln!("warning: Service Quotas has no per-minute quota for {model}: the pacer learns the rate");
    }
    eprintln!(
        "quota from Service Quotas ({}): {}",
        quotas.model_name,
        [
            config.quota.rpm.map(|r| format!("{r} requests/min")),
            config.quota.tpm.map(|t| format!("{t} tokens/min")),
            config.quota.tpd.map(|t| format!("{t} tokens/day")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
    );
    config.validate().map_err(|error| {
        eprintln!("error: {error}");
        exit::USAGE
    })?;
    Ok(quotas)
}
