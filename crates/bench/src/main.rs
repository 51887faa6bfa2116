//! `beacon-bench`: the measurements behind BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p beacon-bench -- engine            # every engine scenario, a Markdown table
//! cargo run --release -p beacon-bench -- engine --scenario pass --items 10000   # one, as a JSON line
//! cargo run --release -p beacon-bench -- quota             # client stack vs the seed's algorithm
//! cargo run --release -p beacon-bench -- matrix            # every provider behaviour, virtual time
//! cargo run --release -p beacon-bench -- tokens            # token estimator vs BPE tokenizers
//! cargo run --release -p beacon-bench -- ingest            # pages/s vs pdftotext, sheets/s vs openpyxl
//! cargo run --release -p beacon-bench -- serve             # beacon serve vs beacon run, API latencies
//! cargo run --release -p beacon-bench -- listing           # GET /v1/executions over 10,000 executions
//! ```
//! Each scenario runs in its own child process so that its peak memory (VmHWM) is its own.

use beacon_bench::{engine, ingest, listing, quota, serve, tokens, world};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "beacon-bench", about = "Benchmarks behind BENCHMARKS.md")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The ASL engine with the SQLite journal on: Map over Pass, Map over Task, the BEACON flow,
    /// and resuming the flow after a kill.
    Engine(engine::EngineArgs),
    /// The client stack against the seed's algorithm on the simulator's quota scenarios.
    Quota(quota::QuotaArgs),
    /// The client stack and the seed's algorithm against every provider behaviour, in virtual time.
    Matrix(world::MatrixArgs),
    /// The token estimator against the o200k and cl100k tokenizers on the shared corpus.
    Tokens(tokens::TokensArgs),
    /// Ingestion speed: PDF pages/s against pdftotext, sheets/s against openpyxl.
    Ingest(ingest::IngestArgs),
    /// `beacon serve` against `beacon run` on the same documents and quota; API latencies.
    Serve(serve::ServeArgs),
    /// `GET /v1/executions` (the console's list) over a journal of many executions.
    Listing(listing::ListingArgs),
}

fn main() {
    let cli = Cli::parse();
    // The matrix runs every cell on a paused runtime of its own.
    if let Command::Matrix(args) = &cli.command {
        std::process::exit(world::run_matrix(args));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Engine(args) => engine::run(args).await,
            Command::Quota(args) => quota::run(args).await,
            Command::Tokens(args) => tokens::run(&args),
            Command::Matrix(_) => unreachable!("run above"),
            Command::Ingest(args) => ingest::run(&args),
            Command::Serve(args) => serve::run(args).await,
            Command::Listing(args) => listing::run(args).await,
        }
    });
    std::process::exit(code);
}
