//! `beacon executions list|show|resume`: the execution journal.

use std::path::{Path, PathBuf};

use beacon_pipeline::RunOptions;
use beacon_store::journal::{ExecutionRecord, ExecutionState};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::exit;
use crate::session::{Engine, FlowArgs, Session, load_config, open_storage};

#[derive(Subcommand, Debug)]
pub enum ExecutionsCommand {
    /// List recent executions, newest first (this machine's, or with --engine aws a deployed
    /// stack's).
    List {
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Show one execution: status, result or error, and with --history its events.
    Show {
        /// The execution name (from `beacon executions list` or `beacon run`'s output).
        name: String,
        /// Add the history events (AWS's GetExecutionHistory shape).
        #[arg(long)]
        history: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Continue an execution whose process died; finished tasks are not run again.
    Resume(Box<ResumeArgs>),
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The execution name.
    name: String,
    /// Output directory for the report [default: the one the execution was started with].
    #[arg(long, short)]
    out: Option<PathBuf>,
    #[command(flatten)]
    flow: FlowArgs,
}

pub async fn executions(config_path: Option<&Path>, command: ExecutionsCommand) -> u8 {
    match command {
        ExecutionsCommand::List { engine, limit, json, .. } if engine.engine == Engine::Aws => {
            on_aws(&engine, AwsQuery::List { limit }, json).await
        }
        ExecutionsCommand::Show { engine, name, history, json, .. } if engine.engine == Engine::Aws => {
            on_aws(&engine, AwsQuery::Show { name: &name, history }, json).await
        }
        ExecutionsCommand::List { limit, json, data_dir, .. } => list(config_path, limit, json, data_dir),
        ExecutionsCommand::Show { name, history, json, data_dir, .. } => {
            show(config_path, &name, history, json, data_dir)
        }
        ExecutionsCommand::Resume(args) => resume(config_path, *args).await,
    }
}

fn journal(config_path: Option<&Path>, data_dir: Option<PathBuf>) -> Result<beacon_store::journal::Journal, u8> {
    let config = load_config(config_path, &FlowArgs { data_dir, ..FlowArgs::default() })?;
    open_storage(&config).map(|(_, journal)| journal)
}

fn summary(e: &ExecutionRecord) -> Value {
    json!({
        "name": e.name,
        "document": e.label,
        "status": e.status.as_str(),
        "startedAt": e.started_at,
        "finishedAt": e.finished_at,
        "attempts": e.attempt,
        "tasksRecorded": e.tasks_recorded,
        "error": e.error,
        "cause": e.cause,
    })
}

fn list(config_path: Option<&Path>, limit: usize, as_json: bool, data_dir: Option<PathBuf>) -> u8 {
    let journal = match journal(config_path, data_dir) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let executions = match journal.list(limit) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    if as_json {
        for e in &executions {
            println!("{}", summary(e));
        }
    } else if executions.is_empty() {
        println!("no executions yet (journal: {})", journal.path().display());
    } else {
        println!("{:<44} {:<10} {:<24} DOCUMENT", "NAME", "STATUS", "STARTED");
        for e in &executions {
            println!("{:<44} {:<10} {:<24} {}", e.name, e.status.as_str(), e.started_at, e.label);
        }
    }
    exit::SUCCESS
}

fn show(config_path: Option<&Path>, name: &str, history: bool, as_json: bool, data_dir: Option<PathBuf>) -> u8 {
    let journal = match journal(config_path, data_dir) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let record = match journal.get(name) {
        Ok(r) => r,
        Err(_) if name.contains('/') => return show_child(&journal, name, as_json),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let children = match journal.children(name) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    let mut value = summary(&record);
    value["childExecutions"] =
        children.iter().map(|c| json!({"name": c.name, "status": c.status.as_str(), "events": c.events})).collect();
    value["output"] = record.output.as_deref().and_then(|o| serde_json::from_str(o).ok()).unwrap_or(Value::Null);
    let mut task_keys: Vec<String> = match journal.tasks(name) {
        Ok(t) => t.into_keys().collect(),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    task_keys.sort();
    value["tasks"] = json!(task_keys);
    if history {
        let events = match journal.events(name, None) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::INTERNAL;
            }
        };
        value["events"] = events.iter().map(event_json).collect();
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return exit::SUCCESS;
    }
    println!("execution  {}", record.name);
    println!("document   {}", record.label);
    println!("status     {}", record.status.as_str());
    println!("started    {}", record.started_at);
    println!("finished   {}", record.finished_at.as_deref().unwrap_or("-"));
    println!("attempts   {}", record.attempt);
    println!("tasks      {} outcomes journaled", record.tasks_recorded);
    if let (Some(error), Some(cause)) = (&record.error, &record.cause) {
        println!("error      {error}: {cause}");
    }
    if record.status == ExecutionState::Running {
        println!("resume     beacon executions resume {}", record.name);
    }
    if let Some(first) = children.first() {
        let ended = |s: ExecutionState| children.iter().filter(|c| c.status == s).count();
        println!(
            "children   {} distributed Map child executions ({} succeeded, {} failed, {} running); history: beacon executions show {} --history",
            children.len(),
            ended(ExecutionState::Succeeded),
            ended(ExecutionState::Failed),
            ended(ExecutionState::Running),
            first.name
        );
    }
    if let Some(events) = value["events"].as_array() {
        print_history(events);
    }
    exit::SUCCESS
}

/// `executions show PARENT/CHILD`: a distributed Map child execution's history.
fn show_child(journal: &beacon_store::journal::Journal, name: &str, as_json: bool) -> u8 {
    let events = match journal.events(name, None) {
        Ok(events) if !events.is_empty() => events,
        Ok(_) => {
            eprintln!("error: no execution named '{name}' in the journal");
            return exit::USAGE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let events: Vec<Value> = events.iter().map(event_json).collect();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json!({"name": name, "events": events})).unwrap_or_default());
        return exit::SUCCESS;
    }
    println!("child execution  {name}");
    print_history(&events);
    exit::SUCCESS
}

fn print_history(events: &[Value]) {
    println!("\nhistory ({} events)", events.len());
    for e in events {
        println!(
            "{:>6} {:>6}  {}  {:<28} {}",
            e["id"],
            e["previousEventId"],
            e["timestamp"].as_str().unwrap_or_default(),
            e["type"].as_str().unwrap_or_default(),
            state_name(e)
        );
    }
}

fn event_json(e: &beacon_store::journal::EventRecord) -> Value {
    e.to_aws_json()
}

fn state_name(event: &Value) -> String {
    event
        .as_object()
        .into_iter()
        .flat_map(|o| o.values())
        .find_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

async fn resume(config_path: Option<&Path>, args: ResumeArgs) -> u8 {
    let mut config = match load_config(config_path, &args.flow) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let record = match open_storage(&config).map(|(_, journal)| journal.get(&args.name)) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
        Err(code) => return code,
    };
    let options: RunOptions = serde_json::from_str(&record.options).unwrap_or_default();
    // The provider the execution started with, with any provider flags given now on top.
    if let Some(provider) = options.provider.clone() {
        config.provider = provider;
        args.flow.apply_provider(&mut config.provider);
    }
    let session = match Session::new(config, &args.flow).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let document = session.document(&record.label);
    let out = args
        .out
        .or_else(|| options.out_dir.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| Path::new("beacon-out").join(&record.name));
    session.finish(&document, &record.label, &out, document.runner.resume(&args.name)).await
}

/// Where `list` and `show` read executions.
#[derive(Args, Debug, Default)]
pub struct EngineArgs {
    /// local: this machine's journal; aws: the deployed stack's state machine (Step Functions).
    #[arg(long, value_enum, default_value_t = Engine::Local)]
    engine: Engine,
    /// The stack `beacon deploy` created (with --engine aws).
    #[arg(long)]
    stack: Option<String>,
    /// The AWS region (with --engine aws; default: AWS_REGION or the profile's).
    #[arg(long)]
    region: Option<String>,
    /// An AWS-compatible endpoint instead of AWS (with --engine aws).
    #[arg(long)]
    endpoint: Option<String>,
}

/// What `list` and `show` do on AWS.
enum AwsQuery<'a> {
    List { limit: usize },
    Show { name: &'a str, history: bool },
}

/// `list`/`show` with `--engine aws`: the stack's state machine through Step Functions.
async fn on_aws(target: &EngineArgs, query: AwsQuery<'_>, as_json: bool) -> u8 {
    use beacon_deploy::DeployError;
    use beacon_deploy::executions::DeployedMachine;
    let Some(stack) = &target.stack else {
        eprintln!("error: --engine aws needs --stack NAME (the stack beacon deploy created)");
        return exit::USAGE;
    };
    let result = async {
        let machine = DeployedMachine::of_stack(stack, target.region.as_deref(), target.endpoint.as_deref()).await?;
        match query {
            AwsQuery::List { limit } => Ok::<_, DeployError>(Value::Array(machine.list(limit).await?)),
            AwsQuery::Show { name, history } => machine.show(name, history).await,
        }
    }
    .await;
    let value = match result {
        Ok(value) => value,
        Err(e) => {
            eprintln!("error: {e}");
            return if matches!(e, DeployError::Usage(_)) { exit::USAGE } else { exit::INTERNAL };
        }
    };
    match (&value, as_json) {
        (Value::Array(executions), true) => executions.iter().for_each(|e| println!("{e}")),
        (Value::Array(executions), false) if executions.is_empty() => println!("no executions of stack {stack} yet"),
        (Value::Array(executions), false) => {
            println!("{:<44} {:<10} {:<24} FINISHED", "NAME", "STATUS", "STARTED");
            for e in executions {
                let text = |key: &str| e[key].as_str().unwrap_or("-").to_string();
                println!(
                    "{:<44} {:<10} {:<24} {}",
                    text("name"),
                    text("status"),
                    text("startedAt"),
                    text("finishedAt")
                );
            }
        }
        (shown, true) => println!("{}", serde_json::to_string_pretty(shown).unwrap_or_default()),
        (shown, false) => {
            let text = |key: &str| shown[key].as_str().unwrap_or("-").to_string();
            println!("execution  {}", text("name"));
            println!("arn        {}", text("arn"));
            println!("status     {}", text("status"));
            println!("started    {}", text("startedAt"));
            println!("finished   {}", text("finishedAt"));
            if shown["error"].is_string() {
                println!("error      {}: {}", text("error"), text("cause"));
            }
            if let Some(events) = shown["events"].as_array() {
                for event in events {
                    println!(
                        "{:>5} {:<28} {}",
                        event["id"],
                        event["type"].as_str().unwrap_or("-"),
                        event["stateName"].as_str().unwrap_or("")
                    );
                }
            }
        }
    }
    exit::SUCCESS
}
