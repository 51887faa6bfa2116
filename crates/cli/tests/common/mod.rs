//! Shared helpers for the end-to-end tests: run the real `beacon` binary in a scratch directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// A file of the shared corpus, or None (with a message) when `../shared` is absent.
pub fn corpus(relative: &str) -> Option<PathBuf> {
    let path = repo_root().join("../shared/corpus").join(relative);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} not found (the shared corpus lives in ../shared/corpus)", path.display());
        None
    }
}

/// A scratch directory with its own data dir, so tests never share a store.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().expect("tempdir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn out(&self) -> PathBuf {
        self.path("out")
    }

    /// `beacon` with a private data dir, no config file, and no AWS settings from the host.
    pub fn beacon(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_beacon"));
        cmd.current_dir(self.dir.path());
        cmd.env("BEACON_DATA_DIR", self.path("data"));
        for var in
            ["BEACON_PROVIDER", "BEACON_MODEL", "BEACON_ENDPOINT", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"]
        {
            cmd.env_remove(var);
        }
        cmd.env("AWS_CONFIG_FILE", self.path("no-aws-config"));
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", self.path("no-aws-credentials"));
        cmd.env("AWS_EC2_METADATA_DISABLED", "true");
        cmd
    }

    /// Run `beacon run FILE --out OUT` plus `extra` arguments.
    pub fn run(&self, file: &Path, extra: &[&str]) -> Output {
        let mut cmd = self.beacon();
        cmd.arg("run").arg(file).arg("--out").arg(self.out()).args(extra);
        cmd.output().expect("run beacon")
    }

    pub fn report(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.out().join("report.json")).expect("report.json written");
        serde_json::from_str(&text).expect("report.json is JSON")
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Assert the exit code, showing the output when it differs.
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "exit code\n--- stdout\n{}\n--- stderr\n{}", stdout(o), stderr(o));
}
