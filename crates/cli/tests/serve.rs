//! `beacon serve` end to end: the real binary on a free port, driven over HTTP.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{Scratch, Sim, corpus, venv_tool, with_fake_aws};
use futures::StreamExt;
use serde_json::Value;

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

/// A running `beacon serve`, killed (by PID) when dropped.
struct Server {
    child: Child,
    base: String,
    /// What the helpers call it with (one that trusts its certificate, for TLS).
    http: reqwest::Client,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    fn start(s: &Scratch, args: &[&str]) -> Server {
        Server::start_with(s, args, |_| {})
    }

    fn start_with(s: &Scratch, args: &[&str], configure: impl FnOnce(&mut Command)) -> Server {
        let mut cmd = s.beacon();
        cmd.args(["serve", "--bind", "127.0.0.1:0"]).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit());
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("start beacon serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("serve prints its address");
        let base = first
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
            .to_string();
        Server { child, base, http: client(), _stdout: stdout }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `kill -9`.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(s: &Scratch, role: &str, name: &str) -> String {
    let out = s.beacon().args(["serve", "token", "create", "--role", role, "--name", name]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_string()
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// A text document of `pages` pages (form feeds), one unit each.
fn paged_document(pages: usize) -> Vec<u8> {
    (0..pages)
        .map(|i| {
            format!(
                "Page {i}\n\nShipment {i} left the warehouse on 2026-05-{:02} with {} pallets.\n",
                i % 28 + 1,
                i + 1
            )
        })
        .collect::<Vec<_>>()
        .join("\x0c")
        .into_bytes()
}

async fn upload(server: &Server, token: Option<&str>, name: &str, bytes: Vec<u8>) -> reqwest::Response {
    let mut request = server.http.post(server.url(&format!("/v1/documents?name={name}"))).body(bytes);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
struct SseEvent {
    id: String,
    kind: String,
    data: Value,
}

/// Reads the events of an execution until `stop` says so (or the stream ends).
async fn follow(
    server: &Server,
    token: Option<&str>,
    execution: &str,
    last_event_id: Option<&str>,
    mut stop: impl FnMut(&SseEvent) -> bool,
) -> Vec<SseEvent> {
    let mut request = server.http.get(server.url(&format!("/v1/executions/{execution}/events")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = SseEvent { id: String::new(), kind: String::new(), data: Value::Null };
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    event.id = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event.kind = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    event.data = serde_json::from_str(v.trim()).unwrap_or(Value::Null);
                }
            }
            if event.kind.is_empty() {
                continue; // a keep-alive comment
            }
            let done = stop(&event);
            events.push(event);
            if done {
                return events;
            }
        }
    }
    events
}

fn ended(event: &SseEvent) -> bool {
    event.kind == "execution" && event.data["status"] != "RUNNING"
}

async fn get_json(server: &Server, token: Option<&str>, path: &str) -> (u16, Value) {
    let mut request = server.http.get(server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn tokens_roles_upload_follow_report_and_metrics() {
    let s = Scratch::new();
    let admin = token(&s, "admin", "ops");
    let submitter = token(&s, "submitter", "ci");
    let viewer = token(&s, "viewer", "dashboard");
    let server = Server::start(&s, &[]);

    // Health needs no token; everything else does.
    assert_eq!(client().get(server.url("/health")).send().await.unwrap().status(), 200);
    assert_eq!(client().get(server.url("/ready")).send().await.unwrap().status(), 200);
    let (status, body) = get_json(&server, None, "/v1/executions").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(get_json(&server, Some("bkn_not-a-token"), "/v1/executions").await.0, 401);
    assert_eq!(client().get(server.url("/metrics")).send().await.unwrap().status(), 401);

    // A viewer may not upload; a submitter may.
    let document = paged_document(12);
    assert_eq!(upload(&server, Some(&viewer), "shipments.txt", document.clone()).await.status(), 403);
    let response = upload(&server, Some(&submitter), "出荷記録.txt", document).await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let accepted: Value = response.json().await.unwrap();
    let execution = accepted["execution"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/v1/executions/{execution}"));

    // Follow it to the end: every unit is seen once.
    let events = follow(&server, Some(&viewer), &execution, None, ended).await;
    let last = events.last().expect("events");
    assert_eq!(last.data["status"], "SUCCEEDED", "{events:?}");
    let mut succeeded: Vec<u64> =
        events.iter().filter(|e| e.kind == "unit.succeeded").map(|e| e.data["index"].as_u64().unwrap()).collect();
    succeeded.sort_unstable();
    assert_eq!(succeeded, (0..12).collect::<Vec<_>>());

    let (status, view) = get_json(&server, Some(&viewer), &location).await;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "SUCCEEDED");
    assert_eq!(view["document"]["name"], "出荷記録.txt", "names stay as given");
    assert_eq!(view["units"]["total"], 12);
    assert_eq!(view["units"]["succeeded"], 12);

    let (_, report) = get_json(&server, Some(&viewer), &format!("{location}/report")).await;
    assert_eq!(report["units"].as_array().unwrap().len(), 12);
    assert_eq!(report["execution"], execution.as_str());
    let markdown =
        client().get(server.url(&format!("{location}/report.md"))).bearer_auth(&viewer).send().await.unwrap();
    assert!(markdown.headers()["content-type"].to_str().unwrap().starts_with("text/markdown"));
    assert!(markdown.text().await.unwrap().starts_with('#'));

    let (_, units) = get_json(&server, Some(&viewer), &format!("{location}/units?status=failed")).await;
    assert_eq!(units["units"].as_array().unwrap().len(), 0);
    assert_eq!(get_json(&server, Some(&viewer), &format!("{location}/units?status=odd")).await.0, 400);

    // History pages join up to the whole history.
    let mut cursor: Option<String> = None;
    let mut ids = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("{location}/history?limit=7&cursor={c}"),
            None => format!("{location}/history?limit=7"),
        };
        let (status, page) = get_json(&server, Some(&viewer), &path).await;
        assert_eq!(status, 200);
        ids.extend(page["events"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()));
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    assert!(ids.len() > 12 * 3);

    // Metrics agree with the report.
    let metrics = client().get(server.url("/metrics")).bearer_auth(&viewer).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} not in\n{metrics}"))
    };
    assert_eq!(value("beacon_units_total{status=\"succeeded\",path=\"inline\"}"), 12.0);
    assert_eq!(value("beacon_executions_finished_total{status=\"SUCCEEDED\"}"), 1.0);
    assert_eq!(
        value("beacon_llm_tokens_total{model=\"offline\",direction=\"input\"}"),
        report["usage"]["input_tokens"].as_f64().unwrap()
    );

    // Only an admin deletes; a revoked token is refused from the next request.
    let document_id = view["document"]["id"].as_str().unwrap();
    let delete = |token: String| {
        let url = server.url(&format!("/v1/documents/{document_id}"));
        async move { client().delete(url).bearer_auth(token).send().await.unwrap().status() }
    };
    assert_eq!(delete(submitter.clone()).await, 403);
    assert_eq!(delete(admin.clone()).await, 204);
    assert_eq!(get_json(&server, Some(&viewer), &location).await.0, 404);
    assert_eq!(delete(admin.clone()).await, 404);
    let revoked = s.beacon().args(["serve", "token", "revoke", "dashboard"]).output().unwrap();
    assert!(revoked.status.success());
    assert_eq!(get_json(&server, Some(&viewer), "/v1/executions").await.0, 401);
}

#[tokio::test]
async fn bad_uploads_get_clear_4xx_and_nothing_is_queued() {
    let s = Scratch::new();
    std::fs::write(s.path("beacon.toml"), "[serve]\nmax_upload_bytes = 4096\n").unwrap();
    let server = Server::start(&s, &["--config", "beacon.toml"]);
    let code = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(body["error"]["message"].is_string(), "{status}: {body}");
        status
    };
    assert_eq!(code(upload(&server, None, "empty.txt", Vec::new()).await).await, 400);
    let random: Vec<u8> = (0..2000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    assert_eq!(code(upload(&server, None, "noise.bin", random).await).await, 415);
    assert_eq!(code(upload(&server, None, "..%2F..%2Fetc%2Fpasswd", b"hello".to_vec()).await).await, 400);
    assert_eq!(code(upload(&server, None, "a%0Ab.txt", b"hello".to_vec()).await).await, 400);
    assert_eq!(code(upload(&server, None, "dir%2F", b"hello".to_vec()).await).await, 400);
    // Over the limit: refused from the Content-Length, and while streaming a chunked body.
    assert_eq!(code(upload(&server, None, "big.txt", vec![b'a'; 5000]).await).await, 413);
    let chunks = futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 1000])));
    let chunked = client()
        .post(server.url("/v1/documents?name=big.txt"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(code(chunked).await, 413);
    // A multipart form without a file, an unknown strategy, a bad filter.
    let form = reqwest::multipart::Form::new().text("strategy", "inline");
    let response = client().post(server.url("/v1/documents")).multipart(form).send().await.unwrap();
    assert_eq!(code(response).await, 400);
    assert_eq!(code(upload(&server, None, "a.txt&strategy=fastest", b"hello".to_vec()).await).await, 400);
    assert_eq!(code(client().get(server.url("/v1/executions?status=DONE")).send().await.unwrap()).await, 400);
    assert_eq!(code(client().get(server.url("/v1/executions?cursor=%%%")).send().await.unwrap()).await, 400);
    assert_eq!(code(client().get(server.url("/v1/executions/nope")).send().await.unwrap()).await, 404);
    let (_, page) = get_json(&server, None, "/v1/executions").await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 0, "nothing bad was queued");

    // A multipart upload works, with its file name.
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(paged_document(2)).file_name("form.txt"))
        .text("strategy", "inline");
    let response = client().post(server.url("/v1/documents")).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let events = follow(&server, None, accepted["execution"].as_str().unwrap(), None, ended).await;
    assert_eq!(events.last().unwrap().data["status"], "SUCCEEDED");
}

#[test]
fn a_public_address_without_tokens_is_refused() {
    let s = Scratch::new();
    let out = s.beacon().args(["serve", "--bind", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without tokens"));
}

#[tokio::test]
async fn a_retried_upload_with_the_same_idempotency_key_is_one_execution() {
    let s = Scratch::new();
    let server = Server::start(&s, &[]);
    let send = || {
        client()
            .post(server.url("/v1/documents?name=a.txt"))
            .header("Idempotency-Key", "upload-42")
            .body(paged_document(3))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let second = send().await.unwrap();
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["execution"], second["execution"]);
    let (_, page) = get_json(&server, None, "/v1/executions").await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_dropped_event_stream_resumes_with_last_event_id_and_misses_nothing() {
    let s = Scratch::new();
    let server = Server::start(&s, &[]);
    let response = upload(&server, None, "fifty.txt", paged_document(50)).await;
    let execution = response.json::<Value>().await.unwrap()["execution"].as_str().unwrap().to_string();
    // Drop the stream after a few unit events, then go on from the last id received.
    let mut seen = 0;
    let first = follow(&server, None, &execution, None, |e| {
        seen += usize::from(e.kind == "unit.succeeded");
        seen == 5
    })
    .await;
    let last_id = first.last().unwrap().id.clone();
    let rest = follow(&server, None, &execution, Some(&last_id), ended).await;
    let whole = follow(&server, None, &execution, None, ended).await;
    let ids = |events: &[SseEvent]| events.iter().map(|e| format!("{} {}", e.id, e.kind)).collect::<Vec<_>>();
    let joined: Vec<String> = ids(&first).into_iter().chain(ids(&rest)).collect();
    assert_eq!(joined, ids(&whole), "the resumed stream goes on exactly where the first stopped");
    let units = whole.iter().filter(|e| e.kind == "unit.succeeded").count();
    assert_eq!(units, 50);
}

#[tokio::test]
async fn kill_9_then_restart_resumes_executions_without_sending_finished_units_again() {
    let Some(pdf) = corpus("pdf/004-pdflatex-4-pages/pdflatex-4-pages.pdf") else { return };
    let s = Scratch::new();
    // Slow answers, so the server is killed with units still in flight.
    let sim = Sim::start(&["--latency-ms", "400", "--latency-spread", "0"]);
    std::fs::write(s.path("beacon.toml"), "[strategy]\ninline_max_concurrency = 2\n").unwrap();
    let args = ["--config", "beacon.toml", "--provider", "bedrock", "--model", MODEL, "--endpoint"];
    let endpoint = sim.endpoint();
    let start = |s: &Scratch| {
        let mut all: Vec<&str> = args.to_vec();
        all.push(&endpoint);
        Server::start_with(s, &all, |cmd| {
            with_fake_aws(cmd);
        })
    };
    let server = start(&s);
    let documents = [std::fs::read(&pdf).unwrap(), paged_document(8)];
    let mut executions = Vec::new();
    for (i, bytes) in documents.iter().enumerate() {
        let response = upload(&server, None, &format!("doc-{i}"), bytes.clone()).await;
        assert_eq!(response.status(), 202);
        executions.push(response.json::<Value>().await.unwrap()["execution"].as_str().unwrap().to_string());
    }
    // Kill it once the second document has finished some units, not all.
    let mut done = 0;
    follow(&server, None, &executions[1], None, |e| {
        done += usize::from(e.kind == "unit.succeeded");
        done == 2
    })
    .await;
    server.kill();
    let sent_before = sim.stats()["requests"].as_u64().unwrap();

    let server = start(&s);
    for execution in &executions {
        let events = follow(&server, None, execution, None, ended).await;
        assert_eq!(events.last().unwrap().data["status"], "SUCCEEDED", "{execution}: {events:?}");
    }
    let units: u64 = 4 + 8;
    let sent = sim.stats()["requests"].as_u64().unwrap();
    assert!(sent_before < units, "the kill came before the end ({sent_before} requests)");
    // Units in flight at the kill are sent again; finished ones are not.
    assert!(sent <= units + 2 * 2, "{sent} requests for {units} units");
    for execution in &executions {
        let (_, view) = get_json(&server, None, &format!("/v1/executions/{execution}")).await;
        assert_eq!(view["status"], "SUCCEEDED");
        assert!(view["attempts"].as_u64().unwrap() >= 1);
    }
}

/// A server with one admin token and no request rate to speak of (fuzzers send thousands).
fn fuzzable_server(s: &Scratch) -> (Server, String) {
    std::fs::write(s.path("beacon.toml"), "[serve]\nrequests_per_minute = 1000000\n").unwrap();
    let admin = token(s, "admin", "fuzz");
    (Server::start(s, &["--config", "beacon.toml"]), admin)
}

#[tokio::test]
async fn schemathesis_finds_no_5xx_and_every_response_as_documented() {
    let Some(st) = venv_tool("st") else { return };
    let s = Scratch::new();
    let (server, admin) = fuzzable_server(&s);
    // Something to find: one finished execution.
    let response = upload(&server, Some(&admin), "seed.txt", paged_document(3)).await;
    let execution = response.json::<Value>().await.unwrap()["execution"].as_str().unwrap().to_string();
    follow(&server, Some(&admin), &execution, None, ended).await;
    let out = Command::new(&st)
        .args(["run", &server.url("/openapi.json"), "--max-examples", "40", "--seed", "16"])
        .args(["-H", &format!("Authorization: Bearer {admin}")])
        .args(["-c", "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
}

#[tokio::test]
async fn without_a_token_every_route_but_health_is_401() {
    let s = Scratch::new();
    let (server, _) = fuzzable_server(&s);
    let document: Value = client().get(server.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"), "{}", document["openapi"]);
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        let concrete = path.replace("{name}", "some-execution").replace("{id}", &"a".repeat(64));
        for method in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = client().request(method.clone(), server.url(&concrete)).send().await.unwrap();
            let expected = if ["/health", "/ready"].contains(&path.as_str()) { 200 } else { 401 };
            assert_eq!(response.status().as_u16(), expected, "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked >= 14, "{checked} operations");
}

#[tokio::test]
async fn metrics_parse_with_prometheus_own_parser_and_match_the_reports() {
    let Some(python) = venv_tool("python") else { return };
    let s = Scratch::new();
    let (server, admin) = fuzzable_server(&s);
    let mut reports = Vec::new();
    for (name, pages) in [("a.txt", 3), ("b.txt", 5)] {
        let response = upload(&server, Some(&admin), name, paged_document(pages)).await;
        let execution = response.json::<Value>().await.unwrap()["execution"].as_str().unwrap().to_string();
        follow(&server, Some(&admin), &execution, None, ended).await;
        reports.push(get_json(&server, Some(&admin), &format!("/v1/executions/{execution}/report")).await.1);
    }
    let text = client().get(server.url("/metrics")).bearer_auth(&admin).send().await.unwrap().text().await.unwrap();
    std::fs::write(s.path("metrics.txt"), &text).unwrap();
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
samples = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for sample in family.samples:
        key = sample.name + json.dumps(sample.labels, sort_keys=True)
        samples[key] = sample.value
print(json.dumps(samples))
"#;
    let out = Command::new(python).arg("-c").arg(script).arg(s.path("metrics.txt")).output().unwrap();
    assert!(out.status.success(), "the parser refused /metrics: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    let samples: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sum = |field: &str| reports.iter().map(|r| r["usage"][field].as_f64().unwrap()).sum::<f64>();
    assert_eq!(samples[r#"beacon_units_total{"path": "inline", "status": "succeeded"}"#], 8.0, "{samples}");
    assert_eq!(samples[r#"beacon_executions_finished_total{"status": "SUCCEEDED"}"#], 2.0);
    assert_eq!(samples[r#"beacon_executions_started_total{"strategy": "auto"}"#], 2.0);
    assert_eq!(samples[r#"beacon_llm_tokens_total{"direction": "input", "model": "offline"}"#], sum("input_tokens"));
    assert_eq!(samples[r#"beacon_llm_tokens_total{"direction": "output", "model": "offline"}"#], sum("output_tokens"));
    assert_eq!(
        samples[r#"beacon_llm_requests_total{"model": "offline", "outcome": "answered", "provider": "offline"}"#],
        sum("requests")
    );
    assert_eq!(samples[r#"beacon_execution_duration_seconds_count{}"#], 2.0);
    assert_eq!(samples[r#"beacon_executions_running{}"#], 0.0);
    // Every attempt the provider answered is timed once.
    assert_eq!(samples[r#"beacon_llm_request_duration_seconds_count{"model": "offline"}"#], sum("requests"));
    assert_eq!(
        samples[r#"beacon_llm_request_duration_seconds_bucket{"le": "+Inf", "model": "offline"}"#],
        sum("requests")
    );
    // The offline analyzer is not paced: the pacer's room is not a series (a paced provider's is,
    // in the webhook test).
    assert!(!text.contains("beacon_rate_limit_available{"), "{text}");
    assert_eq!(samples[r#"beacon_batch_jobs{"status": "InProgress"}"#], 0.0, "no batch path ran");
}

/// A webhook receiver that fails the first two attempts of every message, then records it.
struct Receiver {
    base: String,
    /// (the path it was sent to, headers, body)
    received: tokio::sync::mpsc::UnboundedReceiver<(String, axum::http::HeaderMap, String)>,
    /// The `webhook-id` of every attempt it refused.
    refused: tokio::sync::mpsc::UnboundedReceiver<String>,
    attempts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
    _server: tokio::task::JoinHandle<()>,
}

async fn receiver() -> Receiver {
    receiver_refusing(std::sync::Arc::new(|attempt| attempt <= 2)).await
}

/// A webhook receiver that refuses (500) the attempts `refuse` says, by their number per message.
async fn receiver_refusing(refuse: std::sync::Arc<dyn Fn(u32) -> bool + Send + Sync>) -> Receiver {
    use axum::http::StatusCode;
    let (send, received) = tokio::sync::mpsc::unbounded_channel();
    let (tell_refused, refused) = tokio::sync::mpsc::unbounded_channel();
    let attempts = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<String, u32>::new()));
    let seen = attempts.clone();
    let app = axum::Router::new().route(
        "/{path}",
        axum::routing::post(
            move |axum::extract::Path(path): axum::extract::Path<String>,
                  headers: axum::http::HeaderMap,
                  body: String| {
                let (send, tell_refused, seen, refuse) =
                    (send.clone(), tell_refused.clone(), seen.clone(), refuse.clone());
                async move {
                    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        let n = seen.entry(id.clone()).or_insert(0);
                        *n += 1;
                        *n
                    };
                    if refuse(n) {
                        let _ = tell_refused.send(id);
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let _ = send.send((path, headers, body));
                    StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver { base, received, refused, attempts, _server: server }
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The Standard Webhooks check: HMAC-SHA256 of "id.timestamp.body" with the secret's key.
fn verify(headers: &axum::http::HeaderMap, body: &str) {
    use base64::Engine as _;
    use hmac::Mac;
    let header =
        |name: &str| headers.get(name).unwrap_or_else(|| panic!("{name} header")).to_str().unwrap().to_string();
    let key = base64::engine::general_purpose::STANDARD.decode(SECRET.trim_start_matches("whsec_")).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{body}", header("webhook-id"), header("webhook-timestamp")).as_bytes());
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert!(header("webhook-signature").split(' ').any(|s| s == expected), "bad signature on {body}");
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    assert!((chrono_now() - timestamp).abs() < 600, "the timestamp is now");
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn webhooks_are_signed_and_retried_alarms_go_to_alarm_and_back_and_redrive_reruns_failed_units() {
    let s = Scratch::new();
    let mut hooks = receiver().await;
    let failing = Sim::start(&["--fault-503", "1.0"]);
    let config = format!(
        "[retry]\nbase_delay_ms = 1\nmax_delay_ms = 5\nmax_attempts = 2\n\n[alarms]\nperiod_secs = 1\n\n\
         [serve]\nwebhook_retry_base_ms = 10\ncallback_allow = [\"{base}/\"]\ncallback_secret = \"{SECRET}\"\n\n\
         [[serve.webhooks]]\nname = \"ops\"\nurl = \"{base}/hook\"\nsecret = \"{SECRET}\"\n\
         events = [\"alarm.state_changed\", \"execution.succeeded\"]\n",
        base = hooks.base
    );
    std::fs::write(s.path("beacon.toml"), config).unwrap();
    let start = |s: &Scratch, sim: &Sim| {
        let endpoint = sim.endpoint();
        let args = ["--config", "beacon.toml", "--provider", "bedrock", "--model", MODEL, "--endpoint", &endpoint];
        Server::start_with(s, &args, |cmd| {
            with_fake_aws(cmd);
        })
    };
    let server = start(&s, &failing);
    // A callback outside the allow-list is refused.
    let refused = upload(&server, None, "x.txt&callback_url=http%3A%2F%2Fexample.com%2F", paged_document(1)).await;
    assert_eq!(refused.status(), 400);
    let callback = format!("{}/callback", hooks.base);
    let path = format!("three.txt&callback_url={}", callback.replace(':', "%3A").replace('/', "%2F"));
    let response = upload(&server, None, &path, paged_document(3)).await;
    assert_eq!(response.status(), 202);
    let execution = response.json::<Value>().await.unwrap()["execution"].as_str().unwrap().to_string();

    // Every unit fails: the execution succeeds with failed units, FailedUnits goes to ALARM, and
    // back to OK after a quiet period. Each delivery got through on its third attempt.
    let mut seen = Vec::new();
    let (mut alarm, mut ok, mut to_ops, mut to_callback) = (false, false, false, false);
    while !(alarm && ok && to_ops && to_callback) {
        let (to, headers, body) = tokio::time::timeout(std::time::Duration::from_secs(120), hooks.received.recv())
            .await
            .unwrap_or_else(|_| panic!("webhooks so far: {seen:?}"))
            .unwrap();
        verify(&headers, &body);
        let event: Value = serde_json::from_str(&body).unwrap();
        let id = headers["webhook-id"].to_str().unwrap().to_string();
        assert_eq!(hooks.attempts.lock().unwrap()[&id], 3, "retried after two failures");
        match (event["type"].as_str().unwrap(), to.as_str()) {
            ("alarm.state_changed", "hook") if event["data"]["alarm"] == "FailedUnits" => {
                if event["data"]["to"] == "ALARM" {
                    alarm = true;
                } else if event["data"]["to"] == "OK" && alarm {
                    ok = true;
                }
            }
            ("execution.succeeded", destination) => {
                assert_eq!(event["data"]["execution"], execution.as_str());
                assert_eq!(event["data"]["units"]["failed"], 3);
                to_ops |= destination == "hook";
                to_callback |= destination == "callback";
            }
            _ => {}
        }
        seen.push(format!("{to}: {body}"));
    }
    let (_, alarms) = get_json(&server, None, "/v1/alarms").await;
    let failed_units =
        alarms["alarms"].as_array().unwrap().iter().find(|a| a["name"] == "FailedUnits").unwrap().clone();
    assert_eq!(failed_units["state"], "OK");
    let history: Vec<&str> =
        failed_units["history"].as_array().unwrap().iter().map(|t| t["to"].as_str().unwrap()).collect();
    assert_eq!(history[..2], ["OK", "ALARM"]);
    let metrics = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("beacon_webhook_deliveries_total{outcome=\"retried\"}"), "{metrics}");
    assert!(metrics.contains("beacon_rate_limit_available{") && metrics.contains("kind=\"requests\"}"), "{metrics}");
    let timed = metrics
        .lines()
        .find_map(|line| line.strip_prefix("beacon_llm_request_duration_seconds_count{"))
        .and_then(|rest| rest.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(timed.is_some_and(|n| n >= 3), "every unit's attempts are timed: {metrics}");

    // Redrive against a provider that answers: only the three failed units are sent again.
    server.kill();
    let answering = Sim::start(&[]);
    let server = start(&s, &answering);
    // The alarm's history survived the restart, which starts it again from INSUFFICIENT_DATA.
    let (_, alarms) = get_json(&server, None, "/v1/alarms").await;
    let failed_units =
        alarms["alarms"].as_array().unwrap().iter().find(|a| a["name"] == "FailedUnits").unwrap().clone();
    let history: Vec<&str> =
        failed_units["history"].as_array().unwrap().iter().map(|t| t["to"].as_str().unwrap()).collect();
    assert_eq!(history[..3], ["INSUFFICIENT_DATA", "OK", "ALARM"], "{failed_units}");
    let response = client().post(server.url(&format!("/v1/executions/{execution}/redrive"))).send().await.unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.json::<Value>().await.unwrap()["units"], 3);
    let events = follow(&server, None, &execution, None, ended).await;
    assert_eq!(events.last().unwrap().data["status"], "SUCCEEDED", "{events:?}");
    let (_, view) = get_json(&server, None, &format!("/v1/executions/{execution}")).await;
    assert_eq!(view["units"]["succeeded"], 3, "{view}");
    assert_eq!(view["attempts"], 2);
    assert_eq!(answering.stats()["requests"], 3, "only the failed units were sent");
    // Nothing failed now: nothing to redrive.
    let again = client().post(server.url(&format!("/v1/executions/{execution}/redrive"))).send().await.unwrap();
    assert_eq!(again.status(), 409);
}

/// The peak resident memory of a process, bytes (Linux).
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[tokio::test]
async fn a_1_gib_upload_is_refused_while_memory_stays_bounded() {
    let s = Scratch::new();
    std::fs::write(s.path("beacon.toml"), "[serve]\nmax_upload_bytes = 8388608\n").unwrap();
    let server = Server::start(&s, &["--config", "beacon.toml"]);
    let pid = server.child.id();
    assert_eq!(client().get(server.url("/health")).send().await.unwrap().status(), 200);
    let before = peak_rss(pid);
    // Declared: refused from the Content-Length alone.
    let declared = client()
        .post(server.url("/v1/documents?name=big.bin"))
        .header("content-length", (1u64 << 30).to_string())
        .body(reqwest::Body::wrap_stream(futures::stream::iter(
            (0..1024).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 1 << 20])),
        )))
        .send()
        .await;
    if let Ok(response) = declared {
        assert_eq!(response.status(), 413);
    }
    // Streamed without a length: refused once the limit is passed, the rest never read.
    let streamed = client()
        .post(server.url("/v1/documents?name=big.bin"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(
            (0..1024).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 1 << 20])),
        )))
        .send()
        .await;
    match streamed {
        Ok(response) => assert_eq!(response.status(), 413),
        // The server may close the connection before the client reads its answer.
        Err(e) => assert!(e.is_request() || e.is_body() || e.is_connect(), "{e}"),
    }
    assert_eq!(client().get(server.url("/health")).send().await.unwrap().status(), 200);
    if let (Some(before), Some(after)) = (before, peak_rss(pid)) {
        eprintln!("peak RSS {} MiB before, {} MiB after the 1 GiB uploads", before >> 20, after >> 20);
        assert!(after < before + (128 << 20), "peak RSS grew from {before} to {after} bytes");
    }
    let (_, page) = get_json(&server, None, "/v1/executions").await;
    assert!(page["executions"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_zip_bomb_is_refused_before_it_is_inflated() {
    use std::io::Write;
    let s = Scratch::new();
    std::fs::write(s.path("beacon.toml"), "[limits]\nmax_decompressed_bytes = 16777216\n").unwrap();
    let server = Server::start(&s, &["--config", "beacon.toml"]);
    let mut bomb = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    bomb.start_file("[Content_Types].xml", deflated).unwrap();
    bomb.write_all(br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#).unwrap();
    bomb.start_file("word/document.xml", deflated).unwrap();
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..64 {
        bomb.write_all(&spaces).unwrap();
    }
    let bytes = bomb.finish().unwrap().into_inner();
    assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
    let response = upload(&server, None, "bomb.docx", bytes).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert!(status == 422 || status == 415, "{status}: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("decompress") || status == 415, "{body}");
}

/// Every file of the shared corpus BEACON reads.
fn corpus_files() -> Vec<std::path::PathBuf> {
    let Some(root) = corpus("") else { return Vec::new() };
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "expected") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| {
                ["pdf", "docx", "pptx", "xlsx", "xls", "odt", "odp", "csv"].contains(&e.to_string_lossy().as_ref())
            }) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn a_hundred_concurrent_uploads_all_finish_with_their_reports() {
    let files = corpus_files();
    if files.is_empty() {
        return;
    }
    let s = Scratch::new();
    let (server, admin) = fuzzable_server(&s);
    let uploads = (0..100).map(|i| {
        let file = &files[i % files.len()];
        let name = format!("{i:03}-{}", file.file_name().unwrap().to_string_lossy());
        let bytes = std::fs::read(file).unwrap();
        let (server, admin) = (&server, &admin);
        async move {
            let response = upload(server, Some(admin), &name, bytes).await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (name, status, body)
        }
    });
    let answers: Vec<(String, u16, Value)> = futures::future::join_all(uploads).await;
    let mut accepted = Vec::new();
    for (name, status, body) in &answers {
        match status {
            202 => accepted.push(body["execution"].as_str().unwrap().to_string()),
            // Encrypted or unreadable corpus files are refused up front, with a reason.
            415 | 422 => assert!(body["error"]["message"].is_string(), "{name}: {body}"),
            other => panic!("{name}: {other} {body}"),
        }
    }
    assert!(accepted.len() >= 80, "{} of 100 accepted", accepted.len());
    for execution in &accepted {
        let events = follow(&server, Some(&admin), execution, None, ended).await;
        assert_eq!(events.last().unwrap().data["status"], "SUCCEEDED", "{execution}: {events:?}");
        let report = client()
            .get(server.url(&format!("/v1/executions/{execution}/report")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(report.status(), 200, "{execution}");
        let report: Value = report.json().await.unwrap();
        assert_eq!(report["execution"], execution.as_str());
    }
    let (_, page) = get_json(&server, Some(&admin), "/v1/executions?limit=1000").await;
    assert_eq!(page["executions"].as_array().unwrap().len(), accepted.len(), "none lost, none doubled");
}

#[tokio::test]
async fn cors_is_off_unless_the_origin_is_allowed() {
    let s = Scratch::new();
    std::fs::write(s.path("beacon.toml"), "[serve]\ncors_origins = [\"https://console.example\"]\n").unwrap();
    let server = Server::start(&s, &["--config", "beacon.toml"]);
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, server.url("/v1/executions"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let allowed = preflight("https://console.example").await.unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://console.example");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let get =
        client().get(server.url("/v1/executions")).header("origin", "https://console.example").send().await.unwrap();
    assert_eq!(get.headers()["access-control-allow-origin"], "https://console.example");
}

#[test]
fn a_long_beacon_run_serves_its_metrics() {
    use std::io::Read;
    let s = Scratch::new();
    // Answers take seconds: the run is still going when it is scraped.
    let sim = Sim::start(&["--latency-ms", "5000", "--latency-spread", "0"]);
    std::fs::write(s.path("one.txt"), paged_document(1)).unwrap();
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd)
        .args(["run", "one.txt", "--no-progress-bar", "--metrics-bind", "127.0.0.1:0"])
        .args(["--provider", "bedrock", "--model", MODEL, "--endpoint", &sim.endpoint()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    // The line that names the address (the AWS SDK may log before it).
    let url = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "beacon run ended without naming its metrics address");
        if let Some(url) = line.trim().strip_prefix("metrics: ") {
            break url.to_string();
        }
    };
    let address = url.trim_start_matches("http://").trim_end_matches("/metrics").to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    std::io::Write::write_all(&mut stream, format!("GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"), "{response}");
    // What it counts depends on how far the run got; that it exports the server's metrics does not.
    assert!(response.contains("beacon_executions_started_total{strategy=\"auto\"}"), "{response}");
    assert!(response.contains("beacon_executions_running"), "{response}");
    let status = child.wait().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn tls_serves_the_api_over_https_with_the_given_certificate() {
    let s = Scratch::new();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert_pem = certified.cert.pem();
    std::fs::write(s.path("cert.pem"), &cert_pem).unwrap();
    std::fs::write(s.path("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    // A server on HTTPS, called by a client that trusts the certificate.
    let https = |args: &[&str]| {
        let mut server = Server::start(&s, args);
        assert!(server.base.starts_with("https://127.0.0.1:"), "{}", server.base);
        server.http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
            .build()
            .unwrap();
        server
    };
    let server = https(&["--tls-cert", "cert.pem", "--tls-key", "key.pem"]);
    assert_eq!(server.http.get(server.url("/health")).send().await.unwrap().status(), 200);
    // The whole API is there: an upload runs to a report, its events streamed over TLS.
    let response = upload(&server, None, "tls.txt", paged_document(2)).await;
    assert_eq!(response.status(), 202);
    let execution = response.json::<Value>().await.unwrap()["execution"].as_str().unwrap().to_string();
    let events = follow(&server, None, &execution, None, ended).await;
    assert_eq!(events.last().unwrap().data["status"], "SUCCEEDED", "{events:?}");
    let (status, report) = get_json(&server, None, &format!("/v1/executions/{execution}/report")).await;
    assert_eq!(status, 200);
    assert_eq!(report["units"].as_array().unwrap().len(), 2);
    // A client that does not trust the certificate, or speaks plain HTTP, gets nothing.
    let untrusting = reqwest::Client::builder().tls_certs_only([]).build().unwrap();
    assert!(untrusting.get(server.url("/health")).send().await.is_err());
    let plain = server.url("/health").replacen("https://", "http://", 1);
    let answer = client().get(&plain).send().await;
    assert!(answer.is_err() || answer.unwrap().status() == 400, "plain HTTP is not served");
    drop(server);

    // A missing file or a key that is not the certificate's: a clear error before listening.
    std::fs::write(s.path("other.pem"), rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    for (cert, key) in [("missing.pem", "key.pem"), ("cert.pem", "other.pem"), ("key.pem", "cert.pem")] {
        let out =
            s.beacon().args(["serve", "--bind", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cert} {key}: {stderr}");
        assert!(stderr.contains(&format!("with the certificate {cert} and the key {key}")), "{stderr}");
    }
    let out = s.beacon().args(["serve", "--tls-cert", "cert.pem"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs its key: --tls-key or serve.tls_key"), "{stderr}");
    // The flag and the configuration combine.
    std::fs::write(s.path("tls.toml"), "[serve]\ntls_key = \"key.pem\"\n").unwrap();
    let half = https(&["--config", "tls.toml", "--tls-cert", "cert.pem"]);
    assert_eq!(half.http.get(half.url("/health")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_upload_beyond_the_concurrent_cap_is_turned_away_while_the_places_are_taken() {
    let s = Scratch::new();
    std::fs::write(s.path("beacon.toml"), "[serve]\nmax_concurrent_uploads = 1\nupload_wait_ms = 0\n").unwrap();
    let server = Server::start(&s, &["--config", "beacon.toml"]);
    // An upload whose body comes slowly holds the only place.
    let (mut feed, body) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let slow = server.http.post(server.url("/v1/documents?name=slow.txt")).body(reqwest::Body::wrap_stream(body));
    let slow = tokio::spawn(async move { slow.send().await.unwrap() });
    futures::SinkExt::send(&mut feed, Ok(b"Page 0\n\nThe first half".to_vec())).await.unwrap();
    // Empty uploads (400 once their place is found) probe until one finds it taken.
    let mut busy = None;
    for _ in 0..10_000 {
        let response = upload(&server, None, "probe.txt", Vec::new()).await;
        if response.status() == 503 {
            busy = Some(response);
            break;
        }
        assert_eq!(response.status(), 400);
    }
    let busy = busy.expect("an upload finds the only place taken");
    assert!(busy.headers().contains_key("retry-after"));
    let error: Value = busy.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("max_concurrent_uploads"), "{error}");
    futures::SinkExt::send(&mut feed, Ok(b" and the second half.".to_vec())).await.unwrap();
    drop(feed);
    assert_eq!(slow.await.unwrap().status(), 202, "the slow upload was read to its end");
    assert_eq!(upload(&server, None, "after.txt", paged_document(1)).await.status(), 202, "its place is free again");
}

#[tokio::test]
async fn a_deleted_document_takes_only_its_own_executions_and_its_idempotency_keys_with_it() {
    let s = Scratch::new();
    let server = Server::start(&s, &[]);
    let keyed = |bytes: Vec<u8>| {
        server.http.post(server.url("/v1/documents?name=a.txt")).header("Idempotency-Key", "upload-a").body(bytes)
    };
    let first: Value = keyed(paged_document(2)).send().await.unwrap().json().await.unwrap();
    let other: Value = upload(&server, None, "b.txt", paged_document(3)).await.json().await.unwrap();
    for accepted in [&first, &other] {
        let events = follow(&server, None, accepted["execution"].as_str().unwrap(), None, ended).await;
        assert_eq!(events.last().unwrap().data["status"], "SUCCEEDED");
    }
    let url = server.url(&format!("/v1/documents/{}", first["document"].as_str().unwrap()));
    assert_eq!(server.http.delete(&url).send().await.unwrap().status(), 204);
    let execution_path = |accepted: &Value| format!("/v1/executions/{}", accepted["execution"].as_str().unwrap());
    assert_eq!(get_json(&server, None, &execution_path(&first)).await.0, 404);
    assert_eq!(get_json(&server, None, &execution_path(&other)).await.0, 200, "another document's stays");
    // The key named a deleted execution: the same upload again starts a new one.
    let again = keyed(paged_document(2)).send().await.unwrap();
    assert_eq!(again.status(), 202);
    let again: Value = again.json().await.unwrap();
    assert_ne!(again["execution"], first["execution"]);
    assert_eq!(again["document"], first["document"]);
}

#[tokio::test]
async fn an_upload_brings_its_own_schema_and_model_parameters_as_far_as_the_config_allows() {
    let s = Scratch::new();
    let sim = Sim::start(&[]);
    std::fs::write(
        s.path("beacon.toml"),
        "[serve]\nupload_options = [\"schema\", \"max_tokens\"]\nupload_max_tokens = 4096\n",
    )
    .unwrap();
    let endpoint = sim.endpoint();
    let args = ["--config", "beacon.toml", "--provider", "bedrock", "--model", MODEL, "--endpoint", &endpoint];
    let server = Server::start_with(&s, &args, |cmd| {
        with_fake_aws(cmd);
    });
    let form = |fields: &[(&str, &str)]| {
        let mut form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(paged_document(2)).file_name("shipments.txt"));
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        server.http.post(server.url("/v1/documents")).multipart(form)
    };
    let finished = |execution: String| {
        let server = &server;
        async move {
            let events = follow(server, None, &execution, None, ended).await;
            assert_eq!(events.last().unwrap().data["status"], "SUCCEEDED");
            get_json(server, None, &format!("/v1/executions/{execution}/units")).await.1
        }
    };
    let run = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 202);
        response.json::<Value>().await.unwrap()["execution"].as_str().unwrap().to_string()
    };
    // Without options, the configured schema and limit: every unit succeeds (and its answer is
    // cached, so a later run that reused it would succeed too).
    let plain = run(server.http.post(server.url("/v1/documents?name=plain.txt")).body(paged_document(2))).await;
    let units = finished(plain).await;
    assert!(units["units"].as_array().unwrap().iter().all(|u| u["status"] == "succeeded"), "{units}");
    // A schema no answer follows: every unit fails, naming the field it asked for.
    let strict = r#"{"type": "object", "required": ["shipment_register_id"], "properties": {"shipment_register_id": {"type": "string"}}}"#;
    let strict_run = run(form(&[("schema", strict)])).await;
    let fails_on_the_schema = |units: &Value| {
        for unit in units["units"].as_array().unwrap() {
            assert_eq!(unit["status"], "failed", "{unit}");
            assert!(unit["cause"].as_str().unwrap().contains("shipment_register_id"), "{unit}");
        }
    };
    fails_on_the_schema(&finished(strict_run.clone()).await);
    // A redrive analyses with the execution's own schema again.
    let redrive = server.http.post(server.url(&format!("/v1/executions/{strict_run}/redrive"))).send().await.unwrap();
    assert_eq!(redrive.status(), 202);
    fails_on_the_schema(&finished(strict_run).await);
    // A token limit too small for any answer: the units fail at that limit.
    let units = finished(run(form(&[("max_tokens", "3")])).await).await;
    for unit in units["units"].as_array().unwrap() {
        assert!(unit["cause"].as_str().unwrap().contains("limit of 3 tokens"), "{unit}");
    }

    // What the configuration does not allow, or a value out of bounds, is refused up front.
    let refused = |request: reqwest::RequestBuilder, needle: &'static str| async move {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{needle}: {body}");
    };
    refused(form(&[("temperature", "0.2")]), "does not let an upload choose temperature").await;
    refused(form(&[("max_tokens", "100000")]), "serve.upload_max_tokens").await;
    refused(form(&[("max_tokens", "many")]), "not a number").await;
    refused(form(&[("schema", "{not json")]), "schema is not JSON").await;
    refused(form(&[("schema", r#"{"type": "array"}"#)]), "JSON object").await;
    let raw = server.http.post(server.url("/v1/documents?name=a.txt&max_tokens=0")).body(paged_document(1));
    refused(raw, "allows 1 to 4096").await;
    let (_, page) = get_json(&server, None, "/v1/executions").await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 3, "nothing refused was queued");
}

#[tokio::test]
async fn kill_9_with_webhooks_pending_delivers_them_after_the_restart() {
    let s = Scratch::new();
    let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = open.clone();
    let mut hooks =
        receiver_refusing(std::sync::Arc::new(move |_| !gate.load(std::sync::atomic::Ordering::SeqCst))).await;
    let config = format!(
        "[serve]\nwebhook_retry_base_ms = 10\n\n[[serve.webhooks]]\nname = \"ops\"\nurl = \"{}/hook\"\nsecret = \"{SECRET}\"\n\
         events = [\"execution.succeeded\"]\n",
        hooks.base
    );
    std::fs::write(s.path("beacon.toml"), config).unwrap();
    let server = Server::start(&s, &["--config", "beacon.toml"]);
    let response = upload(&server, None, "one.txt", paged_document(1)).await;
    let execution = response.json::<Value>().await.unwrap()["execution"].as_str().unwrap().to_string();
    let events = follow(&server, None, &execution, None, ended).await;
    assert_eq!(events.last().unwrap().data["status"], "SUCCEEDED");
    // The receiver is down: the delivery waits in the outbox, and the server dies with it there.
    let refused =
        tokio::time::timeout(std::time::Duration::from_secs(60), hooks.refused.recv()).await.unwrap().unwrap();
    server.kill();
    open.store(true, std::sync::atomic::Ordering::SeqCst);

    let _server = Server::start(&s, &["--config", "beacon.toml"]);
    let (_, headers, body) =
        tokio::time::timeout(std::time::Duration::from_secs(60), hooks.received.recv()).await.unwrap().unwrap();
    verify(&headers, &body);
    assert_eq!(headers["webhook-id"].to_str().unwrap(), refused, "the same message, not a new one");
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (event["type"].as_str(), event["data"]["execution"].as_str()),
        (Some("execution.succeeded"), Some(execution.as_str()))
    );
    assert!(hooks.attempts.lock().unwrap()[&refused] >= 2);
}

// ---------------------------------------------------------------------------------------------
// The web console, in a real headless Chromium (Debian's chromium and chromedriver, which the
// test command installs).

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Driver {
    /// None (with a message) when Chromium is not installed and the test command did not ask
    /// for it.
    fn start() -> Option<Driver> {
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
            assert!(
                std::env::var_os("BEACON_REQUIRE_CHROMIUM").is_none(),
                "{CHROMIUM} and {CHROMEDRIVER} are needed (Debian's chromium and chromium-driver; ./scripts/test installs them)"
            );
            eprintln!("skipping: no {CHROMIUM} / {CHROMEDRIVER} (./scripts/test installs them)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start chromedriver");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // It says it started (or why not) before it listens.
        while !line.contains("started successfully") {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "chromedriver stopped: {line}");
        }
        Some(Driver { child, url: format!("http://127.0.0.1:{port}"), _stdout: stdout })
    }

    async fn browser(&self, profile: &std::path::Path) -> fantoccini::Client {
        let mut capabilities = serde_json::Map::new();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            "--lang=en-US",
        ]
        .iter()
        .map(|a| Value::from(*a))
        .chain([Value::from(format!("--user-data-dir={}", profile.display()))])
        .collect::<Vec<_>>();
        capabilities.insert("goog:chromeOptions".into(), serde_json::json!({"binary": CHROMIUM, "args": args}));
        capabilities.insert("goog:loggingPrefs".into(), serde_json::json!({"browser": "ALL"}));
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }

    /// The browser console's messages so far (chromedriver's log endpoint).
    async fn console_messages(&self, browser: &fantoccini::Client) -> Vec<Value> {
        let session = browser.session_id().await.unwrap().unwrap();
        let url = format!("{}/session/{session}/se/log", self.url);
        let answer: Value = client()
            .post(url)
            .json(&serde_json::json!({"type": "browser"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["value"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the console's screenshots go (looked at in review).
fn screenshot_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shoot(browser: &fantoccini::Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

#[tokio::test]
async fn the_console_signs_in_uploads_follows_an_execution_and_speaks_japanese() {
    use fantoccini::Locator::Css;
    let Some(driver) = Driver::start() else { return };
    let s = Scratch::new();
    let admin = token(&s, "admin", "ops");
    let viewer = token(&s, "viewer", "dashboard");
    let server = Server::start(&s, &[]);
    let browser = driver.browser(&s.path("chromium-profile")).await;
    fn wait(b: &fantoccini::Client) -> fantoccini::wait::Wait<'_> {
        b.wait().at_most(std::time::Duration::from_secs(60))
    }

    // Sign in with a bad token, then the admin's.
    browser.goto(&server.url("/#/signin")).await.unwrap();
    shoot(&browser, "01-signin").await;
    wait(&browser).for_element(Css("#token")).await.unwrap().send_keys("bkn_wrong").await.unwrap();
    browser.find(Css("#signin")).await.unwrap().click().await.unwrap();
    // The message element is on the page, empty, before the answer comes: wait for its text.
    let alert = wait(&browser).for_element(Css("p.error:not(:empty)")).await.unwrap();
    assert!(alert.text().await.unwrap().contains("not accepted"));
    let input = browser.find(Css("#token")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(&admin).await.unwrap();
    browser.find(Css("#signin")).await.unwrap().click().await.unwrap();

    // Upload a Japanese document through the file input; it runs to SUCCEEDED in the list.
    let document = s.path("出荷記録.txt");
    let text: String = (0..3)
        .map(|i| format!("第{i}ページ\n\n出荷{i}は2026年5月{}日に倉庫を出た。\n", i + 1))
        .collect::<Vec<_>>()
        .join("\x0c");
    std::fs::write(&document, text).unwrap();
    let files = wait(&browser).for_element(Css("#files")).await.unwrap();
    files.send_keys(document.to_str().unwrap()).await.unwrap();
    wait(&browser).for_element(Css("#executions tr .status.SUCCEEDED")).await.unwrap();
    // Its line in the upload card: the bar the browser's progress events moved, then the link.
    let script = "const line = document.querySelector('#uploads .upload'); const bar = line.querySelector('progress');
        return [line.dataset.file, line.dataset.sent || '', bar.value, bar.max, line.querySelectorAll('a').length];";
    let line = browser.execute(script, vec![]).await.unwrap();
    assert_eq!(line[0], "出荷記録.txt", "{line}");
    let size = std::fs::metadata(&document).unwrap().len();
    let sent: u64 = line[1].as_str().unwrap().parse().unwrap_or_else(|_| panic!("no progress event: {line}"));
    assert!(sent > size && line[2].as_f64() == Some(sent as f64) && line[3] == line[2], "all sent: {line}");
    assert_eq!(line[4], 1, "the execution's link: {line}");
    shoot(&browser, "02-executions").await;

    // The execution: its units, each succeeded, and the report.
    assert_eq!(open_first_execution(&browser).await, "出荷記録.txt", "the name as given");
    wait(&browser).for_element(Css("#execution .status.SUCCEEDED")).await.unwrap();
    wait(&browser).for_element(Css("#units tr[data-unit='2']")).await.unwrap();
    let statuses = browser.find_all(Css("#units tr .status")).await.unwrap();
    assert_eq!(statuses.len(), 3);
    for status in statuses {
        assert_eq!(status.text().await.unwrap(), "succeeded");
    }
    for cell in browser.find_all(Css("#units tr td:nth-child(6)")).await.unwrap() {
        let tokens = cell.text().await.unwrap();
        assert!(tokens.split(" / ").all(|n| n.parse::<u64>().is_ok()), "tokens shown: {tokens}");
    }
    let started = browser.find(Css("#execution .kv span:nth-child(8)")).await.unwrap().text().await.unwrap();
    assert!(started.contains("2026") || started.contains(':'), "the start time is shown: {started:?}");
    wait(&browser).for_element(Css("#report")).await.unwrap();
    shoot(&browser, "03-execution").await;
    // Its event history, AWS-shaped, filtered by type.
    browser.find(Css("#history-load")).await.unwrap().click().await.unwrap();
    wait(&browser).for_element(Css("#history tr[data-event='1']")).await.unwrap();
    let all = browser.find_all(Css("#history tr")).await.unwrap().len();
    browser.find(Css("#history-filter")).await.unwrap().send_keys("ExecutionSucceeded").await.unwrap();
    let last = wait(&browser).for_element(Css("#history tr:only-child td:nth-child(3)")).await.unwrap();
    assert_eq!(last.text().await.unwrap(), "ExecutionSucceeded");
    assert!(all > 10, "{all} events");
    assert_eq!(browser.find_all(Css("#history tr")).await.unwrap().len(), 1);
    shoot(&browser, "03b-history").await;

    // The Japanese interface.
    browser.find(Css("#lang option[value='ja']")).await.unwrap().click().await.unwrap();
    // The page is drawn again after the language changes: wait for the Japanese heading itself.
    wait(&browser)
        .for_element(fantoccini::Locator::XPath("//section[contains(@class,'card')]/h2[text()='ユニット']"))
        .await
        .unwrap();
    shoot(&browser, "04-execution-ja").await;

    // The alarms, in Japanese too.
    browser.goto(&server.url("/#/alarms")).await.unwrap();
    wait(&browser).for_element(Css("#alarms tr[data-alarm='FailedUnits']")).await.unwrap();
    assert_eq!(browser.find_all(Css("#alarms tr")).await.unwrap().len(), 5);
    assert_eq!(browser.find(Css("main h1")).await.unwrap().text().await.unwrap(), "アラーム");
    // Their descriptions, states and reasons too, not only the labels.
    let row = browser.find(Css("#alarms tr[data-alarm='FailedUnits']")).await.unwrap().text().await.unwrap();
    let japanese = |text: &str| text.chars().any(|c| ('\u{3040}'..='\u{30ff}').contains(&c));
    let reason = browser.find(Css("#alarms tr[data-alarm='FailedUnits'] .reason")).await.unwrap().text().await.unwrap();
    assert!(japanese(&reason), "the reason in Japanese: {reason}");
    assert!(row.contains("すべての再試行の後もユニットが失敗した"), "{row}");
    shoot(&browser, "04b-alarms-ja").await;

    // On a phone's width nothing runs off the side of the page.
    browser.set_window_size(390, 844).await.unwrap();
    // Each page waits for an element only it has, not a heading the page before had too.
    for (page, own) in [("/#/", "#executions tr"), ("/#/alarms", "#alarms tr")] {
        browser.goto(&server.url(page)).await.unwrap();
        wait(&browser).for_element(Css(own)).await.unwrap();
        let widths =
            browser.execute("return [document.documentElement.scrollWidth, window.innerWidth];", vec![]).await.unwrap();
        let (content, window) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
        assert!(content <= window, "{page}: {content} px of content in a {window} px window");
    }
    shoot(&browser, "04c-phone-alarms").await;
    browser.set_window_size(1280, 900).await.unwrap();

    // A viewer sees no upload and no actions.
    browser.find(Css("#signout")).await.unwrap().click().await.unwrap();
    let input = wait(&browser).for_element(Css("#token")).await.unwrap();
    input.send_keys(&viewer).await.unwrap();
    browser.find(Css("#signin")).await.unwrap().click().await.unwrap();
    wait(&browser).for_element(Css("#executions tr .status.SUCCEEDED")).await.unwrap();
    assert!(browser.find(Css("#files")).await.is_err(), "a viewer may not upload");
    shoot(&browser, "05-viewer").await;

    let messages = driver.console_messages(&browser).await;
    let errors: Vec<&Value> = messages.iter().filter(|m| m["level"] == "SEVERE").collect();
    // The bad token's 401 is the page's own doing, logged by the browser as a failed resource.
    let unexpected: Vec<&&Value> =
        errors.iter().filter(|m| !m["message"].as_str().unwrap_or_default().contains("401")).collect();
    assert!(unexpected.is_empty(), "console errors: {unexpected:?}");
    browser.close().await.unwrap();
}

/// Signs the browser in with `token` and waits for the executions page.
async fn sign_in(browser: &fantoccini::Client, server: &Server, token: &str) {
    use fantoccini::Locator::Css;
    browser.goto(&server.url("/#/signin")).await.unwrap();
    console_wait(browser).for_element(Css("#token")).await.unwrap().send_keys(token).await.unwrap();
    browser.find(Css("#signin")).await.unwrap().click().await.unwrap();
    console_wait(browser).for_element(Css("#executions")).await.unwrap();
}

fn console_wait(browser: &fantoccini::Client) -> fantoccini::wait::Wait<'_> {
    browser.wait().at_most(std::time::Duration::from_secs(90))
}

/// The classes of the drawing's box for `state` (`#start` and `#end`: the top level's markers),
/// read in one script so a redraw between finding it and reading it cannot get in the way.
async fn state_class(browser: &fantoccini::Client, state: &str) -> String {
    let selector = match state {
        "#start" | "#end" => format!("#graph [data-marker='{}'][data-scope='']", &state[1..]),
        name => format!("#graph [data-state='{name}']"),
    };
    let script = "const n = document.querySelector(arguments[0]); return n ? n.getAttribute('class') : null;";
    let class = browser.execute(script, vec![Value::from(selector)]).await.unwrap();
    class.as_str().unwrap_or_else(|| panic!("no {state} in the drawing")).to_string()
}

/// The first execution of the list: its document's name, and opens it (by its link's address,
/// read with the name, since the list redraws itself every two seconds).
async fn open_first_execution(browser: &fantoccini::Client) -> String {
    use fantoccini::Locator::Css;
    console_wait(browser).for_element(Css("#executions tr a")).await.unwrap();
    let script = "const a = document.querySelector('#executions tr a'); return [a.textContent, a.href];";
    let found = browser.execute(script, vec![]).await.unwrap();
    browser.goto(found[1].as_str().unwrap()).await.unwrap();
    found[0].as_str().unwrap().to_string()
}

/// Scrolls the drawing's box for `state` to the middle of the screen (for the screenshot).
async fn scroll_to_state(browser: &fantoccini::Client, state: &str) {
    let script = "document.querySelector(`#graph [data-state='${arguments[0]}']`).scrollIntoView({block: 'center', inline: 'center'})";
    browser.execute(script, vec![Value::from(state)]).await.unwrap();
}

async fn no_console_errors(driver: &Driver, browser: &fantoccini::Client) {
    let messages = driver.console_messages(browser).await;
    let errors: Vec<&Value> = messages.iter().filter(|m| m["level"] == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

#[tokio::test]
async fn the_console_draws_the_state_machine_and_links_a_corpus_report_to_its_units() {
    use fantoccini::Locator::Css;
    let Some(pdf) = corpus("ja/beacon-design-ja.pdf") else { return };
    // The browser takes a file's path only without `..` in it.
    let pdf = pdf.canonicalize().unwrap();
    let Some(driver) = Driver::start() else { return };
    let s = Scratch::new();
    let admin = token(&s, "admin", "ops");
    let server = Server::start(&s, &[]);
    let browser = driver.browser(&s.path("chromium-profile")).await;
    sign_in(&browser, &server, &admin).await;

    // Upload a Japanese PDF from the corpus and open its execution.
    let files = console_wait(&browser).for_element(Css("#files")).await.unwrap();
    files.send_keys(pdf.to_str().unwrap()).await.unwrap();
    assert_eq!(open_first_execution(&browser).await, "beacon-design-ja.pdf");

    // The drawing reaches the end: every state on the inline path green, the others not run.
    console_wait(&browser).for_element(Css("#graph[data-status='SUCCEEDED']")).await.unwrap();
    for state in [
        "#start",
        "ProcessDocument",
        "ChooseStrategy",
        "InlineWork",
        "AnalyseUnits",
        "ProcessUnit",
        "IntegrateResults",
        "#end",
    ] {
        let class = state_class(&browser, state).await;
        assert!(class.split(' ').any(|c| c == "succeeded"), "{state}: {class}");
    }
    for state in ["PrepareBatch", "AnalyseUnitsDistributed", "UnitFailed"] {
        assert!(state_class(&browser, state).await.contains("notRun"), "{state} did not run");
    }
    assert!(browser.find_all(Css("#graph .failed, #graph .running")).await.unwrap().is_empty());
    let name = browser.find(Css("main h1")).await.unwrap().text().await.unwrap();
    let (_, view) = get_json(&server, Some(&admin), &format!("/v1/executions/{name}")).await;
    let units = view["units"]["succeeded"].as_u64().unwrap();
    assert!(units > 1, "{view}");
    // The listing says the same from the journal alone: which document, how many units, the strategy.
    let (_, page) = get_json(&server, Some(&admin), "/v1/executions").await;
    let listed = &page["executions"][0];
    assert_eq!(listed["name"], name.as_str());
    assert_eq!(listed["document"]["id"], view["document"]["id"], "{listed}");
    assert_eq!(listed["unitsTotal"].as_u64(), Some(units), "{listed}");
    assert_eq!(listed["strategy"], "inline", "{listed}");
    let progress =
        browser.find(Css("#graph [data-state='AnalyseUnits'] .progress-text")).await.unwrap().text().await.unwrap();
    assert!(progress.starts_with(&format!("{units} ✓")), "the Map's bar counts its iterations: {progress}");
    // A state chosen with the keyboard says how it stands.
    let chosen = browser.find(Css("#graph [data-state='ProcessDocument']")).await.unwrap();
    chosen.send_keys(&fantoccini::key::Key::Enter.to_string()).await.unwrap();
    let said = console_wait(&browser).for_element(Css("#graph-chosen:not(:empty)")).await.unwrap();
    assert!(said.text().await.unwrap().starts_with("ProcessDocument: Succeeded"));
    scroll_to_state(&browser, "AnalyseUnits").await;
    shoot(&browser, "06-graph").await;

    // The report: the document's Japanese title, its fields, each linked to its unit.
    browser.find(Css("#open-report")).await.unwrap().click().await.unwrap();
    let title = console_wait(&browser).for_element(Css("#report-view h1")).await.unwrap();
    let (_, report) = get_json(&server, Some(&admin), &format!("/v1/executions/{name}/report")).await;
    assert_eq!(title.text().await.unwrap(), report["document"]["title"].as_str().unwrap());
    assert_eq!(title.attr("lang").await.unwrap().as_deref(), Some("ja"));
    let links = browser.find_all(Css("#fields .unit-link")).await.unwrap();
    assert!(!links.is_empty(), "the report has fields");
    let link = links.last().unwrap();
    let unit: usize = link.attr("data-unit").await.unwrap().unwrap().parse().unwrap();
    assert!(unit > 0, "a field of a later unit than the one shown first");
    link.click().await.unwrap();
    let viewer = console_wait(&browser).for_element(Css(&format!("#unit[data-unit='{unit}']"))).await.unwrap();
    let shown = viewer.find(Css(".unit-text")).await.unwrap().text().await.unwrap();
    let text = report["units"][unit]["text"].as_str().unwrap();
    let first_line = text.lines().find(|l| !l.trim().is_empty()).unwrap().trim();
    assert!(shown.contains(first_line), "unit {unit}'s own text is shown: {first_line:?} in {shown:?}");
    shoot(&browser, "07-report").await;

    // The overview counts what the hour and the day did: this one document's units.
    browser.goto(&server.url("/#/overview")).await.unwrap();
    let counted = console_wait(&browser).for_element(Css("#last-hour .units")).await.unwrap();
    assert_eq!(counted.text().await.unwrap(), format!("{units} ✓ · 0 ✗"));
    let day = browser.find(Css("#last-day .units")).await.unwrap().text().await.unwrap();
    assert_eq!(day, format!("{units} ✓ · 0 ✗"));
    assert_eq!(browser.find_all(Css("#last-hour-requests rect.bar")).await.unwrap().len(), 60, "a bar a minute");
    shoot(&browser, "07b-overview").await;
    no_console_errors(&driver, &browser).await;
    browser.close().await.unwrap();
}

#[tokio::test]
async fn the_console_shows_failed_units_redrives_them_and_draws_a_distributed_run() {
    use fantoccini::Locator::Css;
    let Some(driver) = Driver::start() else { return };
    let s = Scratch::new();
    let admin = token(&s, "admin", "ops");
    std::fs::write(s.path("beacon.toml"), "[retry]\nbase_delay_ms = 1\nmax_delay_ms = 2\nmax_attempts = 1\n").unwrap();
    let start = |s: &Scratch, sim: &Sim| {
        let endpoint = sim.endpoint();
        let args = ["--config", "beacon.toml", "--provider", "bedrock", "--model", MODEL, "--endpoint", &endpoint];
        Server::start_with(s, &args, |cmd| {
            with_fake_aws(cmd);
        })
    };
    // Half the requests fail (the seed decides which, the same every run) and none is retried.
    let failing = Sim::start(&["--fault-503", "0.5", "--seed", "7"]);
    let server = start(&s, &failing);
    let response = upload(&server, Some(&admin), "six.txt", paged_document(6)).await;
    let execution = response.json::<Value>().await.unwrap()["execution"].as_str().unwrap().to_string();
    let events = follow(&server, Some(&admin), &execution, None, ended).await;
    assert_eq!(events.last().unwrap().data["status"], "SUCCEEDED");
    let (_, view) = get_json(&server, Some(&admin), &format!("/v1/executions/{execution}")).await;
    let failed = view["units"]["failed"].as_u64().unwrap();
    assert!((1..6).contains(&failed), "some units failed: {view}");

    // The failed units show with their reason; the drawing shows the errors caught.
    let browser = driver.browser(&s.path("chromium-profile")).await;
    sign_in(&browser, &server, &admin).await;
    browser.goto(&server.url(&format!("/#/e/{execution}"))).await.unwrap();
    console_wait(&browser).for_element(Css("#execution[data-status='SUCCEEDED']")).await.unwrap();
    console_wait(&browser).for_element(Css("#graph[data-status='SUCCEEDED']")).await.unwrap();
    assert!(state_class(&browser, "ProcessUnit").await.contains("caught"));
    assert!(state_class(&browser, "UnitFailed").await.contains("succeeded"), "the failure recorder ran");
    browser.find(Css("#only-failed")).await.unwrap().click().await.unwrap();
    let rows = console_wait(&browser)
        .for_element(Css(&format!("#units:has(> tr:nth-child({failed}):last-child)")))
        .await
        .unwrap()
        .find_all(Css("tr"))
        .await
        .unwrap();
    assert_eq!(rows.len() as u64, failed);
    for row in rows {
        assert!(row.text().await.unwrap().contains("ServiceUnavailable"), "the reason is shown");
    }
    shoot(&browser, "08-failed-units").await;

    // Against a provider that answers, redrive from the console: the failed units succeed.
    // (The page leaves the server first: a refused request would be a console error.)
    browser.goto("about:blank").await.unwrap();
    server.kill();
    let answering = Sim::start(&[]);
    let server = start(&s, &answering);
    sign_in(&browser, &server, &admin).await;
    browser.goto(&server.url(&format!("/#/e/{execution}"))).await.unwrap();
    console_wait(&browser).for_element(Css("#redrive")).await.unwrap().click().await.unwrap();
    console_wait(&browser).for_element(Css("#execution[data-status='SUCCEEDED'][data-failed='0']")).await.unwrap();
    assert_eq!(answering.stats()["requests"].as_u64(), Some(failed), "only the failed units were sent");
    shoot(&browser, "08b-redriven").await;

    // A 60-unit document takes the distributed path, and the drawing shows its child executions.
    let response = upload(&server, Some(&admin), "sixty.txt", paged_document(60)).await;
    let execution = response.json::<Value>().await.unwrap()["execution"].as_str().unwrap().to_string();
    browser.goto(&server.url(&format!("/#/e/{execution}"))).await.unwrap();
    console_wait(&browser).for_element(Css("#graph[data-status='SUCCEEDED']")).await.unwrap();
    let (_, view) = get_json(&server, Some(&admin), &format!("/v1/executions/{execution}")).await;
    assert_eq!(view["units"]["paths"]["distributed"], 60, "{view}");
    for state in ["AnalyseUnitsDistributed", "AnalyseBatchOfUnits", "ProcessUnitInChild", "IntegrateResults"] {
        assert!(state_class(&browser, state).await.contains("succeeded"), "{state}");
    }
    assert!(state_class(&browser, "InlineWork").await.contains("notRun"));
    let progress = browser
        .find(Css("#graph [data-state='AnalyseUnitsDistributed'] .progress-text"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(progress.starts_with("child executions:") && progress.contains("0 running · 0 ✗"), "{progress}");
    scroll_to_state(&browser, "AnalyseBatchOfUnits").await;
    shoot(&browser, "09-distributed").await;
    no_console_errors(&driver, &browser).await;
    browser.close().await.unwrap();
}

#[tokio::test]
async fn the_console_resumes_an_execution_whose_process_died() {
    use fantoccini::Locator::Css;
    let Some(driver) = Driver::start() else { return };
    let s = Scratch::new();
    let admin = token(&s, "admin", "ops");
    // The server's model answers at once; the `beacon run` that dies waits on one that never does.
    let answering = Sim::start(&[]);
    let silent = Sim::start(&["--latency-ms", "600000", "--latency-spread", "0"]);
    let endpoint = answering.endpoint();
    let server = Server::start_with(&s, &["--provider", "bedrock", "--model", MODEL, "--endpoint", &endpoint], |cmd| {
        with_fake_aws(cmd);
    });
    let browser = driver.browser(&s.path("chromium-profile")).await;
    sign_in(&browser, &server, &admin).await;

    // A `beacon run` on the same data directory journals its execution, then is killed mid-unit.
    std::fs::write(s.path("three.txt"), paged_document(3)).unwrap();
    let mut run = s.beacon();
    with_fake_aws(&mut run)
        .args(["run", "three.txt", "--out", "out", "--provider", "bedrock", "--model", MODEL, "--endpoint"])
        .arg(silent.endpoint())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut run = run.spawn().unwrap();
    console_wait(&browser).for_element(Css("#executions tr .status.RUNNING")).await.unwrap();
    assert_eq!(open_first_execution(&browser).await, "three.txt");
    // The drawing, read from the journal the other process writes, shows its units in flight.
    console_wait(&browser).for_element(Css("#graph [data-state='ProcessUnit'].running")).await.unwrap();
    assert!(browser.find_all(Css("#resume, #orphaned")).await.unwrap().is_empty(), "its process runs it");
    run.kill().unwrap();
    run.wait().unwrap();

    // Its page then says no process runs it and offers Resume; the server finishes it.
    console_wait(&browser).for_element(Css("#orphaned")).await.unwrap();
    shoot(&browser, "10-orphaned").await;
    browser.find(Css("#resume")).await.unwrap().click().await.unwrap();
    console_wait(&browser).for_element(Css("#execution[data-status='SUCCEEDED'][data-failed='0']")).await.unwrap();
    assert!(browser.find_all(Css("#resume, #orphaned")).await.unwrap().is_empty(), "nothing left to resume");
    let name = browser.find(Css("main h1")).await.unwrap().text().await.unwrap();
    let (_, view) = get_json(&server, Some(&admin), &format!("/v1/executions/{name}")).await;
    assert_eq!(view["attempts"], 2, "{view}");
    assert_eq!(view["resumable"], false, "{view}");
    assert_eq!(answering.stats()["succeeded"].as_u64(), Some(3), "the server analysed the three units");
    no_console_errors(&driver, &browser).await;
    browser.close().await.unwrap();
}
