//! `beacon run FILE`: the main job.

use std::path::{Path, PathBuf};

use beacon_pipeline::RunOptions;
use clap::Args;

use crate::session::{FlowArgs, Session, load_config};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The document to analyse.
    file: PathBuf,
    /// Output directory for report.json and report.md [default: beacon-out/<file stem>/].
    #[arg(long, short)]
    out: Option<PathBuf>,
    #[command(flatten)]
    flow: FlowArgs,
}

/// `beacon-out/<file stem>` unless given.
fn out_dir(file: &Path, out: Option<&Path>) -> PathBuf {
    match out {
        Some(dir) => dir.to_path_buf(),
        None => {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "document".into());
            Path::new("beacon-out").join(stem)
        }
    }
}

pub async fn run(config_path: Option<&Path>, args: RunArgs) -> u8 {
    let config = match load_config(config_path, &args.flow) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let label = args.file.display().to_string();
    let name = args.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| label.clone());
    let session = match Session::new(config, &name, &args.flow).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let out = out_dir(&args.file, args.out.as_deref());
    // Remember the output directory as an absolute path, so a resume from elsewhere finds it.
    let absolute_out = std::path::absolute(&out).unwrap_or_else(|_| out.clone());
    let options = RunOptions { out_dir: Some(absolute_out.display().to_string()), ..RunOptions::default() };
    session.finish(&label, &out, session.runner.run_file(&args.file, options)).await
}
