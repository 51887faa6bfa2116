//! BEACON's configuration: one typed struct, loaded from `beacon.toml`, then the environment,
//! then command-line flags (applied by the CLI). Every default works offline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use beacon_ingest::Limits;
use serde::{Deserialize, Serialize};

/// Which model answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The built-in extractive analyzer: no model, no network, no cost.
    #[default]
    Offline,
    /// Amazon Bedrock (Converse API by default, InvokeModel with `api = "invoke"`).
    Bedrock,
    /// An OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server).
    Openai,
}

/// Which Bedrock API carries the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BedrockApi {
    /// The Converse API (any model).
    #[default]
    Converse,
    /// InvokeModel with an Anthropic Messages body.
    Invoke,
}

impl ProviderKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProviderKind::Offline => "offline",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Openai => "openai",
        }
    }
}

impl std::str::FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "offline" => Ok(ProviderKind::Offline),
            "bedrock" => Ok(ProviderKind::Bedrock),
            "openai" => Ok(ProviderKind::Openai),
            other => Err(format!("unknown provider '{other}' (expected offline, bedrock or openai)")),
        }
    }
}

/// The complete configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the local object store lives (documents, units, results, reports).
    pub data_dir: PathBuf,
    /// The S3 bucket name the state machine uses (`${BucketName}`: the distributed Map's
    /// ItemReader and ResultWriter, batch inference's input and output). On AWS the stack's
    /// bucket; locally it names the store under `data_dir`.
    pub bucket: String,
    /// Input limits (file size, units, decompressed size, unit size).
    pub limits: Limits,
    pub strategy: StrategyConfig,
    /// Bedrock batch inference (the batch strategy).
    pub batch: BatchConfig,
    pub provider: ProviderConfig,
    pub llm: LlmConfig,
    pub retry: RetryConfig,
    /// The provider's quota; when neither is set the client discovers it (adaptive concurrency).
    pub quota: QuotaConfig,
    /// Prices per model id (USD per 1,000 tokens), on top of the built-in table.
    pub pricing: BTreeMap<String, Price>,
    /// `beacon asl run`: local handlers for task resources.
    pub asl: AslConfig,
    /// Where documents, units, results and reports are kept.
    pub store: StoreConfig,
    /// The flow's tasks served by deployed Lambda functions instead of this process.
    pub lambda: LambdaConfig,
    /// `beacon serve`: the HTTP API's address, limits and queue.
    pub serve: ServeConfig,
    /// `beacon serve`'s alarms.
    pub alarms: AlarmsConfig,
    /// The password of an encrypted input PDF: `--password` or `BEACON_DOCUMENT_PASSWORD` only;
    /// never read from beacon.toml and never written to the journal.
    #[serde(skip)]
    pub document_password: Option<Secret>,
}

/// A secret from the command line or the environment: shown as `***` in debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Settings of the embedded engine (`beacon run` and `beacon asl run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AslConfig {
    /// Largest state input or output in bytes; beyond it a state fails with
    /// `States.DataLimitExceeded`, as on AWS Step Functions (256 KiB).
    pub payload_limit_bytes: usize,
    /// Task resources served by a local command: resource ARN → argv. The command gets the task
    /// input as JSON on stdin and prints the output as JSON on stdout; a non-zero exit fails the
    /// task (stdout `{"errorType": ..., "errorMessage": ...}` names the error, as Lambda does).
    pub resources: BTreeMap<String, Vec<String>>,
}

impl Default for AslConfig {
    fn default() -> Self {
        AslConfig { payload_limit_bytes: beacon_asl::DEFAULT_PAYLOAD_LIMIT, resources: BTreeMap::new() }
    }
}

/// Which object store holds the documents, units, results and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// Files under `data_dir/store`.
    #[default]
    Local,
    /// The S3 bucket `bucket` (what the Lambda functions of a deployment use).
    S3,
}

impl std::str::FromStr for StoreBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(StoreBackend::Local),
            "s3" => Ok(StoreBackend::S3),
            other => Err(format!("unknown store backend '{other}' (expected local or s3)")),
        }
    }
}

/// Where the objects live.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// S3 endpoint override (moto, MinIO); `BEACON_S3_ENDPOINT`.
    pub endpoint: Option<String>,
    /// S3 region (default: the normal AWS resolution).
    pub region: Option<String>,
}

/// The flow's tasks as deployed Lambda functions: the embedded engine runs the state machine
/// and each Task whose task is named here invokes its function through the Lambda Invoke API.
/// The functions read and write the S3 bucket, so the store must be that bucket too.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LambdaConfig {
    /// Task name (`document-processor`, `llm-processor`, ...) → function name or ARN.
    pub functions: BTreeMap<String, String>,
    /// Lambda endpoint override (a local Lambda emulator).
    pub endpoint: Option<String>,
    /// The functions' region (default: the normal AWS resolution).
    pub region: Option<String>,
}

/// `beacon serve`: where it listens and what it admits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// The address to listen on (`--bind`).
    pub bind: String,
    /// The tokens file (`--tokens`) [default: `<data_dir>/tokens.json`].
    pub tokens: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain and `tls_key` (`--tls-cert`, `--tls-key`);
    /// neither: plain HTTP (behind a reverse proxy for TLS).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Executions that run at once; the others wait as `QUEUED`.
    pub max_running: usize,
    /// Executions that may wait; beyond this an upload gets 503 with `Retry-After`.
    pub max_queued: usize,
    /// Largest upload, bytes [default: `limits.max_file_bytes`].
    pub max_upload_bytes: Option<u64>,
    /// Uploads read at once (each holds its body in memory while it is checked); one more waits
    /// up to `upload_wait_ms` for a place, then gets 503 with `Retry-After`.
    pub max_concurrent_uploads: usize,
    pub upload_wait_ms: u64,
    /// What an upload may choose for its own execution beside the strategy: any of `schema`
    /// (its unit JSON Schema), `max_tokens`, `temperature`. Empty by default: each choice costs
    /// (a schema goes into every unit's prompt), so the operator opts in.
    pub upload_options: Vec<String>,
    /// The largest `max_tokens` an upload may ask for (a cost bound) [default: `llm.max_tokens`].
    pub upload_max_tokens: Option<u32>,
    /// API requests per minute per token (429 with `Retry-After` beyond it).
    pub requests_per_minute: u32,
    /// Serve `/metrics` without a token (a scraper on a private network).
    pub metrics_public: bool,
    /// Origins allowed to call the API from a browser (CORS); empty: CORS off.
    pub cors_origins: Vec<String>,
    /// Who is told when executions end and alarms change (`[[serve.webhooks]]`).
    pub webhooks: Vec<WebhookSubscriber>,
    /// URL prefixes an upload's `callback_url` may start with (empty: no callbacks).
    pub callback_allow: Vec<String>,
    /// The secret callbacks are signed with (`whsec_...`); or the environment variable
    /// `callback_secret_env` names.
    pub callback_secret: Option<String>,
    pub callback_secret_env: Option<String>,
    /// The first wait before a failed delivery is tried again, milliseconds (it doubles, up to
    /// an hour).
    pub webhook_retry_base_ms: u64,
    /// Delivery attempts before a webhook is given up (the default spans about a day).
    pub webhook_max_attempts: u32,
    /// How often the console's overview keeps a sample of the totals, seconds (two days of
    /// them are kept in `server.sqlite`).
    pub overview_sample_secs: u64,
}

/// The options `serve.upload_options` may allow.
pub const UPLOAD_OPTIONS: [&str; 3] = ["schema", "max_tokens", "temperature"];

/// One webhook subscriber: events are POSTed to `url`, signed as Standard Webhooks says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSubscriber {
    pub name: String,
    pub url: String,
    /// The signing secret (`whsec_<base64>`), or `secret_env`: the variable that holds it.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The events it wants (`execution.succeeded`, `execution.failed`, `execution.timed_out`,
    /// `alarm.state_changed`); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
}

impl WebhookSubscriber {
    /// The secret, from the file or the environment.
    pub fn secret(&self) -> Option<String> {
        self.secret.clone().or_else(|| self.secret_env.as_ref().and_then(|name| std::env::var(name).ok()))
    }
}

/// The in-process alarms `beacon serve` evaluates (the AWS template's alarms and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlarmsConfig {
    /// The period every rule is evaluated over, seconds.
    pub period_secs: u64,
    /// Periods in a row that must breach for ALARM.
    pub evaluation_periods: u32,
    /// Executions that waited for a slot, per period (≥).
    pub throttled_executions: f64,
    /// Average execution time per period, milliseconds (>).
    pub execution_time_ms: f64,
    /// Executions that failed, per period (≥).
    pub failed_executions: f64,
    /// LLM requests the provider throttled, per period (≥).
    pub llm_throttles: f64,
    /// Units that failed after every retry, per period (≥).
    pub failed_units: f64,
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        AlarmsConfig {
            period_secs: 300,
            evaluation_periods: 1,
            throttled_executions: 10.0,
            execution_time_ms: 300_000.0,
            failed_executions: 1.0,
            llm_throttles: 10.0,
            failed_units: 1.0,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            bind: "127.0.0.1:8080".into(),
            tokens: None,
            tls_cert: None,
            tls_key: None,
            max_running: 4,
            max_queued: 1000,
            max_upload_bytes: None,
            max_concurrent_uploads: 16,
            upload_wait_ms: 30_000,
            upload_options: Vec::new(),
            upload_max_tokens: None,
            requests_per_minute: 600,
            metrics_public: false,
            cors_origins: Vec::new(),
            webhooks: Vec::new(),
            callback_allow: Vec::new(),
            callback_secret: None,
            callback_secret_env: None,
            webhook_retry_base_ms: 5000,
            webhook_max_attempts: 30,
            overview_sample_secs: 60,
        }
    }
}

/// How the state machine chooses and runs its parallel strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StrategyConfig {
    /// Documents with more units than this go to the distributed Map (seed default: 40).
    pub distributed_threshold: u32,
    /// Documents with more units than this go to batch inference (seed default: 100).
    pub batch_threshold: u32,
    /// How many units the inline Map has in progress at once (the Map's `MaxConcurrency`). The
    /// client stack decides how many requests actually go to the provider (rate limiter or
    /// adaptive concurrency), so this only needs to exceed what the quota allows in flight; it
    /// bounds the memory and open files of units waiting for their turn.
    pub inline_max_concurrency: u32,
    /// How many units one child execution of the distributed Map analyses (its `ItemBatcher`'s
    /// `MaxItemsPerBatch`): fewer, larger children cost fewer state transitions on AWS.
    pub distributed_batch_size: u32,
    /// How many child executions the distributed Map runs at once (`MaxConcurrency`).
    pub distributed_max_concurrency: u32,
    /// The share of child executions that may fail before the distributed Map fails
    /// (`ToleratedFailurePercentage`, 0-100). A unit's own failure is caught inside its child and
    /// reported; a child fails only when even recording a failure did not work.
    pub tolerated_failure_percentage: f64,
}

/// The inline Map's default `MaxConcurrency`: as many as adaptive concurrency may reach (its
/// default maximum), so the client stack, not the Map, is what paces a run. The seed's fixed 10
/// left most of a large quota unused.
pub const DEFAULT_INLINE_MAX_CONCURRENCY: u32 = 256;

impl Default for StrategyConfig {
    fn default() -> Self {
        StrategyConfig {
            distributed_threshold: 40,
            batch_threshold: 100,
            inline_max_concurrency: DEFAULT_INLINE_MAX_CONCURRENCY,
            distributed_batch_size: 10,
            distributed_max_concurrency: 25,
            tolerated_failure_percentage: 5.0,
        }
    }
}

/// What happens to a batch document when its batch job fails, stops or expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BatchFallback {
    /// Analyse every unit on demand (the report says why).
    #[default]
    OnDemand,
    /// Write the report with every unit failed, the job's end as the reason.
    Fail,
}

impl BatchFallback {
    pub fn as_str(&self) -> &'static str {
        match self {
            BatchFallback::OnDemand => "on-demand",
            BatchFallback::Fail => "fail",
        }
    }
}

/// Bedrock batch inference: how jobs are submitted and watched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// The fewest records Bedrock accepts in a job (100). A batch document with fewer records
    /// waits in the batch pool for other documents' records (`pool_window_secs`), then goes on
    /// demand.
    pub min_records: u32,
    /// Seconds between two looks at a running job's status (the Wait state).
    pub poll_seconds: u32,
    /// How long Bedrock may take before the job expires (`TimeoutDurationInHours`, 24-168).
    pub timeout_hours: u32,
    /// The IAM role Bedrock assumes to read the input and write the output. The simulator
    /// ignores it; real Bedrock needs a role that can read and write the bucket.
    pub role_arn: String,
    /// What a job that ends Failed, Stopped or Expired leads to.
    pub on_failure: BatchFallback,
    /// How long a document's records wait in the batch pool for other documents' records to
    /// reach `min_records` together, before the document goes on demand.
    pub pool_window_secs: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            min_records: 100,
            poll_seconds: 60,
            timeout_hours: 24,
            role_arn: "arn:aws:iam::123456789012:role/beacon-batch-inference".into(),
            on_failure: BatchFallback::OnDemand,
            pool_window_secs: 60,
        }
    }
}

/// The LLM provider.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// Model id (or Provisioned Throughput ARN) for Bedrock.
    pub model: Option<String>,
    /// Endpoint URL override (e.g. `http://127.0.0.1:PORT` for `beacon sim`).
    pub endpoint: Option<String>,
    /// AWS region override; otherwise the normal AWS resolution (env, profile).
    pub region: Option<String>,
    /// Bedrock only: Converse (default) or InvokeModel.
    pub api: BedrockApi,
    /// OpenAI-compatible only: the environment variable holding the API key (default
    /// `OPENAI_API_KEY`; no key is sent when it is unset, as local servers expect).
    pub api_key_env: Option<String>,
}

/// Per-request model parameters and the client stack's switches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    pub max_tokens: u32,
    pub temperature: f32,
    /// How long one request may take before it counts as a (retryable) timeout.
    pub request_timeout_secs: u64,
    /// A JSON Schema file unit results must follow instead of the built-in one.
    pub schema: Option<PathBuf>,
    /// Reuse earlier results for identical requests (content, prompt, model, schema, parameters).
    pub cache: bool,
    /// Send every PDF page to the model as a one-page PDF (a Converse document block) with its
    /// extracted text, for models that read PDFs: they see the layout, the figures and scanned
    /// pages that have no text layer.
    pub attach_pages: bool,
    /// Send PDF pages that have no text layer (scans) to the model as a PNG picture of the page,
    /// so a vision model reads them (the offline analyzer reads no pictures and skips them).
    /// Turn off for text-only models, which refuse images.
    pub render_scanned_pages: bool,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            max_tokens: 2048,
            temperature: 0.0,
            request_timeout_secs: 120,
            schema: None,
            cache: true,
            attach_pages: false,
            render_scanned_pages: true,
        }
    }
}

/// The provider's quota as the user knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens (input + output) per minute.
    pub tpm: Option<u64>,
    /// Tokens (input + output) per day, counted over the last 24 hours: Bedrock's "Model
    /// invocation max tokens per day" quota (by default `tpm` × 1,440; lower on new accounts).
    /// The limiter holds requests once a day's tokens are spent; `beacon plan` warns first.
    pub tpd: Option<u64>,
    /// A DynamoDB table holding the rate limiter's state (one item per model), shared by every
    /// process and Lambda using the same quota. Unset: the limiter lives in this process.
    pub shared_table: Option<String>,
    /// An endpoint override for that table (DynamoDB Local, moto).
    pub shared_endpoint: Option<String>,
    /// The burst the pacer allows outside slow start, in seconds of quota (default 1: what a
    /// provider enforcing per-second limits takes at once).
    pub burst_secs: f64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig { rpm: None, tpm: None, tpd: None, shared_table: None, shared_endpoint: None, burst_secs: 1.0 }
    }
}

impl QuotaConfig {
    /// Whether any quota is known (otherwise the pacer learns the rate from throttles).
    pub fn is_known(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.tpd.is_some()
    }
}

/// The client-side retry policy (see `beacon_llm::retry`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Attempts for transient errors (5xx, timeouts).
    pub max_attempts: u32,
    /// How long a throttled request keeps trying before its unit fails.
    pub throttle_budget_secs: u64,
    /// Race a second copy of a request that runs far longer than recent ones (hung connections).
    pub hedge: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            base_delay_ms: 500,
            max_delay_ms: 20_000,
            max_attempts: 8,
            throttle_budget_secs: 30 * 60,
            hedge: true,
        }
    }
}

/// Price of a model in USD per 1,000 tokens, on demand and in batch inference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_1k: f64,
    pub output_per_1k: f64,
    /// Batch inference prices; when absent, half the on-demand ones (Bedrock's batch discount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_input_per_1k: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_output_per_1k: Option<f64>,
}

impl Price {
    pub fn on_demand(input_per_1k: f64, output_per_1k: f64) -> Self {
        Price { input_per_1k, output_per_1k, batch_input_per_1k: None, batch_output_per_1k: None }
    }

    /// The batch inference price (given, or half the on-demand one).
    pub fn batch(&self) -> Price {
        Price::on_demand(
            self.batch_input_per_1k.unwrap_or(self.input_per_1k / 2.0),
            self.batch_output_per_1k.unwrap_or(self.output_per_1k / 2.0),
        )
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            bucket: DEFAULT_BUCKET.to_string(),
            limits: Limits::default(),
            strategy: StrategyConfig::default(),
            batch: BatchConfig::default(),
            provider: ProviderConfig::default(),
            llm: LlmConfig::default(),
            retry: RetryConfig::default(),
            quota: QuotaConfig::default(),
            pricing: BTreeMap::new(),
            asl: AslConfig::default(),
            store: StoreConfig::default(),
            lambda: LambdaConfig::default(),
            serve: ServeConfig::default(),
            alarms: AlarmsConfig::default(),
            document_password: None,
        }
    }
}

/// The bucket name of the local store.
pub const DEFAULT_BUCKET: &str = "beacon-local";

/// `$BEACON_DATA_DIR`, else `$XDG_DATA_HOME/beacon`, else `~/.local/share/beacon`, else `.beacon`.
fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("beacon");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/share/beacon");
    }
    PathBuf::from(".beacon")
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("invalid config file {path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("invalid value for environment variable {name}: {reason}")]
    Env { name: String, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Load the configuration: `path` if given (must exist), else `./beacon.toml` if present,
    /// else defaults; then apply `BEACON_*` environment variables.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(p) => Self::from_file(p)?,
            None if Path::new("beacon.toml").is_file() => Self::from_file(Path::new("beacon.toml"))?,
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Parse a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.display().to_string(), reason: e.to_string() })
    }

    /// Apply environment overrides; `get` reads one variable (injectable for tests).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env { name: name.to_string(), reason: e.to_string() })
        }
        if let Some(v) = get("BEACON_DATA_DIR").filter(|v| !v.is_empty()) {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("BEACON_PROVIDER") {
            self.provider.kind =
                v.parse().map_err(|reason| ConfigError::Env { name: "BEACON_PROVIDER".into(), reason })?;
        }
        if let Some(v) = get("BEACON_MODEL") {
            self.provider.model = Some(v);
        }
        if let Some(v) = get("BEACON_ENDPOINT") {
            self.provider.endpoint = Some(v);
        }
        if let Some(v) = get("BEACON_MAX_FILE_BYTES") {
            self.limits.max_file_bytes = parse("BEACON_MAX_FILE_BYTES", &v)?;
        }
        if let Some(v) = get("BEACON_MAX_UNITS") {
            self.limits.max_units = parse("BEACON_MAX_UNITS", &v)?;
        }
        if let Some(v) = get("BEACON_BUCKET").filter(|v| !v.is_empty()) {
            self.bucket = v;
        }
        if let Some(v) = get("BEACON_STORE") {
            self.store.backend =
                v.parse().map_err(|reason| ConfigError::Env { name: "BEACON_STORE".into(), reason })?;
        }
        if let Some(v) = get("BEACON_S3_ENDPOINT").filter(|v| !v.is_empty()) {
            self.store.endpoint = Some(v);
        }
        // A quota of 0 (or empty) is unknown: what a deployment template passes when no quota
        // was given, since it cannot leave a function's variable out.
        if let Some(v) = get("BEACON_RPM").filter(|v| !v.is_empty()) {
            self.quota.rpm = Some(parse("BEACON_RPM", &v)?).filter(|rpm| *rpm > 0);
        }
        if let Some(v) = get("BEACON_TPM").filter(|v| !v.is_empty()) {
            self.quota.tpm = Some(parse("BEACON_TPM", &v)?).filter(|tpm| *tpm > 0);
        }
        if let Some(v) = get("BEACON_TPD").filter(|v| !v.is_empty()) {
            self.quota.tpd = Some(parse("BEACON_TPD", &v)?).filter(|tpd| *tpd > 0);
        }
        if let Some(v) = get("BEACON_QUOTA_TABLE").filter(|v| !v.is_empty()) {
            self.quota.shared_table = Some(v);
        }
        if let Some(v) = get("BEACON_QUOTA_ENDPOINT") {
            self.quota.shared_endpoint = Some(v);
        }
        if let Some(v) = get("BEACON_MAX_CONCURRENCY") {
            self.strategy.inline_max_concurrency = parse("BEACON_MAX_CONCURRENCY", &v)?;
        }
        Ok(())
    }

    /// Check cross-field rules; call after all overrides are applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.strategy.inline_max_concurrency == 0 {
            return Err(ConfigError::Invalid("strategy.inline_max_concurrency must be at least 1".into()));
        }
        let s = &self.strategy;
        if s.distributed_batch_size == 0 || s.distributed_max_concurrency == 0 {
            return Err(ConfigError::Invalid(
                "strategy.distributed_batch_size and strategy.distributed_max_concurrency must be at least 1".into(),
            ));
        }
        if !(0.0..=100.0).contains(&s.tolerated_failure_percentage) {
            return Err(ConfigError::Invalid(format!(
                "strategy.tolerated_failure_percentage is {}; use a percentage from 0 to 100",
                s.tolerated_failure_percentage
            )));
        }
        if self.batch.min_records == 0 || !(24..=168).contains(&self.batch.timeout_hours) {
            return Err(ConfigError::Invalid(format!(
                "batch.min_records must be at least 1 and batch.timeout_hours from 24 to 168 (they are {} and {})",
                self.batch.min_records, self.batch.timeout_hours
            )));
        }
        if self.bucket.is_empty() {
            return Err(ConfigError::Invalid("bucket must not be empty".into()));
        }
        if self.strategy.batch_threshold < self.strategy.distributed_threshold {
            return Err(ConfigError::Invalid(format!(
                "strategy.batch_threshold ({}) must not be below strategy.distributed_threshold ({})",
                self.strategy.batch_threshold, self.strategy.distributed_threshold
            )));
        }
        if self.provider.kind == ProviderKind::Bedrock && self.provider.model.is_none() {
            return Err(ConfigError::Invalid(
                "the bedrock provider needs a model id: pass --model <id> (e.g. anthropic.claude-3-haiku-20240307-v1:0)".into(),
            ));
        }
        if self.provider.kind == ProviderKind::Openai
            && (self.provider.model.is_none() || self.provider.endpoint.is_none())
        {
            return Err(ConfigError::Invalid(
                "the openai provider needs --model <id> and --endpoint <base URL> (e.g. http://127.0.0.1:8000/v1, https://api.openai.com/v1)".into(),
            ));
        }
        let serve = &self.serve;
        if serve.max_running == 0 || serve.requests_per_minute == 0 || serve.max_upload_bytes == Some(0) {
            return Err(ConfigError::Invalid(
                "serve.max_running, serve.requests_per_minute and serve.max_upload_bytes must be at least 1".into(),
            ));
        }
        if let Some(unknown) = serve.upload_options.iter().find(|o| !UPLOAD_OPTIONS.contains(&o.as_str())) {
            return Err(ConfigError::Invalid(format!(
                "serve.upload_options has '{unknown}'; an upload may choose {}",
                UPLOAD_OPTIONS.join(", ")
            )));
        }
        if serve.upload_max_tokens == Some(0) || serve.max_concurrent_uploads == 0 || serve.overview_sample_secs == 0 {
            return Err(ConfigError::Invalid(
                "serve.upload_max_tokens, serve.max_concurrent_uploads and serve.overview_sample_secs must be at least 1"
                    .into(),
            ));
        }
        if self.alarms.period_secs == 0 || self.alarms.evaluation_periods == 0 {
            return Err(ConfigError::Invalid(
                "alarms.period_secs and alarms.evaluation_periods must be at least 1".into(),
            ));
        }
        for hook in &serve.webhooks {
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "serve.webhooks '{}': url must be http:// or https://",
                    hook.name
                )));
            }
            if hook.secret().is_none() {
                return Err(ConfigError::Invalid(format!(
                    "serve.webhooks '{}' has no secret (secret, or secret_env naming a set variable)",
                    hook.name
                )));
            }
        }
        if self.quota.rpm == Some(0) || self.quota.tpm == Some(0) || self.quota.tpd == Some(0) {
            return Err(ConfigError::Invalid("quota.rpm, quota.tpm and quota.tpd must be positive when set".into()));
        }
        if !(self.quota.burst_secs > 0.0 && self.quota.burst_secs <= 60.0) {
            return Err(ConfigError::Invalid(format!(
                "quota.burst_secs must be more than 0 and at most 60 seconds of quota (it is {})",
                self.quota.burst_secs
            )));
        }
        if self.quota.shared_table.is_some() && !self.quota.is_known() {
            return Err(ConfigError::Invalid(
                "quota.shared_table (--limiter-table) needs the quota it shares: set quota.rpm, quota.tpm or quota.tpd (--rpm, --tpm, --tpd)"
                    .into(),
            ));
        }
        if self.limits.max_file_bytes == 0 || self.limits.max_units == 0 {
            return Err(ConfigError::Invalid("limits must be positive".into()));
        }
        if let Some(task) = self.lambda.functions.keys().find(|t| !crate::tasks::resources::TASKS.contains(&t.as_str()))
        {
            return Err(ConfigError::Invalid(format!(
                "lambda.functions names no task '{task}'; the tasks are {}",
                crate::tasks::resources::TASKS.join(", ")
            )));
        }
        if !self.lambda.functions.is_empty() && self.store.backend != StoreBackend::S3 {
            return Err(ConfigError::Invalid(
                "lambda.functions needs the store the functions use: set store.backend = \"s3\" (the bucket in `bucket`)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The object store `store` names: files under `data_dir/store`, or the bucket `bucket`.
    pub fn open_store(&self) -> Result<beacon_store::Store, beacon_store::StoreError> {
        match self.store.backend {
            StoreBackend::Local => beacon_store::Store::local(&self.data_dir.join("store")),
            StoreBackend::S3 => {
                beacon_store::Store::s3(&self.bucket, self.store.region.as_deref(), self.store.endpoint.as_deref())
            }
        }
    }

    /// Whether Bedrock batch inference is available: only with the Bedrock provider (the
    /// state machine's ChooseStrategy sends large documents to the distributed Map otherwise).
    pub fn batch_available(&self) -> bool {
        self.provider.kind == ProviderKind::Bedrock
    }

    /// The model name recorded in reports.
    pub fn model_name(&self) -> String {
        match self.provider.kind {
            ProviderKind::Offline => "offline".to_string(),
            ProviderKind::Bedrock | ProviderKind::Openai => self.provider.model.clone().unwrap_or_default(),
        }
    }

    /// The price of `model`, from the configured table or the built-in one.
    pub fn price_of(&self, model: &str) -> Option<Price> {
        self.pricing.get(model).copied().or_else(|| crate::pricing::builtin_price(model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds() {
        let c = Config::default();
        assert_eq!(c.strategy.distributed_threshold, 40);
        assert_eq!(c.strategy.batch_threshold, 100);
        assert_eq!(c.strategy.inline_max_concurrency, DEFAULT_INLINE_MAX_CONCURRENCY);
        assert_eq!(c.provider.kind, ProviderKind::Offline);
        c.validate().unwrap();
    }

    #[test]
    fn the_readme_configuration_parses_and_validates() {
        // The README's `## Configuration` block, with its commented-out keys switched on.
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("## Configuration").expect("a configuration section")..];
        let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let block = &section[start..start + section[start..].find("```").expect("the block ends")];
        let uncommented: String = block
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                // A commented-out `key = value` or table header (not prose).
                Some(rest)
                    if rest.starts_with('[') || rest.split_once(" = ").is_some_and(|(key, _)| !key.contains(' ')) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config: Config = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        config.validate().unwrap_or_else(|e| panic!("the README's configuration: {e}"));
        // Every key it mentions, switched on, is a real one (secrets and paths need not exist).
        let all: Config = toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert_eq!(all.serve.webhooks.len(), 1, "{uncommented}");
        assert_eq!(all.serve.upload_options.len(), UPLOAD_OPTIONS.len(), "{uncommented}");
    }

    #[test]
    fn toml_overrides_defaults_and_rejects_unknown_keys() {
        let c: Config = toml::from_str("[strategy]\ninline_max_concurrency = 4\n[limits]\nmax_units = 7\n").unwrap();
        assert_eq!(c.strategy.inline_max_concurrency, 4);
        assert_eq!(c.strategy.distributed_threshold, 40);
        assert_eq!(c.limits.max_units, 7);
        assert!(toml::from_str::<Config>("[strategy]\nmax_concurency = 4\n").is_err());
    }

    #[test]
    fn environment_overrides_and_errors_name_the_variable() {
        let mut c = Config::default();
        c.apply_env(|n| match n {
            "BEACON_PROVIDER" => Some("bedrock".into()),
            "BEACON_MODEL" => Some("m".into()),
            "BEACON_MAX_FILE_BYTES" => Some("10".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.provider.kind, ProviderKind::Bedrock);
        assert_eq!(c.limits.max_file_bytes, 10);
        let err = c.apply_env(|n| (n == "BEACON_MAX_UNITS").then(|| "many".to_string())).unwrap_err();
        assert!(err.to_string().contains("BEACON_MAX_UNITS"), "{err}");
    }

    #[test]
    fn a_quota_of_zero_or_empty_from_the_environment_is_unknown() {
        let mut c = Config::default();
        c.apply_env(|n| match n {
            "BEACON_RPM" => Some("0".into()),
            "BEACON_TPM" => Some(String::new()),
            "BEACON_QUOTA_TABLE" => Some("limits".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((c.quota.rpm, c.quota.tpm), (None, None));
        c.apply_env(|n| (n == "BEACON_RPM").then(|| "50".to_string())).unwrap();
        assert_eq!(c.quota.rpm, Some(50));
    }

    #[test]
    fn bedrock_without_model_is_invalid() {
        let mut c = Config::default();
        c.provider.kind = ProviderKind::Bedrock;
        assert!(c.validate().unwrap_err().to_string().contains("--model"));
    }
}
