//! `beacon-bench serve`: the same documents through `beacon serve`'s API and through `beacon run`,
//! on the same quota (a fresh `beacon sim` each): makespan ratio and the server's peak RSS;
//! latency from upload to the first unit started (p50/p99); and the p99 of
//! `GET /v1/executions/{name}` with 200 SSE clients connected.
//!
//! It runs the real `beacon` binary (`--beacon`, default: next to this one).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Documents in the comparison.
    #[arg(long, default_value_t = 1000)]
    documents: usize,
    /// Pages (units) per document.
    #[arg(long, default_value_t = 4)]
    pages: usize,
    /// The quota both runs share (requests per minute).
    #[arg(long, default_value_t = 6000)]
    rpm: u32,
    /// The simulated model's latency, milliseconds.
    #[arg(long, default_value_t = 200)]
    latency_ms: u64,
    /// Documents run at once (beacon run --parallel-documents, serve.max_running).
    #[arg(long, default_value_t = 16)]
    parallel: usize,
    /// SSE clients connected while GET /v1/executions/{name} is timed.
    #[arg(long, default_value_t = 200)]
    sse_clients: usize,
    /// The `beacon` binary [default: next to beacon-bench].
    #[arg(long)]
    beacon: Option<PathBuf>,
}

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

/// A child process killed when dropped; its first stdout line is kept.
pub(crate) struct Spawned {
    child: Child,
    pub(crate) first_line: String,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Spawned {
    pub(crate) fn start(mut cmd: Command) -> Result<Spawned, String> {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().map_err(|e| e.to_string())?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut first_line = String::new();
        stdout.read_line(&mut first_line).map_err(|e| e.to_string())?;
        Ok(Spawned { child, first_line, _stdout: stdout })
    }

    pub(crate) fn url(&self) -> Option<String> {
        self.first_line.split_whitespace().find(|w| w.starts_with("http://")).map(str::to_string)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn document(i: usize, pages: usize) -> String {
    (0..pages)
        .map(|p| {
            format!(
                "Document {i}, page {p}\n\nShipment {i}-{p} left the warehouse with {} pallets.\n",
                (i * 7 + p) % 40 + 1
            )
        })
        .collect::<Vec<_>>()
        .join("\x0c")
}

fn sim(beacon: &Path, rpm: u32, latency_ms: u64) -> Result<Spawned, String> {
    let mut cmd = Command::new(beacon);
    cmd.args(["sim", "--port", "0", "--rpm", &rpm.to_string(), "--latency-ms", &latency_ms.to_string()]);
    let sim = Spawned::start(cmd)?;
    sim.url().ok_or_else(|| format!("unexpected sim output {:?}", sim.first_line))?;
    Ok(sim)
}

fn with_provider(cmd: &mut Command, sim: &Spawned, rpm: u32) {
    cmd.args(["--provider", "bedrock", "--model", MODEL, "--endpoint", &sim.url().unwrap_or_default()])
        .args(["--rpm", &rpm.to_string()])
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCH")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// The `beacon` binary: `given`, else the one next to beacon-bench.
pub(crate) fn beacon_binary(given: Option<&Path>) -> Result<PathBuf, String> {
    let beacon =
        given.map_or_else(|| std::env::current_exe().unwrap_or_default().with_file_name("beacon"), Path::to_path_buf);
    if beacon.exists() {
        Ok(beacon)
    } else {
        Err(format!("{} not found: build it (cargo build --release) or pass --beacon", beacon.display()))
    }
}

pub(crate) fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// GET `url` as JSON.
async fn get_json(client: &reqwest::Client, url: String) -> Result<Value, String> {
    client.get(&url).send().await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())
}

/// When the first unit's task was scheduled, from an execution's history page.
fn first_unit_at(history: &Value) -> Option<f64> {
    let scheduled = history["events"].as_array().into_iter().flatten().find(|e| {
        e["type"] == "TaskScheduled"
            && e["taskScheduledEventDetails"]["resource"].as_str().is_some_and(|r| r.ends_with("llm-processor"))
    })?;
    chrono_parse(scheduled["timestamp"].as_str()?)
}

/// An RFC 3339 time as seconds since the epoch.
fn chrono_parse(t: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| t.timestamp_millis() as f64 / 1000.0)
}

pub async fn run(args: ServeArgs) -> i32 {
    match measure(&args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn measure(args: &ServeArgs) -> Result<(), String> {
    let beacon = beacon_binary(args.beacon.as_deref())?;
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let docs = scratch.path().join("docs");
    std::fs::create_dir_all(&docs).map_err(|e| e.to_string())?;
    for i in 0..args.documents {
        std::fs::write(docs.join(format!("doc-{i:05}.txt")), document(i, args.pages)).map_err(|e| e.to_string())?;
    }
    let config = scratch.path().join("beacon.toml");
    std::fs::write(
        &config,
        format!(
            "[serve]\nmax_running = {}\nmax_queued = 100000\nrequests_per_minute = 100000000\n\n[strategy]\ndistributed_threshold = 1000\nbatch_threshold = 1000\n",
            args.parallel
        ),
    )
    .map_err(|e| e.to_string())?;

    // beacon run on the directory.
    let cli_sim = sim(&beacon, args.rpm, args.latency_ms)?;
    let mut cmd = Command::new(&beacon);
    cmd.arg("--config").arg(&config).arg("run").arg(&docs).arg("--out").arg(scratch.path().join("out"));
    cmd.args(["--no-progress-bar", "--no-cache", "--parallel-documents", &args.parallel.to_string()]);
    cmd.arg("--data-dir").arg(scratch.path().join("cli-data"));
    with_provider(&mut cmd, &cli_sim, args.rpm);
    let started = Instant::now();
    let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().map_err(|e| e.to_string())?;
    let cli_makespan = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("beacon run exited with {status}"));
    }
    drop(cli_sim);

    // The same documents through the API (a fresh quota, a fresh data directory).
    let start_server = |data: &str| -> Result<(Spawned, Spawned, String), String> {
        let sim = sim(&beacon, args.rpm, args.latency_ms)?;
        let mut cmd = Command::new(&beacon);
        cmd.arg("--config").arg(&config).args(["serve", "--bind", "127.0.0.1:0", "--no-cache"]);
        cmd.arg("--data-dir").arg(scratch.path().join(data));
        with_provider(&mut cmd, &sim, args.rpm);
        let server = Spawned::start(cmd)?;
        let base = server.url().ok_or_else(|| format!("unexpected serve output {:?}", server.first_line))?;
        Ok((server, sim, base))
    };
    let (server, api_sim, base) = start_server("serve-data")?;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let uploads = (0..args.documents).map(|i| {
        let (client, base, docs) = (&client, &base, &docs);
        async move {
            let name = format!("doc-{i:05}.txt");
            let bytes = std::fs::read(docs.join(&name)).map_err(|e| e.to_string())?;
            let sent = chrono_now();
            let response = client
                .post(format!("{base}/v1/documents?name={name}"))
                .body(bytes)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if response.status() != 202 {
                return Err(format!("{name}: HTTP {}", response.status()));
            }
            let body: Value = response.json().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((body["execution"].as_str().unwrap_or_default().to_string(), sent))
        }
    });
    let accepted: Vec<(String, f64)> = futures::stream::iter(uploads)
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    // Wait until every execution ended (a benchmark may poll).
    loop {
        let page: Value = get_json(&client, format!("{base}/v1/executions?status=SUCCEEDED&limit=1")).await?;
        let running: Value = get_json(&client, format!("{base}/v1/executions?status=RUNNING&limit=1")).await?;
        let queued: Value = get_json(&client, format!("{base}/v1/executions?status=QUEUED&limit=1")).await?;
        let busy = !running["executions"].as_array().is_none_or(Vec::is_empty)
            || !queued["executions"].as_array().is_none_or(Vec::is_empty);
        if !busy && page["executions"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
        if started.elapsed() > Duration::from_secs(7200) {
            return Err("the API run did not finish in two hours".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The makespan from the first upload to the last end, and upload → first unit started.
    let first_sent = accepted.iter().map(|(_, sent)| *sent).fold(f64::INFINITY, f64::min);
    let mut last_end = first_sent;
    let mut first_unit = Vec::new();
    let mut failed = 0;
    for (execution, sent) in &accepted {
        let view: Value = get_json(&client, format!("{base}/v1/executions/{execution}")).await?;
        if view["status"] != "SUCCEEDED" {
            failed += 1;
        }
        if let Some(end) = view["finishedAt"].as_str().and_then(chrono_parse) {
            last_end = last_end.max(end);
        }
        let history: Value = get_json(&client, format!("{base}/v1/executions/{execution}/history?limit=1000")).await?;
        if let Some(at) = first_unit_at(&history) {
            first_unit.push((at - sent) * 1000.0);
        }
    }
    let api_makespan = last_end - first_sent;
    let server_rss = peak_rss(server.child.id());

    drop(server);
    drop(api_sim);

    // Latencies on a second server, so that they do not share the comparison's quota.
    let (server, _latency_sim, base) = start_server("latency-data")?;
    // Upload → first unit started on an idle server (quota unused): one upload at a time.
    let mut idle = Vec::new();
    for i in 0..20 {
        let sent = chrono_now();
        let response = client
            .post(format!("{base}/v1/documents?name=idle-{i}.txt"))
            .body(document(2_000_000 + i, args.pages))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        let execution = body["execution"].as_str().unwrap_or_default().to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let history: Value =
                get_json(&client, format!("{base}/v1/executions/{execution}/history?limit=1000")).await?;
            if let Some(at) = first_unit_at(&history) {
                idle.push((at - sent) * 1000.0);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // GET /v1/executions/{name} with SSE clients connected to running executions.
    let slow_docs: Vec<String> = (0..args.sse_clients).map(|i| document(1_000_000 + i, args.pages)).collect();
    let mut live = Vec::new();
    for (i, text) in slow_docs.into_iter().enumerate() {
        let response = client
            .post(format!("{base}/v1/documents?name=live-{i}.txt"))
            .body(text)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        live.push(body["execution"].as_str().unwrap_or_default().to_string());
    }
    let mut streams = Vec::new();
    for execution in &live {
        let response =
            client.get(format!("{base}/v1/executions/{execution}/events")).send().await.map_err(|e| e.to_string())?;
        // Read each stream in the background so the server keeps sending.
        streams.push(tokio::spawn(async move {
            let mut body = response.bytes_stream();
            while body.next().await.is_some() {}
        }));
    }
    let mut gets = Vec::new();
    for i in 0..300 {
        let execution = &live[i % live.len()];
        let started = Instant::now();
        let response =
            client.get(format!("{base}/v1/executions/{execution}")).send().await.map_err(|e| e.to_string())?;
        let _ = response.bytes().await;
        gets.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    for stream in streams {
        stream.abort();
    }
    drop(server);

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| documents × pages | {} × {} (quota {} RPM, latency {} ms, {} at once) |",
        args.documents, args.pages, args.rpm, args.latency_ms, args.parallel
    );
    println!("| `beacon run DIR` makespan | {cli_makespan:.1} s |");
    println!("| through the API (first upload → last end) | {api_makespan:.1} s |");
    println!("| ratio API / CLI | {:.3} |", api_makespan / cli_makespan);
    println!("| executions not SUCCEEDED | {failed} |");
    println!("| server peak RSS | {} |", server_rss.map_or("n/a".into(), |b| format!("{} MiB", b >> 20)));
    let (mut first, n) = (first_unit.clone(), first_unit.len());
    println!(
        "| upload → first unit started, all {n} uploaded at once (queued behind {} running), p50 / p99 | {:.0} ms / {:.0} ms |",
        args.parallel,
        percentile(&mut first, 50.0),
        percentile(&mut first, 99.0)
    );
    println!(
        "| upload → first unit started, idle server ({} uploads one at a time), p50 / p99 | {:.0} ms / {:.0} ms |",
        idle.len(),
        percentile(&mut idle, 50.0),
        percentile(&mut idle, 99.0)
    );
    println!(
        "| GET /v1/executions/{{name}} with {} SSE clients, p50 / p99 (300 requests) | {:.1} ms / {:.1} ms |",
        live.len(),
        percentile(&mut gets, 50.0),
        percentile(&mut gets, 99.0)
    );
    Ok(())
}

fn chrono_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
