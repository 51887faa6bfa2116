//! Shared helpers for the end-to-end tests: run the real `beacon` binary in a scratch directory.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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

/// `beacon-lambda`, built next to `beacon` by `cargo test --workspace`.
pub fn lambda_binary() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_beacon")).with_file_name("beacon-lambda")
}

/// The architecture `beacon-lambda` is built for here (its ELF header), as `beacon deploy
/// --arch` names it.
pub fn host_arch() -> &'static str {
    if cfg!(target_arch = "aarch64") { "arm64" } else { "x86_64" }
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
        for var in [
            "BEACON_PROVIDER",
            "BEACON_MODEL",
            "BEACON_ENDPOINT",
            "BEACON_DOCUMENT_PASSWORD",
            "AWS_PROFILE",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
        ] {
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

/// A report without what differs between runs of the same document: execution name, times,
/// durations.
pub fn comparable_report(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("report.json is JSON");
    v["execution"] = serde_json::Value::Null;
    v["generated_at"] = serde_json::Value::Null;
    v["usage"]["makespan_ms"] = serde_json::Value::Null;
    for unit in v["units"].as_array_mut().expect("units") {
        unit["usage"]["duration_ms"] = serde_json::Value::Null;
    }
    v
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

/// A running `beacon sim`, killed (by PID) when dropped.
pub struct Sim {
    child: Child,
    addr: String,
    /// Kept open so the simulator's later output has somewhere to go.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Sim {
    pub fn start(args: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_beacon"))
            .args(["sim", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start beacon sim");
        let stdout = child.stdout.take().expect("sim stdout");
        let mut stdout = BufReader::new(stdout);
        let mut first = String::new();
        stdout.read_line(&mut first).expect("sim prints its address");
        let addr = first
            .trim()
            .strip_prefix("beacon sim listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
            .to_string();
        Sim { child, addr, _stdout: stdout }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// GET /sim/stats over a plain HTTP/1.0 request.
    pub fn stats(&self) -> serde_json::Value {
        let mut stream = TcpStream::connect(&self.addr).expect("connect to sim");
        write!(stream, "GET /sim/stats HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response.split("\r\n\r\n").nth(1).expect("HTTP body");
        serde_json::from_str(body).expect("stats JSON")
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Credentials and region for the AWS SDK when talking to `beacon sim` (any values work).
pub fn with_fake_aws(cmd: &mut Command) -> &mut Command {
    cmd.env("AWS_ACCESS_KEY_ID", "AKIDBEACONTEST")
        .env("AWS_SECRET_ACCESS_KEY", "beacon-test-secret")
        .env("AWS_REGION", "us-east-1")
}

/// A tool of the test venv (`cfn-lint`, `checkov`), or None (with a message) when there is no
/// venv and the test command does not require one.
pub fn venv_tool(name: &str) -> Option<PathBuf> {
    let python = std::env::var_os("BEACON_PYTHON").map(PathBuf::from);
    let tool = python.as_ref().and_then(|p| p.parent()).map(|bin| bin.join(name)).filter(|t| t.exists());
    if tool.is_none() {
        assert!(
            std::env::var("BEACON_REQUIRE_MOTO").is_err(),
            "{name} is required: ./scripts/test installs it into the venv (scripts/requirements-test.txt)"
        );
        eprintln!("skipping: {name} not found (run ./scripts/test, which installs it)");
    }
    tool
}
