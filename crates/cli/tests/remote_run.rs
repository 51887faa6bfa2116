//! `beacon run --engine aws`: a document through a deployed stack, from the upload to the
//! report on disk. `beacon deploy` creates the stack on moto; its functions run as `beacon-lambda`
//! processes behind a local Lambda service, each with the environment the stack gave it; Step
//! Functions is BEACON's engine behind Step Functions' API (`LocalStepFunctions`: moto's own
//! cannot run the definition), running the definition CloudFormation deployed; Bedrock is
//! `beacon sim`. The report the command downloads equals the one the embedded engine writes for
//! the same document, inline and distributed, and the progress it shows counts every unit.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use common::*;
use serde_json::Value;

#[path = "../../aws/tests/support/mod.rs"]
mod aws;

use aws::lambda_service::{FunctionSpec, LocalLambda};
use aws::step_functions::{Backends, LocalStepFunctions};

const STACK: &str = "beacon-remote";
const MODEL: &str = "sim-model";

/// `beacon ARGS` on a blocking thread (the Lambda service and Step Functions run on this test's
/// runtime).
async fn beacon(s: &Scratch, args: Vec<String>) -> Output {
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd);
    cmd.args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("run beacon")).await.unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// The functions as the stack deployed them, pointed at moto and the simulator.
fn deployed_functions(moto: &aws::Moto, sim: &Sim, tmp: &Path) -> Vec<FunctionSpec> {
    let deployed = moto.boto3(
        r#"
functions = boto3.client("lambda").list_functions()["Functions"]
print(json.dumps({f["FunctionName"]: f["Environment"]["Variables"] for f in functions}))
"#,
    );
    let overrides = [
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("BEACON_S3_ENDPOINT", moto.endpoint.clone()),
        ("BEACON_QUOTA_ENDPOINT", moto.endpoint.clone()),
        ("BEACON_ENDPOINT", sim.endpoint()),
        // Lambda's writable /tmp.
        ("BEACON_DATA_DIR", tmp.display().to_string()),
    ];
    deployed
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, env)| {
            let mut env: BTreeMap<String, String> = env
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.clone())));
            FunctionSpec {
                name: name.clone(),
                instances: if env["BEACON_TASK"] == "llm-processor" { 2 } else { 1 },
                env: env.into_iter().collect(),
                throttled: 0,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacon_run_on_the_deployed_stack_downloads_the_report_the_embedded_engine_writes_and_counts_every_unit() {
    let Some(moto) = aws::Moto::start() else { return };
    let sim = Sim::start(&[]);
    let s = Scratch::new();
    let binary = lambda_binary().display().to_string();
    let out = beacon(
        &s,
        strings(&[
            "deploy",
            "--stack",
            STACK,
            "--region",
            "us-east-1",
            "--endpoint",
            &moto.endpoint,
            "--arch",
            host_arch(),
            "--lambda-binary",
            &binary,
            "--model",
            MODEL,
            "--poll-seconds",
            "1",
        ]),
    )
    .await;
    assert_exit(&out, 0);
    let bucket = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("BucketName\t"))
        .expect("the stack's bucket among the outputs")
        .to_string();

    let functions = deployed_functions(&moto, &sim, &s.path("lambda-tmp"));
    assert_eq!(functions.len(), beacon_pipeline::tasks::resources::TASKS.len());
    let lambda = LocalLambda::start(&lambda_binary(), functions).await;
    let sfn = LocalStepFunctions::start(Backends {
        moto: moto.endpoint.clone(),
        lambda: lambda.endpoint.clone(),
        bucket: bucket.clone(),
    })
    .await;
    let on_aws = ["--engine", "aws", "--stack", STACK, "--region", "us-east-1"];
    let document = repo_root().join("samples/operations-review.pdf").display().to_string();

    for strategy in ["inline", "distributed"] {
        let remote_out = s.path(&format!("aws-{strategy}")).display().to_string();
        let out = beacon(
            &s,
            strings(
                &[
                    &["run", &document, "--out", &remote_out, "--strategy", strategy, "--no-progress-bar"][..],
                    &on_aws,
                    &["--aws-endpoint", &sfn.endpoint, "--poll-seconds", "1"],
                ]
                .concat(),
            ),
        )
        .await;
        assert_exit(&out, 0);
        let report = comparable_report(&Path::new(&remote_out).join("report.json"));
        let units = report["units"].as_array().unwrap().len();
        assert!(units > 1, "{report}");
        assert_eq!(report["strategy"], strategy);
        // The progress came from the execution's history (inline: Map iterations) or its Map
        // Run's item counts (distributed: batches of units), each unit once.
        let err = stderr(&out);
        assert!(err.contains(&format!("{units} units to analyse")), "{err}");
        assert!(err.contains(&format!("finished {units}/{units} units")), "{err}");
        assert!(stdout(&out).contains(&format!("{units} of {units} units succeeded")), "{}", stdout(&out));

        let local_out = s.path(&format!("local-{strategy}")).display().to_string();
        let endpoint = sim.endpoint();
        let out = beacon(
            &s,
            strings(&[
                "run",
                &document,
                "--out",
                &local_out,
                "--strategy",
                strategy,
                "--no-progress-bar",
                "--provider",
                "bedrock",
                "--model",
                MODEL,
                "--endpoint",
                &endpoint,
            ]),
        )
        .await;
        assert_exit(&out, 0);
        assert_eq!(report, comparable_report(&Path::new(&local_out).join("report.json")), "{strategy}");
        assert_eq!(markdown_without_timing(&remote_out), markdown_without_timing(&local_out), "{strategy}");
    }

    // A document the processor refuses: the execution's error is the input error it is locally.
    let broken = s.path("broken.pdf");
    std::fs::write(&broken, b"%PDF-1.7 this is not a PDF").unwrap();
    let out = beacon(
        &s,
        strings(
            &[
                &["run", &broken.display().to_string(), "--no-progress-bar"][..],
                &on_aws,
                &["--aws-endpoint", &sfn.endpoint, "--poll-seconds", "1"],
            ]
            .concat(),
        ),
    )
    .await;
    assert_exit(&out, 3);
    assert!(stderr(&out).contains("broken.pdf"), "{}", stderr(&out));

    // The executions, as Step Functions lists them.
    let out =
        beacon(&s, strings(&[&["executions", "list", "--json"][..], &on_aws, &["--endpoint", &sfn.endpoint]].concat()))
            .await;
    assert_exit(&out, 0);
    let listed: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let statuses: Vec<&str> = listed.iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["FAILED", "SUCCEEDED", "SUCCEEDED"], "{}", stdout(&out));
    drop(sfn);
    lambda.stop();
}

/// report.md without the lines of times (the makespan: `| Makespan | 1.2 s |`).
fn markdown_without_timing(out: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(out).join("report.md")).unwrap();
    text.lines().filter(|l| !l.ends_with(" s |")).map(str::to_string).collect()
}
