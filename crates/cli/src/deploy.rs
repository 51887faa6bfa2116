//! `beacon deploy`: package the template and the Lambda code, then create or update the
//! CloudFormation stack (or, with `--dry-run`, write what would be deployed).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use beacon_deploy::provisioned::{Commitment, ProvisionRequest};
use beacon_deploy::{
    self as deploy, Arch, CodeSource, DeployError, DeployOptions, DeployRequest, Rollout, TemplateSource,
};
use clap::Args;

use crate::exit;

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// The CloudFormation stack to create or update (letters, digits and '-', at most 44
    /// characters: the function names append up to 20).
    #[arg(long)]
    stack: String,
    /// The AWS region (default: AWS_REGION or the profile's).
    #[arg(long)]
    region: Option<String>,
    /// Bedrock model id or inference profile the units are analysed with (parameter ModelId).
    #[arg(long)]
    model: Option<String>,
    /// Where the alarms send email (parameter AlarmEmail; the address must confirm the
    /// subscription).
    #[arg(long)]
    alarm_email: Option<String>,
    /// The functions' instruction set (parameter Architecture).
    #[arg(long, default_value = "arm64", value_parser = parse_arch)]
    arch: Arch,
    /// Any other template parameter, e.g. --parameter LlmProcessorMemory=1024 (repeatable).
    #[arg(long = "parameter", value_name = "KEY=VALUE", value_parser = parse_parameter)]
    parameters: Vec<(String, String)>,
    /// A template to deploy instead of the built-in deploy/template.yaml.
    #[arg(long)]
    template: Option<PathBuf>,
    /// A `bootstrap` executable already built for --arch, instead of building with cargo-lambda.
    #[arg(long, conflicts_with = "lambda_zip")]
    lambda_binary: Option<PathBuf>,
    /// A zip holding `bootstrap` (from `cargo lambda build --output-format zip`), instead of
    /// building.
    #[arg(long)]
    lambda_zip: Option<PathBuf>,
    /// The BEACON checkout cargo-lambda builds in.
    #[arg(long, default_value = ".")]
    source: PathBuf,
    /// Write the packaged template, the zip and the parameters to --out/STACK; call no AWS API.
    #[arg(long)]
    dry_run: bool,
    /// Where --dry-run writes (and cargo-lambda builds).
    #[arg(long, default_value = "deploy-out")]
    out: PathBuf,
    /// An existing bucket for the artifacts (default: the bucket of the stack
    /// beacon-deploy-artifacts, created on first use).
    #[arg(long)]
    artifacts_bucket: Option<String>,
    /// An AWS-compatible endpoint instead of AWS (LocalStack, moto).
    #[arg(long)]
    endpoint: Option<String>,
    /// Buy Bedrock Provisioned Throughput of this many model units for --model first (through
    /// the Bedrock API; CloudFormation cannot) and run the stack on it. Says what it costs and
    /// needs --yes to go ahead.
    #[arg(long, value_name = "N")]
    provisioned_units: Option<u32>,
    /// The Provisioned Throughput commitment: none (hourly, until deleted), 1month or 6months.
    #[arg(long, default_value = "none", value_parser = parse_commitment)]
    commitment: Commitment,
    /// USD per model unit per hour of the Provisioned Throughput (from the Bedrock pricing page),
    /// to see the total before buying.
    #[arg(long, value_name = "USD")]
    provisioned_unit_price: Option<f64>,
    /// Go ahead with the purchase --provisioned-units describes.
    #[arg(long)]
    yes: bool,
    /// A Bedrock control-plane endpoint instead of AWS's (beacon sim).
    #[arg(long, hide = true)]
    bedrock_endpoint: Option<String>,
    /// Seconds between two polls of the change set and the stack.
    #[arg(long, default_value_t = 5, hide = true)]
    poll_seconds: u64,
    /// How long to follow the stack operation before leaving it to CloudFormation.
    #[arg(long, default_value_t = 60)]
    timeout_minutes: u64,
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse()
}

fn parse_commitment(s: &str) -> Result<Commitment, String> {
    s.parse()
}

fn parse_parameter(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// CloudFormation's stack name rule, with room for the function names the template derives.
fn check_stack_name(stack: &str) -> Result<(), String> {
    let valid = stack.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && stack.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && stack.len() <= 44;
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid stack name {stack:?}: a letter, then letters, digits and '-', at most 44 characters \
             (function names append up to 20 and Lambda allows 64)"
        ))
    }
}

pub async fn deploy(args: DeployArgs) -> u8 {
    if let Err(message) = check_stack_name(&args.stack) {
        eprintln!("error: {message}");
        return exit::USAGE;
    }
    let mut parameters: BTreeMap<String, String> = args.parameters.iter().cloned().collect();
    if let Some(model) = &args.model {
        parameters.insert("ModelId".into(), model.clone());
    }
    if let Some(email) = &args.alarm_email {
        parameters.insert("AlarmEmail".into(), email.clone());
    }
    let provision = match provision_request(&args, &parameters) {
        Ok(provision) => provision,
        Err(message) => {
            eprintln!("error: {message}");
            return exit::USAGE;
        }
    };
    let request = DeployRequest {
        template: args.template.clone().map_or(TemplateSource::Embedded, TemplateSource::File),
        code: match (&args.lambda_binary, &args.lambda_zip) {
            (Some(binary), _) => CodeSource::Binary(binary.clone()),
            (None, Some(zip)) => CodeSource::Zip(zip.clone()),
            (None, None) => CodeSource::Build { source: args.source.clone() },
        },
        arch: args.arch,
        parameters,
        work_dir: args.out.clone(),
    };
    match run(&args, &request, provision.as_ref()).await {
        Ok(()) => exit::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                DeployError::Usage(_) | DeployError::Template(_) | DeployError::Artifact(_) => exit::USAGE,
                DeployError::Aws { .. } | DeployError::Stack(_) | DeployError::Io(_) => exit::INTERNAL,
            }
        }
    }
}

/// The Provisioned Throughput --provisioned-units asks for, checked.
fn provision_request(
    args: &DeployArgs,
    parameters: &BTreeMap<String, String>,
) -> Result<Option<ProvisionRequest>, String> {
    let Some(units) = args.provisioned_units else { return Ok(None) };
    if units == 0 {
        return Err("--provisioned-units must be at least 1".into());
    }
    if parameters.contains_key("ProvisionedModelArn") {
        return Err(
            "--provisioned-units buys a provisioned model; --parameter ProvisionedModelArn names one: give one of them"
                .into(),
        );
    }
    let Some(model_id) = args.model.clone() else {
        return Err("--provisioned-units needs --model: the model to provision".into());
    };
    Ok(Some(ProvisionRequest {
        model_id,
        units,
        commitment: args.commitment,
        name: format!("{}-beacon", args.stack),
        unit_price_per_hour: args.provisioned_unit_price,
    }))
}

async fn run(
    args: &DeployArgs,
    request: &DeployRequest,
    provision: Option<&ProvisionRequest>,
) -> Result<(), DeployError> {
    if let Some(provision) = provision {
        eprintln!("{}", provision.cost_statement());
        if !args.yes && !args.dry_run {
            return Err(DeployError::Usage("nothing was bought or deployed: add --yes to go ahead".into()));
        }
    }
    let mut packaged = deploy::package(request)?;
    eprintln!(
        "packaged: template with {} resources, Lambda code {} ({} bytes, {})",
        packaged.template["Resources"].as_object().map_or(0, |r| r.len()),
        packaged.zip.key,
        packaged.zip.bytes.len(),
        args.arch.lambda_name()
    );
    if args.dry_run {
        let dir = args.out.join(&args.stack);
        for path in deploy::write_dry_run(&packaged, &dir)? {
            println!("{}", path.display());
        }
        eprintln!("dry run: nothing was uploaded or deployed");
        return Ok(());
    }

    let sdk = beacon_aws::sdk_config(args.region.as_deref(), args.endpoint.as_deref()).await;
    if let Some(provision) = provision {
        let poll = Duration::from_secs(args.poll_seconds.max(1));
        let timeout = Duration::from_secs(args.timeout_minutes.max(1) * 60);
        let progress = |line: &str| eprintln!("  {line}");
        let (region, endpoint) = (args.region.as_deref(), args.bedrock_endpoint.as_deref());
        let arn = provision.create(region, endpoint, poll, timeout, &progress).await?;
        packaged.parameters.insert("ProvisionedModelArn".into(), arn);
    }
    let options = DeployOptions {
        artifacts_bucket: args.artifacts_bucket.clone(),
        endpoint: args.endpoint.clone(),
        poll: Duration::from_secs(args.poll_seconds.max(1)),
        timeout: Duration::from_secs(args.timeout_minutes.max(1) * 60),
    };
    let progress = |line: &str| eprintln!("  {line}");
    let deployed = deploy::deploy(&packaged, &args.stack, &sdk, &options, &progress).await?;
    let verb = match deployed.rollout {
        Rollout::Created => "created",
        Rollout::Updated => "updated",
        Rollout::Unchanged => "already up to date",
    };
    eprintln!("stack {} {verb} (artifacts in s3://{})", args.stack, deployed.artifacts_bucket);
    // The outputs on stdout, one `Key<TAB>Value` per line, for scripts.
    for (key, value) in &deployed.stack.outputs {
        println!("{key}\t{value}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names_follow_cloudformation_and_leave_room_for_function_names() {
        assert!(check_stack_name("beacon-prod").is_ok());
        assert!(check_stack_name("b").is_ok());
        for bad in ["", "1beacon", "beacon_prod", "beacon prod", &"b".repeat(45)] {
            assert!(check_stack_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_parameter("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(parse_parameter("=x").is_err() && parse_parameter("novalue").is_err());
    }
}
