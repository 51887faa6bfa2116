//! `beacon asl validate|run`: a local Step Functions for any state machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use beacon_asl::{ExecutionStatus, Interpreter, StateMachine, TaskContext, TaskFailure, TaskHandler, TaskRegistry};
use clap::Subcommand;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::exit;
use crate::session::{FlowArgs, load_config};

#[derive(Subcommand, Debug)]
pub enum AslCommand {
    /// Check a state machine definition; problems are listed with the state and the JSON pointer.
    Validate {
        /// The definition (ASL JSON).
        file: PathBuf,
        /// DefinitionSubstitutions: replace ${KEY} with VALUE before parsing (repeatable).
        #[arg(long = "sub", value_name = "KEY=VALUE")]
        substitutions: Vec<String>,
    },
    /// Execute a state machine locally and print {"status", "output"} or {"status", "error", "cause"}.
    Run {
        /// The definition (ASL JSON).
        file: PathBuf,
        /// The execution input: JSON text, or @FILE to read it from a file.
        #[arg(long, default_value = "{}")]
        input: String,
        /// DefinitionSubstitutions: replace ${KEY} with VALUE before parsing (repeatable).
        #[arg(long = "sub", value_name = "KEY=VALUE")]
        substitutions: Vec<String>,
        /// Include the execution history (AWS's event shape) in the output.
        #[arg(long)]
        history: bool,
        /// The execution's name ($$.Execution.Name).
        #[arg(long, default_value = "local")]
        name: String,
    },
}

pub async fn asl(config_path: Option<&Path>, command: AslCommand) -> u8 {
    match command {
        AslCommand::Validate { file, substitutions } => match load_machine(&file, &substitutions) {
            Ok(machine) => {
                println!("{}: valid ({} states)", file.display(), machine.state_names().len());
                exit::SUCCESS
            }
            Err(code) => code,
        },
        AslCommand::Run { file, input, substitutions, history, name } => {
            let machine = match load_machine(&file, &substitutions) {
                Ok(m) => m,
                Err(code) => return code,
            };
            let input = match read_input(&input) {
                Ok(v) => v,
                Err(message) => {
                    eprintln!("error: --input: {message}");
                    return exit::USAGE;
                }
            };
            let config = match load_config(config_path, &FlowArgs::default()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let registry = local_registry(&machine, &config.asl.resources);
            let result = Interpreter::new(registry)
                .with_payload_limit(config.asl.payload_limit_bytes)
                .execute(&machine, &name, input)
                .await;
            let mut out = match &result.status {
                ExecutionStatus::Succeeded { output } => json!({"status": "SUCCEEDED", "output": output}),
                ExecutionStatus::Failed { error, cause } => json!({"status": "FAILED", "error": error, "cause": cause}),
                ExecutionStatus::TimedOut => json!({"status": "TIMED_OUT"}),
            };
            if history {
                out["events"] = serde_json::to_value(&result.history).unwrap_or(Value::Null);
            }
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            match result.status {
                ExecutionStatus::Succeeded { .. } => exit::SUCCESS,
                _ => exit::UNITS_FAILED,
            }
        }
    }
}

fn load_machine(file: &Path, substitutions: &[String]) -> Result<StateMachine, u8> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        eprintln!("error: {}: {e}", file.display());
        exit::INPUT
    })?;
    let mut subs = BTreeMap::new();
    for pair in substitutions {
        let Some((key, value)) = pair.split_once('=') else {
            eprintln!("error: --sub expects KEY=VALUE, got '{pair}'");
            return Err(exit::USAGE);
        };
        subs.insert(key.to_string(), value.to_string());
    }
    let invalid = |e: beacon_asl::DefinitionError| {
        eprintln!("error: {}: invalid state machine definition:\n{e}", file.display());
        exit::INPUT
    };
    let text = if subs.is_empty() && !text.contains("${") {
        text
    } else {
        beacon_asl::substitute(&text, &subs).map_err(invalid)?
    };
    StateMachine::parse(&text).map_err(invalid)
}

fn read_input(input: &str) -> Result<Value, String> {
    let text = match input.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        None => input.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))
}

/// Every Task resource of the machine: a configured command, or a handler that fails the task
/// with a cause naming the resource (catchable, as a failing task on AWS would be).
fn local_registry(machine: &StateMachine, commands: &BTreeMap<String, Vec<String>>) -> TaskRegistry {
    let mut registry = TaskRegistry::new();
    for resource in machine.resources() {
        let handler: Arc<dyn TaskHandler> = match commands.get(resource) {
            Some(argv) if !argv.is_empty() => Arc::new(CommandTask { argv: argv.clone() }),
            _ => Arc::new(Unserved { resource: resource.to_string() }),
        };
        registry.register(resource, handler);
    }
    registry
}

struct Unserved {
    resource: String,
}

#[async_trait]
impl TaskHandler for Unserved {
    async fn invoke(&self, _input: Value, _ctx: TaskContext) -> Result<Value, TaskFailure> {
        Err(TaskFailure::new(
            "States.TaskFailed",
            format!(
                "The local engine cannot serve the resource '{}'. Map it to a command in beacon.toml: \
[asl.resources] \"{}\" = [\"program\", \"arg\"]",
                self.resource, self.resource
            ),
        ))
    }
}

/// A task served by a local program: input JSON on stdin, output JSON on stdout.
struct CommandTask {
    argv: Vec<String>,
}

#[async_trait]
impl TaskHandler for CommandTask {
    async fn invoke(&self, input: Value, _ctx: TaskContext) -> Result<Value, TaskFailure> {
        let program = &self.argv[0];
        let fail = |cause: String| TaskFailure::new("States.TaskFailed", cause);
        let mut child = tokio::process::Command::new(program)
            .args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot start '{program}': {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let bytes = input.to_string().into_bytes();
            stdin.write_all(&bytes).await.map_err(|e| fail(format!("cannot write to '{program}': {e}")))?;
        }
        let out = child.wait_with_output().await.map_err(|e| fail(format!("'{program}' failed: {e}")))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let parsed: Option<Value> = serde_json::from_str(stdout.trim()).ok();
        if out.status.success() {
            return parsed.ok_or_else(|| fail(format!("'{program}' did not print JSON: {}", stdout.trim())));
        }
        match parsed {
            Some(v) if v.get("errorType").is_some() => Err(TaskFailure::new(
                v["errorType"].as_str().unwrap_or("States.TaskFailed"),
                v.get("errorMessage").and_then(Value::as_str).unwrap_or_default(),
            )),
            _ => Err(fail(format!(
                "'{program}' exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    }
}
