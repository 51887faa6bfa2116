//! `beacon-bench listing`: how fast `GET /v1/executions` (the console's executions page) answers
//! over a journal of many finished executions: the newest page, every page walked by cursor,
//! a status filter, a date range and a document-name search, each as p50 / p99 over HTTP.
//!
//! The journal is written directly (the full definition and a realistic input and output for
//! each execution, a tenth of them FAILED, one a minute), then the real `beacon serve` reads it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use beacon_store::journal::{ExecutionState, Journal, NewExecution};
use chrono::{Duration, TimeZone, Utc};
use serde_json::{Value, json};

use crate::serve::{Spawned, beacon_binary, percentile};

#[derive(clap::Args)]
pub struct ListingArgs {
    /// Finished executions in the journal.
    #[arg(long, default_value_t = 10_000)]
    executions: usize,
    /// Times each single-page request is repeated.
    #[arg(long, default_value_t = 200)]
    repeat: usize,
    /// The `beacon` binary [default: next to beacon-bench].
    #[arg(long)]
    beacon: Option<PathBuf>,
}

pub async fn run(args: ListingArgs) -> i32 {
    match measure(&args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn started_at(i: usize) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap_or_default() + Duration::minutes(i as i64)
}

fn time(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn fill(journal: &Journal, executions: usize) -> Result<(), String> {
    for i in 0..executions {
        let name = format!("bench-{i:06}");
        let id = format!("{i:064x}");
        let failed = i % 10 == 9;
        journal
            .start_execution(&NewExecution {
                name: name.clone(),
                definition: beacon_pipeline::flow::STATE_MACHINE_DEFINITION.to_string(),
                input:
                    json!({"document": {"key": format!("documents/{id}/source"), "name": format!("report-{i:05}.pdf")}})
                        .to_string(),
                label: format!("report-{i:05}.pdf"),
                options: "{}".into(),
                started_at: time(started_at(i)),
            })
            .await
            .map_err(|e| e.to_string())?;
        let output = json!({"unitsSucceeded": 12, "unitsFailed": u64::from(failed), "strategy": "inline",
            "requests": 13, "throttles": 1, "costUsd": 0.0042, "report": format!("reports/{id}/{name}/report.json")});
        let (status, output, error) = if failed {
            (ExecutionState::Failed, None, Some("States.TaskFailed".to_string()))
        } else {
            (ExecutionState::Succeeded, Some(output.to_string()), None)
        };
        let finished = time(started_at(i) + Duration::seconds(40));
        journal.finish_execution(&name, status, output, error, None, finished).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// GET `url` and its page; milliseconds.
async fn page(client: &reqwest::Client, url: &str) -> Result<(f64, Value), String> {
    let started = Instant::now();
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: {}", response.status()));
    }
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    Ok((started.elapsed().as_secs_f64() * 1000.0, body))
}

async fn measure(args: &ListingArgs) -> Result<(), String> {
    let beacon = beacon_binary(args.beacon.as_deref())?;
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = scratch.path().join("data");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let filled = Instant::now();
    {
        let journal = Journal::open(&data.join("journal.sqlite")).map_err(|e| e.to_string())?;
        fill(&journal, args.executions).await?;
        journal.flush().await.map_err(|e| e.to_string())?;
    }
    eprintln!("journal of {} executions written in {:.1} s", args.executions, filled.elapsed().as_secs_f64());
    let config = scratch.path().join("beacon.toml");
    std::fs::write(&config, "[serve]\nrequests_per_minute = 100000000\n").map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&beacon);
    cmd.arg("--config").arg(&config).args(["serve", "--bind", "127.0.0.1:0"]).arg("--data-dir").arg(&data);
    let server = Spawned::start(cmd)?;
    let base = server.url().ok_or_else(|| format!("unexpected serve output {:?}", server.first_line))?;
    let client = reqwest::Client::new();

    let middle = args.executions / 2;
    let since = time(started_at(middle));
    let until = time(started_at(middle) + Duration::hours(1));
    let needle = format!("report-{:05}", middle);
    let cases = [
        ("newest page (50)", format!("{base}/v1/executions")),
        ("status=FAILED, first page", format!("{base}/v1/executions?status=FAILED")),
        ("one hour's range (since, until)", format!("{base}/v1/executions?since={since}&until={until}")),
        ("document name search", format!("{base}/v1/executions?document={needle}")),
    ];
    println!("| `GET /v1/executions` over {} executions | p50 | p99 | items |", args.executions);
    println!("|---|---|---|---|");
    for (what, url) in &cases {
        let mut times = Vec::with_capacity(args.repeat);
        let mut items = 0;
        for _ in 0..args.repeat {
            let (ms, body) = page(&client, url).await?;
            items = body["executions"].as_array().map_or(0, Vec::len);
            times.push(ms);
        }
        println!(
            "| {what} | {:.2} ms | {:.2} ms | {items} |",
            percentile(&mut times.clone(), 50.0),
            percentile(&mut times, 99.0)
        );
    }
    // Every page, newest to oldest, by cursor: the last costs what the first does.
    let mut times = Vec::new();
    let mut seen = 0;
    let mut url = format!("{base}/v1/executions");
    loop {
        let (ms, body) = page(&client, &url).await?;
        seen += body["executions"].as_array().map_or(0, Vec::len);
        times.push(ms);
        match body["next"].as_str() {
            Some(next) => url = format!("{base}/v1/executions?cursor={next}"),
            None => break,
        }
    }
    let (pages, last_ms) = (times.len(), times.last().copied().unwrap_or_default());
    println!(
        "| all {pages} pages by cursor (the last: {last_ms:.2} ms) | {:.2} ms | {:.2} ms | {seen} |",
        percentile(&mut times.clone(), 50.0),
        percentile(&mut times, 99.0)
    );
    if seen != args.executions {
        return Err(format!("the pages held {seen} executions, not {}", args.executions));
    }
    drop(server);
    Ok(())
}
