//! Engine benchmarks: state transitions per second and peak memory with the journal on.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use beacon_asl::{Interpreter, StateMachine, TaskRegistry};
use beacon_llm::{Completion, CompletionRequest, LlmClient, LlmError, Usage};
use beacon_pipeline::journal::{EventJournal, JournaledTasks};
use beacon_pipeline::{Config, NoProgress, RunOptions, Runner, Services};
use beacon_store::Store;
use beacon_store::journal::{Journal, NewExecution};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

#[derive(Args)]
pub struct EngineArgs {
    /// Run one scenario in this process and print one JSON line (used by the table run).
    #[arg(long, value_enum)]
    scenario: Option<Scenario>,
    /// Items of the Map scenarios.
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Units of the BEACON flow scenarios.
    #[arg(long, default_value_t = 10_000)]
    units: usize,
    /// Working directory of a scenario (the resume scenario shares it between processes).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The execution to resume (resume-run scenario).
    #[arg(long)]
    execution: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Scenario {
    /// (a) a Map of N items over a Pass state.
    Pass,
    /// (b) a Map of N items over a Task that returns immediately.
    Task,
    /// (c) the BEACON flow on an N-unit document with a zero-latency provider.
    Flow,
    /// (c) again, in a process the table run kills near the end.
    FlowToKill,
    /// Resume of (c) after the kill.
    Resume,
}

pub async fn run(args: EngineArgs) -> i32 {
    match args.scenario {
        Some(s) => match scenario(s, &args).await {
            Ok(line) => {
                println!("{line}");
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
        None => match table(&args).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
    }
}

/// Peak resident memory of this process in MiB (Linux VmHWM).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn map_machine(processor: Value) -> String {
    json!({
        "StartAt": "Each",
        "States": {"Each": {
            "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 40,
            "ItemProcessor": {"StartAt": "Work", "States": {"Work": processor}},
            "End": true
        }}
    })
    .to_string()
}

async fn scenario(s: Scenario, args: &EngineArgs) -> Result<Value, String> {
    let owned_dir;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            owned_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            owned_dir.path().to_path_buf()
        }
    };
    match s {
        Scenario::Pass => map_scenario(&dir, args.items, json!({"Type": "Pass", "End": true})).await,
        Scenario::Task => {
            map_scenario(&dir, args.items, json!({"Type": "Task", "Resource": "noop", "End": true})).await
        }
        Scenario::Flow | Scenario::FlowToKill => flow_scenario(&dir, args.units).await,
        Scenario::Resume => resume_scenario(&dir, args.execution.as_deref().unwrap_or_default(), args.units).await,
    }
}

async fn map_scenario(dir: &Path, items: usize, processor: Value) -> Result<Value, String> {
    let definition = map_machine(processor);
    let machine = StateMachine::parse(&definition).map_err(|e| e.to_string())?;
    let journal = Journal::open(&dir.join("journal.sqlite")).map_err(|e| e.to_string())?;
    let input = json!({"items": (0..items).collect::<Vec<_>>()});
    let name = "bench";
    journal
        .start_execution(&NewExecution {
            name: name.into(),
            definition,
            input: input.to_string(),
            label: "bench".into(),
            options: "{}".into(),
            started_at: "now".into(),
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut registry = TaskRegistry::new();
    registry.register_fn("noop", |input, _ctx| async move { Ok(input) });
    let tasks = Arc::new(JournaledTasks::load(&journal, name).map_err(|e| e.to_string())?);
    let interpreter = Interpreter::new(registry)
        .with_observer(Arc::new(EventJournal { journal: journal.clone(), execution: name.into(), attempt: 1 }))
        .with_task_journal(tasks);
    let started = Instant::now();
    let result = interpreter.execute(&machine, name, input).await;
    journal.flush().await.map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    if result.output().is_none() {
        return Err(format!("the execution failed: {:?}", result.status));
    }
    let transitions = result.history.iter().filter(|e| e.event_type.ends_with("StateEntered")).count();
    Ok(json!({
        "items": items,
        "seconds": seconds,
        "transitions": transitions,
        "transitions_per_second": transitions as f64 / seconds,
        "events": result.history.len(),
        "peak_rss_mib": peak_rss_mib(),
    }))
}

/// An LLM that answers at once with a small valid unit result.
struct ZeroLatency;

#[async_trait]
impl LlmClient for ZeroLatency {
    fn name(&self) -> String {
        "zero-latency".into()
    }
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        let first = request.content.lines().next().unwrap_or_default();
        Ok(Completion {
            text: json!({"title": request.content_label, "summary": first}).to_string(),
            usage: Usage { input_tokens: request.content.len() as u64 / 4 + 1, output_tokens: 20 },
            model: "zero-latency".into(),
            stop_reason: "end_turn".into(),
            attempts: 1,
            throttles: 0,
        })
    }
}

fn flow_runner(dir: &Path, units: usize) -> Result<Runner, String> {
    let mut config = Config { data_dir: dir.to_path_buf(), ..Config::default() };
    config.limits.max_units = units.max(1);
    let services = Services {
        store: Store::local(&dir.join("store")).map_err(|e| e.to_string())?,
        llm: Arc::new(ZeroLatency),
        config: Arc::new(config),
        unit_schema: Arc::new(beacon_pipeline::schema::default_unit_schema()),
    };
    let journal = Journal::open(&dir.join("journal.sqlite")).map_err(|e| e.to_string())?;
    Ok(Runner::new(services, journal, Arc::new(NoProgress)))
}

fn document(units: usize) -> Vec<u8> {
    (1..=units)
        .map(|i| format!("Unit {i} of the benchmark document.\nIt reports {i} shipments on 2026-05-01."))
        .collect::<Vec<_>>()
        .join("\n\x0c")
        .into_bytes()
}

fn transitions_of(runner: &Runner, execution: &str) -> Result<usize, String> {
    let events = runner.journal().events(execution, None).map_err(|e| e.to_string())?;
    Ok(events.iter().filter(|e| e.event_type.ends_with("StateEntered")).count())
}

async fn flow_scenario(dir: &Path, units: usize) -> Result<Value, String> {
    let runner = flow_runner(dir, units)?;
    let started = Instant::now();
    let outcome =
        runner.run_bytes("bench.txt", document(units), RunOptions::default()).await.map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    let transitions = transitions_of(&runner, &outcome.execution)?;
    Ok(json!({
        "units": units,
        "seconds": seconds,
        "transitions": transitions,
        "transitions_per_second": transitions as f64 / seconds,
        "units_succeeded": outcome.report.usage.units_succeeded,
        "peak_rss_mib": peak_rss_mib(),
    }))
}

async fn resume_scenario(dir: &Path, execution: &str, units: usize) -> Result<Value, String> {
    let runner = flow_runner(dir, units)?;
    let recorded_before = runner.journal().get(execution).map_err(|e| e.to_string())?.tasks_recorded;
    let started = Instant::now();
    let outcome = runner.resume(execution).await.map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "units": units,
        "seconds": seconds,
        "tasks_recorded_before": recorded_before,
        "units_succeeded": outcome.report.usage.units_succeeded,
        "peak_rss_mib": peak_rss_mib(),
    }))
}

/// Run one scenario in a child process and parse its JSON line.
async fn child(args: &[String]) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = tokio::process::Command::new(exe).arg("engine").args(args).output().await.map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("{args:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).map_err(|e| format!("{args:?} printed no JSON ({e}): {text}"))
}

/// Kill a flow run once 90% of its units are journaled, then time its resume.
async fn kill_and_resume(units: usize) -> Result<Value, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut victim = tokio::process::Command::new(exe)
        .args(["engine", "--scenario", "flow-to-kill", "--units", &units.to_string(), "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let journal_path = dir.path().join("journal.sqlite");
    let target = (units as u64 * 9) / 10;
    let deadline = Instant::now() + Duration::from_secs(600);
    let execution = loop {
        if journal_path.exists()
            && let Ok(journal) = Journal::open(&journal_path)
            && let Ok(list) = journal.list(1)
            && let Some(e) = list.into_iter().next()
            && e.tasks_recorded >= target
        {
            break e.name;
        }
        if Instant::now() > deadline {
            return Err("the run to kill made no progress".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    victim.kill().await.map_err(|e| e.to_string())?;
    let dir_arg = dir.path().display().to_string();
    child(&[
        "--scenario".into(),
        "resume".into(),
        "--units".into(),
        units.to_string(),
        "--dir".into(),
        dir_arg,
        "--execution".into(),
        execution,
    ])
    .await
}

async fn table(args: &EngineArgs) -> Result<(), String> {
    let items = args.items.to_string();
    let units = args.units.to_string();
    let pass = child(&["--scenario".into(), "pass".into(), "--items".into(), items.clone()]).await?;
    let task = child(&["--scenario".into(), "task".into(), "--items".into(), items]).await?;
    let flow = child(&["--scenario".into(), "flow".into(), "--units".into(), units]).await?;
    let resume = kill_and_resume(args.units).await?;
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    println!("| scenario | size | wall time | state transitions | transitions/s | peak RSS |");
    println!("|---|---|---|---|---|---|");
    for (label, v, size) in [
        ("(a) Map over Pass", &pass, format!("{} items", args.items)),
        ("(b) Map over Task (returns at once)", &task, format!("{} items", args.items)),
        ("(c) BEACON flow, zero-latency provider", &flow, format!("{} units", args.units)),
    ] {
        println!(
            "| {label} | {size} | {:.2} s | {} | {:.0} | {:.0} MiB |",
            f(v, "seconds"),
            v["transitions"],
            f(v, "transitions_per_second"),
            f(v, "peak_rss_mib")
        );
    }
    println!(
        "| resume of (c) after kill -9 at 90% | {} units, {} task outcomes journaled | {:.2} s | | | {:.0} MiB |",
        args.units,
        resume["tasks_recorded_before"],
        f(&resume, "seconds"),
        f(&resume, "peak_rss_mib")
    );
    Ok(())
}
