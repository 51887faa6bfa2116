//! `beacon run FILE`: the main job.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use beacon_llm::bedrock::BedrockConverse;
use beacon_llm::offline::OfflineAnalyzer;
use beacon_llm::retry::{RetryPolicy, Retrying};
use beacon_llm::{ClientStats, LlmClient};
use beacon_pipeline::report::UnitStatus;
use beacon_pipeline::{Config, ProviderKind, RunError, Runner, Services};
use beacon_store::Store;
use clap::Args;

use crate::display::Display;
use crate::exit;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The document to analyse.
    file: PathBuf,
    /// Output directory for report.json and report.md [default: beacon-out/<file stem>/].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// LLM provider: offline (built-in extractive analyzer, no network) or bedrock.
    #[arg(long, value_name = "offline|bedrock")]
    provider: Option<ProviderKind>,
    /// Model id for Bedrock (or a Provisioned Throughput ARN).
    #[arg(long)]
    model: Option<String>,
    /// Endpoint URL override for the provider (e.g. the address `beacon sim` prints).
    #[arg(long)]
    endpoint: Option<String>,
    /// AWS region for Bedrock (default: the normal AWS resolution).
    #[arg(long)]
    region: Option<String>,
    /// How many units to analyse at once (the inline Map's MaxConcurrency).
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// Largest input file accepted, in bytes.
    #[arg(long)]
    max_file_bytes: Option<u64>,
    /// Directory of the local object store [default: $XDG_DATA_HOME/beacon].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Progress as plain log lines even on a terminal.
    #[arg(long)]
    no_progress_bar: bool,
}

impl RunArgs {
    fn apply(&self, config: &mut Config) {
        if let Some(p) = self.provider {
            config.provider.kind = p;
        }
        if let Some(m) = &self.model {
            config.provider.model = Some(m.clone());
        }
        if let Some(e) = &self.endpoint {
            config.provider.endpoint = Some(e.clone());
        }
        if let Some(r) = &self.region {
            config.provider.region = Some(r.clone());
        }
        if let Some(c) = self.max_concurrency {
            config.strategy.inline_max_concurrency = c;
        }
        if let Some(b) = self.max_file_bytes {
            config.limits.max_file_bytes = b;
        }
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
    }

    fn out_dir(&self) -> PathBuf {
        match &self.out {
            Some(dir) => dir.clone(),
            None => {
                let stem = self
                    .file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "document".into());
                Path::new("beacon-out").join(stem)
            }
        }
    }
}

pub async fn run(config_path: Option<&Path>, args: RunArgs) -> u8 {
    let mut config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    args.apply(&mut config);
    if let Err(e) = config.validate() {
        eprintln!("error: {e}");
        return exit::USAGE;
    }
    let stats = ClientStats::default();
    let llm = match build_client(&config, stats.clone()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    let store = match Store::local(&config.data_dir.join("store")) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    let display = Arc::new(Display::new(&args.file, stats.clone(), !args.no_progress_bar));
    let services = Services {
        store,
        llm,
        config: Arc::new(config),
        progress: display.clone(),
        unit_schema: Arc::new(beacon_pipeline::schema::default_unit_schema()),
    };
    let runner = match Runner::new(services) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    let started = Instant::now();
    let ticker = display.clone().start_ticker();
    let result = runner.run_file(&args.file).await;
    ticker.abort();
    display.finish();
    let outcome = match result {
        Ok(o) => o,
        Err(e @ RunError::Input { .. }) => {
            eprintln!("error: {e}");
            return exit::INPUT;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };

    let out_dir = args.out_dir();
    if let Err(e) = write_reports(&out_dir, &outcome) {
        eprintln!("error: cannot write the report to {}: {e}", out_dir.display());
        return exit::INTERNAL;
    }
    let report = &outcome.report;
    let failed = report.units.iter().filter(|u| u.status == UnitStatus::Failed).count();
    println!(
        "{}: {} of {} units succeeded, {} requests, {} throttled, {} in {:.1}s",
        args.file.display(),
        report.units.len() - failed,
        report.units.len(),
        report.usage.requests,
        report.usage.throttles,
        report.model,
        started.elapsed().as_secs_f64()
    );
    for f in &report.failed_units {
        println!("  failed: {} ({}): {}", f.title, f.error, f.cause);
    }
    println!("report: {}", out_dir.join("report.json").display());
    println!("report: {}", out_dir.join("report.md").display());
    if failed > 0 { exit::UNITS_FAILED } else { exit::SUCCESS }
}

fn write_reports(dir: &Path, outcome: &beacon_pipeline::RunOutcome) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(&outcome.report).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.json"), json)?;
    std::fs::write(dir.join("report.md"), &outcome.report_markdown)?;
    Ok(())
}

/// The provider named by the configuration, wrapped in the retry layer.
async fn build_client(config: &Config, stats: ClientStats) -> Result<Arc<dyn LlmClient>, beacon_llm::LlmError> {
    let r = &config.retry;
    let policy = RetryPolicy {
        base_delay: Duration::from_millis(r.base_delay_ms),
        max_delay: Duration::from_millis(r.max_delay_ms),
        max_attempts: r.max_attempts,
        throttle_budget: Duration::from_secs(r.throttle_budget_secs),
    };
    Ok(match config.provider.kind {
        ProviderKind::Offline => Arc::new(Retrying::new(OfflineAnalyzer, policy, stats)),
        ProviderKind::Bedrock => {
            let model = config.provider.model.clone().unwrap_or_default();
            let client =
                BedrockConverse::new(model, config.provider.endpoint.clone(), config.provider.region.clone()).await?;
            Arc::new(Retrying::new(client, policy, stats))
        }
    })
}
