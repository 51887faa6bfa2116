//! What `run` and `executions resume` share: configuration from file + environment + flags, the
//! LLM client stack, the store, the journal and the progress display; and turning a finished run
//! into files, a summary and an exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use beacon_asl::TaskRegistry;
use beacon_aws::client::build_client;
use beacon_llm::ClientStats;
use beacon_pipeline::batch_jobs::BatchJobs;
use beacon_pipeline::config::ProviderConfig;
use beacon_pipeline::pool::BatchPool;
use beacon_pipeline::report::UnitStatus;
use beacon_pipeline::{Config, ProviderKind, RunError, RunOutcome, Runner, Secret, Services};
use beacon_server::metrics::Observed;
use beacon_store::Store;
use beacon_store::journal::Journal;
use clap::Args;

use crate::display::Display;
use crate::exit;

/// Flags that override the configuration, shared by the commands that run the flow.
/// Which engine runs (or ran) executions.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// The embedded engine on this machine (the journal under the data directory).
    #[default]
    Local,
    /// AWS Step Functions: the stack `beacon deploy` created.
    Aws,
}

#[derive(Args, Debug, Default, Clone)]
pub struct FlowArgs {
    /// LLM provider: offline (built-in extractive analyzer, no network), bedrock, or openai
    /// (any OpenAI-compatible chat completions server).
    #[arg(long, value_name = "offline|bedrock|openai")]
    pub provider: Option<ProviderKind>,
    /// Model id for Bedrock (or a Provisioned Throughput ARN).
    #[arg(long)]
    pub model: Option<String>,
    /// Endpoint URL override for the provider (e.g. the address `beacon sim` prints).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// AWS region for Bedrock (default: the normal AWS resolution).
    #[arg(long)]
    pub region: Option<String>,
    /// How many units to analyse at once (the inline Map's MaxConcurrency).
    #[arg(long)]
    pub max_concurrency: Option<u32>,
    /// The provider's requests-per-minute quota (with neither --rpm nor --tpm, BEACON finds the
    /// quota itself with adaptive concurrency).
    #[arg(long)]
    pub rpm: Option<u32>,
    /// The provider's tokens-per-minute quota (input + output).
    #[arg(long)]
    pub tpm: Option<u64>,
    /// The provider's tokens-per-day quota (input + output; Bedrock's "Model invocation max
    /// tokens per day"): requests wait once the last 24 hours' tokens reach it.
    #[arg(long)]
    pub tpd: Option<u64>,
    /// Take the quota from the model's applied quotas in Service Quotas (Bedrock; see `beacon
    /// quota`); --rpm/--tpm/--tpd given as well win.
    #[arg(long, value_enum, value_name = "SOURCE")]
    pub quota_from: Option<crate::quota::QuotaSource>,
    /// Share the rate limiter with other processes through this DynamoDB table (one item per
    /// model; created if missing). Needs --rpm or --tpm.
    #[arg(long, value_name = "TABLE")]
    pub limiter_table: Option<String>,
    /// Upper bound on each answer's tokens.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Seconds one request may take before it is retried as a timeout.
    #[arg(long, value_name = "SECONDS")]
    pub request_timeout: Option<u64>,
    /// A JSON Schema file unit results must follow (default: the built-in unit schema).
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,
    /// Do not reuse cached results of identical requests.
    #[arg(long)]
    pub no_cache: bool,
    /// Send each PDF page to the model as a one-page PDF with its text (for models that read
    /// PDF documents: Claude on Bedrock; scanned pages become readable).
    #[arg(long)]
    pub attach_pages: bool,
    /// The password of an encrypted PDF (prefer the environment variable: a flag is visible in
    /// the process list and shell history). Never stored.
    #[arg(long, env = "BEACON_DOCUMENT_PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Largest input file accepted, in bytes.
    #[arg(long)]
    pub max_file_bytes: Option<u64>,
    /// Directory of the local object store and execution journal [default: $XDG_DATA_HOME/beacon].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Progress as plain log lines even on a terminal.
    #[arg(long)]
    pub no_progress_bar: bool,
}

impl FlowArgs {
    fn apply(&self, config: &mut Config) {
        self.apply_provider(&mut config.provider);
        if let Some(c) = self.max_concurrency {
            config.strategy.inline_max_concurrency = c;
        }
        if let Some(rpm) = self.rpm {
            config.quota.rpm = Some(rpm);
        }
        if let Some(tpm) = self.tpm {
            config.quota.tpm = Some(tpm);
        }
        if let Some(tpd) = self.tpd {
            config.quota.tpd = Some(tpd);
        }
        if let Some(table) = &self.limiter_table {
            config.quota.shared_table = Some(table.clone());
        }
        if let Some(t) = self.max_tokens {
            config.llm.max_tokens = t;
        }
        if let Some(t) = self.request_timeout {
            config.llm.request_timeout_secs = t;
        }
        if let Some(schema) = &self.schema {
            config.llm.schema = Some(schema.clone());
        }
        if self.attach_pages {
            config.llm.attach_pages = true;
        }
        if self.no_cache {
            config.llm.cache = false;
        }
        if let Some(b) = self.max_file_bytes {
            config.limits.max_file_bytes = b;
        }
        if let Some(password) = &self.password {
            config.document_password = Some(Secret::new(password.clone()));
        }
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
    }

    /// Apply the provider flags only (a resume applies them over the journaled provider).
    pub fn apply_provider(&self, p: &mut ProviderConfig) {
        if let Some(kind) = self.provider {
            p.kind = kind;
        }
        if let Some(m) = &self.model {
            p.model = Some(m.clone());
        }
        if let Some(e) = &self.endpoint {
            p.endpoint = Some(e.clone());
        }
        if let Some(r) = &self.region {
            p.region = Some(r.clone());
        }
    }
}

/// The configuration after file, environment and flags; exit code on error.
pub fn load_config(path: Option<&Path>, args: &FlowArgs) -> Result<Config, u8> {
    let mut config = Config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        exit::USAGE
    })?;
    args.apply(&mut config);
    Ok(config)
}

/// [`load_config`], then the quota from `--quota-from` (what `beacon run` and `beacon plan`
/// pace and plan to).
pub async fn load_flow_config(path: Option<&Path>, args: &FlowArgs) -> Result<Config, u8> {
    let mut config = load_config(path, args)?;
    if args.quota_from.is_some() {
        let told = (args.rpm.is_some(), args.tpm.is_some(), args.tpd.is_some());
        crate::quota::apply_quota_source(&mut config, told).await?;
    }
    Ok(config)
}

/// The store and the journal under the configured data directory.
pub fn open_storage(config: &Config) -> Result<(Store, Journal), u8> {
    let store = config.open_store().map_err(|e| {
        eprintln!("error: {e}");
        exit::INTERNAL
    })?;
    let journal = Journal::open(&config.data_dir.join("journal.sqlite")).map_err(|e| {
        eprintln!("error: {e}");
        exit::INTERNAL
    })?;
    Ok((store, journal))
}

/// Everything needed to run or resume executions: one client stack (so every document shares
/// the quota), one store and journal, one batch pool, and a progress display per document.
pub struct Session {
    services: Services,
    journal: Journal,
    sdk_tasks: TaskRegistry,
    pool: Arc<BatchPool>,
    /// Requests this process sent (a resumed run sends fewer than its report counts).
    stats: ClientStats,
    /// The batch jobs the `aws-sdk:bedrock` tasks saw.
    batch_jobs: BatchJobs,
    allow_bar: bool,
    /// Holds the bars of several documents run at once.
    bars: indicatif::MultiProgress,
    /// How many documents this session runs (the per-process request count is only a
    /// document's own when it runs alone).
    documents: usize,
    /// `--metrics-bind`: what a long run exports for Prometheus.
    metrics: Option<Arc<beacon_server::metrics::Metrics>>,
}

/// One document's runner and its progress display.
pub struct DocumentRun {
    pub runner: Runner,
    pub display: Arc<Display>,
}

impl Session {
    pub async fn new(config: Config, args: &FlowArgs) -> Result<Session, u8> {
        if let Err(e) = config.validate() {
            eprintln!("error: {e}");
            return Err(exit::USAGE);
        }
        let unit_schema = beacon_pipeline::schema::unit_schema(&config).map_err(|e| {
            eprintln!("error: {e}");
            exit::USAGE
        })?;
        let stats = ClientStats::default();
        let llm = build_client(&config, stats.clone()).await.map_err(|e| {
            eprintln!("error: {e}");
            exit::INTERNAL
        })?;
        let (store, journal) = open_storage(&config)?;
        let batch_jobs = BatchJobs::default();
        let sdk_tasks = aws_sdk_tasks(&config, &batch_jobs).await;
        let services = Services { store, llm, config: Arc::new(config), unit_schema: Arc::new(unit_schema) };
        let pool = Arc::new(BatchPool::for_config(&services));
        Ok(Session {
            services,
            journal,
            sdk_tasks,
            pool,
            stats,
            batch_jobs,
            allow_bar: !args.no_progress_bar,
            bars: indicatif::MultiProgress::new(),
            documents: 1,
            metrics: None,
        })
    }

    /// What `beacon serve` runs on: the services, the journal, the `aws-sdk:*` tasks, the
    /// client stack's counts and the batch jobs seen.
    pub fn into_parts(self) -> (Services, Journal, TaskRegistry, Observed) {
        let observed = Observed { stats: self.stats, batch_jobs: self.batch_jobs };
        (self.services, self.journal, self.sdk_tasks, observed)
    }

    /// Serve `/metrics` on `address` while this session runs (`beacon run --metrics-bind`): the
    /// same numbers `beacon serve` exports, for the documents of this run.
    pub async fn serve_metrics(&mut self, address: &str) -> Result<String, u8> {
        let config = &self.services.config;
        let observed = Observed { stats: self.stats.clone(), batch_jobs: self.batch_jobs.clone() };
        let metrics =
            Arc::new(beacon_server::metrics::Metrics::new(observed, config.provider.kind.name(), &config.model_name()));
        let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
            eprintln!("error: --metrics-bind {address}: {e}");
            exit::USAGE
        })?;
        let local = listener.local_addr().map_or(address.to_string(), |a| a.to_string());
        tokio::spawn(beacon_server::serve_metrics(listener, metrics.clone()));
        self.metrics = Some(metrics);
        Ok(local)
    }

    /// This session runs `documents` documents at once.
    pub fn with_documents(mut self, documents: usize) -> Session {
        self.documents = documents;
        self
    }

    /// Requests this process sent, for all documents.
    pub fn requests_sent(&self) -> u64 {
        self.stats.snapshot().requests
    }

    /// A runner for one document (labelled `label` in the progress display).
    /// The configuration this session runs with.
    pub fn config(&self) -> &Config {
        &self.services.config
    }

    pub fn document(&self, label: &str) -> DocumentRun {
        let display = Arc::new(Display::new(label, self.stats.clone(), self.allow_bar, &self.bars));
        let runner = Runner::new(self.services.clone(), self.journal.clone(), display.clone())
            .with_tasks(self.sdk_tasks.clone())
            .with_batch_pool(self.pool.clone());
        DocumentRun { runner, display }
    }

    /// Run `work` with the document's progress display, then write the report to `out_dir` and
    /// summarise.
    pub async fn finish(
        &self,
        document: &DocumentRun,
        label: &str,
        out_dir: &Path,
        work: impl std::future::Future<Output = Result<RunOutcome, RunError>>,
    ) -> u8 {
        let started = Instant::now();
        let ticker = document.display.clone().start_ticker();
        if let Some(metrics) = &self.metrics {
            metrics.execution_started("auto");
        }
        let result = work.await;
        if let Some(metrics) = &self.metrics {
            let status = match &result {
                Ok(outcome) => {
                    metrics.report_finished(&outcome.report);
                    beacon_store::journal::ExecutionState::Succeeded
                }
                Err(_) => beacon_store::journal::ExecutionState::Failed,
            };
            metrics.execution_finished(status, Some(started.elapsed()));
        }
        ticker.abort();
        document.display.finish();
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: {e}");
                return match e {
                    RunError::Input { .. } => exit::INPUT,
                    RunError::NotResumable(_) | RunError::Options(_) => exit::USAGE,
                    RunError::Engine(_) => exit::INTERNAL,
                    _ => exit::INTERNAL,
                };
            }
        };
        if let Err(e) = write_reports(out_dir, &outcome) {
            eprintln!("error: cannot write the report to {}: {e}", out_dir.display());
            return exit::INTERNAL;
        }
        let report = &outcome.report;
        let failed = report.units.iter().filter(|u| u.status == UnitStatus::Failed).count();
        let paths: Vec<String> = report.unit_paths.iter().map(|(path, n)| format!("{n} {path}")).collect();
        // A resumed run sends fewer requests than its report counts; say how many when this
        // process ran only this document.
        let sent = if self.documents == 1 {
            format!(" ({} sent by this process)", self.stats.snapshot().requests)
        } else {
            String::new()
        };
        println!(
            "{label}: {} of {} units succeeded ({}: {}), {} requests{sent}, {} throttled, {} in {:.1}s (execution {})",
            report.units.len() - failed,
            report.units.len(),
            report.strategy,
            paths.join(", "),
            report.usage.requests,
            report.usage.throttles,
            report.model,
            started.elapsed().as_secs_f64(),
            outcome.execution
        );
        if let Some(note) = &report.strategy_note {
            println!("  note: {note}");
        }
        for f in &report.failed_units {
            println!("  failed: {} ({}): {}", f.title, f.error, f.cause);
        }
        println!("report: {}", out_dir.join("report.json").display());
        println!("report: {}", out_dir.join("report.md").display());
        if failed > 0 { exit::UNITS_FAILED } else { exit::SUCCESS }
    }
}

/// The state machine's `aws-sdk:*` resources: Bedrock batch inference, served by the Bedrock
/// control plane of the configured region (or the provider's endpoint override: `beacon sim`);
/// and the tasks `lambda.functions` sends to deployed Lambda functions.
async fn aws_sdk_tasks(config: &Config, batch_jobs: &BatchJobs) -> TaskRegistry {
    let mut registry = TaskRegistry::new();
    let lambda = &config.lambda;
    if !lambda.functions.is_empty() {
        let client = beacon_aws::lambda_invoke::client(lambda.region.as_deref(), lambda.endpoint.as_deref()).await;
        beacon_aws::lambda_invoke::register(&mut registry, &client, &lambda.functions);
    }
    if config.provider.kind == ProviderKind::Bedrock {
        let p = &config.provider;
        let client = beacon_aws::bedrock_batch::client(p.region.as_deref(), p.endpoint.as_deref()).await;
        beacon_aws::bedrock_batch::register(&mut registry, &client, batch_jobs);
    }
    registry
}

fn write_reports(dir: &Path, outcome: &RunOutcome) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(&outcome.report).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.json"), json)?;
    std::fs::write(dir.join("report.md"), &outcome.report_markdown)?;
    Ok(())
}
