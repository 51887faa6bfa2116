//! `beacon sim`: a local Bedrock-compatible server.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use beacon_sim::{SimConfig, SimServer};
use clap::Args;

use crate::exit;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Port to listen on (0 picks a free port; the address is printed on the first line).
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Requests per minute the simulated quota allows (unlimited when absent).
    #[arg(long)]
    rpm: Option<u32>,
    /// Requests the quota allows in a burst (default: rpm/6, at least 1).
    #[arg(long)]
    burst: Option<u32>,
    /// Latency added to every successful answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

pub async fn sim(args: SimArgs) -> u8 {
    let config = SimConfig { rpm: args.rpm, burst: args.burst, latency_ms: args.latency_ms };
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
    let quota = args.rpm.map(|r| format!("{r} requests/minute")).unwrap_or_else(|| "no quota".into());
    let _ = writeln!(
        out,
        "Converse API: POST http://{addr}/model/{{modelId}}/converse ({quota}, latency {} ms); stats: GET http://{addr}/sim/stats",
        args.latency_ms
    );
    let _ = writeln!(out, "Use it: beacon run FILE --provider bedrock --model any-model --endpoint http://{addr}");
    let _ = out.flush();
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("error: cannot wait for Ctrl-C: {e}");
    }
    let stats = server.stats();
    server.shutdown().await;
    let _ = writeln!(
        out,
        "served {} requests: {} succeeded, {} throttled",
        stats.requests, stats.succeeded, stats.throttled
    );
    exit::SUCCESS
}
