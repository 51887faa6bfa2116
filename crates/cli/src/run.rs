//! `beacon run FILE...`: the main job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use beacon_pipeline::RunOptions;
use beacon_pipeline::plan::Strategy;
use clap::Args;
use futures::StreamExt;

use crate::exit;
use crate::session::{Engine, FlowArgs, Session, load_flow_config};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The documents to analyse, or directories of them (their files, not subdirectories).
    /// Documents run together share the quota, and batch documents pool their records into
    /// shared batch jobs.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output directory for report.json and report.md [default: beacon-out/<file stem>/]. With
    /// several documents, each gets <DIR>/<file stem>/.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// inline, distributed, batch (Bedrock batch inference), or auto: the state machine chooses
    /// by unit count (`[strategy]` thresholds, 40 and 100 by default).
    #[arg(long, default_value = "auto", value_name = "inline|distributed|batch|auto")]
    strategy: String,
    /// How many documents run at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    parallel_documents: usize,
    /// local: the embedded engine here; aws: the deployed stack (--stack): the document is
    /// uploaded, Step Functions and the stack's Lambdas analyse it, the report comes back here.
    #[arg(long, value_enum, default_value_t = Engine::Local)]
    engine: Engine,
    /// The stack `beacon deploy` created (with --engine aws; --region names its region).
    #[arg(long)]
    stack: Option<String>,
    /// An AWS-compatible endpoint instead of AWS for --engine aws (LocalStack, moto).
    #[arg(long)]
    aws_endpoint: Option<String>,
    /// With --engine aws: start the executions, print their names and return; follow them with
    /// `beacon executions show NAME --engine aws --stack STACK` (a batch job takes hours).
    #[arg(long)]
    detach: bool,
    /// Seconds between two looks at an execution on AWS.
    #[arg(long, default_value_t = 5, hide = true)]
    poll_seconds: u64,
    /// Serve Prometheus metrics on this address while the run lasts (e.g. 127.0.0.1:9464):
    /// the numbers `beacon serve` exports at /metrics, for this run's documents.
    #[arg(long, value_name = "ADDR")]
    metrics_bind: Option<String>,
    #[command(flatten)]
    flow: FlowArgs,
}

/// The files to run: each file given, and the files directly inside each directory given (in
/// name order, hidden files left out).
fn documents(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            // A missing or unreadable file is reported by its own run, with the others going on.
            files.push(path.clone());
            continue;
        }
        let entries =
            std::fs::read_dir(path).map_err(|e| format!("{}: cannot list the directory: {e}", path.display()))?;
        let mut inside: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .collect();
        if inside.is_empty() {
            return Err(format!("{}: the directory holds no file", path.display()));
        }
        inside.sort();
        files.extend(inside);
    }
    Ok(files)
}

fn stem(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "document".into())
}

/// Where each document's report goes: `--out` itself for one document, else
/// `<--out or beacon-out>/<file stem>`; stems that collide (a.pdf, a.xlsx) use the file name,
/// and names that still collide (x/a.pdf, y/a.pdf) get `-2`, `-3`, ...
fn out_dirs(files: &[PathBuf], out: Option<&Path>) -> Vec<PathBuf> {
    if let ([_], Some(dir)) = (files, out) {
        return vec![dir.to_path_buf()];
    }
    let base = out.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("beacon-out"));
    let mut stems: BTreeMap<String, usize> = BTreeMap::new();
    for file in files {
        *stems.entry(stem(file)).or_default() += 1;
    }
    let mut taken = std::collections::HashSet::new();
    files
        .iter()
        .map(|file| {
            let stem = stem(file);
            let name = if stems[&stem] > 1 {
                file.file_name().map(|n| n.to_string_lossy().replace('.', "-")).unwrap_or(stem)
            } else {
                stem
            };
            let unique = (1..)
                .map(|n| if n == 1 { name.clone() } else { format!("{name}-{n}") })
                .find(|candidate| taken.insert(candidate.clone()));
            base.join(unique.unwrap_or(name))
        })
        .collect()
}

pub async fn run(config_path: Option<&Path>, args: RunArgs) -> u8 {
    let config = match load_flow_config(config_path, &args.flow).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let strategy = match Strategy::parse_choice(&args.strategy) {
        Ok(strategy) => strategy,
        Err(e) => {
            eprintln!("error: --strategy: {e}");
            return exit::USAGE;
        }
    };
    if args.parallel_documents == 0 {
        eprintln!("error: --parallel-documents must be at least 1");
        return exit::USAGE;
    }
    let files = match documents(&args.files) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INPUT;
        }
    };
    let mut session = match Session::new(config, &args.flow).await {
        Ok(s) => s.with_documents(files.len()),
        Err(code) => return code,
    };
    if let Some(address) = &args.metrics_bind {
        match session.serve_metrics(address).await {
            Ok(local) => eprintln!("metrics: http://{local}/metrics"),
            Err(code) => return code,
        }
    }
    if args.detach && args.engine != Engine::Aws {
        eprintln!("error: --detach needs --engine aws (a local run is this process)");
        return exit::USAGE;
    }
    let outs = out_dirs(&files, args.out.as_deref());
    let remote = match args.engine {
        Engine::Local => None,
        Engine::Aws => match on_aws(&args).await {
            Ok(remote) => Some(remote),
            Err(code) => return code,
        },
    };
    let (session, remote) = (&session, remote.as_ref());
    let max_file_bytes = session.config().limits.max_file_bytes;
    if let (Some(remote), true) = (remote, args.detach) {
        return start_detached(remote, &files, max_file_bytes, strategy, args.stack.as_deref().unwrap_or_default())
            .await;
    }
    let runs = files.iter().zip(outs).map(|(file, out)| async move {
        let label = file.display().to_string();
        let document = session.document(&label);
        if let Some(remote) = remote {
            let work = remote.run_file(file, max_file_bytes, strategy, document.display.as_ref());
            return session.finish(&document, &label, &out, work).await;
        }
        // Remember the output directory as an absolute path, so a resume from elsewhere finds it.
        let absolute_out = std::path::absolute(&out).unwrap_or_else(|_| out.clone());
        let options =
            RunOptions { out_dir: Some(absolute_out.display().to_string()), strategy, ..RunOptions::default() };
        session.finish(&document, &label, &out, document.runner.run_file(file, options)).await
    });
    let codes: Vec<u8> = futures::stream::iter(runs).buffer_unordered(args.parallel_documents).collect().await;
    if files.len() > 1 {
        let ok = codes.iter().filter(|c| **c == exit::SUCCESS).count();
        println!("{} documents: {ok} complete, {} requests sent by this process", files.len(), session.requests_sent());
    }
    // The exit codes rank by severity: the worst document's decides.
    codes.into_iter().max().unwrap_or(exit::SUCCESS)
}

/// `--detach`: start one execution per document and say how to follow them.
async fn start_detached(
    remote: &beacon_deploy::remote_run::RemoteStack,
    files: &[PathBuf],
    max_file_bytes: u64,
    strategy: Option<Strategy>,
    stack: &str,
) -> u8 {
    let mut worst = exit::SUCCESS;
    for file in files {
        match remote.start(file, max_file_bytes, strategy).await {
            Ok(started) => {
                println!("{}", started.execution);
                eprintln!(
                    "{}: started {} (follow it: beacon executions show {} --engine aws --stack {stack})",
                    started.document, started.arn, started.execution
                );
            }
            Err(e) => {
                eprintln!("error: {e}");
                let code =
                    if matches!(e, beacon_pipeline::RunError::Input { .. }) { exit::INPUT } else { exit::INTERNAL };
                worst = worst.max(code);
            }
        }
    }
    worst
}

/// The deployed stack `--engine aws` runs on.
async fn on_aws(args: &RunArgs) -> Result<beacon_deploy::remote_run::RemoteStack, u8> {
    let Some(stack) = &args.stack else {
        eprintln!("error: --engine aws needs --stack NAME (the stack beacon deploy created)");
        return Err(exit::USAGE);
    };
    match beacon_deploy::remote_run::RemoteStack::connect(
        stack,
        args.flow.region.as_deref(),
        args.aws_endpoint.as_deref(),
    )
    .await
    {
        Ok(mut remote) => {
            remote.poll = std::time::Duration::from_secs(args.poll_seconds.max(1));
            Ok(remote)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(if matches!(e, beacon_deploy::DeployError::Usage(_)) { exit::USAGE } else { exit::INTERNAL })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_document_uses_out_as_is_and_several_get_a_directory_each() {
        let one = [PathBuf::from("a.pdf")];
        assert_eq!(out_dirs(&one, Some(Path::new("o"))), vec![PathBuf::from("o")]);
        assert_eq!(out_dirs(&one, None), vec![PathBuf::from("beacon-out/a")]);
        let several = [PathBuf::from("x/a.pdf"), PathBuf::from("y/a.xlsx"), PathBuf::from("b.csv")];
        assert_eq!(
            out_dirs(&several, Some(Path::new("o"))),
            vec![PathBuf::from("o/a-pdf"), PathBuf::from("o/a-xlsx"), PathBuf::from("o/b")]
        );
        let same = [PathBuf::from("x/a.pdf"), PathBuf::from("y/a.pdf"), PathBuf::from("x/a.pdf")];
        assert_eq!(
            out_dirs(&same, None),
            vec![
                PathBuf::from("beacon-out/a-pdf"),
                PathBuf::from("beacon-out/a-pdf-2"),
                PathBuf::from("beacon-out/a-pdf-3")
            ]
        );
    }

    #[test]
    fn directories_give_their_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.txt", "a.txt", ".hidden"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let files = documents(&[dir.path().to_path_buf(), PathBuf::from("c.txt")]).unwrap();
        let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["a.txt", "b.txt", "c.txt"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(documents(&[empty.path().to_path_buf()]).unwrap_err().contains("holds no file"));
    }
}
