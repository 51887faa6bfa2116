//! `beacon sim`: a local Bedrock-compatible (and OpenAI-compatible) server.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use beacon_sim::batch::BatchEnd;
use beacon_sim::{QuotaChange, QuotaMode, SimConfig, SimServer, TokenAccounting, Tokenizer};
use clap::{Args, ValueEnum};

use crate::exit;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Port to listen on (0 picks a free port; the address is printed on the first line).
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Requests per minute the simulated quota allows, over a sliding 60 s window (unlimited when
    /// absent).
    #[arg(long)]
    rpm: Option<u32>,
    /// Tokens per minute the simulated quota allows; each request reserves its input tokens plus
    /// its max tokens until answered (unlimited when absent).
    #[arg(long)]
    tpm: Option<u64>,
    /// Tokens per day: a request is throttled once the tokens answered in the last 24 hours plus
    /// its reservation would pass it (Service Quotas reports --tpm × 1,440 when absent).
    #[arg(long)]
    tpd: Option<u64>,
    /// The model's display name in the Service Quotas the simulator also serves (its quotas are
    /// named "On-demand InvokeModel tokens per minute for NAME", ...).
    #[arg(long, default_value = beacon_sim::DEFAULT_MODEL_NAME)]
    model_name: String,
    /// Enforce --rpm as a token bucket admitting this many requests at once (default: rpm/6, at
    /// least 1) instead of the sliding window.
    #[arg(long)]
    burst: Option<u32>,
    /// How --rpm and --tpm are enforced: a sliding 60 s window, fixed minute windows (counters
    /// reset on the minute) or token buckets refilled continuously (default: token-bucket with
    /// --burst or --burst-secs, sliding-window otherwise).
    #[arg(long, value_enum)]
    quota_mode: Option<QuotaModeArg>,
    /// The token buckets' capacity in seconds of quota, for requests (unless --burst) and tokens
    /// (default 10; 1 is a "quantized" per-second limit).
    #[arg(long, value_name = "SECONDS")]
    burst_secs: Option<f64>,
    /// Fixed windows: seconds of the first minute already gone when the simulator starts.
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    fixed_phase: f64,
    /// What --tpm counts for an answered request: settle (the reservation until answered, then
    /// the real usage, as Bedrock does) or reservation (input + max tokens, for good).
    #[arg(long, value_enum, default_value = "settle")]
    tpm_accounting: TpmAccountingArg,
    /// The share (0..1) of the quotas used by traffic the client does not see.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    background_load: f64,
    /// From SECONDS after start the quotas are FACTOR × --rpm/--tpm (repeatable, in time order),
    /// e.g. --quota-change 30:0.5 halves them after 30 s.
    #[arg(long, value_name = "SECONDS:FACTOR", value_parser = parse_quota_change)]
    quota_change: Vec<QuotaChange>,
    /// Leave the retry-after header out of OpenAI-style throttles (Bedrock never sends one).
    #[arg(long)]
    no_retry_after: bool,
    /// The most requests answered at once; more are throttled (unlimited when absent).
    #[arg(long)]
    max_in_flight: Option<u32>,
    /// Base latency of every successful answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Latency added per output token, in milliseconds.
    #[arg(long, default_value_t = 0.0)]
    latency_per_token_ms: f64,
    /// Uniform spread of the latency, as a fraction (0.3 = ±30%).
    #[arg(long, default_value_t = 0.0)]
    latency_spread: f64,
    /// Fraction of requests answered HTTP 503 (ServiceUnavailableException).
    #[arg(long, default_value_t = 0.0)]
    fault_503: f64,
    /// Fraction of requests accepted and never answered.
    #[arg(long, default_value_t = 0.0)]
    fault_hang: f64,
    /// Fraction of requests answered HTTP 200 with an unusable body.
    #[arg(long, default_value_t = 0.0)]
    fault_malformed: f64,
    /// Seed for the latency spread and the faults (the same seed replays the same run).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The object store of batch inference jobs: s3://BUCKET/KEY is DIR/KEY. Point it at
    /// `beacon run`'s store (DATA_DIR/store) to rehearse batch inference locally.
    #[arg(long, value_name = "DIR")]
    store_dir: Option<std::path::PathBuf>,
    /// The fewest records a batch job accepts (Bedrock: 100).
    #[arg(long, default_value_t = beacon_sim::batch::DEFAULT_MIN_RECORDS)]
    batch_min_records: u64,
    /// Milliseconds a batch job spends in each status (Submitted, Validating, Scheduled,
    /// InProgress) before it ends.
    #[arg(long, default_value_t = 1000)]
    batch_step_ms: u64,
    /// Fraction of batch records answered with an error instead of an output.
    #[arg(long, default_value_t = 0.0)]
    batch_record_errors: f64,
    /// End every batch job this way instead of answering its records.
    #[arg(long, value_enum)]
    batch_end: Option<BatchEndArg>,
    /// How tokens are counted: approx (one per CJK character plus one per four others) or o200k
    /// (the o200k_base BPE, standing in for a provider's tokenizer).
    #[arg(long, value_enum, default_value = "approx")]
    tokenizer: TokenizerArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TokenizerArg {
    Approx,
    O200k,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BatchEndArg {
    Failed,
    Expired,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum QuotaModeArg {
    SlidingWindow,
    FixedWindow,
    TokenBucket,
}

impl From<QuotaModeArg> for QuotaMode {
    fn from(mode: QuotaModeArg) -> QuotaMode {
        match mode {
            QuotaModeArg::SlidingWindow => QuotaMode::SlidingWindow,
            QuotaModeArg::FixedWindow => QuotaMode::FixedWindow,
            QuotaModeArg::TokenBucket => QuotaMode::TokenBucket,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TpmAccountingArg {
    Settle,
    Reservation,
}

/// `SECONDS:FACTOR`, e.g. `30:0.5`.
fn parse_quota_change(text: &str) -> Result<QuotaChange, String> {
    let (at, factor) =
        text.split_once(':').ok_or_else(|| format!("expected SECONDS:FACTOR (e.g. 30:0.5), got {text:?}"))?;
    let number = |part: &str, what: &str| {
        part.trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("{what} must be a number of at least 0, got {part:?}"))
    };
    Ok(QuotaChange { at_secs: number(at, "SECONDS")?, factor: number(factor, "FACTOR")? })
}

fn describe_quota(config: &SimConfig) -> String {
    let mut limits = Vec::new();
    let mode = config.effective_quota_mode();
    match (config.rpm, mode) {
        (Some(rpm), QuotaMode::TokenBucket) => {
            let burst = match (config.burst, config.burst_secs) {
                (Some(burst), _) => burst.max(1).to_string(),
                (None, Some(secs)) => format!("{secs} s"),
                (None, None) => (rpm / 6).max(1).to_string(),
            };
            limits.push(format!("{rpm} requests/minute as a token bucket of {burst}"));
        }
        (Some(rpm), QuotaMode::FixedWindow) => limits.push(format!("{rpm} requests per clock minute")),
        (Some(rpm), QuotaMode::SlidingWindow) => limits.push(format!("{rpm} requests/minute")),
        (None, _) => {}
    }
    if let Some(tpm) = config.tpm {
        let accounting = match config.tpm_accounting {
            TokenAccounting::Settle => "",
            TokenAccounting::Reservation => ", reservations kept",
        };
        limits.push(format!("{tpm} tokens/minute{accounting}"));
    }
    if let Some(tpd) = config.tpd {
        limits.push(format!("{tpd} tokens/day"));
    }
    if config.background_load > 0.0 {
        limits.push(format!("{:.0}% used by hidden traffic", config.background_load * 100.0));
    }
    for change in &config.quota_schedule {
        limits.push(format!("x{} from {} s", change.factor, change.at_secs));
    }
    if let Some(cap) = config.max_in_flight {
        limits.push(format!("at most {cap} in flight"));
    }
    if limits.is_empty() { "no quota".into() } else { limits.join(", ") }
}

pub async fn sim(args: SimArgs) -> u8 {
    let config = SimConfig {
        rpm: args.rpm,
        tpm: args.tpm,
        tpd: args.tpd,
        model_name: Some(args.model_name.clone()),
        burst: args.burst,
        quota_mode: args.quota_mode.map(QuotaMode::from),
        burst_secs: args.burst_secs,
        fixed_phase_secs: args.fixed_phase,
        tpm_accounting: match args.tpm_accounting {
            TpmAccountingArg::Settle => TokenAccounting::Settle,
            TpmAccountingArg::Reservation => TokenAccounting::Reservation,
        },
        quota_schedule: args.quota_change.clone(),
        background_load: args.background_load,
        no_retry_after: args.no_retry_after,
        max_in_flight: args.max_in_flight,
        latency_ms: args.latency_ms,
        latency_per_output_token_ms: args.latency_per_token_ms,
        latency_spread: args.latency_spread,
        fault_503: args.fault_503,
        fault_hang: args.fault_hang,
        fault_malformed: args.fault_malformed,
        seed: args.seed,
        batch_store_dir: args.store_dir.clone(),
        batch_min_records: Some(args.batch_min_records),
        batch_step_ms: args.batch_step_ms,
        batch_record_errors: args.batch_record_errors,
        batch_end: args.batch_end.map(|end| match end {
            BatchEndArg::Failed => BatchEnd::Failed,
            BatchEndArg::Expired => BatchEnd::Expired,
        }),
        tokenizer: match args.tokenizer {
            TokenizerArg::Approx => Tokenizer::Approx,
            TokenizerArg::O200k => Tokenizer::O200k,
        },
    };
    if let Err(e) = config.validate() {
        eprintln!("error: {e}");
        return exit::USAGE;
    }
    let quota = describe_quota(&config);
    let server = match SimServer::start(SocketAddr::new(args.host, args.port), config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen on {}:{}: {e}", args.host, args.port);
            return exit::USAGE;
        }
    };
    let addr = server.local_addr();
    // The first line is machine-readable: tests and scripts read the address from it. Writes
    // ignore errors: a reader that closes our stdout must not stop the server.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "beacon sim listening on http://{addr}");
    let mut latency = format!("latency {} ms", args.latency_ms);
    if args.latency_per_token_ms > 0.0 {
        latency.push_str(&format!(" + {} ms/output token", args.latency_per_token_ms));
    }
    if args.latency_spread > 0.0 {
        latency.push_str(&format!(" ±{}%", args.latency_spread * 100.0));
    }
    let _ = writeln!(out, "Converse API: POST http://{addr}/model/{{modelId}}/converse ({quota}, {latency})");
    let _ = writeln!(out, "OpenAI API: POST http://{addr}/v1/chat/completions (same model, quota and latency)");
    if args.fault_503 + args.fault_hang + args.fault_malformed > 0.0 {
        let _ = writeln!(
            out,
            "Faults: {}% HTTP 503, {}% never answered, {}% malformed (seed {})",
            args.fault_503 * 100.0,
            args.fault_hang * 100.0,
            args.fault_malformed * 100.0,
            args.seed
        );
    }
    match &args.store_dir {
        Some(dir) => {
            let _ = writeln!(
                out,
                "Batch inference: POST http://{addr}/model-invocation-job (s3://BUCKET/KEY in {}, at least {} records, {} ms per status)",
                dir.display(),
                args.batch_min_records,
                args.batch_step_ms
            );
        }
        None => {
            let _ = writeln!(out, "Batch inference: off (start with --store-dir DIR to serve it)");
        }
    }
    let _ = writeln!(out, "Stats: GET http://{addr}/_stats (and /sim/stats)");
    let _ = writeln!(out, "Use it: beacon run FILE --provider bedrock --model any-model --endpoint http://{addr}");
    let _ = out.flush();
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("error: cannot wait for Ctrl-C: {e}");
    }
    let stats = server.stats();
    server.shutdown().await;
    let faults = stats.faults.unavailable + stats.faults.hung + stats.faults.malformed;
    let _ = writeln!(
        out,
        "served {} requests: {} succeeded, {} throttled, {} faults",
        stats.requests, stats.succeeded, stats.throttled, faults
    );
    exit::SUCCESS
}
