//! `beacon`: turn documents into structured reports with an LLM.
//!
//! This binary only parses arguments and wires the library crates together; see
//! `ARCHITECTURE.md` for where the work happens.

mod asl;
mod deploy;
mod display;
mod executions;
mod exit;
mod plan;
mod quota;
mod run;
mod serve;
mod session;
mod sim;
mod units;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "beacon", version, about = "Turn documents into structured reports with an LLM", long_about = None)]
struct Cli {
    /// Configuration file (default: ./beacon.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log verbosity for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "BEACON_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Analyse a document (PDF, XLSX/XLSM/XLSB/XLS/ODS, DOCX/ODT, PPTX/ODP, CSV, text/Markdown) and write report.json and report.md.
    Run(run::RunArgs),
    /// List the units a document splits into (what the model will see), without calling a model.
    Units(units::UnitsArgs),
    /// Units, strategy, tokens, cost (on demand and batch) and time under the quota for each
    /// document, before any model call.
    Plan(plan::PlanArgs),
    /// Start a local Amazon Bedrock-compatible simulator (Converse API) with quotas and latency.
    Sim(sim::SimArgs),
    /// Validate or run any ASL state machine locally (a local Step Functions).
    #[command(subcommand)]
    Asl(asl::AslCommand),
    /// List, inspect and resume executions (the local journal).
    #[command(subcommand)]
    Executions(executions::ExecutionsCommand),
    /// Deploy BEACON to AWS: build and package the Lambda code and the template, create or
    /// update the CloudFormation stack (--dry-run: write them to a directory instead).
    Deploy(deploy::DeployArgs),
    /// A Bedrock model's applied quotas (Service Quotas: requests and tokens per minute, tokens
    /// per day, on demand and cross-Region) and its recent usage and throttles (CloudWatch).
    Quota(quota::QuotaArgs),
    /// BEACON as a service: an HTTP API (tokens, queue, reports, history, metrics) over the
    /// same engine, journal and quota as `beacon run`; `beacon serve token ...` manages tokens.
    Serve(serve::ServeArgs),
}

/// A parser that panics on a hostile file is caught and reported as that file's error; the
/// default hook would still print a panic message and backtrace on stderr. Handled panics go to
/// the debug log instead; any other panic is printed as before.
fn quiet_handled_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if beacon_ingest::panic_is_guarded() {
            tracing::debug!(%info, "parser panic, handled as a corrupt-file error");
        } else {
            default(info);
        }
    }));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log);
    quiet_handled_panics();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::INTERNAL.into();
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(cli.config.as_deref(), args).await,
            Command::Units(args) => units::units(cli.config.as_deref(), &args),
            Command::Plan(args) => plan::plan(cli.config.as_deref(), &args).await,
            Command::Sim(args) => sim::sim(args).await,
            Command::Asl(command) => asl::asl(cli.config.as_deref(), command).await,
            Command::Executions(command) => executions::executions(cli.config.as_deref(), command).await,
            Command::Deploy(args) => deploy::deploy(args).await,
            Command::Quota(args) => quota::quota(&args).await,
            Command::Serve(args) => serve::serve(cli.config.as_deref(), args).await,
        }
    });
    ExitCode::from(code)
}

fn init_tracing(level: &str) {
    // Parser libraries log every recoverable oddity of a damaged file; BEACON reports what matters
    // itself, so their logs stay off unless asked for by name (e.g. BEACON_LOG=debug,lopdf=debug).
    let directives = format!("{level},lopdf=off,calamine=off");
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
