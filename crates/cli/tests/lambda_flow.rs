//! One document end to end through the deployed definition: `beacon run` runs
//! `beacon.asl.json` with every Task resource substituted by a Lambda function's ARN (what the
//! template's DefinitionSubstitutions do on AWS) and invokes the functions through the Lambda
//! Invoke API of a local Lambda service, whose functions are `beacon-lambda` processes speaking
//! the Runtime API. S3 is moto, Bedrock is `beacon sim`. The report equals the one the embedded
//! engine writes for the same document with the tasks in process, inline and distributed.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

#[path = "../../aws/tests/support/mod.rs"]
mod aws;

use aws::lambda_service::{FunctionSpec, LocalLambda, function_arn};

const BUCKET: &str = "beacon-e2e";
const STACK: &str = "beacon-e2e";
const MODEL: &str = "sim-model";

/// The environment the template gives each function, pointed at moto and the simulator.
fn function_env(task: &str, moto: &aws::Moto, sim: &Sim, tmp: &Path) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("BEACON_TASK", task),
        ("BEACON_BUCKET", BUCKET),
        ("BEACON_S3_ENDPOINT", moto.endpoint.as_str()),
        ("BEACON_PROVIDER", "bedrock"),
        ("BEACON_MODEL", MODEL),
        ("BEACON_ENDPOINT", &sim.endpoint()),
        // Lambda's writable /tmp.
        ("BEACON_DATA_DIR", &tmp.display().to_string()),
        ("BEACON_STATE_MACHINE", &format!("{STACK}-beacon")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn function_name(task: &str) -> String {
    format!("{STACK}-{task}")
}

/// `beacon run` with the Bedrock simulator; run on a blocking thread (the Lambda service runs on
/// this test's runtime).
async fn run(s: &Scratch, document: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd);
    cmd.arg("run")
        .arg(document)
        .arg("--out")
        .arg(out)
        .args(["--provider", "bedrock", "--model", MODEL, "--no-progress-bar"])
        .args(extra);
    tokio::task::spawn_blocking(move || cmd.output().expect("run beacon")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_through_the_deployed_definition_on_lambda_reports_what_the_embedded_engine_reports() {
    let Some(moto) = aws::Moto::start() else { return };
    moto.create_bucket(BUCKET);
    let sim = Sim::start(&[]);
    let s = Scratch::new();
    let tasks = beacon_pipeline::tasks::resources::TASKS;
    let functions = tasks
        .iter()
        .map(|task| FunctionSpec {
            name: function_name(task),
            // The unit analysis runs on several instances at once, as Lambda scales it out.
            instances: if *task == "llm-processor" { 3 } else { 1 },
            env: function_env(task, &moto, &sim, &s.path("lambda-tmp")),
            // Lambda refuses the first two unit analyses (concurrency exhausted): the
            // definition's Retry on Lambda.TooManyRequestsException carries the run through.
            throttled: if *task == "llm-processor" { 2 } else { 0 },
        })
        .collect();
    let lambda = LocalLambda::start(&lambda_binary(), functions).await;

    let mut config = format!(
        "bucket = \"{BUCKET}\"\n\n[store]\nbackend = \"s3\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\n\
         [lambda]\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\n[lambda.functions]\n",
        moto.endpoint, lambda.endpoint
    );
    for task in tasks {
        config.push_str(&format!("\"{task}\" = \"{}\"\n", function_arn(&function_name(task))));
    }
    std::fs::write(s.path("lambda.toml"), config).unwrap();
    let lambda_config = s.path("lambda.toml").display().to_string();
    let document = repo_root().join("samples/operations-review.pdf");
    let endpoint = sim.endpoint();

    for strategy in ["inline", "distributed"] {
        let on_lambda = s.path(&format!("lambda-{strategy}"));
        let out = run(
            &s,
            &document,
            &on_lambda,
            &["--config", &lambda_config, "--endpoint", &endpoint, "--strategy", strategy],
        )
        .await;
        assert_exit(&out, 0);
        let in_process = s.path(&format!("local-{strategy}"));
        let out = run(&s, &document, &in_process, &["--endpoint", &endpoint, "--strategy", strategy]).await;
        assert_exit(&out, 0);

        let report = comparable_report(&on_lambda.join("report.json"));
        assert_eq!(report["strategy"], strategy);
        assert!(report["units"].as_array().unwrap().len() > 1, "{report}");
        assert_eq!(report, comparable_report(&in_process.join("report.json")), "{strategy}: the reports differ");
        assert_eq!(
            std::fs::read_to_string(on_lambda.join("report.md")).unwrap().lines().count(),
            std::fs::read_to_string(in_process.join("report.md")).unwrap().lines().count()
        );
    }

    // The functions did the work: each invocation printed its metrics, the units' analyses
    // among them.
    let printed = lambda.stop();
    let analysed: usize = printed[&function_name("llm-processor")]
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|line| line.get("UnitsSucceeded").and_then(serde_json::Value::as_f64))
        .map(|n| n as usize)
        .sum();
    assert!(analysed >= 2 * 2, "the Lambda functions analysed {analysed} units");
}
