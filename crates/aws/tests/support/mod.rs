// Shared by several test binaries, each using a part of it.
#![allow(dead_code)]

//! A moto server (a local AWS emulator from PyPI) for the AWS adapter tests.
//!
//! `./scripts/test` installs moto into a virtual environment and exports `BEACON_PYTHON` (its
//! interpreter) and `BEACON_REQUIRE_MOTO=1`. Without `BEACON_PYTHON` (a bare `cargo test`) the
//! tests that need moto print why and pass, unless `BEACON_REQUIRE_MOTO` is set, where a missing
//! emulator is a failure.

pub mod lambda_service;
pub mod step_functions;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running moto server on a free loopback port, killed (by PID) on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts moto, or returns `None` (after saying why) when it is not installed and not
    /// required.
    pub fn start() -> Option<Moto> {
        let Some(python) = std::env::var_os("BEACON_PYTHON") else {
            assert!(
                std::env::var_os("BEACON_REQUIRE_MOTO").is_none(),
                "BEACON_REQUIRE_MOTO is set but BEACON_PYTHON is not: run ./scripts/test, which installs moto"
            );
            eprintln!("skipping: moto is not installed (run ./scripts/test, which installs it into a venv)");
            return None;
        };
        // moto's server with the CloudFormation parts it lacks (moto_server.py). Port 0: the
        // server picks a free port and prints it; werkzeug logs to stderr.
        let mut child = Command::new(python)
            .args(["-c", include_str!("moto_server.py"), "-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto (moto_server.py)");
        let stderr = child.stderr.take().expect("moto's stderr");
        let mut lines = BufReader::new(stderr).lines();
        let endpoint = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => {
                    let _ = child.kill();
                    panic!("moto exited before it printed its address");
                }
            };
            if let Some(at) = line.find("Running on http://") {
                let address: String = line[at + "Running on ".len()..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '\u{1b}')
                    .collect();
                break address;
            }
        };
        // Keep draining the request log, or moto blocks once the pipe is full.
        std::thread::spawn(move || for _ in lines {});
        Some(Moto { child, endpoint })
    }

    /// A DynamoDB client for this server (test credentials, us-east-1).
    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::new()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "moto"))
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }
}

impl Moto {
    /// Creates an S3 bucket with a plain `PUT /bucket` (moto takes unsigned requests).
    pub fn create_bucket(&self, bucket: &str) {
        use std::io::{Read, Write};
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).expect("connect to moto");
        write!(stream, "PUT /{bucket} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .expect("send to moto");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read moto's answer");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
}

impl Moto {
    /// Runs `script` (Python with boto3, from moto's venv, `json` imported) against this server;
    /// it prints one JSON value, which is returned.
    pub fn boto3(&self, script: &str) -> serde_json::Value {
        let python = std::env::var_os("BEACON_PYTHON").expect("BEACON_PYTHON");
        let out = Command::new(python)
            .args(["-c", &format!("import boto3, json\n{script}")])
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .output()
            .expect("run python");
        assert!(out.status.success(), "boto3 script failed:\n{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("the script prints JSON")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
